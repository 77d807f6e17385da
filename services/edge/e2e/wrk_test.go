package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"slipway.dev/platform/testenv"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
	// Failed requests: socket errors (connect, read, write, timeout) and
	// non-2xx/3xx answers.
	connectErr, readErr, writeErr, timeouts, non2xx int64
	out                                             string
}

// failed is every request wrk counted as not answered with a 2xx or 3xx.
func (r wrkResult) failed() int64 {
	return r.connectErr + r.readErr + r.writeErr + r.timeouts + r.non2xx
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`(\d+) requests in`)
	wrkP50      = regexp.MustCompile(`\s50%\s+(\S+)`)
	wrkP99      = regexp.MustCompile(`\s99%\s+(\S+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk --latency output.
func parseWrk(out []byte) (wrkResult, error) {
	r := wrkResult{out: string(out)}
	rps, total, p50, p99 := wrkRPS.FindSubmatch(out), wrkTotal.FindSubmatch(out), wrkP50.FindSubmatch(out), wrkP99.FindSubmatch(out)
	if rps == nil || total == nil || p50 == nil || p99 == nil {
		return r, fmt.Errorf("cannot parse wrk output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(rps[1]), 64)
	r.requests, _ = strconv.ParseInt(string(total[1]), 10, 64)
	var err error
	if r.p50, err = time.ParseDuration(string(p50[1])); err != nil {
		return r, fmt.Errorf("wrk p50 %q: %v", p50[1], err)
	}
	if r.p99, err = time.ParseDuration(string(p99[1])); err != nil {
		return r, fmt.Errorf("wrk p99 %q: %v", p99[1], err)
	}
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := wrkSockErrs.FindSubmatch(out); m != nil {
		r.connectErr, _ = strconv.ParseInt(string(m[1]), 10, 64)
		r.readErr, _ = strconv.ParseInt(string(m[2]), 10, 64)
		r.writeErr, _ = strconv.ParseInt(string(m[3]), 10, 64)
		r.timeouts, _ = strconv.ParseInt(string(m[4]), 10, 64)
	}
	return r, nil
}

// backgroundWrk runs wrk with args until the returned stop is called (or
// its own -d ends), then returns what it reported: wrk prints its summary
// on SIGINT too.
func backgroundWrk(t testing.TB, wrk string, args ...string) (stop func() wrkResult) {
	t.Helper()
	cmd := exec.Command(wrk, args...)
	var out testenv.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("wrk: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var res *wrkResult
	stop = func() wrkResult {
		t.Helper()
		if res != nil {
			return *res
		}
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		r, err := parseWrk(out.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		res = &r
		return r
	}
	t.Cleanup(func() {
		if res == nil && cmd.ProcessState == nil {
			cmd.Process.Signal(os.Kill)
		}
	})
	return stop
}
