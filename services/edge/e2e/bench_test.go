package e2e

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestBenchEdge is the benchmark behind scripts/bench-edge.sh (it only runs
// with SLIPWAY_BENCH=1): (a) built-in proxy vs nginx throughput and p99 on
// the same backend with wrk; (b) propagation latency from a Consul change to
// the first request routed by the new table, per mode. It prints tables and
// asserts nothing about speed.
func TestBenchEdge(t *testing.T) {
	if os.Getenv("SLIPWAY_BENCH") != "1" {
		t.Skip("benchmark: run scripts/bench-edge.sh")
	}
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	dur := os.Getenv("SLIPWAY_BENCH_DURATION")
	if dur == "" {
		dur = "10s"
	}
	e := newEnv(t)
	edges := map[string]*edge{"proxy": e.startEdge("proxy"), "nginx": e.startEdge("nginx")}
	blue, green := e.startInstance("web", 1), e.startInstance("web", 2)
	gen := uint64(1)
	e.writeIntent("web", intent{gen: gen, host: "web.test", weights: map[uint64]int32{1: 100, 2: 0}})
	for _, ed := range edges {
		e.ackedGen(ed.id, "web", gen, blue, green)
	}

	// (a) throughput and p99.
	type result struct {
		rps float64
		p99 string
	}
	run := func(addr, host string) result {
		out, err := exec.Command(wrk, "-t2", "-c64", "-d"+dur, "--latency", "-H", "Host: "+host, "http://"+addr+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		rps := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
		p99 := regexp.MustCompile(`\s99%\s+(\S+)`).FindSubmatch(out)
		non2xx := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out)
		if rps == nil || p99 == nil {
			t.Fatalf("cannot parse wrk output:\n%s", out)
		}
		if non2xx != nil {
			t.Logf("wrk %s: %s non-2xx responses", addr, non2xx[1])
		}
		v, _ := strconv.ParseFloat(string(rps[1]), 64)
		return result{v, string(p99[1])}
	}
	direct := run("127.0.0.1:"+strconv.Itoa(blue.port), "web.test")
	nginx := run(edges["nginx"].httpAddr, "web.test")
	proxy := run(edges["proxy"].httpAddr, "web.test")
	fmt.Printf("\n(a) throughput, wrk -t2 -c64 -d%s, same demo backend, same run\n", dur)
	fmt.Printf("%-22s %12s %10s %14s\n", "target", "req/s", "p99", "vs nginx")
	fmt.Printf("%-22s %12.0f %10s %13.2fx\n", "backend direct", direct.rps, direct.p99, direct.rps/nginx.rps)
	fmt.Printf("%-22s %12.0f %10s %13.2fx\n", "nginx mode (lua)", nginx.rps, nginx.p99, 1.0)
	fmt.Printf("%-22s %12.0f %10s %13.2fx\n", "built-in proxy", proxy.rps, proxy.p99, proxy.rps/nginx.rps)

	// (b) propagation: flip the intent and time the first request that
	// reaches the new release, probing continuously through each edge.
	const flips = 100
	lat := map[string][]time.Duration{}
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < flips; i++ {
		gen++
		// Each measurement flips v1 -> v2 and restores v1 afterwards.
		w, want := map[uint64]int32{1: 0, 2: 100}, "v2"
		for _, mode := range []string{"proxy", "nginx"} {
			ed := edges[mode]
			start := time.Now()
			e.writeIntent("web", intent{gen: gen, host: "web.test", weights: w})
			for {
				if _, _, v, err := get(client, ed, "web.test", nil); err == nil && v == want {
					break
				}
				if time.Since(start) > 20*time.Second {
					t.Fatalf("%s: new table never routed", mode)
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
	fmt.Printf("\n(b) propagation: Consul KV write -> first request routed by the new table (%d flips each)\n", flips)
	fmt.Printf("%-22s %10s %10s %10s\n", "mode", "p50", "p99", "max")
	for _, mode := range []string{"proxy", "nginx"} {
		ds := lat[mode]
		slices.Sort(ds)
		q := func(f float64) time.Duration { return ds[max(0, int(math.Ceil(f*float64(len(ds))))-1)] }
		fmt.Printf("%-22s %10v %10v %10v\n", mode, q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), ds[len(ds)-1].Round(100*time.Microsecond))
	}
	fmt.Println("(includes the edge's 20ms coalescing window)")
}
