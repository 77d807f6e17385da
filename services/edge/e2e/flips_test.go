package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"slipway.dev/platform/testenv"
)

// BenchmarkEdgeFlips is the benchmark behind scripts/bench-edge-flips.sh:
// blue/green flips and a full canary under keep-alive load, counting every
// failed request, for both Slipway modes beside the stack Slipway replaces
// (consul-template rendering a weighted nginx upstream from Consul and
// reloading nginx on each change), in the same run:
//
//	go test -run '^$' -bench '^BenchmarkEdgeFlips$' -benchtime 1x ./services/edge/e2e
//
// Each system gets its own wrk run (-t2 -c64, keep-alive) against the same
// two demo backends (release 1 blue, release 2 green) and, while it runs,
// SLIPWAY_BENCH_FLIPS (default 20) flips of all traffic between them, then
// a canary of the other release through the weights in canarySteps, all
// spread evenly over SLIPWAY_BENCH_FLIP_DURATION (default 120s, over 2M
// requests per system at the idle machine's rate): for Slipway a new
// traffic intent in Consul KV, for the seed stack a KV key holding the two
// weights that the template reads. A flip (and the canary's first step) is
// done when a probe request is answered by the new release; the next
// change waits for its slot. Failed requests are wrk's socket errors
// (connect, read, write, timeout) and non-2xx answers.
// SLIPWAY_BENCH_QUICK=1 is a smoke test (8s, 4 flips): its figures are not
// results.
func BenchmarkEdgeFlips(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not installed: make tools")
	}
	ct := filepath.Join(os.Getenv("SLIPWAY_BIN"), "consul-template")
	if _, err := os.Stat(ct); err != nil {
		b.Fatal("consul-template not built into SLIPWAY_BIN: SLIPWAY_TOOLS_BENCH=1 scripts/tools.sh (make bench does)")
	}
	quick := os.Getenv("SLIPWAY_BENCH_QUICK") == "1"
	dur, flips := 120*time.Second, 20
	if quick {
		dur, flips = 8*time.Second, 4
	}
	if v := os.Getenv("SLIPWAY_BENCH_FLIP_DURATION"); v != "" {
		if dur, err = time.ParseDuration(v); err != nil {
			b.Fatalf("SLIPWAY_BENCH_FLIP_DURATION: %v", err)
		}
	}
	if v := os.Getenv("SLIPWAY_BENCH_FLIPS"); v != "" {
		if flips, err = strconv.Atoi(v); err != nil || flips < 1 {
			b.Fatalf("SLIPWAY_BENCH_FLIPS %q: want a positive number", v)
		}
	}

	e := newEnv(b)
	edges := map[string]*edge{"proxy": e.startEdge("proxy"), "nginx": e.startEdge("nginx")}
	blue, green := e.startInstance("web", 1), e.startInstance("web", 2)
	gen := uint64(1)
	e.writeIntent("web", intent{gen: gen, host: "web.test", weights: map[uint64]int32{1: 100, 2: 0}})
	for _, ed := range edges {
		e.ackedGen(ed.id, "web", gen, blue, green)
	}
	seed := startSeedStack(b, e, ct)

	type system struct {
		name, addr string
		// weigh sends w1 percent of traffic to release 1, w2 to release 2.
		weigh func(w1, w2 int32)
	}
	// Both edges follow the same intent key; each is measured on its own.
	slipway := func(w1, w2 int32) {
		gen++
		e.writeIntent("web", intent{gen: gen, host: "web.test", weights: map[uint64]int32{1: w1, 2: w2}})
	}
	systems := []system{
		{name: "Slipway built-in", addr: edges["proxy"].httpAddr, weigh: slipway},
		{name: "Slipway nginx mode", addr: edges["nginx"].httpAddr, weigh: slipway},
		{name: "consul-template+nginx", addr: seed.addr, weigh: seed.weigh},
	}
	// all routes every request to release rel.
	all := func(sys system, rel uint64) {
		if rel == 1 {
			sys.weigh(100, 0)
		} else {
			sys.weigh(0, 100)
		}
	}
	type result struct {
		wrk     wrkResult
		applied []time.Duration // flip -> first request answered by the new release
	}
	results := make([]result, len(systems))
	probe := &http.Client{Timeout: 2 * time.Second}
	defer probe.CloseIdleConnections()
	slot := dur / time.Duration(flips+len(canarySteps)+1)
	for i, sys := range systems {
		// Every system starts on release 1.
		all(sys, 1)
		waitServed(b, probe, sys.addr, "v1")
		start := time.Now()
		stop := backgroundWrk(b, wrk, "-t2", "-c64", "-d1h", "--latency", "-H", "Host: web.test", "http://"+sys.addr+"/")
		rel, change := uint64(1), 0
		next := func() { // the changes' schedule, not a synchronisation
			change++
			time.Sleep(time.Until(start.Add(time.Duration(change) * slot)))
		}
		for range flips {
			next()
			rel = 3 - rel
			t0 := time.Now()
			all(sys, rel)
			waitServed(b, probe, sys.addr, "v"+strconv.FormatUint(rel, 10))
			results[i].applied = append(results[i].applied, time.Since(t0))
		}
		// The canary: the other release takes each step's share.
		canary := 3 - rel
		for k, pct := range canarySteps {
			next()
			if canary == 1 {
				sys.weigh(pct, 100-pct)
			} else {
				sys.weigh(100-pct, pct)
			}
			if k == 0 {
				waitServed(b, probe, sys.addr, "v"+strconv.FormatUint(canary, 10))
			}
		}
		time.Sleep(time.Until(start.Add(dur)))
		results[i].wrk = stop()
		probe.CloseIdleConnections()
	}

	fmt.Printf("\nblue/green flips and a canary under load: wrk -t2 -c64 keep-alive for %v per system, %d flips each (all traffic from one release to the other), then a canary at %v percent, same two demo backends\n", dur, flips, canarySteps)
	fmt.Printf("%-22s %10s %8s %9s %8s %8s %10s %10s %12s\n", "system", "requests", "failed", "sock err", "non-2xx", "req/s", "p50", "p99", "flip->routed")
	var seedFailed, worstSlipway int64
	for i, sys := range systems {
		r := results[i]
		ds := slices.Clone(r.applied)
		slices.Sort(ds)
		med := ds[len(ds)/2]
		fmt.Printf("%-22s %10d %8d %9d %8d %8.0f %10v %10v %12v\n", sys.name, r.wrk.requests, r.wrk.failed(),
			r.wrk.connectErr+r.wrk.readErr+r.wrk.writeErr+r.wrk.timeouts, r.wrk.non2xx, r.wrk.rps,
			r.wrk.p50.Round(10*time.Microsecond), r.wrk.p99.Round(10*time.Microsecond), med.Round(100*time.Microsecond))
		if i < 2 {
			worstSlipway = max(worstSlipway, r.wrk.failed())
		} else {
			seedFailed = r.wrk.failed()
		}
		if r.wrk.requests < 2_000_000 && !quick {
			fmt.Printf("  (%s: %d requests, under the 2M goal: raise SLIPWAY_BENCH_FLIP_DURATION)\n", sys.name, r.wrk.requests)
		}
	}
	changes := flips + len(canarySteps)
	fmt.Printf("failed per traffic change: Slipway (worst mode) %.2f, consul-template+nginx %.2f (flip->routed is the median over the flips)\n",
		float64(worstSlipway)/float64(changes), float64(seedFailed)/float64(changes))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(results[0].wrk.failed()), "proxy_failed")
	b.ReportMetric(float64(results[1].wrk.failed()), "nginx_mode_failed")
	b.ReportMetric(float64(seedFailed), "consul_template_failed")
}

