package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	"slipway.dev/slipctl/exitcode"
	"slipway.dev/slipctl/render"
)

func eventsCmd() *command {
	return &command{
		name: "events", summary: "stream every rollout's events, across services", maxArgs: 0,
		help: `Stream the events of every rollout, of every service (or of one with
--service), in commit order: first the recorded ones, then new ones as they
are committed, until interrupted (--follow=false stops after the recorded
ones). Each line names the event's index, the cursor to resume after with
--since. A dropped stream is resumed after the last event seen, on whichever
coordinator answers. With -o json, one protojson WatchEventsResponse per line.

--since takes an event index (resume after it), a duration (events of the
last 10m) or an RFC 3339 time. A token scoped to some services sees their
events only.`,
		examples: `  slipctl events
  slipctl events --service web --since 10m
  slipctl events --since 1234 --follow=false -o json | jq -r .event.kind`,
		flags: func(fs *pflag.FlagSet, o *opts) {
			fs.StringVar(&o.service, "service", "", "only the events of this `service`'s rollouts")
			fs.StringVar(&o.since, "since", "", "start after an event `index`, or with the events of the last duration (10m) or since an RFC 3339 time")
			fs.BoolVarP(&o.follow, "follow", "f", true, "keep streaming new events (false: stop after the recorded ones)")
		},
		run: runEvents,
	}
}

// parseSince reads --since: an event index, a duration back from now, or
// an RFC 3339 time.
func parseSince(s string, now time.Time) (from uint64, since time.Time, err error) {
	if s == "" {
		return 0, time.Time{}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, time.Time{}, exitcode.Usagef("events: --since %s: a duration must not be negative", s)
		}
		return 0, now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return 0, t, nil
	}
	return 0, time.Time{}, exitcode.Usagef("events: --since %q is neither an event index (1234), a duration (10m) nor an RFC 3339 time (2026-01-02T15:04:05Z)", s)
}

func runEvents(ctx context.Context, a *app, o *opts, _ []string) error {
	from, since, err := parseSince(o.since, a.env.Now())
	if err != nil {
		return err
	}
	c, err := a.deploy()
	if err != nil {
		return err
	}
	json := a.g.output == "json"
	notes := a.env.Stderr
	req := &deployv1.WatchEventsRequest{Service: o.service, HistoryOnly: !o.follow}
	if !since.IsZero() {
		req.Since = timestamppb.New(since)
	}
	var (
		failingAt time.Time
		backoff   = 100 * time.Millisecond
	)
	for {
		req.FromIndex = from
		err := a.streamEvents(ctx, c, req, func(resp *deployv1.WatchEventsResponse) error {
			failingAt, backoff = time.Time{}, 100*time.Millisecond
			from = resp.GetEvent().GetIndex()
			if json {
				return render.JSONLine(a.env.Stdout, resp)
			}
			_, err := fmt.Fprintln(a.env.Stdout, render.ServiceEventLine(resp))
			return err
		})
		if errors.Is(err, io.EOF) {
			if !o.follow {
				return nil
			}
			err = status.Error(codes.Unavailable, "event stream ended")
		}
		if ctx.Err() != nil {
			return nil // interrupted: the normal end of a follow
		}
		if status.Code(err) != codes.Unavailable {
			return err
		}
		now := a.env.Now()
		if failingAt.IsZero() {
			failingAt = now
		} else if now.Sub(failingAt) > a.g.timeout {
			return fmt.Errorf("events: no coordinator answered for %s: %w", a.g.timeout, err)
		}
		fmt.Fprintf(notes, "event stream interrupted (%s); resuming after event %d\n", status.Convert(err).Message(), from)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// streamEvents sends the stream's events to fn; it returns io.EOF when the
// server ended the stream.
func (a *app) streamEvents(ctx context.Context, c deployv1.DeployServiceClient, req *deployv1.WatchEventsRequest, fn func(*deployv1.WatchEventsResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchEvents(ctx, req)
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := fn(resp); err != nil {
			return err
		}
	}
}
