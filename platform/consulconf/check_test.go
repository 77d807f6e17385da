package consulconf_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"slipway.dev/platform/consulconf"
	"slipway.dev/platform/testenv"
)

func TestCheckTokenAgainstConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real Consul agents; skipped by -short")
	}
	ctx := context.Background()
	c := testenv.StartConsul(t, testenv.ConsulACL())
	check := func(cfg consulconf.Config) (string, error) {
		cl, err := cfg.Client()
		if err != nil {
			t.Fatal(err)
		}
		return cfg.CheckToken(ctx, cl, "edge")
	}
	if got, err := check(c.ComponentConfig(t, "edge")); err != nil || !strings.Contains(got, "slipway-edge") {
		t.Errorf("edge token: %q, %v; want its policy named", got, err)
	}
	got, err := check(c.Config(""))
	if !errors.Is(err, consulconf.ErrPermissionDenied) || !strings.Contains(err.Error(), "no Consul token") || !strings.Contains(err.Error(), "deployments/consul/edge.hcl") {
		t.Errorf("no token: %q, %v", got, err)
	}
	if _, err := check(c.Config("11111111-1111-4111-8111-111111111111")); err == nil || !strings.Contains(err.Error(), "does not know") {
		t.Errorf("unknown token: %v", err)
	}
	plain := testenv.StartConsul(t)
	if got, err := check(plain.Config("")); err != nil || got != "Consul ACLs are off" {
		t.Errorf("without ACLs: %q, %v", got, err)
	}
}
