// Package nodestream is the node agent's side of NodeHeartbeatService: a
// stream to the leader coordinator carrying heartbeats, with the agent's
// allocation statuses whenever they changed, as Nomad clients keep one to
// their servers. The agent dials any coordinator it is given; a follower
// answers NOT_LEADER with the leader's address, and the agent goes there.
// A broken stream is opened again with exponential backoff.
package nodestream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
)

// Config configures a stream.
type Config struct {
	// Coordinators are gRPC addresses of coordinators (any of them: the
	// stream is redirected to the leader). Required.
	Coordinators []string
	// Creds are the agent's: its nodeagent certificate names the node.
	// Required.
	Creds *rpc.Creds
	// NodeID is the node; sent in every heartbeat (the leader checks it
	// against the certificate).
	NodeID string
	// Statuses returns the version of the agent's statuses (it grows on
	// every change) and the statuses at it. Required.
	Statuses func() (uint64, []*agentv1.AllocationStatus)
	// Changed receives a value when the statuses changed, so that they are
	// sent at once rather than at the next heartbeat; nil: at heartbeats
	// only.
	Changed <-chan struct{}
	// Silent, when set and true, sends nothing (the stream stays open): a
	// simulator's pause. Nil for real agents.
	Silent func() bool
	// Interval is the heartbeat interval until the leader tells one;
	// default 1s.
	Interval time.Duration
	// MaxBackoff bounds the wait between attempts; default 5s.
	MaxBackoff time.Duration
	// Logger receives the stream's logs.
	Logger *slog.Logger
}

// Validate names the missing fields.
func (c Config) Validate() error {
	var errs []error
	if len(c.Coordinators) == 0 {
		errs = append(errs, errors.New("coordinators: at least one address is required"))
	}
	if c.Creds == nil {
		errs = append(errs, errors.New("creds: are required"))
	}
	if c.Statuses == nil {
		errs = append(errs, errors.New("statuses: is required"))
	}
	return errors.Join(errs...)
}

// Stream keeps one node's heartbeat stream. Create it with New and run it
// with Run.
type Stream struct {
	cfg    Config
	log    *slog.Logger
	leader atomic.Pointer[string] // address of the coordinator streamed to now; nil: none
	opened atomic.Int64           // streams the leader accepted
	ttl    atomic.Int64           // the heartbeat TTL the last leader announced (ns)
	closed atomic.Int64           // when the last accepted stream ended (unix ns); 0: never
}

// New returns a stream; it does nothing until Run.
func New(cfg Config) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nodestream: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Stream{cfg: cfg, log: cfg.Logger.With("component", "nodestream")}, nil
}

// Leader returns the address of the coordinator the stream is open to
// (the leader), "" while none is.
func (s *Stream) Leader() string {
	if p := s.leader.Load(); p != nil {
		return *p
	}
	return ""
}

// Lapse reports how long no leader has held this node's stream, as of now
// (0 while one does, or before any leader accepted one), and the heartbeat
// TTL the last leader announced: past it, that leader judged the node down
// and may have replaced its allocations. The leader answers only the first
// heartbeat of a stream, so a stream whose packets are dropped (a netsplit)
// is seen broken only by gRPC's keepalive (10s, then 5s for the answer):
// a split shorter than that plus the TTL shows no lapse here (the leader's
// node fence keeps such a node's replaced instances out of the edges'
// routes anyway).
func (s *Stream) Lapse(now time.Time) (down, ttl time.Duration) {
	ttl = time.Duration(s.ttl.Load())
	c := s.closed.Load()
	if s.leader.Load() != nil || c == 0 {
		return 0, ttl
	}
	return now.Sub(time.Unix(0, c)), ttl
}

// Opened counts the streams a leader accepted so far.
func (s *Stream) Opened() int64 { return s.opened.Load() }

