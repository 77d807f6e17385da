// Command slipway-fleetsim measures the coordinator at fleet scale: it runs
// a real Consul server agent and a cluster of real slipway-coordinator
// processes (engine on, mutual TLS, tokens required), and N simulated node
// agents in racks (child processes of -rack-size nodes, each with a real
// Consul client agent of its own joined to the server: rack.go), each node
// a real NodeAgentService gRPC server with its own certificate naming its
// node id, registered in its rack's Consul agent with a TTL check as real
// agents are, and (unless -stream=false) each keeps a heartbeat stream
// to the leader (NodeHeartbeatService) as agents started with -coordinators
// do. A fraction of the nodes can be slow, flapping (Consul check and
// stream silent together) or stuck.
// It deploys -per-node instances per node (services of at most 1,000
// instances), waits for every rollout, then rolls every service to a new
// release (max_parallel -max-parallel-pct of its count), idles, and prints
// one table row: first deploy and rolling update times, the leader's CPU
// and RSS (from /proc), its idle CPU, the raft entries and bytes of the
// run, the snapshot size of the final state and Consul's CPU.
//
//	slipway-fleetsim -bin ./bin -nodes 1000
//
// It is a benchmark (make bench-fleet), not a test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/coordinator/internal/procstat"
	"slipway.dev/platform/pki"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

type options struct {
	bin          string
	work         string
	nodes        int
	perNode      int
	coordinators int
	startSpread  time.Duration
	slow, flap   float64
	stuck        int
	slowDelay    time.Duration
	flapEvery    time.Duration
	flapFor      time.Duration
	allocStart   time.Duration
	minHealthy   time.Duration
	maxParallel  int // percent
	idle         time.Duration
	settle       time.Duration
	timeout      time.Duration
	ttl          time.Duration
	header       bool
	keep         bool
	coordArgs    string
	stream       bool
	rackSize     int
	consulSize   int
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with slipway-coordinator and consul")
	flag.StringVar(&o.work, "work", "", "work directory (default: a new temporary one, removed at the end)")
	flag.IntVar(&o.nodes, "nodes", 1000, "simulated node agents")
	flag.IntVar(&o.perNode, "per-node", 10, "instances per node")
	flag.IntVar(&o.coordinators, "coordinators", 3, "coordinator processes")
	flag.DurationVar(&o.startSpread, "start-spread", 0, "the nodes start spread evenly over this long (the start delay); 0: 5ms per node (a fleet's agents do not all start in one instant, and thousands of TLS handshakes and Consul registrations at once only measure this machine's two cores)")
	flag.Float64Var(&o.slow, "slow", 0, "fraction of nodes that answer every call after -slow-delay")
	flag.DurationVar(&o.slowDelay, "slow-delay", 2*time.Second, "how late a slow node answers")
	flag.Float64Var(&o.flap, "flapping", 0, "fraction of nodes whose heartbeats stop for -flap-for every -flap-every (their Consul check turns critical and, with -stream, their heartbeat stream goes silent)")
	flag.BoolVar(&o.stream, "stream", true, "the nodes stream heartbeats and statuses to the leader (NodeHeartbeatService), as agents started with -coordinators do; false: they only heartbeat Consul and the leader polls them (older agents)")
	flag.DurationVar(&o.flapEvery, "flap-every", 10*time.Second, "how often a flapping node's check flaps")
	flag.DurationVar(&o.flapFor, "flap-for", 2*time.Second, "how long a flapping node's heartbeats stop (below the coordinators' -node-ttl and -node-grace: no replacement is needed)")
	flag.IntVar(&o.stuck, "stuck", 0, "extra nodes that answer the status read that records them, then nothing, but stay registered (drained before the first deploy, so they get no instances; the engine still calls them)")
	flag.DurationVar(&o.allocStart, "alloc-start", 200*time.Millisecond, "from a sync to a new allocation running and passing")
	flag.DurationVar(&o.minHealthy, "min-healthy", 500*time.Millisecond, "the rollouts' min_healthy_time")
	flag.IntVar(&o.maxParallel, "max-parallel-pct", 10, "the rolling update's max_parallel, in percent of each service's count")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "how long the idle leader is measured at the end")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "before the idle measurement, wait until the leader's raft log has not grown for 3s (the final rollouts' drains and stops committed), at most this long")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up on a phase after this long")
	flag.DurationVar(&o.ttl, "ttl", 30*time.Second, "the simulated agents' Consul TTL check, heartbeated every third of it. The real agent's is 3s; on one machine the fleet's TTL updates (a few thousand a second, each a real agent's local business) compete with the coordinators for the same cores and the Consul agents' state locks, so the default is 10x longer. Liveness of streaming nodes comes from their streams, not from Consul")
	flag.BoolVar(&o.header, "header", true, "print the table header")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (coordinator logs, raft data)")
	flag.StringVar(&o.coordArgs, "coordinator-args", "", "extra flags for every coordinator, space separated")
	flag.IntVar(&o.rackSize, "rack-size", 1000, "simulated nodes per rack: a child process with a Consul client agent of its own (a real fleet has one per host)")
	flag.IntVar(&o.consulSize, "consul-size", 1000, "simulated nodes per Consul client agent (a real fleet has one per host; an agent serialises its checks' TTL updates under its state lock, and one with changes to sync does it in the update's handler, one RPC to the servers per changed check; more agents cost gossip and CPU)")
	rack := flag.Bool("rack", false, "run as a rack (internal: the config comes on stdin)")
	flag.Parse()
	if *rack {
		if err := runRack(); err != nil {
			fmt.Fprintln(os.Stderr, "slipway-fleetsim rack:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-fleetsim:", err)
		os.Exit(1)
	}
}

