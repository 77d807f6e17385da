package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/faults/check"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// profile is how long and how often the suite runs.
type profile struct {
	name string
	runs int
	seed uint64
	// before, after: workload before the fault and after it healed.
	before, after time.Duration
	// scale multiplies fault durations (netsplit 30s, pause 10s in long).
	scale float64
	rate  int // HTTP requests/s per edge and service
	// supersede: deploys and rollbacks may supersede an active rollout
	// (a superseding rollout starts from the release that serves).
	supersede bool
	// abort: the workload aborts rollouts (an aborted or reverted rolling
	// update restores the stable instances max_parallel at a time).
	abort bool
	// strictBound checks the serving bound also while a data-plane fault
	// (and the recovery after it) is active.
	strictBound bool
}

func loadProfile(t *testing.T) profile {
	p := profile{name: "short", runs: 1, seed: 1, before: 4 * time.Second, after: 3 * time.Second, scale: 0.3, rate: 10, supersede: true, abort: true, strictBound: true}
	if os.Getenv("FAULTS_PROFILE") == "long" {
		p = profile{name: "long", runs: 100, seed: rand.Uint64(), before: 8 * time.Second, after: 8 * time.Second, scale: 1, rate: 20, supersede: true, abort: true, strictBound: true}
	}
	if testing.Short() && p.name == "short" {
		t.Skip("the fault suite starts a cluster of real processes in network namespaces")
	}
	if v := os.Getenv("FAULTS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FAULTS_SEED=%q: want an unsigned integer", v)
		}
		p.seed = s
	}
	if v := os.Getenv("FAULTS_SUPERSEDE"); v != "" {
		p.supersede = v == "1" || v == "true"
	}
	if v := os.Getenv("FAULTS_STRICT_BOUND"); v != "" {
		p.strictBound = v == "1" || v == "true"
	}
	if v := os.Getenv("FAULTS_ABORT"); v != "" {
		p.abort = v == "1" || v == "true"
	}
	if v := os.Getenv("FAULTS_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FAULTS_RUNS=%q: want a positive integer", v)
		}
		p.runs = n
	}
	return p
}

// scale is a fault duration in the profile.
func (p profile) d(long time.Duration) time.Duration {
	return time.Duration(float64(long) * p.scale)
}

// episode is one run of one scenario on a running cluster.
type episode struct {
	t       *testing.T
	c       *cluster
	p       profile
	rng     *rand.Rand
	windows []check.Window
	notes   []string // what the fault did, for the report
	extra   map[string][]string
}

// window records a fault's span, extended by grace for recovery.
func (e *episode) window(fault string, from, to time.Time, grace time.Duration, excuses bool) {
	e.windows = append(e.windows, check.Window{From: from, To: to.Add(grace), Fault: fault, Excuses: excuses})
}

func (e *episode) leader() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := e.c.waitLeader(ctx, nil)
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	return l
}

// scenario is one fault: inject it, hold it, heal it.
type scenario struct {
	name string
	// docker: needs the Docker agent.
	docker bool
	// long: only in the long profile (or when FAULTS_SCENARIOS names it).
	long bool
	// run injects the fault, holds it and heals it, recording its window.
	run func(e *episode)
}

// coordDelay is the latency coordinator-delay adds to every packet between
// coordinators, each way.
const coordDelay = 200 * time.Millisecond

func othersThan(c *cluster, i int) []*host {
	var out []*host
	for j, h := range c.coordHosts {
		if j != i {
			out = append(out, h)
		}
	}
	return out
}

