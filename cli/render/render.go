// Package render prints API responses for people (aligned tables) and for
// scripts (protojson).
package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"slipway.dev/platform/spec"
	clusterv1 "slipway.dev/proto/slipway/cluster/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// JSON writes m as indented protojson, for scripts.
func JSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// JSONValue writes v, which is not a proto message, as indented JSON.
func JSONValue(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// JSONLine writes m as protojson on one line, for streams (JSON lines).
func JSONLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// table is a tabwriter with the settings every table uses.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func row(tw io.Writer, cols ...string) {
	for i, c := range cols {
		if c == "" {
			cols[i] = "-"
		}
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
}

// Time renders a timestamp in UTC, "-" when unset.
func Time(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

// Strategy renders a strategy as users write it: rolling, blue_green, canary.
func Strategy(s deployv1.Strategy) string {
	switch s {
	case deployv1.Strategy_STRATEGY_UNSPECIFIED:
		return "rolling"
	default:
		return strings.ToLower(strings.TrimPrefix(s.String(), "STRATEGY_"))
	}
}

// State renders a rollout state, e.g. "RUNNING".
func State(s deployv1.RolloutState) string {
	return strings.TrimPrefix(s.String(), "ROLLOUT_STATE_")
}

// Weights renders release weights ordered by release number, e.g.
// "#1=90% #2=10%". Releases are always "#N" in slipctl's output, never
// "vN" (which reads like an image tag) or "rN".
func Weights(w map[string]int32) string {
	keys := sortedNumeric(w)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("#%s=%d%%", k, w[k])
	}
	return strings.Join(parts, " ")
}

// Healthy renders healthy instance counts per release, e.g. "#2=3".
func Healthy(h map[string]int32) string {
	keys := sortedNumeric(h)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("#%s=%d", k, h[k])
	}
	return strings.Join(parts, " ")
}

// Steps is how many steps a rollout to a release with (normalized) spec s
// takes, from a stable release from (zero for a first deploy): the canary
// steps, the rolling batches, or blue/green's three stages (deploy,
// preview, keep the old colour warm). Zero when s is unknown.
func Steps(s *deployv1.ServiceSpec, from uint64) int {
	if s == nil {
		return 0
	}
	if from == 0 {
		return 1
	}
	u := s.GetUpdate()
	switch u.GetStrategy() {
	case deployv1.Strategy_STRATEGY_CANARY:
		return max(1, len(u.GetCanary().GetSteps()))
	case deployv1.Strategy_STRATEGY_BLUE_GREEN:
		return 3
	default:
		p := spec.RollingBatch(u, int(s.GetCount()))
		return max(1, (int(s.GetCount())+p-1)/p)
	}
}

// Step renders the step index of a rollout (from zero) for people, from
// one: "step 2/3" when the number of steps is known, "step 2" otherwise.
func Step(index int32, steps int) string {
	n := int(index) + 1
	if steps <= 0 {
		return fmt.Sprintf("step %d", n)
	}
	return fmt.Sprintf("step %d/%d", min(n, steps), steps)
}

func sortedNumeric(m map[string]int32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.ParseUint(keys[i], 10, 64)
		b, errB := strconv.ParseUint(keys[j], 10, 64)
		if errA == nil && errB == nil && a != b {
			return a < b
		}
		return keys[i] < keys[j]
	})
	return keys
}

func release(n uint64) string {
	if n == 0 {
		return "-"
	}
	return "#" + strconv.FormatUint(n, 10)
}

// Deploy prints what a Deploy or a rollback created.
func Deploy(w io.Writer, rel *deployv1.Release, ro *deployv1.Rollout, replayed bool) error {
	verb := "created"
	if replayed {
		verb = "already created by this request id (replayed)"
	}
	move := "to " + release(ro.GetToRelease()) + ", no stable release before"
	if ro.GetFromRelease() != 0 {
		move = release(ro.GetFromRelease()) + " -> " + release(ro.GetToRelease())
	}
	_, err := fmt.Fprintf(w, "release %s %s %s\nrollout %s %s (%s, %s)\n",
		rel.GetService(), release(rel.GetNumber()), verb,
		ro.GetId(), State(ro.GetState()), Strategy(ro.GetStrategy()), move)
	return err
}

// Services prints services as a table.
func Services(w io.Writer, ss []*deployv1.Service) error {
	tw := table(w)
	row(tw, "NAME", "LATEST", "STABLE", "ACTIVE ROLLOUT", "IMAGE", "COUNT", "STRATEGY", "UPDATED")
	for _, s := range ss {
		row(tw, s.GetName(), release(s.GetLatestRelease()), release(s.GetStableRelease()), s.GetActiveRollout(),
			s.GetSpec().GetImage(), strconv.Itoa(int(s.GetSpec().GetCount())),
			Strategy(s.GetSpec().GetUpdate().GetStrategy()), Time(s.GetUpdatedAt()))
	}
	return tw.Flush()
}

