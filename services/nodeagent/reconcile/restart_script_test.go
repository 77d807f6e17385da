package reconcile

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"slipway.dev/nodeagent/allocation"
)

// TestRestartScripts runs the restart policy scripts under testdata/restart.
// Each script sets a policy and then feeds failures at times relative to a
// fixed start, each line saying what the policy must decide:
//
//	policy attempts=2 interval=1m delay=1s mode=fail
//	deadline 10s                       # start deadline for failed starts
//	exit 0s -> restart 1 of 2 at 1s    # the instance exited at 0s
//	startfail 3s -> start retry 1 at 4s
//	exit 5s -> give up: ...
//
// An exit or failed start goes through Exited/StartFailed and then Next;
// the verdict is rendered as "restart N of M at T", "start retry N at T",
// "delay until T" (mode delay, attempts used) or "give up: REASON".
func TestRestartScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/restart/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runRestartScript(t, file) })
	}
}

func runRestartScript(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := allocation.DefaultRestart()
	deadline := 60 * time.Second
	var fail Failure
	const fp = "fp"
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", file, n)
		cmd, want, hasWant := strings.Cut(line, " -> ")
		fields := strings.Fields(cmd)
		switch fields[0] {
		case "policy":
			for _, kv := range fields[1:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "attempts":
					p.Attempts, err = strconv.Atoi(v)
				case "interval":
					p.Interval, err = time.ParseDuration(v)
				case "delay":
					p.Delay, err = time.ParseDuration(v)
				case "mode":
					p.Mode = v
				default:
					err = fmt.Errorf("unknown key %q", k)
				}
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
			}
			continue
		case "deadline":
			if deadline, err = time.ParseDuration(fields[1]); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			continue
		case "exit", "startfail":
		default:
			t.Fatalf("%s: unknown command %q", where, fields[0])
		}
		at, err := time.ParseDuration(fields[1])
		if err != nil || !hasWant {
			t.Fatalf("%s: want \"%s TIME -> VERDICT\" (%v)", where, fields[0], err)
		}
		if fields[0] == "exit" {
			fail = Exited(fail, fp, p, t0.Add(at))
		} else {
			fail = StartFailed(fail, fp, deadline, t0.Add(at))
		}
		if got := render(Next(fail, p), t0); got != want {
			t.Errorf("%s: %s\n got: %s\nwant: %s", where, cmd, got, want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func render(v Verdict, t0 time.Time) string {
	switch {
	case v.GiveUp:
		return "give up: " + v.Reason
	case strings.HasPrefix(v.Reason, "start retry"):
		return fmt.Sprintf("%s at %s", v.Reason, v.At.Sub(t0))
	case strings.HasPrefix(v.Reason, "restart attempts"):
		return fmt.Sprintf("delay until %s", v.At.Sub(t0))
	}
	return fmt.Sprintf("%s at %s", v.Reason, v.At.Sub(t0))
}