// row is one line of the table.
type row struct {
	nodes, instances      int
	firstDeploy, rolling  time.Duration
	firstState, rollState string
	leaderCPU             float64 // CPU-s of the leader over both phases
	leaderRSS, leaderHWM  int64   // bytes
	idleCores             float64
	entries               int64
	entryBytes            int64
	idleEntries           int64
	snapshot              int64
	consulCPU             float64
	starts, needed        int64
	settled               time.Duration // from the last rollout final to a quiet raft log
	leaderFDs             int           // most open files of the leader seen over both phases
}

func run(o options) error {
	if o.nodes <= 0 || o.perNode <= 0 {
		return errors.New("-nodes and -per-node must be positive")
	}
	if o.slow < 0 || o.flap < 0 || o.slow+o.flap > 1 {
		return errors.New("-slow and -flapping are fractions that add up to at most 1")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "fleetsim-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(work)
		}
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.startSpread == 0 {
		o.startSpread = time.Duration(o.nodes) * 5 * time.Millisecond
	}
	if o.rackSize <= 0 || o.consulSize <= 0 {
		return errors.New("-rack-size and -consul-size must be positive")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	consulBin := filepath.Join(bin, "consul")
	consulData, cleanData, err := consulDataDir(work)
	if err != nil {
		return err
	}
	defer cleanData()
	consul, err := startConsul(consulBin, work, consulData, "fleetsim-server", "")
	if err != nil {
		return err
	}
	defer consul.stop()
	consuls := []*consulProc{consul}
	defer func() {
		for _, c := range consuls[1:] {
			c.stop()
		}
	}()

	cl, err := clusterproc.New(filepath.Join(bin, "slipway-coordinator"), filepath.Join(work, "coordinators"), o.coordinators)
	if err != nil {
		return err
	}
	cl.Args = []string{"-engine=true", "-consul-addr", consul.addr, "-log-level", "warn"}
	if o.coordArgs != "" {
		cl.Args = append(cl.Args, splitArgs(o.coordArgs)...)
	}
	defer cl.Close()
	if err := cl.StartAll(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	leader, err := cl.WaitLeader(wctx, allIndexes(o.coordinators))
	cancel()
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	_, err = cl.Bootstrap(bctx)
	cancel()
	if err != nil {
		return err
	}
	pid := cl.Procs[leader].Pid()

	// The nodes, each with its own certificate, in racks: a child process
	// and a Consul client agent per -rack-size nodes (rack.go).
	var coords []string
	if o.stream {
		for _, p := range cl.Procs {
			coords = append(coords, p.GRPCAddr)
		}
	}
	kinds := behaviours(o.nodes, o.slow, o.flap)
	var all []rackNode
	for i := range o.nodes {
		all = append(all, rackNode{ID: fmt.Sprintf("sim-%05d", i), Kind: kinds[i], Delay: o.startSpread * time.Duration(i) / time.Duration(o.nodes)})
	}
	for i := range o.stuck {
		all = append(all, rackNode{ID: fmt.Sprintf("stuck-%05d", i), Kind: stuck})
	}
	for i := range all {
		files, err := cl.PKI.IssueFiles(pki.RoleNodeAgent, all[i].ID)
		if err != nil {
			return err
		}
		all[i].CA, all[i].Cert, all[i].Key = files.CA, files.Cert, files.Key
	}
	var racks []*rackProc
	finishRacks := func() (rackCounts, error) {
		var sum rackCounts
		var errs []error
		for _, r := range racks {
			errs = append(errs, r.finish())
			sum.add(r.counts)
		}
		racks = nil
		return sum, errors.Join(errs...)
	}
	defer func() { _, _ = finishRacks() }()
	for i := 0; i*o.rackSize < len(all); i++ {
		nodes := all[i*o.rackSize : min(len(all), (i+1)*o.rackSize)]
		agents := make([]*consulProc, (len(nodes)+o.consulSize-1)/o.consulSize)
		var wg sync.WaitGroup
		errs := make([]error, len(agents))
		for j := range agents {
			wg.Go(func() {
				agents[j], errs[j] = startConsul(consulBin, work, consulData, fmt.Sprintf("fleetsim-rack%d-%d", i, j), consul.serfAddr)
			})
		}
		wg.Wait()
		var addrs []string
		for _, a := range agents {
			if a != nil {
				consuls = append(consuls, a)
				addrs = append(addrs, a.addr)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		r, err := startRack(self, work, i, rackConfig{Nodes: nodes, Consul: addrs, Coordinators: coords,
			AllocStart: o.allocStart, SlowDelay: o.slowDelay, FlapEvery: o.flapEvery, FlapFor: o.flapFor, TTL: o.ttl,
			CPUMHz: 100000, MemoryMB: 100000})
		if err != nil {
			return err
		}
		racks = append(racks, r)
	}
	for _, r := range racks {
		rctx, cancel := context.WithTimeout(ctx, o.timeout)
		err := r.waitReady(rctx)
		cancel()
		if err != nil {
			return err
		}
	}
	conn := cl.Conn(leader)
	clusterc := clusterv1.NewClusterServiceClient(conn)
	deploy := deployv1.NewDeployServiceClient(conn)
	wantReady := o.nodes - int(float64(o.nodes)*o.flap) + o.stuck
	if err := waitFor(ctx, o.timeout, fmt.Sprintf("%d nodes ready", wantReady), func(c context.Context) (bool, string, error) {
		resp, err := clusterc.ListNodes(c, &clusterv1.ListNodesRequest{})
		if err != nil {
			return false, "", err
		}
		ready := 0
		for _, n := range resp.GetNodes() {
			if n.GetStatus() == clusterv1.NodeStatus_NODE_STATUS_READY {
				ready++
			}
		}
		return ready >= wantReady, fmt.Sprintf("%d ready", ready), nil
	}); err != nil {
		return err
	}

	// Stuck nodes are drained: they stay registered and synced (the engine
	// still calls them every pass) but get no instances. One may not be
	// recorded yet when the others are ready: drained once it is.
	for i := range o.stuck {
		id := fmt.Sprintf("stuck-%05d", i)
		if err := waitFor(ctx, o.timeout, "drain of "+id, func(c context.Context) (bool, string, error) {
			_, err := clusterc.DrainNode(c, &clusterv1.DrainNodeRequest{Id: id, Enable: true, By: "fleetsim"})
			if status.Code(err) == codes.NotFound {
				return false, err.Error(), nil
			}
			return err == nil, "", err
		}); err != nil {
			return err
		}
	}
	r := row{nodes: o.nodes, instances: o.nodes * o.perNode}
	counts := serviceCounts(r.instances)
	cpu0, _ := procstat.CPU(pid)
	consulCPU0 := consulCPU(consuls)
	phaseStart := time.Now()
	fdsDone := make(chan int)
	fdsStop := make(chan struct{})
	go func() { fdsDone <- maxFDs(pid, fdsStop) }()
	r.firstDeploy, r.firstState, err = deployAll(ctx, deploy, counts, "slipway/demo:v1", o, o.timeout)
	if err != nil {
		return err
	}
	r.rolling, r.rollState, err = deployAll(ctx, deploy, counts, "slipway/demo:v2", o, o.timeout)
	if err != nil {
		return err
	}
	cpu1, _ := procstat.CPU(pid)
	close(fdsStop)
	r.leaderFDs = <-fdsDone
	r.leaderCPU = cpu1 - cpu0
	r.leaderRSS, r.leaderHWM, _ = procstat.Mem(pid)
	r.settled = settle(ctx, clusterc, o.settle)
	cpu1, _ = procstat.CPU(pid)
	idleStart := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.idle):
	}
	cpu2, _ := procstat.CPU(pid)
	r.idleCores = (cpu2 - cpu1) / time.Since(idleStart).Seconds()
	r.consulCPU = consulCPU(consuls) - consulCPU0
	idleEnd := time.Now()
	sums, err := finishRacks()
	if err != nil {
		return err
	}
	r.starts = sums.Started
	r.needed = 2 * int64(r.instances)
	cl.Close()
	lg, err := readRaft(cl.Procs[leader].DataDir)
	if err != nil {
		return err
	}
	for _, e := range lg.entries {
		switch {
		case !e.at.Before(phaseStart) && e.at.Before(idleStart): // the settling included
			r.entries++
			r.entryBytes += int64(e.size)
		case !e.at.Before(idleStart) && !e.at.After(idleEnd):
			r.idleEntries++
		}
	}
	r.snapshot = lg.snapshot
	if o.header {
		printHeader()
	}
	printRow(r, o)
	if lg.compacted {
		fmt.Println("  (raft compacted its log during the run: entries before its snapshot are not counted)")
	}
	fmt.Printf("  raft quiet %.1fs after the last rollout was final (its drains and stops; counted in entries, not in the idle figures)\n", r.settled.Seconds())
	fmt.Printf("  leader: at most %d open files during both phases\n", r.leaderFDs)
	fmt.Printf("  %d racks (processes), %d Consul client agents (%d nodes each); Consul TTL updates failed or late: %d\n",
		(len(all)+o.rackSize-1)/o.rackSize, len(consuls)-1, o.consulSize, sums.TTLErrors)
	fmt.Printf("  agent calls answered: %d syncs, %d status reads; coordinator logs in %s\n", sums.Syncs, sums.Statuses,
		map[bool]string{true: filepath.Join(work, "coordinators"), false: "(removed; -keep keeps them)"}[o.keep])
	return nil
}

// maxFDs samples the open files of pid every second until stop and
// returns the most seen (each node holds the leader's connection to it and
// its stream to the leader).
func maxFDs(pid int, stop <-chan struct{}) int {
	most := 0
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			most = max(most, len(fds))
		}
		select {
		case <-stop:
			return most
		case <-t.C:
		}
	}
}