var scenarios = []scenario{
	{name: "leader-sigkill", run: func(e *episode) {
		l := e.leader()
		from := time.Now()
		e.c.coords[l].kill()
		// A new leader is elected among the others; the old one comes back.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		among := []int{}
		for i := range e.c.coords {
			if i != l {
				among = append(among, i)
			}
		}
		if nl, err := e.c.waitLeader(ctx, among); err != nil {
			e.extra["converged"] = append(e.extra["converged"], "no new leader after killing c"+strconv.Itoa(l)+": "+err.Error())
		} else {
			e.notes = append(e.notes, fmt.Sprintf("killed leader c%d; c%d led after %s", l, nl, time.Since(from).Round(time.Millisecond)))
		}
		time.Sleep(e.p.d(5 * time.Second)) // the fault's hold: the old leader stays dead this long
		if err := e.c.coords[l].start(); err != nil {
			e.t.Fatal(err)
		}
		e.window("leader-sigkill", from, time.Now(), 2*time.Second, false)
	}},
	{name: "leader-isolated", run: func(e *episode) {
		l := e.leader()
		h := e.c.coordHosts[l]
		from := time.Now()
		if err := h.isolate(othersThan(e.c, l)...); err != nil {
			e.t.Fatal(err)
		}
		time.Sleep(e.p.d(20 * time.Second)) // the partition's hold
		if err := h.heal(); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("isolated leader c%d from its peers for %s", l, time.Since(from).Round(time.Second)))
		e.window("leader-isolated", from, time.Now(), 2*time.Second, false)
	}},
	{name: "leader-sigstop", run: func(e *episode) {
		l := e.leader()
		from := time.Now()
		if err := e.c.coords[l].signal(syscall.SIGSTOP); err != nil {
			e.t.Fatal(err)
		}
		time.Sleep(max(e.p.d(10*time.Second), 5*time.Second)) // paused this long
		if err := e.c.coords[l].signal(syscall.SIGCONT); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("paused leader c%d for %s", l, time.Since(from).Round(time.Second)))
		e.window("leader-sigstop", from, time.Now(), 2*time.Second, false)
	}},
	{name: "agent-netsplit", run: func(e *episode) {
		a := e.c.agents[e.rng.IntN(processAgents)]
		var peers []*host
		for _, h := range e.c.topo.hosts {
			if h != a.h {
				peers = append(peers, h)
			}
		}
		from := time.Now()
		if err := a.h.isolate(peers...); err != nil {
			e.t.Fatal(err)
		}
		time.Sleep(e.p.d(30 * time.Second)) // the partition's hold
		if err := a.h.heal(); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("partitioned %s for %s", a.name, time.Since(from).Round(time.Second)))
		e.window("agent-netsplit", from, time.Now(), 10*time.Second, true)
	}},
	{name: "agent-coordinator-split", run: func(e *episode) {
		// Cut off from the coordinators only: the agent still reaches
		// Consul and the edges, so its instances stay passing and routed
		// while the leader, its heartbeat stream silent past the TTL,
		// replaces them. The serving bound holds (the leader places within
		// it and fences the node at the edges once the replacements are
		// ready), and no request fails: the node serves until then. The
		// workload's services run one or two instances per agent, which
		// their surge absorbs; so the scenario also keeps a service of its
		// own, cart (count 4, max_parallel 1: bound 5, two instances on
		// each process agent), whose routed instances it samples: replaced
		// at once, the cut agent's two would make 6 serve.
		cart := e.c.splitService()
		a := e.c.agents[e.rng.IntN(processAgents)]
		onAgent := e.c.routedOn(cart, a.node)
		from := time.Now()
		if err := a.h.isolate(e.c.coordHosts...); err != nil {
			e.t.Fatal(err)
		}
		smp := startSampler(e.c.consulClient(), []service{cart}, 200*time.Millisecond)
		hold := max(e.p.d(30*time.Second), 10*time.Second) // past the TTL (4s), the first replacements and the fence
		cl := e.c.consulClient()
		fenced := func() (bool, error) {
			kv, _, err := cl.KV().Get(catalog.FenceKey(a.node), nil)
			return kv != nil, err
		}
		// The split lasts hold, and until the node is fenced (a loaded
		// machine may take longer to start the replacements), at most 30s.
		var fencedAfter time.Duration
		_ = testenv.Poll(max(hold, 30*time.Second), func() error {
			if ok, err := fenced(); err != nil || !ok {
				return fmt.Errorf("not fenced (%v)", err)
			}
			fencedAfter = time.Since(from)
			return nil
		})
		time.Sleep(time.Until(from.Add(hold)))
		if err := a.h.heal(); err != nil {
			e.t.Fatal(err)
		}
		healed := time.Now()
		if fencedAfter == 0 {
			e.extra["converged"] = append(e.extra["converged"], fmt.Sprintf("%s was not fenced within %s of its split from the coordinators", a.node, time.Since(from).Round(time.Second)))
		}
		// Back: the leader syncs it, its agent stops what was replaced, and
		// the fence is lifted.
		if err := testenv.Poll(60*time.Second, func() error {
			if ok, err := fenced(); err != nil || ok {
				return fmt.Errorf("%s still fenced %s after the heal (%v)", a.node, time.Since(healed).Round(time.Second), err)
			}
			return nil
		}); err != nil {
			e.extra["converged"] = append(e.extra["converged"], err.Error())
		}
		samples := smp.stop()
		most := 0
		for _, s := range samples {
			most = max(most, s.Passing)
		}
		e.extra["serving-bound"] = append(e.extra["serving-bound"], check.ServingBound(samples, nil)...)
		e.notes = append(e.notes, fmt.Sprintf("cut %s (%d of cart's instances routed on it) off from the coordinators (Consul and edges reachable) for %s; fenced after %s, unfenced %s after the heal; cart: at most %d routed (bound %d)",
			a.name, onAgent, healed.Sub(from).Round(time.Second), fencedAfter.Round(100*time.Millisecond), time.Since(healed).Round(100*time.Millisecond), most, cart.bound()))
		e.window("agent-coordinator-split", from, time.Now(), 10*time.Second, false)
	}},
	{name: "agent-sigkill-restart", run: func(e *episode) {
		a := e.c.agents[e.rng.IntN(processAgents)]
		e.c.scrapeStale()
		from := time.Now()
		a.kill()
		time.Sleep(e.p.d(5 * time.Second)) // down this long
		if err := a.start(); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("killed %s, restarted after %s", a.name, time.Since(from).Round(time.Second)))
		e.window("agent-sigkill-restart", from, time.Now(), 10*time.Second, true)
	}},
	{name: "agent-sigkill", run: func(e *episode) {
		a := e.c.agents[e.rng.IntN(processAgents)]
		e.c.scrapeStale()
		from := time.Now()
		a.kill()
		// Without its agent the node's instances must stop serving: their
		// registrations go within seconds, while the agent stays dead.
		cl := e.c.consulClient()
		err := testenv.Poll(max(e.p.d(30*time.Second), 15*time.Second), func() error {
			for _, svc := range e.services() {
				entries, _, err := cl.Health().Service(svc.name, catalog.Tag, true, nil)
				if err != nil {
					return err
				}
				for _, en := range entries {
					if en.Service.Meta[catalog.MetaNode] == a.node {
						var checks []string
						for _, ch := range en.Checks {
							checks = append(checks, ch.CheckID+"="+ch.Status)
						}
						return fmt.Errorf("%s instance %s of dead node %s still passing in Consul %s after the kill (checks %v)",
							svc.name, en.Service.ID, a.node, time.Since(from).Round(time.Second), checks)
					}
				}
			}
			return nil
		})
		if err != nil {
			e.extra["orphans"] = append(e.extra["orphans"], err.Error())
		}
		gone := time.Since(from)
		time.Sleep(e.p.d(10 * time.Second)) // stays dead a while longer
		if err := a.start(); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("killed %s; its registrations gone after %s; restarted after %s", a.name,
			gone.Round(100*time.Millisecond), time.Since(from).Round(time.Second)))
		e.window("agent-sigkill", from, time.Now(), 10*time.Second, true)
	}},
	{name: "consul-restart", run: func(e *episode) {
		from := time.Now()
		e.c.consul.stop(10 * time.Second)
		if err := e.c.consul.start(); err != nil {
			e.t.Fatal(err)
		}
		if err := e.c.waitConsul(60 * time.Second); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("restarted Consul in %s", time.Since(from).Round(100*time.Millisecond)))
		e.window("consul-restart", from, time.Now(), 10*time.Second, true)
	}},
	{name: "consul-data-loss", run: func(e *episode) {
		from := time.Now()
		e.c.consul.kill()
		if err := os.RemoveAll(e.c.consulData); err != nil {
			e.t.Fatal(err)
		}
		if err := e.c.consul.start(); err != nil {
			e.t.Fatal(err)
		}
		if err := e.c.waitConsul(60 * time.Second); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("wiped Consul's data; back with its tokens in %s", time.Since(from).Round(100*time.Millisecond)))
		e.window("consul-data-loss", from, time.Now(), 15*time.Second, true)
	}},
	{name: "coordinator-disk-full", run: func(e *episode) {
		l := e.leader()
		dir := e.c.coordData[l]
		from := time.Now()
		fill, err := fillDisk(dir)
		if err != nil {
			e.t.Fatal(err)
		}
		time.Sleep(e.p.d(20 * time.Second)) // the disk stays full this long
		if err := os.Remove(fill); err != nil {
			e.t.Fatal(err)
		}
		note := fmt.Sprintf("filled leader c%d's data dir for %s", l, time.Since(from).Round(time.Second))
		if e.c.coords[l].reap() {
			// It exited on the full disk: a supervisor restarts it.
			note += "; it exited, restarted"
			if err := e.c.coords[l].start(); err != nil {
				e.t.Fatal(err)
			}
		}
		e.notes = append(e.notes, note)
		e.window("coordinator-disk-full", from, time.Now(), 2*time.Second, false)
	}},
	{name: "coordinator-loss", run: func(e *episode) {
		// 5% packet loss both ways between every pair of coordinators
		// (iptables statistic); the 200 ms delay is coordinator-delay.
		from := time.Now()
		for i, h := range e.c.coordHosts {
			if err := h.lossy(0.05, othersThan(e.c, i)...); err != nil {
				e.t.Fatal(err)
			}
		}
		time.Sleep(e.p.d(30 * time.Second)) // the lossy spell
		for _, h := range e.c.coordHosts {
			if err := h.heal(); err != nil {
				e.t.Fatal(err)
			}
		}
		e.notes = append(e.notes, fmt.Sprintf("5%% loss between coordinators for %s", time.Since(from).Round(time.Second)))
		e.window("coordinator-loss", from, time.Now(), 2*time.Second, false)
	}},
	{name: "coordinator-delay", run: func(e *episode) {
		// 200 ms each way on every link between coordinators (raft and
		// their gRPC), through delaying proxies: this kernel has no tc
		// netem (see delay_test.go).
		delayCoordinators(e, "coordinator-delay", 0)
	}},
	{name: "coordinator-delay-loss", long: true, run: func(e *episode) {
		// Both on one link: 200 ms each way between coordinators, and 5%
		// of the raft packets between each coordinator and the delaying
		// proxies dropped, both ways.
		delayCoordinators(e, "coordinator-delay-loss", 0.05)
	}},
	{name: "docker-unreachable", docker: true, run: func(e *episode) {
		from := time.Now()
		e.c.docker.cut()
		time.Sleep(max(e.p.d(20*time.Second), 6*time.Second)) // the daemon stays unreachable this long
		if err := e.c.docker.heal(); err != nil {
			e.t.Fatal(err)
		}
		e.notes = append(e.notes, fmt.Sprintf("cut the Docker agent from its daemon for %s", time.Since(from).Round(time.Second)))
		e.window("docker-unreachable", from, time.Now(), 10*time.Second, true)
	}},
	{name: "edge-restart", run: func(e *episode) {
		i := e.rng.IntN(len(e.c.edges))
		from := time.Now()
		e.c.edges[i].stop(10 * time.Second)
		if err := e.c.edges[i].start(); err != nil {
			e.t.Fatal(err)
		}
		// The window closes once the edge listens again.
		addr := e.c.edgeHosts[i].ip + ":" + edgeHTTP
		if err := testenv.Poll(30*time.Second, func() error {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		}); err != nil {
			e.extra["converged"] = append(e.extra["converged"], fmt.Sprintf("edge e%d not listening 30s after its restart: %v", i, err))
		}
		e.notes = append(e.notes, fmt.Sprintf("restarted edge e%d, listening after %s", i, time.Since(from).Round(100*time.Millisecond)))
		e.window("edge-restart", from, time.Now(), 5*time.Second, true)
	}},
}

