// Package heartbeat is the leader's in-memory view of the node agents'
// heartbeat streams (NodeHeartbeatService): which nodes stream, the last
// statuses each sent, and their liveness by heartbeat TTL with hysteresis
// (package liveness). One View lives for one leadership term; the engine
// reads it every pass.
//
// The rule for a node (documented for operators in the README):
//   - a node whose agent has streamed to this leader and was found up by
//     the tracker (heard from steadily for the settle time) is judged by
//     its heartbeats only: up while it sends them, down once it sent none
//     for the TTL, whatever its Consul check says meanwhile;
//   - a node the tracker marked down stays down until it has been heard
//     from steadily again for the settle time;
//   - every other node (an agent that does not stream: an older version,
//     or one not configured with -coordinators; or one that has not been
//     heard from for the settle time by this leader yet) is judged by
//     Consul's check and the node grace, as before.
package heartbeat

import (
	"sync"
	"time"

	"slipway.dev/coordinator/liveness"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

// Config is a View's timing.
type Config struct {
	// TTL is how long a node may send no heartbeat before it is down;
	// default 10s.
	TTL time.Duration
	// Settle is how long a down node must be heard from steadily before it
	// is up again; default TTL.
	Settle time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Interval is how often agents are told to send a heartbeat: four per TTL,
// so that one or two lost or late ones do not make a node look dead.
func (c Config) Interval() time.Duration { return c.TTL / 4 }

// State is what the view knows of one node.
type State int

const (
	// Unknown: judge the node by Consul (it does not stream, or it has
	// not been heard from steadily by this leader yet).
	Unknown State = iota
	// Up: the node is up by its heartbeats.
	Up
	// Down: the node sent no heartbeat for the TTL and has not been heard
	// from steadily since.
	Down
)

func (s State) String() string { return [...]string{"unknown", "up", "down"}[s] }

type node struct {
	stream   uint64 // id of the node's current stream; 0: none open
	statuses []*agentv1.AllocationStatus
	have     bool // statuses were received on the current stream
	version  uint64
	down     bool // the tracker took it down and it has not come up since
}

// View is safe for concurrent use: the gRPC handlers feed it, the engine
// reads it.
type View struct {
	cfg Config

	mu      sync.Mutex
	tr      *liveness.Tracker
	nodes   map[string]*node
	next    uint64
	changed chan struct{}
}

// New returns an empty view.
func New(cfg Config) *View {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = cfg.TTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &View{cfg: cfg, tr: liveness.New(liveness.Config{TTL: cfg.TTL, Settle: cfg.Settle}),
		nodes: map[string]*node{}, changed: make(chan struct{})}
}

// Config returns the view's timing (defaults filled in).
func (v *View) Config() Config { return v.cfg }

// Open starts a stream of node and returns its id; a newer stream of the
// same node replaces an older one (the agent reconnected).
func (v *View) Open(id string) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.next++
	n := v.nodeLocked(id)
	n.stream, n.have, n.statuses = v.next, false, nil
	return v.next
}

// Close ends stream of node; the node's statuses are no longer taken from
// the view (the engine asks its agent again) but its liveness keeps
// counting from its last heartbeat.
func (v *View) Close(id string, stream uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nodes[id]
	if n == nil || n.stream != stream {
		return // replaced by a newer stream meanwhile
	}
	n.stream, n.have, n.statuses = 0, false, nil
}

// Beat records a heartbeat of node on stream, with its statuses at
// version when included (nil statuses with included means none).
// A heartbeat of a replaced stream is ignored.
func (v *View) Beat(id string, stream, version uint64, included bool, statuses []*agentv1.AllocationStatus) {
	v.mu.Lock()
	n := v.nodes[id]
	if n == nil || n.stream != stream {
		v.mu.Unlock()
		return
	}
	v.tr.Heartbeat(id, v.cfg.Now())
	notify := false
	if included {
		notify = !n.have || n.version != version
		n.statuses, n.have, n.version = statuses, true, version
	}
	var ch chan struct{}
	if notify {
		ch, v.changed = v.changed, make(chan struct{})
	}
	v.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// Changed is closed at the next change of a node's statuses.
func (v *View) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

// Tick runs the tracker at the view's now and returns every node that
// went down or came up since the last Tick, sorted by node id. The engine
// calls it once per pass, and commits the changes with the pass's other
// node changes.
func (v *View) Tick() []liveness.Change {
	v.mu.Lock()
	defer v.mu.Unlock()
	changes := v.tr.Tick(v.cfg.Now())
	for _, c := range changes {
		v.nodeLocked(c.Node).down = !c.Up
	}
	return changes
}

// State returns what the view says of node (as of the last Tick).
func (v *View) State(id string) State {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nodes[id]
	switch {
	case n == nil:
		return Unknown
	case n.down:
		return Down
	}
	if up, known := v.tr.Up(id); known && up {
		return Up
	}
	return Unknown
}

// Statuses returns the statuses node last sent on its open stream; false
// when it has no open stream or has sent none on it yet (then the caller
// asks the agent). The slice is not to be modified.
func (v *View) Statuses(id string) ([]*agentv1.AllocationStatus, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nodes[id]
	if n == nil || n.stream == 0 || !n.have {
		return nil, false
	}
	return n.statuses, true
}

// Streaming returns the ids of the nodes with an open stream.
func (v *View) Streaming() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id, n := range v.nodes {
		if n.stream != 0 {
			out = append(out, id)
		}
	}
	return out
}

func (v *View) nodeLocked(id string) *node {
	n := v.nodes[id]
	if n == nil {
		n = &node{}
		v.nodes[id] = n
	}
	return n
}
