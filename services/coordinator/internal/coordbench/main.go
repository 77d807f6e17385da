// Command coordbench measures committed Deploys per second and their latency
// on a 3-node loopback cluster of real slipway-coordinator processes, against
// the peer measured in the same run: raw raft applies of a no-op entry of the
// same size through the same gRPC path (InternalService.ApplyNoop).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/coordinator/internal/procstat"
	"slipway.dev/platform/spec"
	aclv1 "slipway.dev/proto/slipway/acl/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	statev1 "slipway.dev/proto/slipway/state/v1"
)

func main() {
	bin := flag.String("bin", "", "slipway-coordinator executable")
	dur := flag.Duration("duration", 5*time.Second, "measuring time per row")
	flag.Parse()
	if err := run(*bin, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "coordbench:", err)
		os.Exit(1)
	}
}

type result struct {
	ops      int
	errs     int
	elapsed  time.Duration
	p50, p99 time.Duration
	// cpu is the CPU seconds the three coordinator processes used in
	// the row (from /proc), so that a row's cost per operation can be
	// read on a machine that is also busy with something else.
	cpu float64
}

func run(bin string, dur time.Duration) error {
	if bin == "" {
		return fmt.Errorf("-bin is required")
	}
	// The secured cluster first (mutual TLS, tokens required), then a
	// plaintext one without tokens: one at a time, so they do not share
	// the cores.
	secure, err := measureCluster(bin, dur, true)
	if err != nil {
		return err
	}
	plain, err := measureCluster(bin, dur, false)
	if err != nil {
		return err
	}
	fmt.Printf("\ncoordinator: committed Deploys/s with mutual TLS and a deploy token, against plaintext without tokens (same run)\n")
	fmt.Printf("%-8s %14s %14s %8s %14s %14s\n", "clients", "mTLS+token/s", "plaintext/s", "ratio", "p50 mTLS", "p50 plain")
	for _, clients := range []int{1, 32} {
		a, b := secure[clients], plain[clients]
		fmt.Printf("%-8d %14.0f %14.0f %7.2fx %14s %14s\n", clients, rate(a), rate(b), rate(a)/rate(b),
			a.p50.Round(10*time.Microsecond), b.p50.Round(10*time.Microsecond))
	}
	return nil
}