// Run keeps the stream open until ctx ends.
func (s *Stream) Run(ctx context.Context) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, s.cfg.MaxBackoff, 0
	bo.Reset()
	var hint string
	next, redirects := 0, 0
	logged := false
	for ctx.Err() == nil {
		addr := hint
		if addr == "" {
			addr = s.cfg.Coordinators[next%len(s.cfg.Coordinators)]
			next++
		}
		hint = ""
		accepted, err := s.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if accepted {
			bo.Reset()
			redirects, logged = 0, false
		}
		if reason, md := rpc.Reason(err); reason == rpc.ReasonNotLeader && md[rpc.MetaLeaderAddress] != "" && md[rpc.MetaLeaderAddress] != addr {
			// A follower named the leader: go there now; a redirect
			// right after another waits like any failure (an election
			// in progress).
			hint = md[rpc.MetaLeaderAddress]
			redirects++
			if redirects == 1 {
				s.log.Debug("coordinator is not the leader: going to the leader", "coordinator", addr, "leader", hint)
				continue
			}
		}
		if !logged {
			logged = true // once per outage
			s.log.Warn("heartbeat stream ended or refused: opening it again with backoff", "coordinator", addr, "err", err)
		}
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session runs one stream to addr until it breaks; accepted says the
// coordinator took it (it answered the first heartbeat).
func (s *Stream) session(ctx context.Context, addr string) (accepted bool, err error) {
	conn, err := rpc.Dial(addr, s.cfg.Creds, rpc.ExpectRole(pki.RoleCoordinator))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := clusterv1.NewNodeHeartbeatServiceClient(conn).Heartbeat(sctx)
	if err != nil {
		return false, err
	}
	version, sts := s.cfg.Statuses()
	if err := stream.Send(&clusterv1.HeartbeatRequest{NodeId: s.cfg.NodeID, StatusVersion: version, StatusesIncluded: true, Allocations: sts}); err != nil {
		_, rerr := stream.Recv() // the server's reason, if it refused
		return false, errors.Join(err, rerr)
	}
	sent := version
	resp, err := stream.Recv()
	if err != nil {
		return false, err
	}
	var interval atomic.Int64
	setInterval := func(r *clusterv1.HeartbeatResponse) {
		if d := r.GetInterval().AsDuration(); d > 0 {
			interval.Store(int64(d))
		}
	}
	interval.Store(int64(s.cfg.Interval))
	setInterval(resp)
	s.opened.Add(1)
	if d := resp.GetTtl().AsDuration(); d > 0 {
		s.ttl.Store(int64(d))
	}
	s.leader.Store(&addr)
	defer func() {
		s.closed.Store(time.Now().UnixNano())
		s.leader.Store(nil)
	}()
	s.log.Info("heartbeat stream open", "coordinator", addr, "leader", resp.GetLeaderId(), "interval", time.Duration(interval.Load()), "ttl", resp.GetTtl().AsDuration())
	ended := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				ended <- err
				return
			}
			setInterval(r)
		}
	}()
	t := time.NewTimer(time.Duration(interval.Load()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-ended:
			if status.Code(err) == codes.OK {
				err = errors.New("the coordinator closed the stream")
			}
			return true, err
		case <-t.C:
		case <-s.cfg.Changed:
		}
		t.Reset(time.Duration(interval.Load()))
		if s.cfg.Silent != nil && s.cfg.Silent() {
			continue
		}
		req := &clusterv1.HeartbeatRequest{NodeId: s.cfg.NodeID}
		if v, sts := s.cfg.Statuses(); v != sent {
			req.StatusVersion, req.StatusesIncluded, req.Allocations = v, true, sts
			sent = v
		} else {
			req.StatusVersion = v
		}
		if err := stream.Send(req); err != nil {
			select {
			case rerr := <-ended:
				return true, rerr // the server's reason (NOT_LEADER after a new election)
			case <-time.After(time.Second):
				return true, err
			}
		}
	}
}
