package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// TestScaleAndSetImage drives slipctl scale and set-image against a real
// coordinator (engine off: rollouts stay pending): each makes a new
// release from the latest spec with one field changed, through Deploy
// (refused while a rollout is active unless --supersede), with the change
// as the default reason; a change that changes nothing makes no release;
// --wait follows the rollout like deploy --wait.
func TestScaleAndSetImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the coordinator")
	}
	coord := startCoordinator(t)
	c := &cli{t: t, bin: testenv.BuildBinary(t, "./cli/cmd/slipctl"), addr: coord.addr, env: coord.clientEnv}
	testenv.Eventually(t, 30*time.Second, "a raft leader", func() error {
		if r := c.run("cluster", "leader", "--timeout", "1s"); r.code != 0 {
			return r.failed()
		}
		return nil
	})
	var boot struct {
		Secret string `json:"secret"`
	}
	c.mustJSON(&boot, "acl", "bootstrap")
	c.env = append(c.env, "SLIPWAY_TOKEN="+boot.Secret)

	c.must(0, "deploy", "-f", filepath.Join("deployments", "examples", "rolling.yaml"))
	type svcJSON struct {
		Service struct {
			LatestRelease string `json:"latestRelease"`
			Spec          struct {
				Image string `json:"image"`
				Count int    `json:"count"`
				Port  int    `json:"port"`
			} `json:"spec"`
		} `json:"service"`
	}
	service := func() svcJSON {
		var s svcJSON
		c.mustJSON(&s, "service", "web")
		return s
	}

	r := c.must(4, "scale", "web", "6")
	contains(t, "scale during a rollout", r.stderr, "failed precondition", "web-1")
	r = c.must(0, "scale", "web", "6", "--supersede")
	contains(t, "scale", r.stdout, "release web #2 created")
	s := service()
	if s.Service.LatestRelease != "2" || s.Service.Spec.Count != 6 || s.Service.Spec.Image != "slipway/demo:v2" || s.Service.Spec.Port != 8080 {
		t.Errorf("after scale: %+v, want release 2 with 6 instances, the rest unchanged", s)
	}
	r = c.must(0, "history", "web")
	contains(t, "history", r.stdout, "scale from 4 to 6 instances (from release #1)")

	r = c.must(0, "set-image", "web", "slipway/demo:v3", "--supersede", "--reason", "v3 is out")
	contains(t, "set-image", r.stdout, "release web #3 created")
	s = service()
	if s.Service.LatestRelease != "3" || s.Service.Spec.Count != 6 || s.Service.Spec.Image != "slipway/demo:v3" {
		t.Errorf("after set-image: %+v, want release 3 with slipway/demo:v3 and 6 instances", s)
	}
	r = c.must(0, "history", "web")
	contains(t, "history", r.stdout, "v3 is out")

	// Nothing to change: no release.
	r = c.must(0, "set-image", "web", "slipway/demo:v3", "--supersede")
	contains(t, "set-image to the same image", r.stderr, "web release #3 already has that; no new release")
	if s = service(); s.Service.LatestRelease != "3" {
		t.Errorf("latest release after a no-op set-image = %s, want 3", s.Service.LatestRelease)
	}

	// Bad input is refused before anything is sent, or by the coordinator
	// naming the field.
	r = c.must(2, "scale", "web", "lots")
	contains(t, "scale lots", r.stderr, "N must be a number of instances between 0 and 1000")
	r = c.must(2, "set-image", "web", "Bad Image", "--supersede")
	contains(t, "set-image bad", r.stderr, "image")
	c.must(3, "scale", "nosuch", "2")

	// --wait follows the rollout: superseded by the next change, exit 1.
	wait := c.start("scale", "web", "2", "--supersede", "--wait")
	wait.waitOutput(t, "release web #4 created", 20*time.Second)
	c.must(0, "scale", "web", "3", "--supersede")
	if code := wait.exitCode(t, 20*time.Second); code != 1 {
		t.Errorf("scale --wait on a superseded rollout: exit %d, want 1", code)
	}
	contains(t, "scale --wait stderr", wait.errOut.String(), "rollout web-4 ended SUPERSEDED: superseded by web-5")
	var out struct {
		Service struct {
			Spec struct {
				Count int `json:"count"`
			} `json:"spec"`
		} `json:"service"`
	}
	r = c.must(0, "service", "web", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Service.Spec.Count != 3 {
		t.Errorf("service web after scale 3: %v %s", err, r.stdout)
	}

	// Concurrent scale and set-image: each deploy is conditional on the
	// release it read, so whichever lands second is refused and re-applied
	// to the first's release: both changes survive every round.
	retried := 0
	for i := range 6 {
		count, image := strconv.Itoa(7+i), fmt.Sprintf("slipway/demo:c%d", i)
		var wg sync.WaitGroup
		var outs [2]bytes.Buffer
		var errs [2]error
		for j, args := range [][]string{{"scale", "web", count, "--supersede"}, {"set-image", "web", image, "--supersede"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := c.command(args...)
				cmd.Stdout, cmd.Stderr = &outs[j], &outs[j]
				errs[j] = cmd.Run()
			}()
		}
		wg.Wait()
		for j := range errs {
			if errs[j] != nil {
				t.Fatalf("round %d: concurrent change %d: %v\n%s", i, j, errs[j], outs[j].String())
			}
			retried += strings.Count(outs[j].String(), "applying the change to it again")
		}
		var got struct {
			Service struct {
				Spec struct {
					Count int    `json:"count"`
					Image string `json:"image"`
				} `json:"spec"`
			} `json:"service"`
		}
		c.mustJSON(&got, "service", "web")
		if strconv.Itoa(got.Service.Spec.Count) != count || got.Service.Spec.Image != image {
			t.Fatalf("round %d: after concurrent scale %s and set-image %s the spec has %d instances of %s: a change was overwritten", i, count, image, got.Service.Spec.Count, got.Service.Spec.Image)
		}
	}
	t.Logf("concurrent rounds: %d changes were re-applied after a deploy landed in between", retried)
}
