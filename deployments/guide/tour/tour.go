// Package tour runs the guided demo's releases against a coordinator: it
// deploys each act, follows WatchRollout and prints every step as it
// happens, promotes a step that waits for an operator (announcing it), and
// keeps live traffic flowing through the edge from the first healthy
// release on.
package tour

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"

	"slipway.dev/guide/summary"
	"slipway.dev/guide/traffic"
)

// ErrOutcome is returned when a rollout ends in a state other than the one
// its act expects.
var ErrOutcome = errors.New("tour: unexpected rollout outcome")

// Config wires the tour.
type Config struct {
	Client deployv1.DeployServiceClient
	// EdgeURL is the edge's HTTP URL.
	EdgeURL string
	// Rate and Workers size the live traffic.
	Rate, Workers int
	// ActTimeout bounds each rollout.
	ActTimeout time.Duration
	// PromoteAfter is how long a step waiting for an operator is held
	// under live traffic before the guide promotes it (so that the split
	// shows in the summary).
	PromoteAfter time.Duration
	Out          io.Writer
	// Start is the run's time zero (summary offsets count from it).
	Start time.Time
}

// Result is what the tour recorded.
type Result struct {
	Samples []summary.Sample
	Phases  []summary.Phase
	// Rollouts maps act name to rollout id.
	Rollouts map[string]string
}

// Run plays every act in order. Traffic starts once the first release
// answers through the edge and stops after the last act (plus a short
// steady tail). The result is filled as far as the tour got, also on error.
func Run(ctx context.Context, c Config, acts []Act) (Result, error) {
	t := &tourRun{cfg: c, res: Result{Rollouts: map[string]string{}}, versions: map[string]string{}}
	err := t.run(ctx, acts)
	now := time.Since(c.Start)
	if t.gen != nil {
		t.res.Samples = t.gen.Stop()
	}
	t.res.Phases = t.tl.Phases(now)
	return t.res, err
}

type tourRun struct {
	cfg Config
	res Result
	tl  summary.Timeline
	gen *traffic.Generator
	// versions maps release numbers (the keys of rollout weights) to the
	// version each act deployed.
	versions map[string]string
	// weights is the last weight line printed.
	weights string
}

func (t *tourRun) since() time.Duration { return time.Since(t.cfg.Start) }

func (t *tourRun) printf(format string, args ...any) {
	fmt.Fprintf(t.cfg.Out, "%8s  %s\n", fmtSince(t.since()), fmt.Sprintf(format, args...))
}

func fmtSince(d time.Duration) string {
	return fmt.Sprintf("+%.1fs", d.Seconds())
}

func (t *tourRun) run(ctx context.Context, acts []Act) error {
	for i, a := range acts {
		fmt.Fprintf(t.cfg.Out, "\n\033[1m==> %d/%d %s\033[0m: %s\n", i+1, len(acts), a.Name, a.Explain)
		if err := t.act(ctx, a); err != nil {
			return err
		}
		if t.gen == nil {
			if err := t.startTraffic(ctx, a.Version); err != nil {
				return err
			}
		}
	}
	// A short steady tail shows where the traffic settled.
	if err := t.tl.Begin("after", t.since()); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
	return t.tl.End(t.since(), "")
}

// startTraffic waits until the edge serves version, then starts the load.
func (t *tourRun) startTraffic(ctx context.Context, version string) error {
	tcfg := traffic.Config{URL: t.cfg.EdgeURL, Host: Host, Rate: t.cfg.Rate, Workers: t.cfg.Workers, Timeout: 5 * time.Second}
	client := traffic.NewClient(1, 2*time.Second)
	defer client.CloseIdleConnections()
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last summary.Sample
	for {
		last = traffic.Once(ctx2, client, tcfg)
		if last.OK() && last.Version == version {
			break
		}
		select {
		case <-ctx2.Done():
			return fmt.Errorf("tour: the edge at %s (Host: %s) did not serve %s within 30s; last answer: %+v", t.cfg.EdgeURL, Host, version, last)
		case <-time.After(100 * time.Millisecond): // poll interval
		}
	}
	gen, err := traffic.Start(tcfg, t.cfg.Start)
	if err != nil {
		return fmt.Errorf("tour: %w", err)
	}
	t.gen = gen
	t.printf("the edge serves %s: live traffic starts, %d requests/s through %s with Host: %s", version, t.cfg.Rate, t.cfg.EdgeURL, Host)
	return nil
}

