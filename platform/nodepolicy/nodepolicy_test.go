package nodepolicy

import (
	"errors"
	"strings"
	"testing"
)

func TestAllowsImage(t *testing.T) {
	p := Policy{Images: []string{"slipway/*", "registry.local/*", "nginx"}}
	for ref, want := range map[string]bool{
		"slipway/demo:v1":                     true,
		"docker.io/slipway/demo:v1":           true,
		"index.docker.io/slipway/demo":        true,
		"registry.local/team/app@sha256:abcd": true,
		"nginx":                               true,
		"docker.io/library/nginx":             true,
		"nginx:1.27":                          false,
		"evil.example/slipway/demo:v1":        false,
		"slipway.evil.example/demo":           false,
		"registry.local.evil/x":               false,
		"busybox":                             false,
	} {
		if got := p.AllowsImage(ref); got != want {
			t.Errorf("AllowsImage(%q) = %v, want %v", ref, got, want)
		}
	}
	if !(Policy{}).AllowsImage("anything/at:all") {
		t.Error("an empty image list must allow every image")
	}
}

func TestAllowsHostPath(t *testing.T) {
	p := Policy{HostPaths: []string{"/data", "/srv/app"}}
	for h, want := range map[string]bool{
		"/data": true, "/data/x/y": true, "/srv/app/logs": true,
		"/database": false, "/srv": false, "/data/../etc": false, "data": false, "/etc": false,
	} {
		if got := p.AllowsHostPath(h); got != want {
			t.Errorf("AllowsHostPath(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	ask := Ask{Image: "slipway/demo:v1", Privileged: true, Caps: []string{"net_admin", "CAP_SYS_TIME"},
		Mounts: []Mount{{HostPath: "/data/a", ContainerPath: "/a"}, {HostPath: "/etc", ContainerPath: "/e"}}}
	vs := Policy{}.Check(ask)
	var fields []string
	for _, v := range vs {
		fields = append(fields, v.Field)
	}
	if got, want := strings.Join(fields, " "), "privileged cap_add[0] cap_add[1] host_mounts[0].host_path host_mounts[1].host_path"; got != want {
		t.Errorf("Check fields = %q, want %q", got, want)
	}
	if !strings.Contains(vs[0].Description, FlagPrivileged) || !strings.Contains(vs[1].Description, FlagCaps+" NET_ADMIN") {
		t.Errorf("descriptions must name the flag: %v", vs)
	}
	caps, _ := ParseCaps("NET_ADMIN,sys_time")
	p := Policy{Privileged: true, Caps: caps, HostPaths: []string{"/data"}, Images: []string{"slipway/*"}}
	vs = p.Check(ask)
	if len(vs) != 1 || vs[0].Field != "host_mounts[1].host_path" {
		t.Errorf("Check = %v, want only host_mounts[1].host_path", vs)
	}
	if vs := p.Check(Ask{Image: "busybox"}); len(vs) != 1 || vs[0].Field != "image" {
		t.Errorf("Check(busybox) = %v, want image", vs)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	caps, err := ParseCaps("CAP_NET_ADMIN, sys_time,NET_ADMIN")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ParseHostPaths("/srv,/data")
	if err != nil {
		t.Fatal(err)
	}
	imgs, _ := ParseImages("slipway/*, registry.local/*")
	p := Policy{Privileged: true, Caps: caps, HostPaths: paths, Images: imgs}
	m, err := p.Meta()
	if err != nil {
		t.Fatal(err)
	}
	if m[MetaCaps] != "NET_ADMIN,SYS_TIME" || m[MetaHostPaths] != "/data,/srv" || m[MetaImages] != "slipway/*,registry.local/*" || m[MetaPrivileged] != "true" {
		t.Errorf("Meta = %v", m)
	}
	back, err := FromMeta(m)
	if err != nil || !back.Privileged || strings.Join(back.Caps, ",") != "NET_ADMIN,SYS_TIME" || len(back.HostPaths) != 2 || len(back.Images) != 2 {
		t.Errorf("FromMeta = %+v, %v", back, err)
	}
	if m, _ := (Policy{}).Meta(); len(m) != 0 {
		t.Errorf("zero policy meta = %v, want none", m)
	}
	if _, err := ParseCaps("NET_ADMIN,FLY"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseCaps(FLY) = %v, want ErrInvalid", err)
	}
	if _, err := ParseHostPaths("/data/../etc"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseHostPaths(/data/../etc) = %v, want ErrInvalid", err)
	}
	if _, err := (Policy{Images: []string{strings.Repeat("x", 600)}}).Meta(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Meta of a 600-character list = %v, want ErrInvalid", err)
	}
}
