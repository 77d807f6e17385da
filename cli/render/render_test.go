package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

var t0 = time.Date(2026, 11, 26, 7, 30, 0, 0, time.UTC)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

func TestWeightsSortNumerically(t *testing.T) {
	got := Weights(map[string]int32{"10": 5, "2": 95, "x": 0})
	if want := "#2=95% #10=5% #x=0%"; got != want {
		t.Errorf("Weights() = %q, want %q", got, want)
	}
	if got := Weights(nil); got != "" {
		t.Errorf("Weights(nil) = %q, want empty", got)
	}
}

func TestDeploy(t *testing.T) {
	var b bytes.Buffer
	if err := Deploy(&b, &deployv1.Release{Service: "web", Number: 4},
		&deployv1.Rollout{Id: "web-4", FromRelease: 3, ToRelease: 4, State: deployv1.RolloutState_ROLLOUT_STATE_PENDING, Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN}, false); err != nil {
		t.Fatal(err)
	}
	if err := Deploy(&b, &deployv1.Release{Service: "web", Number: 1},
		&deployv1.Rollout{Id: "web-1", ToRelease: 1, State: deployv1.RolloutState_ROLLOUT_STATE_PENDING}, true); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"release web #4 created",
		"rollout web-4 PENDING (blue_green, #3 -> #4)",
		"release web #1 already created by this request id (replayed)",
		"rollout web-1 PENDING (rolling, to #1, no stable release before)",
	}
	if diff := cmp.Diff(want, lines(b.String())); diff != "" {
		t.Errorf("Deploy() mismatch (-want +got):\n%s", diff)
	}
}

