package e2e

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkEdge is the benchmark behind scripts/bench-edge.sh: (a) built-in
// proxy and nginx mode vs plain nginx, HAProxy and Caddy (when built) on the
// same backend with wrk, alternated over rounds (SLIPWAY_BENCH_QUICK=1: one
// short round, a smoke test); (b)
// propagation latency from a Consul change to the first request routed by
// the new table, per mode; (c) the same while wrk loads the edge measured
// (the load's req/s, p99 and failed requests beside it). It prints tables,
// reports the headline figures as metrics and asserts nothing about speed:
//
//	go test -run '^$' -bench '^BenchmarkEdge$' -benchtime 1x ./services/edge/e2e
//
// The work is done once whatever b.N is: wrk sets the length of each
// throughput run (SLIPWAY_BENCH_DURATION, default 10s) and the propagation
// part flips the intent a fixed number of times, so -benchtime 1x is the
// only sensible setting and ns/op is not reported.
func BenchmarkEdge(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not installed: make tools")
	}
	// SLIPWAY_BENCH_QUICK=1 is the smoke test of the whole run (about a
	// minute): 2s per wrk run, one round, 20 flips.
	quick := os.Getenv("SLIPWAY_BENCH_QUICK") == "1"
	dur := os.Getenv("SLIPWAY_BENCH_DURATION")
	if dur == "" {
		dur = "10s"
		if quick {
			dur = "2s"
		}
	}
	rounds := 3
	if quick {
		rounds = 1
	}
	e := newEnv(b)
	edges := map[string]*edge{"proxy": e.startEdge("proxy"), "nginx": e.startEdge("nginx")}
	blue, green := e.startInstance("web", 1), e.startInstance("web", 2)
	gen := uint64(1)
	e.writeIntent("web", intent{gen: gen, host: "web.test", weights: map[uint64]int32{1: 100, 2: 0}})
	for _, ed := range edges {
		e.ackedGen(ed.id, "web", gen, blue, green)
	}

	// (a) throughput and p99.
	// CPU is measured as utime+stime of the serving processes (the edge and
	// its descendants, i.e. nginx master and workers in nginx mode; the demo
	// process for "backend direct") across the wrk run, so each target's
	// cost per request is visible even though wrk, the backend and the
	// proxy share the machine's cores.
	type result struct {
		rps    float64
		p99    time.Duration
		cpu    float64 // CPU-seconds of the target's processes during the run
		perCPU float64 // requests per CPU-second of those processes
		n      float64 // requests
		edge   float64 // CPU-seconds of the slipway-edge process alone (nginx mode)
	}
	run := func(addr, host string, pids, edgePids func() []int) result {
		cpu0 := cpuSeconds(pids())
		var edge0 float64
		if edgePids != nil {
			edge0 = cpuSeconds(edgePids())
		}
		out, err := exec.Command(wrk, "-t2", "-c64", "-d"+dur, "--latency", "-H", "Host: "+host, "http://"+addr+"/").CombinedOutput()
		if err != nil {
			b.Fatalf("wrk: %v\n%s", err, out)
		}
		rps := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
		p99 := regexp.MustCompile(`\s99%\s+(\S+)`).FindSubmatch(out)
		non2xx := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out)
		if rps == nil || p99 == nil {
			b.Fatalf("cannot parse wrk output:\n%s", out)
		}
		if non2xx != nil {
			b.Logf("wrk %s: %s non-2xx responses", addr, non2xx[1])
		}
		cpu := cpuSeconds(pids()) - cpu0
		var edge float64
		if edgePids != nil {
			edge = cpuSeconds(edgePids()) - edge0
		}
		total := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out)
		v, _ := strconv.ParseFloat(string(rps[1]), 64)
		d, err := time.ParseDuration(string(p99[1]))
		if err != nil {
			b.Fatalf("wrk p99 %q: %v", p99[1], err)
		}
		r := result{rps: v, p99: d, cpu: cpu, edge: edge}
		if n, err := strconv.ParseFloat(string(total[1]), 64); err == nil {
			r.n = n
			if cpu > 0 {
				r.perCPU = n / cpu
			}
		}
		return r
	}
	backend := "127.0.0.1:" + strconv.Itoa(blue.port)
	targets := []peer{
		{name: "backend direct", addr: backend, pids: func() []int { return pidsWithEnv("PORT=" + strconv.Itoa(blue.port)) }},
		startNginxPeer(b, backend),
	}
	if p, ok := startHAProxyPeer(b, backend); ok {
		targets = append(targets, p)
	} else {
		fmt.Println("HAProxy not installed (make tools): left out")
	}
	if p, ok := startCaddyPeer(b, backend); ok {
		targets = append(targets, p)
	} else {
		fmt.Println("Caddy not built into SLIPWAY_BIN (make tools): left out")
	}
	targets = append(targets,
		peer{name: "nginx mode (lua)", addr: edges["nginx"].httpAddr, pids: func() []int { return withDescendants(pidsWithArg(edges["nginx"].id)) },
			edgePids: func() []int { return pidsWithArg(edges["nginx"].id) }},
		peer{name: "built-in proxy", addr: edges["proxy"].httpAddr, pids: func() []int { return withDescendants(pidsWithArg(edges["proxy"].id)) }})
	// Rounds alternate the targets so that a noisy moment on the machine
	// spreads over all of them; each target's row sums its rounds (req/s
	// and p99 are the median round's).
	results := map[string][]result{}
	for round := 0; round < rounds; round++ {
		for _, tg := range targets {
			results[tg.name] = append(results[tg.name], run(tg.addr, "web.test", tg.pids, tg.edgePids))
		}
	}
	summary := func(rs []result) result {
		byRPS := slices.Clone(rs)
		slices.SortFunc(byRPS, func(x, y result) int { return cmp.Compare(x.rps, y.rps) })
		out := byRPS[len(byRPS)/2]
		out.cpu, out.n, out.edge = 0, 0, 0
		for _, r := range rs {
			out.cpu += r.cpu
			out.n += r.n
			out.edge += r.edge
		}
		out.perCPU = 0
		if out.cpu > 0 {
			out.perCPU = out.n / out.cpu
		}
		return out
	}
	nginx := summary(results["nginx static"])
	fmt.Printf("\n(a) throughput, wrk -t2 -c64 -d%s keep-alive, same demo backend, %d alternated round(s); CPU = utime+stime of the target's processes; ratios to plain nginx\n", dur, rounds)
	fmt.Printf("%-18s %9s %9s %9s %9s %8s %11s %9s %12s\n", "target", "req/s", "p99", "req/s vs", "p99 vs", "CPU-s", "req/CPU-s", "vs nginx", "CPU-s/10k")
	var proxy, nginxMode result
	for _, tg := range targets {
		r := summary(results[tg.name])
		switch tg.name {
		case "built-in proxy":
			proxy = r
		case "nginx mode (lua)":
			nginxMode = r
		}
		eff, per10k := 0.0, 0.0
		if nginx.perCPU > 0 {
			eff = r.perCPU / nginx.perCPU
		}
		if r.n > 0 {
			per10k = r.cpu / r.n * 10000
		}
		fmt.Printf("%-18s %9.0f %9v %8.2fx %8.2fx %8.2f %11.0f %8.2fx %12.3f\n", tg.name, r.rps, r.p99.Round(10*time.Microsecond),
			r.rps/nginx.rps, float64(r.p99)/float64(nginx.p99), r.cpu, r.perCPU, eff, per10k)
	}
	if nginxMode.cpu > 0 {
		// The Go edge process beside nginx: what is not nginx's own cost.
		fmt.Printf("nginx mode: the slipway-edge process itself used %.2f of its %.2f CPU-s (%.1f%%), nginx's master and workers the rest\n",
			nginxMode.edge, nginxMode.cpu, 100*nginxMode.edge/nginxMode.cpu)
	}

	// (b) propagation: flip the intent and time the first request that
	// reaches the new release, probing continuously through each edge;
	// (c) the same while wrk loads the edge measured as in (a).
	flips := 100
	if quick {
		flips = 20
	}
	client := &http.Client{Timeout: 5 * time.Second}
	propagate := func(modes []string) map[string][]time.Duration {
		lat := map[string][]time.Duration{}
		for i := 0; i < flips; i++ {
			gen++
			// Each measurement flips v1 -> v2 and restores v1 afterwards.
			w, want := map[uint64]int32{1: 0, 2: 100}, "v2"
			for _, mode := range modes {
				ed := edges[mode]
				start := time.Now()
				e.writeIntent("web", intent{gen: gen, host: "web.test", weights: w})
				for {
					if _, _, v, err := get(client, ed, "web.test", nil); err == nil && v == want {
						break
					}
					if time.Since(start) > 20*time.Second {
						b.Fatalf("%s: new table never routed", mode)
					}
				}
				lat[mode] = append(lat[mode], time.Since(start))
				e.ackedGen(ed.id, "web", gen, blue, green)
				gen++ // the other mode gets its own generation
				w[1], w[2] = w[2], w[1]
				e.writeIntent("web", intent{gen: gen, host: "web.test", weights: w})
				for _, other := range edges {
					e.ackedGen(other.id, "web", gen, blue, green)
				}
				w[1], w[2] = w[2], w[1]
				gen++
			}
		}
		return lat
	}
	idle := propagate([]string{"proxy", "nginx"})
	loaded := map[string][]time.Duration{}
	loads := map[string]wrkResult{}
	for _, mode := range []string{"proxy", "nginx"} {
		stop := backgroundWrk(b, wrk, "-t2", "-c64", "-d1h", "--latency", "-H", "Host: web.test", "http://"+edges[mode].httpAddr+"/")
		loaded[mode] = propagate([]string{mode})[mode]
		loads[mode] = stop()
	}
	quantiles := func(ds []time.Duration) (p50, p99, worst time.Duration) {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		q := func(f float64) time.Duration { return ds[max(0, int(math.Ceil(f*float64(len(ds))))-1)] }
		return q(0.5).Round(100 * time.Microsecond), q(0.99).Round(100 * time.Microsecond), ds[len(ds)-1].Round(100 * time.Microsecond)
	}
	fmt.Printf("\n(b) propagation: Consul KV write -> first request routed by the new table (%d flips each)\n", flips)
	fmt.Printf("%-22s %10s %10s %10s\n", "mode", "p50", "p99", "max")
	for _, mode := range []string{"proxy", "nginx"} {
		p50, p99, worst := quantiles(idle[mode])
		fmt.Printf("%-22s %10v %10v %10v\n", mode, p50, p99, worst)
	}
	fmt.Println("(changes are applied at once while route tables cost under -coalesce-budget of the time; only a costlier burst waits for the -coalesce window)")
	fmt.Printf("\n(c) propagation under load: as (b), %d flips each, while wrk -t2 -c64 keep-alive loads the edge measured\n", flips)
	fmt.Printf("%-22s %10s %10s %10s %12s %10s %8s\n", "mode", "p50", "p99", "max", "load req/s", "load p99", "failed")
	for _, mode := range []string{"proxy", "nginx"} {
		p50, p99, worst := quantiles(loaded[mode])
		l := loads[mode]
		fmt.Printf("%-22s %10v %10v %10v %12.0f %10v %8d\n", mode, p50, p99, worst, l.rps, l.p99.Round(10*time.Microsecond), l.failed())
	}
	fmt.Println("(the probe's own request waits in line with the load's, so its latency is part of each figure)")

	b.ReportMetric(0, "ns/op") // wall time of setup and fixed-length runs: meaningless
	b.ReportMetric(proxy.rps, "proxy_req/s")
	b.ReportMetric(nginx.rps, "nginx_req/s")
	b.ReportMetric(nginxMode.rps, "nginx_mode_req/s")
	b.ReportMetric(proxy.rps/nginx.rps, "ratio_proxy_vs_nginx")
	if nginx.perCPU > 0 {
		b.ReportMetric(proxy.perCPU/nginx.perCPU, "ratio_per_cpu_vs_nginx")
	}
}

// cpuSeconds sums utime+stime of pids from /proc (processes gone count 0).
func cpuSeconds(pids []int) float64 {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name; utime and stime are
		// fields 14 and 15 of the whole line.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return float64(ticks) / 100 // USER_HZ
}

// procs lists the pids in /proc.
func procs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsWithArg returns the processes with arg among their arguments.
func pidsWithArg(arg string) []int {
	var out []int
	for _, pid := range procs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err == nil && slices.Contains(strings.Split(string(b), "\x00"), arg) {
			out = append(out, pid)
		}
	}
	return out
}

// pidsWithEnv returns the processes whose environment holds kv.
func pidsWithEnv(kv string) []int {
	var out []int
	for _, pid := range procs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err == nil && slices.Contains(strings.Split(string(b), "\x00"), kv) {
			out = append(out, pid)
		}
	}
	return out
}

// withDescendants adds every descendant process of roots.
func withDescendants(roots []int) []int {
	parent := map[int]int{}
	for _, pid := range procs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	in := map[int]bool{}
	for _, r := range roots {
		in[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if !in[pid] && in[pp] {
				in[pid], changed = true, true
			}
		}
	}
	out := make([]int, 0, len(in))
	for pid := range in {
		out = append(out, pid)
	}
	return out
}