// fillDisk fills the file system holding dir (a small tmpfs) with one
// file and returns its path.
func fillDisk(dir string) (string, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "fill")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	free := int64(st.Bavail) * st.Bsize
	// fallocate takes the blocks for real (a sparse file would not).
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free); err != nil {
		// Leave nothing free anyway: write until the disk refuses.
		buf := make([]byte, 1<<20)
		for {
			if _, werr := f.Write(buf); werr != nil {
				break
			}
		}
	}
	return path, nil
}

// services is the workload's services on this cluster.
func (e *episode) services() []service { return e.c.services }

// scrapeStale adds the agents' refused stale tokens since the last scrape
// (a restarted agent starts counting from zero).
func (c *cluster) scrapeStale() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.staleLast == nil {
		c.staleLast = map[string]int{}
	}
	for _, a := range c.agents {
		n, err := staleCount(c.scraper, a.h.ip+":"+agentMetrics)
		if err != nil {
			// A down or partitioned agent does not answer; anything else
			// (a TLS refusal) would silently zero the Refused column.
			c.t.Logf("scrape %s's metrics: %v", a.node, err)
			continue
		}
		last := c.staleLast[a.node]
		if n < last {
			last = 0
		}
		c.staleTotal += n - last
		c.staleLast[a.node] = n
	}
}