func TestServicesTable(t *testing.T) {
	var b bytes.Buffer
	err := Services(&b, []*deployv1.Service{
		{Name: "web", LatestRelease: 3, StableRelease: 2, ActiveRollout: "web-3", UpdatedAt: ts(0),
			Spec: &deployv1.ServiceSpec{Image: "slipway/demo:v2", Count: 4, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY}}},
		{Name: "api-long-name", LatestRelease: 1, Spec: &deployv1.ServiceSpec{Image: "slipway/demo:v1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"NAME           LATEST  STABLE  ACTIVE ROLLOUT  IMAGE            COUNT  STRATEGY  UPDATED",
		"web            #3      #2      web-3           slipway/demo:v2  4      canary    2026-11-26 07:30:00Z",
		"api-long-name  #1      -       -               slipway/demo:v1  0      rolling   -",
	}
	if diff := cmp.Diff(want, lines(b.String())); diff != "" {
		t.Errorf("Services() mismatch (-want +got):\n%s", diff)
	}
}

func TestRolloutDetail(t *testing.T) {
	var b bytes.Buffer
	err := Rollout(&b, &deployv1.Rollout{
		Id: "web-3", Service: "web", FromRelease: 2, ToRelease: 3, Strategy: deployv1.Strategy_STRATEGY_CANARY,
		State: deployv1.RolloutState_ROLLOUT_STATE_PAUSED, AwaitingPromote: true, Step: 1, Weights: map[string]int32{"2": 90, "3": 10},
		CreatedAt: ts(0), UpdatedAt: ts(time.Minute), CreatedBy: "ci",
		History: []*deployv1.RolloutStep{{Index: 0, At: ts(time.Second), Description: "weight #3=10",
			Weights: map[string]int32{"2": 90, "3": 10}, State: deployv1.RolloutState_ROLLOUT_STATE_RUNNING}},
		Commands: []*deployv1.OperatorCommand{{Kind: deployv1.CommandKind_COMMAND_KIND_PROMOTE, Full: true, By: "ann", At: ts(time.Minute), Reason: "ok"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"rollout:   web-3",
		"service:   web",
		"releases:  #2 -> #3",
		"strategy:  canary",
		"state:     PAUSED (awaiting promote)",
		"step:      2",
		"weights:   #2=90% #3=10%",
		"message:   -",
		"created:   2026-11-26 07:30:00Z by ci",
		"updated:   2026-11-26 07:31:00Z",
		"",
		"STEP  AT                    STATE    WEIGHTS        DESCRIPTION",
		"1     2026-11-26 07:30:01Z  RUNNING  #2=90% #3=10%  weight #3=10",
		"",
		"COMMAND         AT                    BY   APPLIED  REASON",
		"promote (full)  2026-11-26 07:31:00Z  ann  false    ok",
	}
	if diff := cmp.Diff(want, lines(b.String())); diff != "" {
		t.Errorf("Rollout() mismatch (-want +got):\n%s", diff)
	}
}

func TestPeers(t *testing.T) {
	var b bytes.Buffer
	err := Peers(&b, &clusterv1.ListPeersResponse{
		Peers: []*clusterv1.Peer{
			{Id: "c1", RaftAddress: "127.0.0.1:7401", GrpcAddress: "127.0.0.1:7400", Role: clusterv1.PeerRole_PEER_ROLE_LEADER, Voter: true},
			{Id: "c2", RaftAddress: "127.0.0.1:7411", Role: clusterv1.PeerRole_PEER_ROLE_NONVOTER},
		},
		LeaderId: "c1", Term: 2, CommitIndex: 10, AppliedIndex: 9,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ID  RAFT ADDRESS    GRPC ADDRESS    ROLE      VOTER",
		"c1  127.0.0.1:7401  127.0.0.1:7400  leader    true",
		"c2  127.0.0.1:7411  -               nonvoter  false",
		"",
		"leader c1, term 2, commit index 10, applied index 9",
	}
	if diff := cmp.Diff(want, lines(b.String())); diff != "" {
		t.Errorf("Peers() mismatch (-want +got):\n%s", diff)
	}
}

func TestErrorPrintsEveryViolation(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "invalid spec: a; b").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "spec.name", Description: "is required"},
			{Field: "spec.update.canary.steps[1].weight", Description: "must be between 0 and 100, got 101"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	Error(&b, fmt.Errorf("deploy: %w", st.Err()))
	want := []string{
		"slipctl: invalid argument: 2 violation(s):",
		"  spec.name: is required",
		"  spec.update.canary.steps[1].weight: must be between 0 and 100, got 101",
	}
	if diff := cmp.Diff(want, lines(b.String())); diff != "" {
		t.Errorf("Error() mismatch (-want +got):\n%s", diff)
	}

	b.Reset()
	Error(&b, status.Error(codes.FailedPrecondition, "service web has active rollout web-3"))
	if got, want := b.String(), "slipctl: failed precondition: service web has active rollout web-3\n"; got != want {
		t.Errorf("Error(status) = %q, want %q", got, want)
	}
	b.Reset()
	Error(&b, errors.New("read spec: no such file"))
	if got, want := b.String(), "slipctl: read spec: no such file\n"; got != want {
		t.Errorf("Error(plain) = %q, want %q", got, want)
	}
}

func TestJSONIsProtojson(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, &deployv1.ListServicesResponse{Services: []*deployv1.Service{{Name: "web", LatestRelease: 3}}}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Services []struct {
			Name          string `json:"name"`
			LatestRelease string `json:"latestRelease"`
		} `json:"services"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b.String())
	}
	if len(got.Services) != 1 || got.Services[0].Name != "web" || got.Services[0].LatestRelease != "3" {
		t.Errorf("JSON() = %s, want the service with protojson field names", b.String())
	}
	b.Reset()
	if err := JSONLine(&b, &deployv1.ListServicesResponse{Services: []*deployv1.Service{{Name: "a"}, {Name: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 1 {
		t.Errorf("JSONLine() wrote %d lines, want 1: %q", n, b.String())
	}
}

func TestProgress(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	ev := &deployv1.WatchRolloutResponse{
		Event: &deployv1.RolloutEvent{Index: 7, At: ts(0), Kind: "step", State: deployv1.RolloutState_ROLLOUT_STATE_RUNNING, Step: 1,
			Weights: map[string]int32{"2": 50, "3": 50}, Healthy: map[string]int32{"3": 2}, Message: "step 2/3: #3 at 50%"},
		Rollout: &deployv1.Rollout{Id: "web-3", ToRelease: 3, Step: 1, State: deployv1.RolloutState_ROLLOUT_STATE_RUNNING,
			Weights: map[string]int32{"2": 50, "3": 50}},
	}
	done := &deployv1.Rollout{Id: "web-3", State: deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED}

	var plain bytes.Buffer
	p := NewProgress(&plain, false, clock)
	p.SetSteps(3)
	p.Event(ev)
	now = now.Add(42 * time.Second)
	p.Done(done)
	want := "2026-11-26 07:30:00Z  step        RUNNING     step 2/3  weights #2=50% #3=50%  healthy #3=2  step 2/3: #3 at 50%\n" +
		"rollout web-3 SUCCEEDED after 42s\n"
	if diff := cmp.Diff(want, plain.String()); diff != "" {
		t.Errorf("plain progress mismatch (-want +got):\n%s", diff)
	}
	if strings.Contains(plain.String(), "\r") {
		t.Errorf("plain progress must not redraw lines")
	}

	var live bytes.Buffer
	now = t0
	p = NewProgress(&live, true, clock)
	p.SetSteps(3)
	p.Event(ev)
	p.Event(ev)
	now = now.Add(5 * time.Second)
	p.Tick()
	p.Done(done)
	p.Tick() // after Done there is nothing to redraw
	out := live.String()
	if got := strings.Count(out, "[##########..........]  50% to #3  step 2/3  RUNNING  0s"); got != 2 {
		t.Errorf("live progress drew the bar %d times at 0s, want 2:\n%q", got, out)
	}
	if got := strings.Count(out, "\r\x1b[K[##########..........]  50% to #3  step 2/3  RUNNING  5s"); got != 1 {
		t.Errorf("Tick should redraw the bar with the elapsed time once:\n%q", out)
	}
	if got := strings.Count(out, "\r\x1b[K"); got != 3 {
		t.Errorf("live progress cleared the bar %d times, want 3 (next event, tick, done):\n%q", got, out)
	}
	if !strings.HasSuffix(out, "\r\x1b[Krollout web-3 SUCCEEDED after 5s\n") {
		t.Errorf("live progress should end with the final line, got %q", out)
	}
}

func TestProgressShowsAwaitingPromote(t *testing.T) {
	paused := deployv1.RolloutState_ROLLOUT_STATE_PAUSED
	ev := &deployv1.WatchRolloutResponse{
		Event: &deployv1.RolloutEvent{Index: 8, At: ts(0), Kind: "paused", State: paused, Step: 1, AwaitingPromote: true,
			Weights: map[string]int32{"2": 50, "3": 50}, Message: "step 2/3 (#3 at 50%) waits for promote"},
		Rollout: &deployv1.Rollout{Id: "web-3", ToRelease: 3, Step: 1, State: paused, AwaitingPromote: true,
			Weights: map[string]int32{"2": 50, "3": 50}},
	}
	var b bytes.Buffer
	p := NewProgress(&b, true, func() time.Time { return t0 })
	p.SetSteps(3)
	p.Event(ev)
	want := "2026-11-26 07:30:00Z  paused      PAUSED      step 2/3  awaiting promote  weights #2=50% #3=50%  step 2/3 (#3 at 50%) waits for promote\n" +
		"[##########..........]  50% to #3  step 2/3  PAUSED  awaiting promote  0s"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("progress mismatch (-want +got):\n%s", diff)
	}
	// An operator's pause is not a wait for promote.
	ev.Event.AwaitingPromote, ev.Rollout.AwaitingPromote = false, false
	if line := EventLine(ev.GetEvent(), 3); strings.Contains(line, "awaiting") {
		t.Errorf("EventLine without the flag = %q", line)
	}
}

func TestStepsAndStepLabel(t *testing.T) {
	canary := &deployv1.ServiceSpec{Count: 4, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_CANARY,
		Canary: &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{{Weight: 10}, {Weight: 50}, {Weight: 100}}}}}
	rolling := &deployv1.ServiceSpec{Count: 5, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_ROLLING, MaxParallel: 2}}
	bg := &deployv1.ServiceSpec{Count: 3, Update: &deployv1.UpdateStrategy{Strategy: deployv1.Strategy_STRATEGY_BLUE_GREEN}}
	for _, tt := range []struct {
		name string
		spec *deployv1.ServiceSpec
		from uint64
		want int
	}{
		{"canary", canary, 1, 3}, {"rolling batches", rolling, 1, 3}, {"blue/green stages", bg, 1, 3},
		{"first deploy", canary, 0, 1}, {"unknown spec", nil, 1, 0},
	} {
		if got := Steps(tt.spec, tt.from); got != tt.want {
			t.Errorf("%s: Steps() = %d, want %d", tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct {
		index int32
		steps int
		want  string
	}{{0, 3, "step 1/3"}, {2, 3, "step 3/3"}, {3, 3, "step 3/3"}, {1, 0, "step 2"}} {
		if got := Step(tt.index, tt.steps); got != tt.want {
			t.Errorf("Step(%d, %d) = %q, want %q", tt.index, tt.steps, got, tt.want)
		}
	}
}

// TestServicePorts: a service with named ports shows each, the routed one
// and static host ports marked.
func TestServicePorts(t *testing.T) {
	var b strings.Builder
	err := Service(&b, &deployv1.Service{Name: "web", Spec: &deployv1.ServiceSpec{Name: "web", RoutePort: "http",
		Ports: []*deployv1.Port{{Name: "metrics", Port: 9100, HostPort: 19100}, {Name: "http", Port: 8080}}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "ports:           metrics=9100 (host 19100), http=8080 (routed)"; !strings.Contains(b.String(), want) {
		t.Errorf("service:\n%s\nwant a line %q", b.String(), want)
	}
	if strings.Contains(b.String(), "port: ") {
		t.Errorf("a service with named ports shows port:\n%s", b.String())
	}
}
