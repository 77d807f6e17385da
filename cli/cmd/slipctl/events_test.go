package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

type eventJSON struct {
	Service string `json:"service"`
	Event   struct {
		Index     string `json:"index"`
		RolloutID string `json:"rolloutId"`
		Kind      string `json:"kind"`
	} `json:"event"`
}

// jsonEvents decodes slipctl events -o json output, one event per line.
func jsonEvents(t *testing.T, out string) []eventJSON {
	t.Helper()
	var evs []eventJSON
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e eventJSON
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("events -o json line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func kinds(evs []eventJSON) string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Event.RolloutID+":"+e.Event.Kind)
	}
	return strings.Join(out, ",")
}

// TestSlipctlEvents follows every rollout's events with slipctl events
// against a real coordinator over mutual TLS with tokens: events of two
// services arrive on one stream in commit order, --service and --since
// select, --follow=false ends after the history, and the followed stream
// resumes across a coordinator restart without repeating an event.
func TestSlipctlEvents(t *testing.T) {
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

	canary := filepath.Join("deployments", "examples", "canary.yaml")   // api
	rolling := filepath.Join("deployments", "examples", "rolling.yaml") // web
	c.must(0, "deploy", "-f", canary)

	follow := c.start("events", "-o", "json")
	follow.waitOutput(t, `"rolloutId":"api-1"`, 30*time.Second)
	c.must(0, "deploy", "-f", rolling)
	c.must(0, "rollout", "pause", "api-1", "--reason", "look")
	follow.waitOutput(t, `"kind":"command"`, 30*time.Second)

	// The history, every service, then one.
	all := jsonEvents(t, c.must(0, "events", "--follow=false", "-o", "json").stdout)
	if got := kinds(all); got != "api-1:created,web-1:created,api-1:command" {
		t.Fatalf("events --follow=false = %s", got)
	}
	if all[1].Service != "web" || all[0].Service != "api" {
		t.Errorf("services of the events: %+v", all)
	}
	if got := kinds(jsonEvents(t, c.must(0, "events", "--service", "api", "--follow=false", "-o", "json").stdout)); got != "api-1:created,api-1:command" {
		t.Errorf("events --service api = %s", got)
	}
	if got := kinds(jsonEvents(t, c.must(0, "events", "--since", all[0].Event.Index, "--follow=false", "-o", "json").stdout)); got != "web-1:created,api-1:command" {
		t.Errorf("events --since %s = %s", all[0].Event.Index, got)
	}
	if got := c.must(0, "events", "--since", "1h", "--follow=false", "-o", "json").stdout; len(jsonEvents(t, got)) != 3 {
		t.Errorf("events --since 1h = %s", got)
	}
	text := c.must(0, "events", "--follow=false").stdout
	contains(t, "events text", text, "api-1", "web-1", "created", "command")
	r := c.must(2, "events", "--since", "yesterday")
	contains(t, "bad --since", r.stderr, "--since", "event index", "duration")

	// The followed stream outlives a restart of the coordinator: it resumes
	// after the last event it printed and shows each event once.
	coord.stop()
	coord.start()
	testenv.Eventually(t, 60*time.Second, "the restarted coordinator to take a command", func() error {
		if r := c.run("rollout", "resume", "api-1", "--timeout", "2s"); r.code != 0 {
			return r.failed()
		}
		return nil
	})
	testenv.Eventually(t, 60*time.Second, "the followed stream to show the resume once", func() error {
		got := kinds(jsonEvents(t, follow.out.String()))
		if want := "api-1:created,web-1:created,api-1:command,api-1:command"; got != want {
			return fmt.Errorf("followed events %s, want %s; stderr:\n%s", got, want, follow.errOut.String())
		}
		return nil
	})
}
