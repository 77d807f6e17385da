package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// A leader cut off from its followers appends a Deploy it can no longer
// commit and steps down: the caller gets UNAVAILABLE with the reason
// OUTCOME_UNKNOWN and the request id to retry with, not a plain
// UNAVAILABLE that reads as "not deployed". After healing, the retry with
// that id settles it: one release, and a second retry is a replay.
func TestLeadershipLostMidCommitIsOutcomeUnknown(t *testing.T) {
	c := startCluster(t, 3)
	l := c.leader()
	for _, n := range c.nodes {
		if n != l {
			l.trans.Disconnect(n.trans.LocalAddr())
			n.trans.Disconnect(l.trans.LocalAddr())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := l.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "ci-42"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("deploy on an isolated leader: err = %v, want UNAVAILABLE", err)
	}
	reason, md := rpc.Reason(err)
	if reason != rpc.ReasonOutcomeUnknown || md[rpc.MetaRequestID] != "ci-42" {
		t.Fatalf("deploy on an isolated leader: reason %q metadata %v (%v), want %s naming request_id ci-42", reason, md, err, rpc.ReasonOutcomeUnknown)
	}

	for _, n := range c.nodes {
		if n != l {
			l.trans.Connect(n.trans.LocalAddr(), n.trans)
			n.trans.Connect(l.trans.LocalAddr(), l.trans)
		}
	}
	f := c.follower()
	var first *deployv1.DeployResponse
	testenv.Eventually(t, 20*time.Second, "the retry with the same request id settles", func() error {
		resp, err := f.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "ci-42"})
		if err != nil {
			return err
		}
		first = resp
		return nil
	})
	again, err := f.deploy().Deploy(ctx, &deployv1.DeployRequest{Spec: spec("web", "slipway/demo:v1"), RequestId: "ci-42"})
	if err != nil || !again.GetReplayed() || again.GetRelease().GetNumber() != first.GetRelease().GetNumber() {
		t.Fatalf("second retry: %v, %v; want a replay of release %d", again, err, first.GetRelease().GetNumber())
	}
	list, err := f.deploy().ListReleases(ctx, &deployv1.ListReleasesRequest{Service: "web", Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetReleases()); n != 1 {
		t.Errorf("releases of web = %d, want exactly 1", n)
	}
}

// Answers that are known not to have been applied say so: NOT_COMMITTED.
func TestNoLeaderIsNotCommitted(t *testing.T) {
	c := startCluster(t, 3)
	f := c.follower()
	// Cut the follower off from everyone: it knows no leader.
	for _, n := range c.nodes {
		if n != f {
			f.trans.Disconnect(n.trans.LocalAddr())
			n.trans.Disconnect(f.trans.LocalAddr())
		}
	}
	testenv.Eventually(t, 20*time.Second, "the cut-off follower answers NOT_COMMITTED", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := f.deploy().PauseRollout(ctx, &deployv1.PauseRolloutRequest{Id: "web-1"})
		if reason, _ := rpc.Reason(err); status.Code(err) != codes.Unavailable || reason != rpc.ReasonNotCommitted {
			return err
		}
		return nil
	})
}
