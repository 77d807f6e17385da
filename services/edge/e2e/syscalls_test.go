package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkEdgeSyscalls counts the syscalls per request of the built-in
// proxy beside plain nginx on the same backend under the same wrk load
// (-t2 -c64 keep-alive), with perf's syscall tracepoints on the edge's
// threads and on nginx's master and workers, and their CPU per request
// from /proc (split into user and system time), alternated over rounds. It
// is not part of make bench; it shows where the proxy's CPU per request
// goes beside nginx's (see README, Benchmarks):
//
//	go test -run '^$' -bench '^BenchmarkEdgeSyscalls$' -benchtime 1x ./services/edge/e2e
//
// The tracepoints add a cost to every syscall, so the CPU figures of this
// run favour whichever makes fewer; bench-edge.sh's are the ones to
// compare. SLIPWAY_BENCH_DURATION sets each run (default 8s),
// SLIPWAY_SYSCALLS_ROUNDS the rounds (default 2). SLIPWAY_EDGE_VARIANTS
// adds built-in proxies started otherwise, as NAME|ENV|FLAGS separated by
// ';' (e.g. "gomaxprocs1|GOMAXPROCS=1|").
func BenchmarkEdgeSyscalls(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not installed: make tools")
	}
	if _, err := exec.LookPath("perf"); err != nil {
		b.Skip("perf not installed (Debian linux-perf)")
	}
	dur := os.Getenv("SLIPWAY_BENCH_DURATION")
	if dur == "" {
		dur = "8s"
	}
	rounds := 2
	if r, err := strconv.Atoi(os.Getenv("SLIPWAY_SYSCALLS_ROUNDS")); err == nil && r > 0 {
		rounds = r
	}
	e := newEnv(b)
	blue := e.startInstance("web", 1)
	e.writeIntent("web", intent{gen: 1, host: "web.test", weights: map[uint64]int32{1: 100}})
	targets := []peer{startNginxPeer(b, "127.0.0.1:"+strconv.Itoa(blue.port))}
	variants := "built-in proxy||"
	if v := os.Getenv("SLIPWAY_EDGE_VARIANTS"); v != "" {
		variants += ";" + v
	}
	for _, v := range strings.Split(variants, ";") {
		f := strings.Split(v, "|")
		if len(f) != 3 {
			b.Fatalf("SLIPWAY_EDGE_VARIANTS: %q is not NAME|ENV|FLAGS", v)
		}
		ed := e.startEdgeWith("proxy", strings.Fields(f[1]), strings.Fields(f[2])...)
		e.ackedGen(ed.id, "web", 1, blue)
		targets = append(targets, peer{name: f[0], addr: ed.httpAddr, pids: func() []int { return withDescendants(pidsWithArg(ed.id)) }})
	}
	events := []string{"raw_syscalls:sys_enter", "syscalls:sys_enter_read", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_write",
		"syscalls:sys_enter_writev", "syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_futex",
		"syscalls:sys_enter_nanosleep", "syscalls:sys_enter_sched_yield", "context-switches"}
	for round := 0; round < rounds; round++ {
		for _, tg := range targets {
			// Warm up (upstream connections pooled), then count a run.
			exec.Command(wrk, "-t2", "-c64", "-d1s", "-H", "Host: web.test", "http://"+tg.addr+"/").Run()
			var tids []string
			for _, pid := range tg.pids() {
				ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
				for _, t := range ents {
					tids = append(tids, t.Name())
				}
			}
			args := []string{"stat", "-x", ",", "-t", strings.Join(tids, ",")}
			for _, ev := range events {
				args = append(args, "-e", ev)
			}
			args = append(args, "-e", "raw_syscalls:sys_exit", "--filter", "ret == -11") // EAGAIN
			args = append(args, "--", wrk, "-t2", "-c64", "-d"+dur, "--latency", "-H", "Host: web.test", "http://"+tg.addr+"/")
			u0, s0 := cpuUserSys(tg.pids())
			out, err := exec.Command("perf", args...).CombinedOutput()
			if err != nil {
				b.Fatalf("perf: %v\n%s", err, out)
			}
			u1, s1 := cpuUserSys(tg.pids())
			total := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out)
			p99 := regexp.MustCompile(`\s99%\s+(\S+)`).FindSubmatch(out)
			if total == nil || p99 == nil {
				b.Fatalf("cannot parse wrk output:\n%s", out)
			}
			n, _ := strconv.ParseFloat(string(total[1]), 64)
			fmt.Printf("\n%s, round %d: %.0f requests, p99 %s; CPU-s per 10k requests: user %.3f, system %.3f\n",
				tg.name, round+1, n, p99[1], (u1-u0)/n*1e4, (s1-s0)/n*1e4)
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Split(line, ",")
				if len(f) < 3 {
					continue
				}
				v, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					continue
				}
				name := strings.TrimPrefix(strings.TrimPrefix(f[2], "syscalls:sys_enter_"), "raw_syscalls:")
				if name == "sys_exit" {
					name = "EAGAIN returns"
				} else if name == "sys_enter" {
					name = "all syscalls"
				}
				if v > 0 {
					fmt.Printf("  %-18s %7.3f per request\n", name, v/n)
				}
			}
		}
	}
	b.ReportMetric(0, "ns/op")
}

// cpuUserSys sums utime and stime (seconds) of pids from /proc.
func cpuUserSys(pids []int) (user, sys float64) {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		user += u / 100 // USER_HZ
		sys += s / 100
	}
	return user, sys
}
