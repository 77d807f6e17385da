package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
)

// Final reports whether a rollout in state s has ended.
func Final(s deployv1.RolloutState) bool {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED, deployv1.RolloutState_ROLLOUT_STATE_FAILED,
		deployv1.RolloutState_ROLLOUT_STATE_REVERTED, deployv1.RolloutState_ROLLOUT_STATE_ABORTED,
		deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED:
		return true
	}
	return false
}

// Outcome turns a rollout's final state into the command's result: nil
// only for SUCCEEDED.
func Outcome(r *deployv1.Rollout) error {
	if r.GetState() == deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED {
		return nil
	}
	msg := ""
	if r.GetMessage() != "" {
		msg = ": " + r.GetMessage()
	}
	return exitcode.With(exitcode.Failed, fmt.Errorf("rollout %s ended %s%s", r.GetId(), render.State(r.GetState()), msg))
}

// rolloutView shows the events of a watched rollout: plain lines
// (render.Progress) or, on a terminal, the live tree (render.LiveTree).
type rolloutView interface {
	Event(*deployv1.WatchRolloutResponse)
	Tick()
	Note(format string, args ...any)
	Done(*deployv1.Rollout)
}

// watch follows rollout id until it ends, resuming a dropped stream from the
// last event seen, and returns Outcome of its final state. On a terminal
// (and not -o json) it draws the live tree of the rollout, redrawn every
// second; otherwise one plain line per event. spec is the spec of the
// rollout's release when the caller has it (deploy --wait); watch also
// asks for the service's releases once, for images and "step n/m".
func (a *app) watch(ctx context.Context, id string, spec *deployv1.ServiceSpec) error {
	c, err := a.deploy()
	if err != nil {
		return err
	}
	json := a.g.output == "json"
	// In JSON mode stdout carries only JSON lines; people's notes go to stderr.
	notes := a.env.Stdout
	if json {
		notes = a.env.Stderr
	}
	live := a.env.Terminal && !json
	var (
		view  rolloutView
		plain *render.Progress
		tree  *render.LiveTree
	)
	if live {
		width := a.env.Width
		if width <= 0 {
			width = 100
		}
		tree = render.NewLiveTree(notes, width, a.env.Now)
		view = tree
		tick := time.NewTicker(time.Second)
		stop := make(chan struct{})
		defer func() { tick.Stop(); close(stop) }()
		go func() {
			for {
				select {
				case <-tick.C:
					tree.Tick()
				case <-stop:
					return
				}
			}
		}()
	} else {
		plain = render.NewProgress(notes, false, a.env.Now)
		view = plain
	}
	p := view
	var (
		last       *deployv1.Rollout
		from       uint64
		failingAt  time.Time
		backoff    = 100 * time.Millisecond
		stepsKnown bool
	)
	for {
		err := a.follow(ctx, c, id, &from, func(resp *deployv1.WatchRolloutResponse) error {
			failingAt = time.Time{}
			backoff = 100 * time.Millisecond
			if resp.GetRollout() != nil {
				last = resp.GetRollout()
				if !stepsKnown {
					stepsKnown = true
					rels := a.releases(ctx, c, last.GetService())
					for _, r := range rels {
						if r.GetNumber() == last.GetToRelease() {
							spec = r.GetSpec()
						}
					}
					if tree != nil {
						tree.SetReleases(rels)
					} else {
						plain.SetSteps(render.Steps(spec, last.GetFromRelease()))
					}
				}
			}
			if json {
				return render.JSONLine(a.env.Stdout, resp)
			}
			p.Event(resp)
			return nil
		})
		if errors.Is(err, io.EOF) {
			if last == nil || !Final(last.GetState()) {
				// The stream ended early; ask for the rollout itself.
				if resp, gerr := call(ctx, a, c.GetRollout, &deployv1.GetRolloutRequest{Id: id}); gerr == nil {
					last = resp.GetRollout()
				}
			}
			if last != nil && Final(last.GetState()) {
				p.Done(last)
				return Outcome(last)
			}
			err = status.Error(codes.Unavailable, "watch stream ended before the rollout did")
		}
		if ctx.Err() != nil {
			return fmt.Errorf("watch rollout %s: %w", id, ctx.Err())
		}
		if !retryable(err, from) {
			return err
		}
		now := a.env.Now()
		if failingAt.IsZero() {
			failingAt = now
		} else if now.Sub(failingAt) > a.g.timeout {
			return fmt.Errorf("watch rollout %s: no coordinator answered for %s: %w", id, a.g.timeout, err)
		}
		p.Note("watch interrupted (%s); resuming after event %d", status.Convert(err).Message(), from)
		select {
		case <-ctx.Done():
			return fmt.Errorf("watch rollout %s: %w", id, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// retryable reports whether a watch that failed with err should be resumed:
// when no coordinator answered, and also when the rollout is not found after
// events of it were seen (a restarted or lagging coordinator that has not
// replayed its log yet).
func retryable(err error, seen uint64) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.NotFound:
		return seen > 0
	}
	return false
}

// follow streams the rollout's events after *from to fn, advancing *from.
// It returns io.EOF when the server ended the stream.
func (a *app) follow(ctx context.Context, c deployv1.DeployServiceClient, id string, from *uint64, fn func(*deployv1.WatchRolloutResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchRollout(ctx, &deployv1.WatchRolloutRequest{Id: id, FromIndex: *from})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if idx := resp.GetEvent().GetIndex(); idx > *from {
			*from = idx
		}
		if err := fn(resp); err != nil {
			return err
		}
	}
}

// releases returns the releases of service, none if they cannot be read:
// they only improve what people see.
func (a *app) releases(ctx context.Context, c deployv1.DeployServiceClient, service string) []*deployv1.Release {
	resp, err := call(ctx, a, c.ListReleases, &deployv1.ListReleasesRequest{Service: service})
	if err != nil {
		return nil
	}
	return resp.GetReleases()
}

// releaseSpec returns the spec of release number of service, nil if it
// cannot be read.
func (a *app) releaseSpec(ctx context.Context, c deployv1.DeployServiceClient, service string, number uint64) *deployv1.ServiceSpec {
	for _, r := range a.releases(ctx, c, service) {
		if r.GetNumber() == number {
			return r.GetSpec()
		}
	}
	return nil
}