func (t *tourRun) act(ctx context.Context, a Act) error {
	if err := t.tl.Begin(a.Name, t.since()); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ActTimeout)
	defer cancel()
	resp, err := t.cfg.Client.Deploy(ctx, &deployv1.DeployRequest{
		Spec: a.Spec, RequestId: fmt.Sprintf("guide-%d-%s", t.cfg.Start.UnixNano(), a.Version),
		CreatedBy: "slipway-guide", Reason: "make run: " + a.Name,
	})
	if err != nil {
		_ = t.tl.End(t.since(), "refused")
		return fmt.Errorf("tour: deploy %s: %w", a.Name, err)
	}
	ro := resp.GetRollout()
	t.res.Rollouts[a.Name] = ro.GetId()
	t.versions[fmt.Sprint(resp.GetRelease().GetNumber())] = a.Version
	t.printf("Deploy -> release %d, rollout %s (%s), %s", resp.GetRelease().GetNumber(), ro.GetId(), strategyName(ro.GetStrategy()), stateName(ro.GetState()))
	final, err := t.follow(ctx, a, ro.GetId())
	outcome := stateName(final.GetState())
	if err != nil {
		end := "error"
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			end = "timeout"
		case ctx.Err() != nil:
			end = "interrupted"
		}
		_ = t.tl.End(t.since(), end)
		return err
	}
	if err := t.tl.End(t.since(), outcome); err != nil {
		return err
	}
	sent, failed := t.counts()
	t.printf("rollout %s: %s after %s (%s)%s", ro.GetId(), outcome, t.lastPhaseDuration(), final.GetMessage(), t.trafficNote(sent, failed))
	if final.GetState() != a.Want {
		return fmt.Errorf("%w: %s ended %s, want %s", ErrOutcome, a.Name, outcome, stateName(a.Want))
	}
	return nil
}

func (t *tourRun) lastPhaseDuration() time.Duration {
	ps := t.tl.Phases(t.since())
	return ps[len(ps)-1].Duration().Round(100 * time.Millisecond)
}

func (t *tourRun) counts() (int, int) {
	if t.gen == nil {
		return 0, 0
	}
	return t.gen.Counts()
}

func (t *tourRun) trafficNote(sent, failed int) string {
	if t.gen == nil {
		return ""
	}
	return fmt.Sprintf("  [%d requests, %d failed]", sent, failed)
}

// follow streams the rollout's events until it is terminal, promoting each
// step that waits for an operator, and returns the final rollout.
func (t *tourRun) follow(ctx context.Context, a Act, id string) (*deployv1.Rollout, error) {
	var from uint64
	promoted := map[int32]bool{} // steps promoted: one promote per wait
	for {
		stream, err := t.cfg.Client.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: id, FromIndex: from})
		if err != nil {
			return nil, fmt.Errorf("tour: watch %s: %w", id, err)
		}
		for {
			msg, err := stream.Recv()
			if err == io.EOF {
				got, gerr := t.cfg.Client.GetRollout(ctx, &deployv1.GetRolloutRequest{Id: id, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
				if gerr != nil {
					return nil, fmt.Errorf("tour: get rollout %s: %w", id, gerr)
				}
				return got.GetRollout(), nil
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, t.stopped(ctx, a)
				}
				if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
					break // reconnect from the last index
				}
				return nil, fmt.Errorf("tour: watch %s: %w", id, err)
			}
			ev := msg.GetEvent()
			from = ev.GetIndex()
			sent, failed := t.counts()
			w := FormatWeights(ev.GetWeights(), t.versions)
			if w == t.weights {
				w = ""
			} else {
				t.weights = w
				w = "  weights " + w
			}
			t.printf("%-10s %s%s%s", ev.GetKind(), ev.GetMessage(), w, t.trafficNote(sent, failed))
			if NeedsPromote(ev) && !promoted[ev.GetStep()] {
				promoted[ev.GetStep()] = true
				if err := t.promote(ctx, a, id); err != nil {
					return nil, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, t.stopped(ctx, a)
		case <-time.After(200 * time.Millisecond): // reconnect back-off
		}
	}
}

