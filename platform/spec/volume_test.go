package spec

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"slipway.dev/platform/rpc"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

func TestValidateVolumes(t *testing.T) {
	s := valid()
	s.Volumes = []*deployv1.VolumeMount{{Name: "data", Target: "/data"}, {Name: "cache.1", Target: "/cache", ReadOnly: true}}
	if vs := Validate(s); vs != nil {
		t.Fatalf("valid volumes: %v", vs)
	}
	s.Security = &deployv1.Security{HostMounts: []*deployv1.HostMount{{HostPath: "/srv", ContainerPath: "/srv"}}}
	s.Volumes = []*deployv1.VolumeMount{{Name: "", Target: "data"}, {Name: "-x", Target: "/srv"}, {Name: "a", Target: "/a"}, {Name: "a", Target: "/a"}}
	want := []rpc.FieldViolation{
		{Field: "spec.volumes[0].name", Description: "is required"},
		{Field: "spec.volumes[0].target", Description: `"data" must be an absolute path`},
		{Field: "spec.volumes[1].name", Description: `"-x" is not a volume name (letters, digits, '_', '.' and '-', starting with a letter or digit, at most 63)`},
		{Field: "spec.volumes[1].target", Description: `"/srv" is mounted more than once`},
		{Field: "spec.volumes[3].name", Description: `"a" is listed twice`},
		{Field: "spec.volumes[3].target", Description: `"/a" is mounted more than once`},
	}
	if diff := cmp.Diff(want, Validate(s)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}
