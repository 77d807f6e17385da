package grpcapi

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	"slipway.dev/nodeagent/agent"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// StreamSource is what the heartbeat stream (platform/nodestream) sends of
// an agent: its statuses, with a version that grows whenever they differ
// from the last ones read, and a channel that receives a value when one
// changed. It follows the agent until ctx ends.
type StreamSource struct {
	a       *agent.Agent
	changed chan struct{}

	mu      sync.Mutex
	version uint64
	last    []*agentv1.AllocationStatus
}

// NewStreamSource follows a's statuses until ctx ends.
func NewStreamSource(ctx context.Context, a *agent.Agent) *StreamSource {
	s := &StreamSource{a: a, changed: make(chan struct{}, 1)}
	go s.follow(ctx)
	return s
}

// Changed receives a value when a status changed.
func (s *StreamSource) Changed() <-chan struct{} { return s.changed }

// Statuses returns the agent's statuses now and their version: the
// version grows when they differ from the last ones returned (compared
// whole, so that no missed event can leave a change unsent).
func (s *StreamSource) Statuses() (uint64, []*agentv1.AllocationStatus) {
	cur := s.a.Statuses()
	out := make([]*agentv1.AllocationStatus, len(cur))
	for i, st := range cur {
		out[i] = StatusToProto(st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !equalStatuses(out, s.last) || s.version == 0 {
		s.version++
		s.last = out
	}
	return s.version, s.last
}

func equalStatuses(a, b []*agentv1.AllocationStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func (s *StreamSource) follow(ctx context.Context) {
	for ctx.Err() == nil {
		_, ch, cancel := s.a.Subscribe()
		func() {
			defer cancel()
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-ch:
					if !ok {
						return // too slow: the agent dropped this subscription
					}
					select {
					case s.changed <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
}
