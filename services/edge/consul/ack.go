package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/platform/catalog"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// ErrNotAcquired means the edge's ack key is held by another session.
var ErrNotAcquired = errors.New("consul: ack key held by another session")

// Acker publishes the edge's EdgeAck (the route barrier) under
// catalog.EdgeKey, bound to a Consul session with behavior "delete" so the
// key disappears when the edge dies.
type Acker struct {
	client *api.Client
	edgeID string
	ttl    time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	session string
	last    []byte
}

// NewAcker returns an acker for edgeID with the session TTL ttl (default 10s).
func NewAcker(client *api.Client, edgeID string, ttl time.Duration, log *slog.Logger) *Acker {
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	return &Acker{client: client, edgeID: edgeID, ttl: ttl, log: log}
}

// Publish writes ack and returns once Consul has stored it.
func (a *Acker) Publish(ctx context.Context, ack *edgev1.EdgeAck) error {
	b, err := protojson.Marshal(ack)
	if err != nil {
		return fmt.Errorf("consul: marshal ack: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last = b
	return a.putLocked(ctx)
}

func (a *Acker) putLocked(ctx context.Context) error {
	for attempt := 0; attempt < 2; attempt++ {
		if a.session == "" {
			id, _, err := a.client.Session().Create(&api.SessionEntry{
				Name:      "slipway-edge-" + a.edgeID,
				TTL:       a.ttl.String(),
				Behavior:  api.SessionBehaviorDelete,
				LockDelay: time.Millisecond,
			}, (&api.WriteOptions{}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("consul: create edge session: %w", explain(err))
			}
			a.session = id
		}
		ok, _, err := a.client.KV().Acquire(&api.KVPair{Key: catalog.EdgeKey(a.edgeID), Value: a.last, Session: a.session},
			(&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			if attempt == 0 && strings.Contains(err.Error(), "invalid session") {
				a.session = "" // expired: start a new one
				continue
			}
			return fmt.Errorf("consul: write %s: %w", catalog.EdgeKey(a.edgeID), explain(err))
		}
		if ok {
			return nil
		}
		// The session may have expired: start a new one and try again.
		a.session = ""
	}
	return fmt.Errorf("consul: %s: %w", catalog.EdgeKey(a.edgeID), ErrNotAcquired)
}

// Run renews the session every third of its TTL until ctx is done, then
// destroys it (deleting the ack). A lost session is recreated and the last
// ack republished.
func (a *Acker) Run(ctx context.Context) {
	t := time.NewTicker(a.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.mu.Lock()
			if a.session != "" {
				dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := a.client.Session().Destroy(a.session, (&api.WriteOptions{}).WithContext(dctx))
				cancel()
				if err != nil {
					a.log.Warn("destroy edge session", "err", err)
				}
				a.session = ""
			}
			a.mu.Unlock()
			return
		case <-t.C:
		}
		a.mu.Lock()
		if a.session != "" {
			entry, _, err := a.client.Session().Renew(a.session, (&api.WriteOptions{}).WithContext(ctx))
			switch {
			case err != nil:
				a.log.Warn("renew edge session", "err", explain(err))
			case entry == nil:
				a.log.Warn("edge session lost; recreating it")
				a.session = ""
				if a.last != nil {
					if err := a.putLocked(ctx); err != nil {
						a.log.Warn("republish ack", "err", err)
					}
				}
			}
		}
		a.mu.Unlock()
	}
}