// consulCPU is the CPU seconds of every Consul agent (the server and the
// racks' clients).
func consulCPU(cs []*consulProc) float64 {
	sum := 0.0
	for _, c := range cs {
		v, _ := procstat.CPU(c.pid())
		sum += v
	}
	return sum
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func splitArgs(s string) []string {
	var out []string
	cur := ""
	for _, r := range s + " " {
		if r == ' ' {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += string(r)
	}
	return out
}

// behaviours picks which nodes are slow or flapping, at random (seeded, so
// runs are alike).
func behaviours(n int, slowF, flapF float64) []behaviour {
	out := make([]behaviour, n)
	idx := rand.New(rand.NewPCG(1, 2)).Perm(n)
	s, f := int(float64(n)*slowF), int(float64(n)*flapF)
	for i, j := range idx {
		switch {
		case i < s:
			out[j] = slow
		case i < s+f:
			out[j] = flapping
		}
	}
	return out
}

// serviceCounts splits instances into services of at most 1,000 (the
// spec's count limit).
func serviceCounts(instances int) []int {
	var out []int
	for instances > 0 {
		c := min(instances, 1000)
		out = append(out, c)
		instances -= c
	}
	return out
}

// deployAll deploys image to every service at once and waits until every
// rollout is final; it returns the time from the first Deploy to the last
// commit of a final state, and the final states seen.
// settle waits until the leader's commit index has not moved for 3s, or
// for at most limit, and returns how long it waited: what the rollouts
// still commit after they are final (the old instances' drains and stops)
// is not idle time.
func settle(ctx context.Context, cc clusterv1.ClusterServiceClient, limit time.Duration) time.Duration {
	start := time.Now()
	var last uint64
	quietSince := start
	for time.Since(start) < limit {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cc.ListPeers(c, &clusterv1.ListPeersRequest{})
		cancel()
		now := time.Now()
		if err == nil {
			if idx := resp.GetCommitIndex(); idx != last {
				last, quietSince = idx, now
			} else if now.Sub(quietSince) >= 3*time.Second {
				return now.Sub(start)
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(250 * time.Millisecond):
		}
	}
	return time.Since(start)
}

func deployAll(ctx context.Context, deploy deployv1.DeployServiceClient, counts []int, image string, o options, timeout time.Duration) (time.Duration, string, error) {
	start := time.Now()
	ids := make([]string, len(counts))
	for i, count := range counts {
		name := "fleet-" + strconv.Itoa(i)
		mp := max(1, count*o.maxParallel/100)
		spec := &deployv1.ServiceSpec{
			Name: name, Image: image, Count: int32(count), Port: 8080,
			Check:       &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(time.Second), Timeout: durationpb.New(500 * time.Millisecond)},
			Route:       &deployv1.Route{Host: name + ".fleet"},
			KillTimeout: durationpb.New(time.Second),
			Resources:   &deployv1.Resources{CpuMhz: 10, MemoryMb: 16},
			Update: &deployv1.UpdateStrategy{MaxParallel: int32(mp), MinHealthyTime: durationpb.New(o.minHealthy),
				HealthyDeadline: durationpb.New(timeout / 2), ProgressDeadline: durationpb.New(timeout)},
		}
		// Retried with the same request id while the answer is
		// Unavailable (a leader change, an outcome unknown), as slipctl
		// does: the coordinators apply it once.
		var (
			resp *deployv1.DeployResponse
			derr error
		)
		err := waitFor(ctx, time.Minute, "deploy "+name, func(c context.Context) (bool, string, error) {
			resp, derr = deploy.Deploy(c, &deployv1.DeployRequest{Spec: spec, RequestId: name + "/" + image, CreatedBy: "fleetsim"})
			if status.Code(derr) == codes.Unavailable {
				return false, derr.Error(), nil
			}
			return true, "", nil
		})
		if err == nil {
			err = derr
		}
		if err != nil {
			return 0, "", fmt.Errorf("deploy %s %s: %w", name, image, err)
		}
		ids[i] = resp.GetRollout().GetId()
	}
	final := make([]*deployv1.Rollout, len(ids))
	err := waitFor(ctx, timeout, "rollouts of "+image+" final", func(c context.Context) (bool, string, error) {
		left := 0
		for i, id := range ids {
			if final[i] != nil {
				continue
			}
			resp, err := deploy.GetRollout(c, &deployv1.GetRolloutRequest{Id: id})
			if err != nil {
				return false, "", err
			}
			ro := resp.GetRollout()
			if terminal(ro.GetState()) {
				final[i] = ro
				continue
			}
			left++
		}
		return left == 0, fmt.Sprintf("%d of %d rollouts not final", left, len(ids)), nil
	})
	if err != nil {
		return 0, "", err
	}
	var end time.Time
	states := map[string]int{}
	for _, ro := range final {
		states[ro.GetState().String()]++
		for _, h := range ro.GetHistory() {
			if terminal(h.GetState()) && h.GetAt().AsTime().After(end) {
				end = h.GetAt().AsTime()
			}
		}
	}
	summary := ""
	for s, n := range states {
		if s == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED.String() && n == len(final) {
			summary = "ok"
			break
		}
		summary += fmt.Sprintf("%s=%d ", s, n)
	}
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(start), summary, nil
}

func terminal(s deployv1.RolloutState) bool {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, deployv1.RolloutState_ROLLOUT_STATE_FAILED,
		deployv1.RolloutState_ROLLOUT_STATE_ABORTED, deployv1.RolloutState_ROLLOUT_STATE_REVERTED,
		deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED:
		return true
	}
	return false
}

// waitFor polls cond every 250ms until it holds, fails or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		c, ccancel := context.WithTimeout(ctx, 30*time.Second)
		ok, why, err := cond(c)
		ccancel()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			why = err.Error()
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %s)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printHeader() {
	fmt.Printf("%6s %8s %9s %9s %9s %9s %9s %8s %9s %8s %8s %9s %8s %13s %s\n",
		"nodes", "insts", "deploy_s", "rolling_s", "leadCPUs", "RSS_MiB", "peakMiB", "idleCPU", "entries", "raftMiB", "idleEnt", "snapMiB", "consCPU", "starts/need", "result")
}

func printRow(r row, o options) {
	result := r.firstState + "/" + r.rollState
	if o.slow+o.flap > 0 || o.stuck > 0 {
		result += fmt.Sprintf(" (slow %.0f%%, flapping %.0f%%, stuck %d)", 100*o.slow, 100*o.flap, o.stuck)
	}
	fmt.Printf("%6d %8d %9.1f %9.1f %9.1f %9.0f %9.0f %8.3f %9d %8.1f %8d %9.1f %8.1f %13s %s\n",
		r.nodes, r.instances, r.firstDeploy.Seconds(), r.rolling.Seconds(), r.leaderCPU, mib(r.leaderRSS), mib(r.leaderHWM),
		r.idleCores, r.entries, mib(r.entryBytes), r.idleEntries, mib(r.snapshot), r.consulCPU,
		fmt.Sprintf("%d/%d", r.starts, r.needed), result)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