// measureCluster starts three coordinators (secured: mutual TLS and ACLs,
// with a deploy token for the bench's services; else plaintext and no
// tokens), prints the table for it and returns the Deploy results by
// client count.
func measureCluster(bin string, dur time.Duration, secured bool) (map[int]result, error) {
	dir, err := os.MkdirTemp("", "coordbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var c *clusterproc.Cluster
	if secured {
		c, err = clusterproc.New(bin, dir, 3)
	} else {
		c, err = clusterproc.NewInsecure(bin, dir, 3)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.StartAll(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := c.WaitLeader(ctx, []int{0, 1, 2})
	if err != nil {
		return nil, err
	}
	// authed carries a deploy token (scoped to bench*) when secured.
	authed := func(ctx context.Context) context.Context { return ctx }
	if secured {
		ac := aclv1.NewAclServiceClient(c.Conn(leader))
		boot, err := ac.Bootstrap(ctx, &aclv1.BootstrapRequest{})
		if err != nil {
			return nil, fmt.Errorf("acl bootstrap: %w", err)
		}
		tok, err := ac.CreateToken(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+boot.GetSecret()),
			&aclv1.CreateTokenRequest{Policies: []aclv1.Policy{aclv1.Policy_POLICY_DEPLOY}, Services: []string{"bench*"}, Description: "coordbench"})
		if err != nil {
			return nil, fmt.Errorf("create deploy token: %w", err)
		}
		secret := tok.GetSecret()
		authed = func(ctx context.Context) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
		}
	}
	// clusterCPU is the CPU seconds the coordinator processes have used.
	clusterCPU := func() float64 {
		var sum float64
		for _, p := range c.Procs {
			if s, err := procstat.CPU(p.Pid()); err == nil {
				sum += s
			}
		}
		return sum
	}
	costed := func(clients int, dur time.Duration, op func(ctx context.Context, client, i int) error) result {
		before := clusterCPU()
		r := measure(clients, dur, op)
		r.cpu = clusterCPU() - before
		return r
	}
	dc := deployv1.NewDeployServiceClient(c.Conn(leader))
	fc := deployv1.NewDeployServiceClient(c.Conn((leader + 1) % 3))
	// The raw peer calls InternalService, which only coordinators may call.
	peerConn, err := c.CoordinatorConn(leader, "bench")
	if err != nil {
		return nil, err
	}
	defer peerConn.Close()
	ic := statev1.NewInternalServiceClient(peerConn)

	base := &deployv1.ServiceSpec{Name: "bench", Image: "slipway/demo:v1", Count: 3, Port: 8080,
		Env: map[string]string{"GREETING": "hello"}}
	entry := &statev1.Command{Version: 1, Op: &statev1.Command_Deploy{Deploy: &statev1.DeployOp{
		Spec: spec.Normalize(base), RequestId: "bench-00-0000000", Supersede: true, CreatedBy: "bench"}}}
	payload := make([]byte, proto.Size(entry))

	deploy := func(ctx context.Context, client, i int) error {
		s := proto.CloneOf(base)
		s.Name = "bench-" + strconv.Itoa(client)
		_, err := dc.Deploy(authed(ctx), &deployv1.DeployRequest{Spec: s, RequestId: fmt.Sprintf("bench-%02d-%07d", client, i), Supersede: true, CreatedBy: "bench"})
		return err
	}
	viaFollower := func(ctx context.Context, client, i int) error {
		s := proto.CloneOf(base)
		s.Name = "bench-f" + strconv.Itoa(client)
		_, err := fc.Deploy(authed(ctx), &deployv1.DeployRequest{Spec: s, RequestId: fmt.Sprintf("bench-f%02d-%07d", client, i), Supersede: true, CreatedBy: "bench"})
		return err
	}
	noop := func(ctx context.Context, client, i int) error {
		_, err := ic.ApplyNoop(ctx, &statev1.ApplyNoopRequest{Payload: payload})
		return err
	}

	mode := "plaintext, no tokens"
	if secured {
		mode = "mutual TLS (raft too), a deploy token on every Deploy"
	}
	fmt.Printf("coordinator: 3 processes on loopback, %s; requests sent to the leader unless stated, %s per row, entry ~%d bytes\n", mode, dur, len(payload))
	fmt.Printf("%-8s %-24s %10s %10s %10s %8s %12s\n", "clients", "operation", "ops/s", "p50", "p99", "errors", "CPU µs/op")
	out := map[int]result{}
	for _, clients := range []int{1, 32} {
		d := costed(clients, dur, deploy)
		if d.ops == 0 {
			return nil, fmt.Errorf("no Deploy succeeded with %d clients (%d errors)", clients, d.errs)
		}
		r := costed(clients, dur, noop)
		row(clients, "Deploy (committed)", d)
		row(clients, "raw raft apply (peer)", r)
		row(clients, "Deploy via follower", costed(clients, dur, viaFollower))
		fmt.Printf("%-8d %-24s %9.2fx %9.2fx %9.2fx %8s %11.2fx\n", clients, "ratio Deploy/raw", rate(d)/rate(r),
			float64(d.p50)/float64(r.p50), float64(d.p99)/float64(r.p99), "", perCPU(d)/perCPU(r))
		out[clients] = d
	}
	return out, nil
}

func rate(r result) float64 { return float64(r.ops) / r.elapsed.Seconds() }

// perCPU is operations per CPU second of the coordinator processes; its
// ratio (the last column of a ratio row) is the ratio of operations per
// CPU second, which the machine's other load moves far less than ops/s.
func perCPU(r result) float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.ops) / r.cpu
}

func row(clients int, name string, r result) {
	us := 0.0
	if r.ops > 0 {
		us = r.cpu / float64(r.ops) * 1e6
	}
	fmt.Printf("%-8d %-24s %10.0f %10s %10s %8d %12.0f\n", clients, name, rate(r),
		r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errs, us)
}

// measure runs op from clients goroutines for dur and reports throughput
// and latency percentiles of the successful calls.
func measure(clients int, dur time.Duration, op func(ctx context.Context, client, i int) error) result {
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(dur)
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			e := 0
			for i := 0; time.Now().Before(stop); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t := time.Now()
				err := op(ctx, cl, i)
				cancel()
				if err != nil {
					e++
					continue
				}
				local = append(local, time.Since(t))
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += e
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	res := result{ops: len(lats), errs: errs, elapsed: elapsed}
	if len(lats) > 0 {
		res.p50 = lats[len(lats)*50/100]
		res.p99 = lats[len(lats)*99/100]
	}
	return res
}