// stopped explains why following a rollout stopped: its act's timeout, or
// an interrupt.
func (t *tourRun) stopped(ctx context.Context, a Act) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("tour: %s did not finish within %s: %w", a.Name, t.cfg.ActTimeout, ctx.Err())
	}
	return fmt.Errorf("tour: %s interrupted: %w", a.Name, ctx.Err())
}

// NeedsPromote reports whether the rollout waits for an operator's promote
// after an event (every event committed during the wait says so, the
// promote's own command event included; each wait is at its own step).
func NeedsPromote(ev *deployv1.RolloutEvent) bool {
	return ev.GetAwaitingPromote()
}

func (t *tourRun) promote(ctx context.Context, a Act, id string) error {
	if a.Spec.GetUpdate().GetBlueGreen().GetPreviewHeader() != "" && t.gen != nil {
		h := a.Spec.GetUpdate().GetBlueGreen().GetPreviewHeader()
		client := traffic.NewClient(1, 2*time.Second)
		// The pin reaches the edge a moment after the pause is recorded.
		var s summary.Sample
		for deadline := time.Now().Add(5 * time.Second); ; {
			s = traffic.Once(ctx, client, traffic.Config{URL: t.cfg.EdgeURL, Host: Host, Header: http.Header{h: []string{"1"}}})
			if s.Version == a.Version || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
		client.CloseIdleConnections()
		t.printf("\033[1mpreview\033[0m    curl -H 'Host: %s' -H '%s: 1' %s -> %s", Host, h, t.cfg.EdgeURL, describe(s))
	}
	if t.cfg.PromoteAfter > 0 {
		t.printf("\033[1moperator\033[0m   holding this step %s under live traffic, then promoting", t.cfg.PromoteAfter)
		select {
		case <-ctx.Done():
			return t.stopped(ctx, a)
		case <-time.After(t.cfg.PromoteAfter):
		}
	}
	t.printf("\033[1moperator\033[0m   promoting, as you would with: bin/slipctl rollout promote %s", id)
	_, err := t.cfg.Client.PromoteRollout(ctx, &deployv1.PromoteRolloutRequest{Id: id, By: "slipway-guide", Reason: "make run promotes the manual step"})
	if err != nil {
		return fmt.Errorf("tour: promote %s: %w", id, err)
	}
	return nil
}

func describe(s summary.Sample) string {
	if !s.OK() {
		return "failed: " + s.Err
	}
	return "served by " + s.Version
}

// FormatWeights renders a weight map (keyed by release number) sorted by
// key, naming each release by its version when known, or "" when empty.
func FormatWeights(w map[string]int32, versions map[string]string) string {
	if len(w) == 0 {
		return ""
	}
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := "release " + k
		if v, ok := versions[k]; ok {
			name = v
		}
		parts[i] = fmt.Sprintf("%s=%d%%", name, w[k])
	}
	return strings.Join(parts, " ")
}

func stateName(s deployv1.RolloutState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLOUT_STATE_"))
}

func strategyName(s deployv1.Strategy) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STRATEGY_"))
}