// Service prints one service.
func Service(w io.Writer, s *deployv1.Service) error {
	tw := table(w)
	sp := s.GetSpec()
	row(tw, "name:", s.GetName())
	row(tw, "latest release:", release(s.GetLatestRelease()))
	row(tw, "stable release:", release(s.GetStableRelease()))
	row(tw, "active rollout:", s.GetActiveRollout())
	row(tw, "image:", sp.GetImage())
	row(tw, "count:", strconv.Itoa(int(sp.GetCount())))
	if len(sp.GetPorts()) == 0 {
		row(tw, "port:", strconv.Itoa(int(sp.GetPort())))
	} else {
		row(tw, "ports:", Ports(sp))
	}
	route := sp.GetRoute().GetHost()
	if route != "" {
		route += sp.GetRoute().GetPath()
	}
	row(tw, "route:", route)
	row(tw, "strategy:", Strategy(sp.GetUpdate().GetStrategy()))
	row(tw, "updated:", Time(s.GetUpdatedAt()))
	return tw.Flush()
}

// Ports renders a spec's named ports as "http=8080 (routed),
// metrics=9100 (host 19100)".
func Ports(sp *deployv1.ServiceSpec) string {
	routed := sp.GetRoutePort()
	if routed == "" && len(sp.GetPorts()) > 0 {
		routed = sp.GetPorts()[0].GetName()
	}
	var parts []string
	for _, p := range sp.GetPorts() {
		part := p.GetName() + "=" + strconv.Itoa(int(p.GetPort()))
		var notes []string
		if p.GetName() == routed {
			notes = append(notes, "routed")
		}
		if p.GetHostPort() != 0 {
			notes = append(notes, "host "+strconv.Itoa(int(p.GetHostPort())))
		}
		if len(notes) > 0 {
			part += " (" + strings.Join(notes, ", ") + ")"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

// History prints a service's releases and audit trail.
func History(w io.Writer, rels []*deployv1.Release, audit []*deployv1.AuditEvent) error {
	tw := table(w)
	row(tw, "RELEASE", "CREATED", "BY", "IMAGE", "STRATEGY", "ROLLBACK OF", "REASON")
	for _, r := range rels {
		row(tw, release(r.GetNumber()), Time(r.GetCreatedAt()), who(r.GetCreatedBy(), r.GetAccessorId()), r.GetSpec().GetImage(),
			Strategy(r.GetSpec().GetUpdate().GetStrategy()), release(r.GetRollbackOf()), r.GetReason())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(audit) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = table(w)
	row(tw, "INDEX", "AT", "ACTOR", "ACTION", "DETAIL")
	for _, a := range audit {
		row(tw, strconv.FormatUint(a.GetIndex(), 10), Time(a.GetAt()), who(a.GetActor(), a.GetAccessorId()), a.GetAction(), a.GetDetail())
	}
	return tw.Flush()
}

// who is who asked: the caller's free-text name and, when a token asked,
// its short accessor id.
func who(name, accessor string) string {
	if accessor == "" {
		return name
	}
	if len(accessor) > 8 {
		accessor = accessor[:8]
	}
	if name == "" {
		return "token " + accessor
	}
	return name + " (token " + accessor + ")"
}

// Rollouts prints rollouts as a table.
func Rollouts(w io.Writer, ros []*deployv1.Rollout) error {
	tw := table(w)
	row(tw, "ID", "SERVICE", "FROM", "TO", "STRATEGY", "STATE", "STEP", "WEIGHTS", "CREATED")
	for _, r := range ros {
		row(tw, r.GetId(), r.GetService(), release(r.GetFromRelease()), release(r.GetToRelease()),
			Strategy(r.GetStrategy()), State(r.GetState()), strconv.Itoa(int(r.GetStep())), Weights(r.GetWeights()),
			Time(r.GetCreatedAt()))
	}
	return tw.Flush()
}

// Rollout prints one rollout with its steps and operator commands.
func Rollout(w io.Writer, r *deployv1.Rollout) error {
	tw := table(w)
	row(tw, "rollout:", r.GetId())
	row(tw, "service:", r.GetService())
	row(tw, "releases:", release(r.GetFromRelease())+" -> "+release(r.GetToRelease()))
	row(tw, "strategy:", Strategy(r.GetStrategy()))
	state := State(r.GetState())
	if r.GetAwaitingPromote() {
		state += " (" + awaitingPromote + ")"
	}
	row(tw, "state:", state)
	row(tw, "step:", strings.TrimPrefix(Step(r.GetStep(), 0), "step "))
	row(tw, "weights:", Weights(r.GetWeights()))
	row(tw, "message:", r.GetMessage())
	row(tw, "created:", Time(r.GetCreatedAt())+" by "+orDash(r.GetCreatedBy()))
	row(tw, "updated:", Time(r.GetUpdatedAt()))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.GetHistory()) > 0 {
		fmt.Fprintln(w)
		tw = table(w)
		row(tw, "STEP", "AT", "STATE", "WEIGHTS", "DESCRIPTION")
		for _, s := range r.GetHistory() {
			row(tw, strconv.Itoa(int(s.GetIndex())+1), Time(s.GetAt()), State(s.GetState()), Weights(s.GetWeights()), s.GetDescription())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.GetCommands()) > 0 {
		fmt.Fprintln(w)
		tw = table(w)
		row(tw, "COMMAND", "AT", "BY", "APPLIED", "REASON")
		for _, c := range r.GetCommands() {
			kind := strings.ToLower(strings.TrimPrefix(c.GetKind().String(), "COMMAND_KIND_"))
			if c.GetFull() {
				kind += " (full)"
			}
			row(tw, kind, Time(c.GetAt()), c.GetBy(), strconv.FormatBool(c.GetApplied()), c.GetReason())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Peers prints the raft configuration.
func Peers(w io.Writer, r *clusterv1.ListPeersResponse) error {
	if err := peerTable(w, r.GetPeers()); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nleader %s, term %d, commit index %d, applied index %d\n",
		orDash(r.GetLeaderId()), r.GetTerm(), r.GetCommitIndex(), r.GetAppliedIndex())
	return err
}

// PeerList prints peers as a table.
func PeerList(w io.Writer, ps []*clusterv1.Peer) error { return peerTable(w, ps) }

func peerTable(w io.Writer, ps []*clusterv1.Peer) error {
	tw := table(w)
	row(tw, "ID", "RAFT ADDRESS", "GRPC ADDRESS", "ROLE", "VOTER")
	for _, p := range ps {
		role := strings.ToLower(strings.TrimPrefix(p.GetRole().String(), "PEER_ROLE_"))
		if p.GetRole() == clusterv1.PeerRole_PEER_ROLE_UNSPECIFIED {
			role = "unknown"
		}
		row(tw, p.GetId(), p.GetRaftAddress(), orDash(p.GetGrpcAddress()), role, strconv.FormatBool(p.GetVoter()))
	}
	return tw.Flush()
}

// Leader prints the leader as the answering node sees it.
func Leader(w io.Writer, r *clusterv1.GetLeaderResponse) error {
	if r.GetLeaderId() == "" {
		_, err := fmt.Fprintf(w, "no leader known (answered by %s)\n", orDash(r.GetSelfId()))
		return err
	}
	_, err := fmt.Fprintf(w, "leader %s (raft %s, grpc %s), answered by %s\n",
		r.GetLeaderId(), orDash(r.GetRaftAddress()), orDash(r.GetGrpcAddress()), orDash(r.GetSelfId()))
	return err
}

// Nodes prints workload nodes as a table.
func Nodes(w io.Writer, ns []*clusterv1.Node) error {
	tw := table(w)
	row(tw, "ID", "ADDRESS", "STATUS", "DRAINING", "DRIVER", "CPU MHZ", "MEMORY MB", "LABELS", "LAST SEEN")
	for _, n := range ns {
		keys := make([]string, 0, len(n.GetLabels()))
		for k := range n.GetLabels() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		labels := make([]string, len(keys))
		for i, k := range keys {
			labels[i] = k + "=" + n.GetLabels()[k]
		}
		row(tw, n.GetId(), n.GetAddress(), strings.ToLower(strings.TrimPrefix(n.GetStatus().String(), "NODE_STATUS_")),
			strconv.FormatBool(n.GetDraining()), n.GetDriver(), strconv.Itoa(int(n.GetCpuMhz())),
			strconv.Itoa(int(n.GetMemoryMb())), strings.Join(labels, ","), Time(n.GetLastSeen()))
	}
	return tw.Flush()
}

// Error prints err for people: the message, then for INVALID_ARGUMENT
// every field violation on its own line.
func Error(w io.Writer, err error) {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		msg := err.Error()
		// Usage errors already name the command ("slipctl rollout: ...").
		if !strings.HasPrefix(msg, "slipctl ") && !strings.HasPrefix(msg, "slipctl:") {
			msg = "slipctl: " + msg
		}
		fmt.Fprintln(w, msg)
		return
	}
	st := se.GRPCStatus()
	var vs []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			vs = append(vs, br.GetFieldViolations()...)
		}
	}
	if len(vs) == 0 {
		fmt.Fprintf(w, "slipctl: %s: %s\n", codeName(st.Code()), st.Message())
		return
	}
	fmt.Fprintf(w, "slipctl: %s: %d violation(s):\n", codeName(st.Code()), len(vs))
	for _, v := range vs {
		fmt.Fprintf(w, "  %s: %s\n", v.GetField(), v.GetDescription())
	}
}

// codeName renders a code as words: "invalid argument", "not found".
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

// Since renders the time since t for progress lines.
func Since(now, t time.Time) string {
	return now.Sub(t).Round(time.Second).String()
}

// Progress shows the events of a watched rollout: one plain line per event,
// and on a terminal a progress line kept at the bottom and redrawn. It is
// safe for concurrent use, so a ticker may call Tick while events arrive.
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	now   func() time.Time
	start time.Time
	shown bool
	last  *deployv1.Rollout
	steps int
}

// NewProgress returns a Progress writing to w; live draws the progress line
// (use it only on a terminal); now is the clock.
func NewProgress(w io.Writer, live bool, now func() time.Time) *Progress {
	return &Progress{w: w, live: live, now: now, start: now()}
}

// SetSteps tells p how many steps the rollout has (see Steps), so steps
// show as "step 2/3".
func (p *Progress) SetSteps(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = n
}

// awaitingPromote marks a rollout paused until an operator promotes it.
const awaitingPromote = "awaiting promote"

// EventLine renders one rollout event on one line; steps is the rollout's
// number of steps (see Steps), zero if unknown.
func EventLine(e *deployv1.RolloutEvent, steps int) string {
	parts := []string{
		Time(e.GetAt()),
		fmt.Sprintf("%-10s", orDash(e.GetKind())),
		fmt.Sprintf("%-10s", State(e.GetState())),
		Step(e.GetStep(), steps),
	}
	if e.GetAwaitingPromote() {
		parts = append(parts, awaitingPromote)
	}
	if w := Weights(e.GetWeights()); w != "" {
		parts = append(parts, "weights "+w)
	}
	if h := Healthy(e.GetHealthy()); h != "" {
		parts = append(parts, "healthy "+h)
	}
	if a := e.GetAnalysis(); a != nil {
		parts = append(parts, AnalysisSummary(a)) // the evidence: AnalysisEvidence
	} else if e.GetMessage() != "" {
		parts = append(parts, e.GetMessage())
	}
	return strings.Join(parts, "  ")
}

// ServiceEventLine renders one event of WatchEvents on one line: its
// index (the cursor to resume after), service and rollout, then EventLine.
func ServiceEventLine(r *deployv1.WatchEventsResponse) string {
	e := r.GetEvent()
	return fmt.Sprintf("%-6d %-16s %-20s %s", e.GetIndex(), orDash(r.GetService()), orDash(e.GetRolloutId()), EventLine(e, 0))
}

// Bar renders the new release's share of traffic as a bar 20 cells wide.
func Bar(r *deployv1.Rollout) string {
	pct := int(r.GetWeights()[strconv.FormatUint(r.GetToRelease(), 10)])
	pct = max(0, min(100, pct))
	cells := pct / 5
	return fmt.Sprintf("[%s%s] %3d%% to %s", strings.Repeat("#", cells), strings.Repeat(".", 20-cells), pct, release(r.GetToRelease()))
}

// Event shows one event and the rollout after it.
func (p *Progress) Event(resp *deployv1.WatchRolloutResponse) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintln(p.w, EventLine(resp.GetEvent(), p.steps))
	if a := resp.GetEvent().GetAnalysis(); a != nil {
		fmt.Fprintln(p.w, strings.Join(AnalysisEvidence(a), "\n"))
	}
	if resp.GetRollout() != nil {
		p.last = resp.GetRollout()
	}
	p.draw()
}

// Tick redraws the progress line, so the elapsed time moves between events.
func (p *Progress) Tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		p.clear()
		p.draw()
	}
}

// Note shows a line that is not an event, such as a reconnect.
func (p *Progress) Note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
	p.draw()
}

// Done shows the rollout's final state.
func (p *Progress) Done(r *deployv1.Rollout) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	msg := ""
	if r.GetMessage() != "" {
		msg = ": " + r.GetMessage()
	}
	fmt.Fprintf(p.w, "rollout %s %s after %s%s\n", r.GetId(), State(r.GetState()), Since(p.now(), p.start), msg)
}

func (p *Progress) draw() {
	if !p.live || p.last == nil {
		return
	}
	r := p.last
	state := State(r.GetState())
	if r.GetAwaitingPromote() {
		state += "  " + awaitingPromote
	}
	fmt.Fprintf(p.w, "%s  %s  %s  %s", Bar(r), Step(r.GetStep(), p.steps), state, Since(p.now(), p.start))
	p.shown = true
}

func (p *Progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
