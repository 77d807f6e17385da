package server

import (
	"context"
	"time"

	"slipway.dev/coordinator/notify"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// notifyBatch caps the events read from the state at once for the
// notifier.
const notifyBatch = 500

// feedNotifications hands every rollout event committed while this node
// leads to n, so that exactly one node, the leader, notifies each event.
// When it becomes leader it first applies every committed entry (a
// barrier), then sends the events of its own raft term's entries, from the
// first (state.TermEventCursor): the events before were the previous
// leader's to send. Enqueue never blocks, so a slow receiver never holds
// the state.
func (c *coordinator) feedNotifications(ctx context.Context, n *notify.Notifier) {
	for ctx.Err() == nil {
		if !c.node.IsLeader() {
			select {
			case <-ctx.Done():
				return
			case <-c.fsm.Changed():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.node.VerifyLeader(bctx)
		cancel()
		if err != nil || ctx.Err() != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		st, err := c.node.Status()
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		cursor := c.fsm.TermEventCursor(st.Term)
		c.logger.Info("leading: sending rollout event notifications", "after_event", cursor)
		for ctx.Err() == nil && c.node.IsLeader() {
			log := c.fsm.EventsSince("", cursor, notifyBatch)
			for _, se := range log.Events {
				cursor = se.Event.GetIndex()
				n.Enqueue(&deployv1.WatchEventsResponse{Event: se.Event, Service: se.Service})
			}
			if log.More {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-log.Changed:
			case <-time.After(time.Second): // look at leadership again
			}
		}
	}
}