// canarySteps are the canary release's weights, in percent, after the
// flips: a full canary, ending with all traffic on it.
var canarySteps = []int32{10, 25, 50, 75, 100}

// waitServed polls until a request through addr is answered by version.
func waitServed(t testing.TB, client *http.Client, addr, version string) {
	t.Helper()
	ed := &edge{httpAddr: addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, v, err := get(client, ed, "web.test", nil)
		if err == nil && code == 200 && v == version {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never served %s (last: %d %q %v)", addr, version, code, v, err)
		}
	}
}

// seedStack is the stack Slipway replaces: consul-template rendering a
// weighted nginx upstream from Consul's passing instances of the two
// releases and a KV key holding their weights, reloading nginx on every
// change (the way such stacks do blue/green and canaries).
type seedStack struct {
	addr string
	// weigh writes the weights of releases 1 and 2 (percent; 0 leaves a
	// release out of the upstream, as nginx has no weight 0).
	weigh func(w1, w2 int32)
}

const seedKey = "bench/web/weights"

// seedTemplate renders the upstream of the passing instances (release tag
// "release=N") of the releases with a weight above 0, from one KV key
// "w1,w2" so a change is one render.
const seedTemplate = `upstream backend {
{{- $w := keyOrDefault "` + seedKey + `" "100,0" | split "," }}
{{- range service "web" }}
{{- if and (.Tags | contains "release=1") (ne (index $w 0) "0") }}
    server {{ .Address }}:{{ .Port }} weight={{ index $w 0 }};{{ end }}
{{- if and (.Tags | contains "release=2") (ne (index $w 1) "0") }}
    server {{ .Address }}:{{ .Port }} weight={{ index $w 1 }};{{ end }}
{{- end }}
    keepalive 256;
    keepalive_requests 100000;
}
`

func startSeedStack(t testing.TB, e *env, ctBin string) seedStack {
	t.Helper()
	dir, addr := t.TempDir(), testenv.FreeAddr(t)
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	put := func(w1, w2 int32) {
		t.Helper()
		if _, err := e.client.KV().Put(&api.KVPair{Key: seedKey, Value: fmt.Appendf(nil, "%d,%d", w1, w2)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put(100, 0)
	t.Cleanup(func() { e.client.KV().Delete(seedKey, nil) })
	tmpl, upstream, conf := filepath.Join(dir, "upstream.ctmpl"), filepath.Join(dir, "upstream.conf"), filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(tmpl, []byte(seedTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxConf := fmt.Sprintf(`daemon off;
worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    include %[3]s;
    server {
        listen %[4]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }
    }
}
`, peerWorkers, dir, upstream, addr)
	if err := os.WriteFile(conf, []byte(nginxConf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctArgs := func(spec string) []string {
		return []string{"-consul-addr", e.consul.Addr(), "-consul-token", e.consul.ManagementToken(), "-log-level", "warn", "-template", spec}
	}
	// The first render, then nginx on it, then consul-template watching.
	if out, err := exec.Command(ctBin, append(ctArgs(tmpl+":"+upstream), "-once")...).CombinedOutput(); err != nil {
		t.Fatalf("consul-template -once: %v\n%s", err, out)
	}
	startPeerProcess(t, "seed-nginx", "/usr/sbin/nginx", []string{"-p", dir, "-c", conf})
	waitListening(t, "seed nginx", addr)
	reload := fmt.Sprintf("/usr/sbin/nginx -p %s -c %s -s reload", dir, conf)
	startPeerProcess(t, "consul-template", ctBin, ctArgs(tmpl+":"+upstream+":"+reload))
	return seedStack{addr: addr, weigh: put}
}
