package main

import (
	"slices"
	"strings"
	"testing"
)

func TestHardeningFlags(t *testing.T) {
	t.Setenv("SLIPWAY_ALLOW_IMAGES", "slipway/*,registry.local/*")
	o, err := parseFlags([]string{"-insecure", "-allow-privileged", "-allow-caps", "cap_net_admin,SYS_TIME", "-allow-host-paths", "/srv,/data", "-pids-limit", "100", "-process-user", "daemon"})
	if err != nil {
		t.Fatal(err)
	}
	p := o.hard.policy
	if !p.Privileged || !slices.Equal(p.Caps, []string{"NET_ADMIN", "SYS_TIME"}) || !slices.Equal(p.HostPaths, []string{"/data", "/srv"}) ||
		!slices.Equal(p.Images, []string{"slipway/*", "registry.local/*"}) || o.hard.pidsLimit != 100 || o.hard.user != "daemon" {
		t.Errorf("parsed %+v", o.hard)
	}
	if _, err := o.hard.processPolicy(); err == nil || !strings.Contains(err.Error(), "need the docker driver") {
		t.Errorf("processPolicy with docker-only allowances = %v, want refused", err)
	}

	t.Setenv("SLIPWAY_ALLOW_IMAGES", "")
	o, err = parseFlags([]string{"-insecure"})
	if err != nil {
		t.Fatal(err)
	}
	if p := o.hard.policy; p.Privileged || len(p.Caps)+len(p.HostPaths)+len(p.Images) != 0 || o.hard.pidsLimit != 512 || o.hard.user != "nobody" {
		t.Errorf("defaults %+v, want nothing allowed, pids 512, user nobody", o.hard)
	}
	for _, bad := range [][]string{
		{"-allow-caps", "FLY"}, {"-allow-host-paths", "data"}, {"-allow-host-paths", "/data/../etc"},
		{"-pids-limit", "0"}, {"-process-user", "root"}, {"-allow-images", strings.Repeat("a,", 300)},
	} {
		if _, err := parseFlags(append([]string{"-insecure"}, bad...)); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}