// prepare deploys release 1 of every service once and waits for it.
func (c *cluster) prepare(t *testing.T) {
	for _, s := range c.services {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.deploy(0).Deploy(ctx, &deployv1.DeployRequest{Spec: s.spec(1), RequestId: c.topo.run + "/" + s.name + "/init", CreatedBy: "faults"})
		cancel()
		if err != nil {
			t.Fatalf("first deploy of %s: %v", s.name, err)
		}
		_ = resp
	}
	if v := c.settle(120 * time.Second); len(v) > 0 {
		t.Fatalf("first releases did not succeed: %v", v)
	}
}

// splitService is agent-coordinator-split's own service, cart (count 4,
// max_parallel 1, on the process agents), deployed once and left running:
// none of the workload's clients touch it. It returns once all 4 instances
// are routed.
func (c *cluster) splitService() service {
	cart := service{name: "cart", host: "cart.test", count: 4, maxParallel: 1, strategy: deployv1.Strategy_STRATEGY_ROLLING, driver: "process"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := c.deploy(0).Deploy(ctx, &deployv1.DeployRequest{Spec: cart.spec(1), RequestId: c.topo.run + "/cart/init", CreatedBy: "faults"})
	cancel()
	if err != nil {
		c.t.Fatalf("deploy cart: %v", err)
	}
	if err := testenv.Poll(120*time.Second, func() error {
		if n := c.routedOn(cart, ""); n != 4 {
			return fmt.Errorf("%d of cart's instances routed, want 4", n)
		}
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
	return cart
}

// routedOn counts svc's instances on node ("": any) that every edge's
// acknowledgement lists, through Consul.
func (c *cluster) routedOn(svc service, node string) int {
	cl := c.consulClient()
	entries, _, err := cl.Health().Service(svc.name, catalog.Tag, true, nil)
	if err != nil {
		return -1
	}
	kvs, _, err := cl.KV().List(catalog.EdgesPrefix, nil)
	if err != nil || len(kvs) != len(c.edges) {
		return -1
	}
	n := 0
	for _, en := range entries {
		if node != "" && en.Service.Meta[catalog.MetaNode] != node {
			continue
		}
		all := true
		for _, kv := range kvs {
			ack := &edgev1.EdgeAck{}
			if protojson.Unmarshal(kv.Value, ack) != nil || !slices.Contains(ack.GetInstances()[svc.name].GetIds(), en.Service.ID) {
				all = false
			}
		}
		if all {
			n++
		}
	}
	return n
}

// settle drives every service's active rollout to an end (a full promote
// where it waits for one) and waits until none is active; it returns what
// did not settle.
func (c *cluster) settle(d time.Duration) []string {
	var last []string
	_ = testenv.Poll(d, func() error {
		last = nil
		for _, s := range c.services {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			ro, err := c.activeRollout(ctx, s.name)
			if err != nil {
				last = append(last, fmt.Sprintf("%s: %v", s.name, err))
			} else if ro != nil {
				last = append(last, fmt.Sprintf("%s: rollout %s %s (%s)", s.name, ro.GetId(), ro.GetState(), ro.GetMessage()))
				if ro.GetAwaitingPromote() || ro.GetState() == deployv1.RolloutState_ROLLOUT_STATE_PAUSED {
					_, _ = c.deploy(0).ResumeRollout(ctx, &deployv1.ResumeRolloutRequest{Id: ro.GetId(), By: "faults-settle"})
					_, _ = c.deploy(0).PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: ro.GetId(), Full: true, By: "faults-settle"})
				}
			}
			cancel()
		}
		if len(last) > 0 {
			return fmt.Errorf("%d services not settled", len(last))
		}
		return nil
	})
	return last
}

func (c *cluster) activeRollout(ctx context.Context, name string) (*deployv1.Rollout, error) {
	resp, err := c.deploy(0).GetService(ctx, &deployv1.GetServiceRequest{Name: name, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		return nil, err
	}
	id := resp.GetService().GetActiveRollout()
	if id == "" {
		return nil, nil
	}
	r, err := c.deploy(0).GetRollout(ctx, &deployv1.GetRolloutRequest{Id: id, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		return nil, err
	}
	if final(r.GetRollout().GetState()) {
		return nil, nil
	}
	return r.GetRollout(), nil
}

// TestFaults runs every scenario (FAULTS_SCENARIOS selects some) for the
// profile's runs and fails with each violation; it prints the table.
func TestFaults(t *testing.T) {
	p := loadProfile(t)
	t.Logf("fault suite: profile %s, seed %d (FAULTS_SEED=%d reproduces), %d run(s) per scenario, supersede %v, abort %v, strict bound %v", p.name, p.seed, p.seed, p.runs, p.supersede, p.abort, p.strictBound)
	var selected []scenario
	for _, s := range scenarios {
		if !s.long || p.name == "long" {
			selected = append(selected, s)
		}
	}
	if v := os.Getenv("FAULTS_SCENARIOS"); v != "" {
		selected = nil
		for _, name := range strings.Split(v, ",") {
			found := false
			for _, s := range scenarios {
				if s.name == strings.TrimSpace(name) {
					selected, found = append(selected, s), true
				}
			}
			if !found {
				t.Fatalf("FAULTS_SCENARIOS: no scenario %q", name)
			}
		}
	}
	withDocker := false
	for _, s := range selected {
		withDocker = withDocker || s.docker
	}
	c := startCluster(t, withDocker)
	c.services = []service{
		// web rolls with max_surge 100% (both new instances at once,
		// bound 4), api with max_parallel 1 (bound 2).
		{name: "web", host: "web.test", count: 2, maxSurge: "100%", maxUnavailable: "0", strategy: deployv1.Strategy_STRATEGY_ROLLING, driver: "process"},
		{name: "shop", host: "shop.test", count: 2, maxParallel: 1, strategy: deployv1.Strategy_STRATEGY_CANARY, driver: "process"},
	}
	if withDocker {
		// Containers of the Docker agent, one per instance.
		c.services = append(c.services, service{name: "api", host: "api.test", count: 1, maxParallel: 1,
			strategy: deployv1.Strategy_STRATEGY_ROLLING, driver: "docker"})
	}
	c.prepare(t)
	rng := rand.New(rand.NewPCG(p.seed, 0))
	var rows []check.Row
	for _, s := range selected {
		row := check.Row{Scenario: s.name}
		for run := range p.runs {
			v, reqs, fails, excused := c.episode(t, p, s, run, rng)
			row.Add(v)
			row.Requests += reqs
			row.Failed += fails
			row.Excused += excused
			for inv, list := range v {
				// Every violation counts in the table; the first few of
				// each kind are reported in full.
				for i, msg := range list {
					if i == 10 {
						t.Errorf("%s run %d: %s: ... and %d more like these", s.name, run, inv, len(list)-10)
						break
					}
					t.Errorf("%s run %d: %s: %s", s.name, run, inv, msg)
				}
			}
		}
		c.scrapeStale()
		row.Refused = c.staleTotal - c.staleReported
		c.staleReported = c.staleTotal
		rows = append(rows, row)
	}
	table := check.Table(rows)
	t.Logf("fault suite (profile %s, seed %d):\n%s", p.name, p.seed, table)
	fmt.Printf("\nfault suite, profile %s, seed %d\n%s\n", p.name, p.seed, table)
}

// delayCoordinators puts coordDelay each way on every link between
// coordinators (raft and gRPC, through delaying proxies) for the profile's
// spell and, with loss above 0, drops that share of the raft packets
// between each coordinator and the proxies, both ways, on the same links.
func delayCoordinators(e *episode, name string, loss float64) {
	from := time.Now()
	proxies := map[string]*delayProxy{}
	bridge := e.c.topo.subnet + "1"
	for i, h := range e.c.coordHosts {
		for _, dst := range othersThan(e.c, i) {
			err := h.delayed(dst, []string{coordRaft, coordGRPC}, func(port string) (*delayProxy, error) {
				k := net.JoinHostPort(dst.ip, port)
				if p := proxies[k]; p != nil {
					return p, nil
				}
				p, err := startDelayProxy(bridge+":0", k, coordDelay)
				if err != nil {
					return nil, err
				}
				proxies[k] = p
				e.t.Cleanup(p.close) // also when the run fails midway
				return p, nil
			})
			if err != nil {
				e.t.Fatal(err)
			}
		}
	}
	if loss > 0 {
		for _, h := range e.c.coordHosts {
			if err := h.lossyFrom(loss, bridge, coordRaft); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	time.Sleep(e.p.d(30 * time.Second)) // the slow spell
	dropped := 0
	for _, h := range e.c.coordHosts {
		dropped += h.dropped()
	}
	for _, h := range e.c.coordHosts {
		if err := h.undelay(); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, p := range proxies {
		p.close()
	}
	what := fmt.Sprintf("%s each way", coordDelay)
	if loss > 0 {
		what += fmt.Sprintf(" and %.0f%% raft packet loss (%d dropped)", 100*loss, dropped)
		if dropped == 0 {
			e.extra["converged"] = append(e.extra["converged"], name+": the loss rules dropped no packet")
		}
	}
	e.notes = append(e.notes, fmt.Sprintf("%s between coordinators for %s", what, time.Since(from).Round(time.Second)))
	e.window(name, from, time.Now(), 2*time.Second, false)
}
