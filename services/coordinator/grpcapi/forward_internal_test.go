package grpcapi

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/rpc"
)

// TestForwardContextFilters: the outgoing metadata of a forwarded call is
// the incoming one minus hop-by-hop, pseudo and gRPC-reserved headers, with
// exactly one forwarded marker naming this node.
func TestForwardContextFilters(t *testing.T) {
	in := metadata.MD{
		":authority":           {"follower:7400"},
		"content-type":         {"application/grpc"},
		"user-agent":           {"slipctl grpc-go/1.85.0"},
		"te":                   {"trailers"},
		"connection":           {"keep-alive"},
		"grpc-timeout":         {"4S"},
		"grpc-accept-encoding": {"gzip"},
		"x-slipway-forwarded":  {"spoofed"},
		"authorization":        {"Bearer t"},
		"x-multi":              {"a", "b"},
		"trace-bin":            {"\x00\x01"},
	}
	ctx, cancel := context.WithCancel(metadata.NewIncomingContext(context.Background(), in))
	defer cancel()
	out, ok := metadata.FromOutgoingContext(forwardContext(ctx, "c2"))
	if !ok {
		t.Fatal("no outgoing metadata")
	}
	want := metadata.MD{
		"authorization":       {"Bearer t"},
		"x-multi":             {"a", "b"},
		"trace-bin":           {"\x00\x01"},
		"x-slipway-forwarded": {"c2"},
	}
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("outgoing metadata (-want +got):\n%s", d)
	}
	// The caller's context still governs the forwarded call.
	fctx := forwardContext(ctx, "c2")
	cancel()
	if fctx.Err() == nil {
		t.Error("forwarded context not cancelled with the caller's")
	}
	// No incoming metadata: only the marker.
	out, _ = metadata.FromOutgoingContext(forwardContext(context.Background(), "c3"))
	if d := cmp.Diff(metadata.MD{"x-slipway-forwarded": {"c3"}}, out); d != "" {
		t.Errorf("outgoing metadata without incoming (-want +got):\n%s", d)
	}
}

// A forwarded write whose call broke (UNAVAILABLE without the leader's
// ErrorInfo) may have been applied: OUTCOME_UNKNOWN naming the request id.
// The leader's own answers pass through unchanged.
func TestForwardedOutcome(t *testing.T) {
	broken := forwardedOutcome(status.Error(codes.Unavailable, "error reading from server: EOF"), "rid-7")
	if reason, md := rpc.Reason(broken); reason != rpc.ReasonOutcomeUnknown || md[rpc.MetaRequestID] != "rid-7" {
		t.Errorf("broken forward: reason %q, metadata %v; want OUTCOME_UNKNOWN naming rid-7", reason, md)
	}
	leaders := rpc.WithReason(codes.Unavailable, "no leader", rpc.ReasonNotCommitted, nil)
	if got := forwardedOutcome(leaders, "rid-7"); got != leaders {
		t.Errorf("the leader's NOT_COMMITTED answer was rewritten to %v", got)
	}
	if got := forwardedOutcome(status.Error(codes.NotFound, "x"), "rid-7"); status.Code(got) != codes.NotFound {
		t.Errorf("NOT_FOUND became %v", got)
	}
	if forwardedOutcome(nil, "rid-7") != nil {
		t.Error("nil became an error")
	}
}
