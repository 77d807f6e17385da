package main_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/coordinator/internal/clusterproc"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// startCluster starts n coordinators (flags in args added to each) and
// kills them when the test ends, printing their logs if it failed.
func startCluster(t *testing.T, n int, args ...string) *clusterproc.Cluster {
	t.Helper()
	bin := testenv.BuildBinary(t, "./services/coordinator/cmd/slipway-coordinator")
	dir := t.TempDir()
	c, err := clusterproc.New(bin, dir, n)
	if err != nil {
		t.Fatal(err)
	}
	c.Args = append(c.Args, args...)
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, p := range c.Procs {
				b, _ := os.ReadFile(p.LogPath)
				t.Logf("==> %s log:\n%s", p.ID, b)
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	return c
}

func webSpec(name, image string) *deployv1.ServiceSpec {
	return &deployv1.ServiceSpec{Name: name, Image: image, Count: 2, Port: 8080}
}

// deployRetrying calls Deploy until it gets an answer other than
// UNAVAILABLE (no leader yet, or leadership lost while in flight).
func deployRetrying(ctx context.Context, t *testing.T, cl deployv1.DeployServiceClient, req *deployv1.DeployRequest) *deployv1.DeployResponse {
	t.Helper()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cl.Deploy(cctx, req)
		cancel()
		if err == nil {
			return resp
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Fatalf("deploy %s: %v", req.GetRequestId(), err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("deploy %s: no success before the deadline: last error %v", req.GetRequestId(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func others(n, skip int) []int {
	var out []int
	for i := range n {
		if i != skip {
			out = append(out, i)
		}
	}
	return out
}

// TestClusterFailover runs three real coordinator processes, deploys through
// a follower, SIGKILLs the leader and checks that nothing acknowledged is
// lost, retries stay idempotent and the old leader catches up on restart.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three coordinator processes")
	}
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := c.WaitLeader(wctx, []int{0, 1, 2})
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % 3
	t.Logf("leader %s, deploying through follower %s", c.Procs[leader].ID, c.Procs[follower].ID)

	// grpcurl sees the public services through reflection, over mutual
	// TLS with a client certificate; without one it is refused.
	files := c.PKI.Issue(t, pki.RoleClient, "grpcurl")
	grpcurl := testenv.Binary(t, "grpcurl")
	out, err := exec.CommandContext(ctx, grpcurl, "-cacert", files.CA, "-cert", files.Cert, "-key", files.Key, c.Procs[follower].GRPCAddr, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, grpcurl, "-plaintext", c.Procs[follower].GRPCAddr, "list").CombinedOutput(); err == nil {
		t.Errorf("grpcurl -plaintext was answered:\n%s", out)
	}
	for _, svc := range []string{"slipway.deploy.v1.DeployService", "slipway.cluster.v1.ClusterService"} {
		if !strings.Contains(string(out), svc+"\n") {
			t.Errorf("grpcurl list does not show %s:\n%s", svc, out)
		}
	}

	fc := deployv1.NewDeployServiceClient(c.Conn(follower))
	type ack struct {
		service string
		release uint64
	}
	var acked []ack
	for i := range 5 {
		resp := deployRetrying(ctx, t, fc, &deployv1.DeployRequest{
			Spec: webSpec("web", fmt.Sprintf("slipway/demo:v%d", i+1)), RequestId: fmt.Sprintf("pre-%d", i), Supersede: true, CreatedBy: "ci",
		})
		if resp.GetReplayed() || resp.GetRelease().GetNumber() != uint64(i+1) {
			t.Fatalf("deploy %d through follower = release %d replayed=%v", i, resp.GetRelease().GetNumber(), resp.GetReplayed())
		}
		acked = append(acked, ack{"web", resp.GetRelease().GetNumber()})
	}
	first := deployRetrying(ctx, t, fc, &deployv1.DeployRequest{Spec: webSpec("retry", "slipway/demo:v1"), RequestId: "retry-acked"})
	acked = append(acked, ack{"retry", first.GetRelease().GetNumber()})

	// A watcher on the follower sees web-5 superseded after the failover.
	watch, err := fc.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: "web-5"})
	if err != nil {
		t.Fatal(err)
	}

	// Kill the leader while a request is in flight: its outcome is unknown
	// to the client, which retries it with the same request_id.
	inflight := make(chan struct{})
	go func() {
		defer close(inflight)
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, _ = fc.Deploy(cctx, &deployv1.DeployRequest{Spec: webSpec("inflight", "slipway/demo:v1"), RequestId: "retry-inflight"})
	}()
	killed := time.Now()
	_ = c.Signal(leader, syscall.SIGKILL) // exits with "signal: killed"

	live := others(3, leader)
	wctx, wcancel = context.WithTimeout(ctx, 15*time.Second)
	newLeader, err := c.WaitLeader(wctx, live)
	wcancel()
	if err != nil {
		t.Fatalf("no new leader after SIGKILL: %v", err)
	}
	t.Logf("new leader %s after %s", c.Procs[newLeader].ID, time.Since(killed).Round(time.Millisecond))
	<-inflight

	// Retries across the failover create exactly one release.
	again := deployRetrying(ctx, t, fc, &deployv1.DeployRequest{Spec: webSpec("retry", "slipway/demo:v1"), RequestId: "retry-acked"})
	if !again.GetReplayed() || again.GetRelease().GetNumber() != first.GetRelease().GetNumber() {
		t.Errorf("retry of an acknowledged deploy after failover: replayed=%v release=%d, want replay of %d",
			again.GetReplayed(), again.GetRelease().GetNumber(), first.GetRelease().GetNumber())
	}
	inf := deployRetrying(ctx, t, fc, &deployv1.DeployRequest{Spec: webSpec("inflight", "slipway/demo:v1"), RequestId: "retry-inflight"})
	inf2 := deployRetrying(ctx, t, fc, &deployv1.DeployRequest{Spec: webSpec("inflight", "slipway/demo:v1"), RequestId: "retry-inflight"})
	if !inf2.GetReplayed() || inf2.GetRelease().GetNumber() != inf.GetRelease().GetNumber() {
		t.Errorf("second retry of the in-flight deploy: replayed=%v release=%d", inf2.GetReplayed(), inf2.GetRelease().GetNumber())
	}
	acked = append(acked, ack{"inflight", inf.GetRelease().GetNumber()})
	for _, svc := range []string{"retry", "inflight"} {
		rels, err := fc.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: svc, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
		if err != nil {
			t.Fatal(err)
		}
		if len(rels.GetReleases()) != 1 {
			t.Errorf("service %s has %d releases after retries across the failover, want exactly 1", svc, len(rels.GetReleases()))
		}
	}

	// A write after the failover, which the old leader must catch up on.
	post := deployRetrying(ctx, t, fc, &deployv1.DeployRequest{Spec: webSpec("web", "slipway/demo:v6"), RequestId: "post-0", Supersede: true})
	acked = append(acked, ack{"web", post.GetRelease().GetNumber()})

	// Every acknowledged deploy is present (leader-verified read through the
	// follower, and a local read on the new leader).
	for _, i := range []int{follower, newLeader} {
		cons := deployv1.ReadConsistency_READ_CONSISTENCY_LEADER
		if i == newLeader {
			cons = deployv1.ReadConsistency_READ_CONSISTENCY_LOCAL
		}
		cl := deployv1.NewDeployServiceClient(c.Conn(i))
		for _, a := range acked {
			rels, err := cl.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: a.service, Consistency: cons})
			if err != nil {
				t.Fatalf("%s: list releases of %s: %v", c.Procs[i].ID, a.service, err)
			}
			if !hasRelease(rels.GetReleases(), a.release) {
				t.Errorf("%s: acknowledged release %s/%d missing", c.Procs[i].ID, a.service, a.release)
			}
		}
	}

	// The watcher saw web-5 created, then superseded by web-6, and the
	// stream ended because the rollout is final.
	var kinds []string
	for {
		ev, err := watch.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		kinds = append(kinds, ev.GetEvent().GetKind())
	}
	if strings.Join(kinds, ",") != "created,superseded" {
		t.Errorf("watch web-5 events = %v, want created,superseded", kinds)
	}

	// The old leader restarts from its data dir, rejoins and catches up: its
	// local reads show every release, including the one committed while it
	// was down.
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	oc := deployv1.NewDeployServiceClient(c.Conn(leader))
	testenv.Eventually(t, 30*time.Second, "restarted "+c.Procs[leader].ID+" has every acknowledged release", func() error {
		missing, lastErr := 0, error(nil)
		for _, a := range acked {
			rels, err := oc.ListReleases(ctx, &deployv1.ListReleasesRequest{Service: a.service})
			if err != nil {
				lastErr = err
			}
			if err != nil || !hasRelease(rels.GetReleases(), a.release) {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d acknowledged releases missing (last read error: %v)", missing, lastErr)
		}
		return nil
	})
	peers, err := clusterv1.NewClusterServiceClient(c.Conn(newLeader)).ListPeers(ctx, &clusterv1.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(peers.GetPeers()) != 3 || peers.GetLeaderId() != c.Procs[newLeader].ID {
		t.Errorf("peers after rejoin = %v (leader %s), want 3 with leader %s", peers.GetPeers(), peers.GetLeaderId(), c.Procs[newLeader].ID)
	}
	wctx, wcancel = context.WithTimeout(ctx, 15*time.Second)
	current, err := c.WaitLeader(wctx, []int{0, 1, 2})
	wcancel()
	if err != nil {
		t.Fatalf("restarted node does not agree on the leader: %v", err)
	}

	// SIGTERM on the leader hands leadership over before it exits cleanly.
	if err := c.Signal(current, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %s exited with %v, want status 0", c.Procs[current].ID, err)
	}
	logb, _ := os.ReadFile(c.Procs[current].LogPath)
	if !strings.Contains(string(logb), "leadership transferred on shutdown") {
		t.Errorf("%s did not transfer leadership on SIGTERM", c.Procs[current].ID)
	}
	wctx, wcancel = context.WithTimeout(ctx, 15*time.Second)
	if _, err := c.WaitLeader(wctx, others(3, current)); err != nil {
		t.Errorf("no leader after graceful stop: %v", err)
	}
	wcancel()
}

func hasRelease(rels []*deployv1.Release, n uint64) bool {
	for _, r := range rels {
		if r.GetNumber() == n {
			return true
		}
	}
	return false
}
