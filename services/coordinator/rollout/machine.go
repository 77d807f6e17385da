package rollout

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Phases used by the machine, shortened.
const (
	phasePending    = deployv1.RolloutState_ROLLOUT_STATE_PENDING
	phaseRunning    = deployv1.RolloutState_ROLLOUT_STATE_RUNNING
	phasePaused     = deployv1.RolloutState_ROLLOUT_STATE_PAUSED
	phaseSucceeded  = deployv1.RolloutState_ROLLOUT_STATE_SUCCEEDED
	phaseFailed     = deployv1.RolloutState_ROLLOUT_STATE_FAILED
	phaseReverted   = deployv1.RolloutState_ROLLOUT_STATE_REVERTED
	phaseAborted    = deployv1.RolloutState_ROLLOUT_STATE_ABORTED
	phaseSuperseded = deployv1.RolloutState_ROLLOUT_STATE_SUPERSEDED
)

// maxTransitions bounds the transitions one Step may take; a rollout has
// far fewer stages than this.
const maxTransitions = 256

// Terminal reports whether a rollout in phase p is final: SUCCEEDED,
// FAILED, REVERTED, ABORTED or SUPERSEDED. A final rollout takes no more
// operator commands and the machine decides no more steps for it (only the
// stops still pending). It is the one predicate for final states, used by
// the machine and the replicated state (package state) alike. UNSPECIFIED
// is not final: it is a State not started yet (Step starts it as PENDING).
func Terminal(p deployv1.RolloutState) bool {
	switch p {
	case phaseSucceeded, phaseFailed, phaseReverted, phaseAborted, phaseSuperseded:
		return true
	}
	return false
}

// Done reports whether the rollout is final and has no stop left to issue;
// the caller may stop calling Step for it.
func Done(s State) bool {
	return Terminal(s.Phase) && len(s.PendingStops) == 0
}

// Step advances the rollout given what the caller observes, and returns the
// next State with the decisions taken. It is a pure function: the same state
// and observation always give the same result. Step runs to a fixed point, so
// stepping the returned State again with the same observation decides
// nothing; every decision is therefore taken exactly once provided the
// caller commits the returned State together with the Plan before acting.
func Step(s State, obs Observation) (State, Plan) {
	r := &run{s: s.clone(), obs: obs, now: obs.Now}
	r.step()
	return r.s, r.plan
}

// Supersede ends an active rollout because a newer Deploy replaces it. The
// new rollout (started with Spec.Generation and Spec.Weights taken from the
// returned State) drains the superseded release's instances itself; pending
// stops of this rollout are dropped so that nothing is stopped behind its
// back.
func Supersede(s State, by string) (State, Plan) {
	if Terminal(s.Phase) {
		return s, Plan{}
	}
	s = s.clone()
	s.Phase = phaseSuperseded
	s.Stage = StageDone
	s.OperatorPaused = false
	s.AwaitingPromote = false
	s.PendingStops = nil
	s.Message = "superseded by " + by
	return s, Plan{Events: []Event{{Kind: "superseded", Message: s.Message}}}
}

// run is one Step in progress.
type run struct {
	s     State
	obs   Observation
	now   time.Time
	plan  Plan
	dirty bool // traffic changed: a new generation is due
	// waitingHook is set when a gate holds the rollout in this Step.
	waitingHook bool
}

func (r *run) step() {
	// Only waitPromote sets it again, when the rollout is still waiting at
	// the end of this Step.
	r.s.AwaitingPromote = false
	r.flush()
	if Terminal(r.s.Phase) {
		r.commands() // recorded as ignored
		return
	}
	defer r.tellHooks(false)
	if r.s.Phase == phasePending || r.s.Phase == deployv1.RolloutState_ROLLOUT_STATE_UNSPECIFIED {
		r.start()
	}
	r.commands()
	if !Terminal(r.s.Phase) && r.s.Stage != StageRestore {
		r.judgeHealth()
	}
	if !Terminal(r.s.Phase) {
		r.drainStrays()
		for range maxTransitions {
			if Terminal(r.s.Phase) || !r.advance() {
				break
			}
		}
	}
	if !r.waitingHook {
		r.s.HookGate, r.s.HookAttempt, r.s.HookRetryAt = "", 0, time.Time{}
	}
	r.finish()
	r.flush()
}

func (r *run) start() {
	r.s.Phase = phaseRunning
	r.s.StartedAt, r.s.ProgressAt, r.s.StepStartedAt = r.now, r.now, r.now
	if len(r.s.PendingStops) > 0 {
		r.dirty = true // the first generation drains the strays it took over
	}
	if r.s.From == 0 {
		r.event("started", "first deploy of #%d: %d instances (%s)", r.s.To, r.s.Count, strategyName(r.s.Config.Strategy))
		return
	}
	r.event("started", "%s #%d -> #%d: %d instances", strategyName(r.s.Config.Strategy), r.s.From, r.s.To, r.s.Count)
	if r.s.FastRollback != "" {
		r.event("promoted", "%s: canary steps, preview and analysis skipped", r.s.FastRollback)
	}
	r.setTraffic(map[uint64]int{r.s.From: 100}, nil)
}

// commands applies the operator commands not applied yet, in Seq order.
func (r *run) commands() {
	cmds := slices.Clone(r.obs.Commands)
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].Seq < cmds[j].Seq })
	for _, c := range cmds {
		if c.Seq <= r.s.LastCommand {
			continue
		}
		r.s.LastCommand = c.Seq
		r.apply(c)
	}
}

func (r *run) apply(c Command) {
	who := c.By
	if who == "" {
		who = "operator"
	}
	if c.Reason != "" {
		who += " (" + c.Reason + ")"
	}
	kind := strings.ToLower(strings.TrimPrefix(c.Kind.String(), "COMMAND_KIND_"))
	if Terminal(r.s.Phase) {
		r.event("ignored", "%s by %s: rollout already %s", kind, who, phaseName(r.s.Phase))
		return
	}
	switch c.Kind {
	case deployv1.CommandKind_COMMAND_KIND_PAUSE:
		switch {
		case r.s.Stage == StageRestore:
			r.event("ignored", "pause by %s: rollback in progress", who)
		case r.s.OperatorPaused:
			r.event("ignored", "pause by %s: already paused", who)
		default:
			r.s.OperatorPaused = true
			r.s.PausedAt = r.now
			r.s.Phase = phasePaused
			r.s.Message = "paused by " + who
			r.event("paused", "paused by %s", who)
		}
	case deployv1.CommandKind_COMMAND_KIND_RESUME:
		if !r.s.OperatorPaused {
			r.event("ignored", "resume by %s: not paused by an operator", who)
			return
		}
		r.unpause()
		r.event("resumed", "resumed by %s", who)
	case deployv1.CommandKind_COMMAND_KIND_PROMOTE:
		if r.s.Stage == StageRestore {
			r.event("ignored", "promote by %s: rollback in progress", who)
			return
		}
		if r.s.Phase == phasePaused {
			// Like a resume, a promote that ends a wait for the operator
			// (a manual step, the final promote, a preview) restarts the
			// progress clock: waiting for a person is no lack of progress,
			// and what the promote places gets a whole progress_deadline.
			r.s.ProgressAt = r.now
		}
		if r.s.OperatorPaused {
			r.unpause()
		}
		if c.Full && r.s.Stage != StageWarm {
			r.s.Promoted = true
			r.event("promoted", "full promotion by %s", who)
		} else {
			r.s.StepPromoted = true
			r.event("promoted", "promoted by %s", who)
		}
	case deployv1.CommandKind_COMMAND_KIND_ABORT:
		r.rollback(phaseAborted, "aborted by "+who)
	default:
		r.event("ignored", "unknown command %d by %s", c.Kind, who)
	}
}

func (r *run) unpause() {
	d := r.now.Sub(r.s.PausedAt)
	r.s.StepStartedAt = r.s.StepStartedAt.Add(d)
	if !r.s.SwitchedAt.IsZero() {
		r.s.SwitchedAt = r.s.SwitchedAt.Add(d)
	}
	r.s.ProgressAt = r.now
	r.s.OperatorPaused = false
	r.s.PausedAt = time.Time{}
	r.s.Phase = phaseRunning
	r.s.Message = ""
}

// judgeHealth records To instances reaching health and fails the rollout on
// an exited instance, one not healthy by healthy_deadline, or one critical
// for longer than the flap tolerance after having been healthy.
func (r *run) judgeHealth() {
	c := r.s.Config
	for _, in := range r.live(r.s.To) {
		if in.Restarts > r.s.Restarts[in.ID] {
			// Restarted in place by its agent: an event, and counted
			// against its health (it must pass for min_healthy_time
			// again, within healthy_deadline or the flap tolerance).
			if r.s.Restarts == nil {
				r.s.Restarts = map[string]int{}
			}
			r.s.Restarts[in.ID] = in.Restarts
			why := ""
			if in.Reason != "" {
				why = ": " + in.Reason
			}
			r.event("restarted", "instance %s of #%d restarted by its agent (restart %d)%s", in.ID, in.Release, in.Restarts, why)
		}
		if in.Progress != "" && in.Progress != r.s.Pulls[in.ID] {
			if r.s.Pulls == nil {
				r.s.Pulls = map[string]string{}
			}
			r.s.Pulls[in.ID] = in.Progress
			r.event("pulling", "instance %s of #%d: %s", in.ID, in.Release, in.Progress)
		}
		ever := contains(r.s.Healthy, in.ID)
		if r.healthyNow(in) && !ever {
			r.s.Healthy = insertSorted(r.s.Healthy, in.ID)
			r.s.ProgressAt = r.now
			r.event("health", "%s healthy (passing for %s)", in.ID, r.now.Sub(in.Since))
			continue
		}
		switch {
		case in.Health == HealthDead && in.Reason != "":
			r.fail(fmt.Sprintf("instance %s of #%d failed: %s", in.ID, in.Release, in.Reason))
		case in.Health == HealthDead:
			r.fail(fmt.Sprintf("instance %s of #%d exited", in.ID, in.Release))
		case !ever && r.now.Sub(in.CreatedAt) > c.HealthyDeadline && in.Reason != "":
			r.fail(fmt.Sprintf("instance %s of #%d not healthy within healthy_deadline %s: %s", in.ID, in.Release, c.HealthyDeadline, in.Reason))
		case !ever && r.now.Sub(in.CreatedAt) > c.HealthyDeadline:
			r.fail(fmt.Sprintf("instance %s of #%d not healthy within healthy_deadline %s", in.ID, in.Release, c.HealthyDeadline))
		case ever && in.Health != HealthPassing && in.Health != HealthUnknown && r.now.Sub(in.Since) > c.FlapTolerance:
			r.fail(fmt.Sprintf("instance %s of #%d %s for %s after being healthy (tolerance %s)", in.ID, in.Release, in.Health, r.now.Sub(in.Since), c.FlapTolerance))
		}
		if Terminal(r.s.Phase) || r.s.Stage == StageRestore {
			return
		}
	}
}

// drainStrays takes instances of releases other than From and To (left by a
// superseded rollout) out of traffic.
func (r *run) drainStrays() {
	var ids []Instance
	for _, in := range r.liveAll() {
		if in.Release != r.s.From && in.Release != r.s.To {
			ids = append(ids, in)
		}
	}
	r.drain(ids)
}

// advance takes one transition of the current stage; it reports whether it
// did (and the loop should try the next one).
func (r *run) advance() bool {
	if r.s.OperatorPaused && r.s.Stage != StageRestore {
		return false
	}
	switch r.s.Stage {
	case StageRestore:
		return r.restore()
	case StageDeploy:
		if !r.s.PreRolloutDone {
			if pass, failed := r.gate(HookPreRollout); !pass {
				return failed
			}
			r.s.PreRolloutDone = true
		}
		if r.s.Ordered[r.s.To] == 0 && r.heldByStrays() {
			// What a superseded rollout left serves until the edges
			// acknowledge a generation without it (drainStrays), and an
			// unowned instance until its agent deregisters it or its node
			// is down: a first batch beside them would have more than
			// count + max_parallel instances serving.
			return r.s.Stage == StageRestore
		}
		if r.s.From == 0 {
			return r.firstDeploy()
		}
		switch r.s.Config.Strategy {
		case deployv1.Strategy_STRATEGY_CANARY:
			return r.canaryStep()
		case deployv1.Strategy_STRATEGY_BLUE_GREEN:
			return r.blueGreenDeploy()
		default:
			if r.s.Config.surgeMode() {
				return r.rollingSurge()
			}
			return r.rollingBatch()
		}
	case StageFinal:
		return r.canaryFinal()
	case StagePreview:
		return r.blueGreenPreview()
	case StageWarm:
		return r.blueGreenWarm()
	}
	return false
}

func (r *run) firstDeploy() bool {
	r.ensure(r.s.To, TrackStable, r.s.Count)
	if !r.waitHealthy(r.s.Count) {
		return false
	}
	r.setTraffic(map[uint64]int{r.s.To: 100}, nil)
	r.succeed(fmt.Sprintf("#%d serving with %d healthy instances", r.s.To, r.s.Count))
	return true
}

// rollingBatch places the next max_parallel instances of To; once they are
// healthy it drains as many of From and moves traffic in proportion.
func (r *run) rollingBatch() bool {
	if r.s.StepApplied {
		// The last batch is judged (rolling.analysis) before the next.
		ok, failed := r.analysed()
		if failed {
			return true
		}
		if !ok {
			return false
		}
		r.s.StepApplied, r.s.StepPassed, r.s.StepPromoted = false, false, false
		r.s.ProgressAt = r.now
	}
	p := r.s.Config.MaxParallel
	k := r.s.Step
	newTarget := min(r.s.Count, (k+1)*p)
	if k > 0 && newTarget > r.s.Ordered[r.s.To] {
		// The rollout hooks gate each batch but the last, with its
		// traffic in force, before the next one is placed.
		if pass, failed := r.gate(HookRollout); !pass {
			return failed
		}
	}
	if newTarget > r.s.Ordered[r.s.To] && (r.pending(r.s.From) > 0 || r.heldByStrays()) {
		// The old instances the last batch drained serve until they are
		// stopped (the edges acknowledged a generation without them), and
		// strays until they are stopped or deregistered: placing the next
		// batch before would have more than count + max_parallel
		// instances serving.
		return r.s.Stage == StageRestore
	}
	if newTarget > r.s.Ordered[r.s.To] && k > 0 && r.s.Config.Stagger > 0 {
		// stagger: the next batch waits this long after the last one
		// became healthy; its wait is no lack of progress.
		if r.now.Before(r.s.StepStartedAt.Add(r.s.Config.Stagger)) {
			return false
		}
		r.s.ProgressAt = r.now
	}
	r.ensure(r.s.To, TrackStable, newTarget)
	if !r.waitHealthy(newTarget) {
		return false
	}
	drainTarget := min(r.s.FromCount, (k+1)*p)
	if newTarget >= r.s.Count {
		drainTarget = r.s.FromCount
	}
	n := drainTarget - r.s.Stopped[r.s.From] - r.pending(r.s.From)
	old := r.live(r.s.From)
	// Unhealthy old instances go first.
	sort.SliceStable(old, func(i, j int) bool { return r.healthyNow(old[i]) != r.healthyNow(old[j]) && !r.healthyNow(old[i]) })
	if n > len(old) {
		n = len(old)
	}
	if n > 0 {
		r.drain(old[:n])
	}
	remaining := r.s.FromCount - drainTarget
	weights := map[uint64]int{r.s.To: 100}
	if total := newTarget + remaining; total > 0 && remaining > 0 {
		w := (100*newTarget + total/2) / total
		weights = map[uint64]int{r.s.To: w, r.s.From: 100 - w}
	}
	r.setTraffic(dropZero(weights), nil)
	batches := (r.s.Count + p - 1) / p
	r.event("step", "batch %d/%d: %d/%d of #%d healthy, weights %s", k+1, max(batches, 1), newTarget, r.s.Count, r.s.To, showWeights(r.s.Weights))
	r.s.ProgressAt, r.s.StepStartedAt = r.now, r.now
	if newTarget >= r.s.Count {
		r.succeed(fmt.Sprintf("#%d serving with %d healthy instances", r.s.To, r.s.Count))
		return true
	}
	r.s.Step++
	if r.s.Config.Analysis != nil {
		r.startAnalysis()
	}
	return true
}

// rollingSurge runs a rolling update bounded by max_surge and
// max_unavailable (Kubernetes' and Argo Rollouts' semantics, resolved
// against Count): at most Count+surge instances exist at any time (new
// ones ordered, old ones serving, old ones drained and not stopped yet),
// and old instances are drained only while at least Count-unavailable
// healthy instances remain routed. Old instances whose check is not
// passing go first and freely (they serve nothing). New instances are
// placed in batches: a batch is placed once every instance ordered before
// is healthy and, from the second on, Stagger after the last one became
// healthy. Step counts the batches placed; StepApplied is set once the
// current batch is healthy, at StepStartedAt. Weights follow the healthy
// new instances against the old ones still routed.
func (r *run) rollingSurge() bool {
	n := r.s.Count
	surge, unavailable := r.s.Config.Bounds(n)
	progressed := false
	ordered := r.s.Ordered[r.s.To]
	healthyNew := r.countHealthy(r.s.To)
	if r.s.Step > 0 && !r.s.StepApplied && healthyNew >= ordered {
		r.s.StepApplied = true
		r.s.StepStartedAt, r.s.ProgressAt = r.now, r.now
		r.event("step", "batch %d: %d/%d of #%d healthy", r.s.Step, healthyNew, n, r.s.To)
		if r.s.Config.Analysis != nil && ordered < n {
			// rolling.analysis judges this batch's traffic (the new
			// instances against the old ones still serving, in the same
			// window) from now until the next batch.
			r.startAnalysis()
		}
		progressed = true
	}
	var sick, fine []Instance
	for _, in := range r.live(r.s.From) {
		if in.Health == HealthPassing {
			fine = append(fine, in)
		} else {
			sick = append(sick, in)
		}
	}
	drain := sick
	switch budget := len(fine) + min(healthyNew, n) - (n - unavailable); {
	case healthyNew >= n:
		drain = append(drain, fine...)
	case budget > 0:
		drain = append(drain, fine[:min(budget, len(fine))]...)
	}
	if len(drain) > 0 {
		r.drain(drain)
		progressed = true
	}
	routed := len(fine) + len(sick) - len(drain)
	weights := map[uint64]int{r.s.To: 100}
	if nh := min(healthyNew, n); routed > 0 && nh == 0 {
		weights = map[uint64]int{r.s.From: 100}
	} else if routed > 0 {
		w := (100*nh + (nh+routed)/2) / (nh + routed)
		weights = map[uint64]int{r.s.To: w, r.s.From: 100 - w}
	}
	r.setTraffic(dropZero(weights), nil)
	if healthyNew >= n && routed == 0 {
		r.s.ProgressAt = r.now
		r.succeed(fmt.Sprintf("#%d serving with %d healthy instances", r.s.To, n))
		return true
	}
	if r.s.Step == 0 || r.s.StepApplied {
		if r.s.Step > 0 && ordered < n {
			// The batch is judged (rolling.analysis) before the next.
			ok, failed := r.analysed()
			if failed {
				return true
			}
			if !ok {
				return progressed
			}
		}
		if r.s.Step > 0 && r.now.Before(r.s.StepStartedAt.Add(r.s.Config.Stagger)) {
			return progressed
		}
		if r.s.Step > 0 && ordered < n {
			// The rollout hooks gate each batch but the last (see
			// rollingBatch).
			if pass, failed := r.gate(HookRollout); !pass {
				return progressed || failed
			}
		}
		// Strays that may still serve take room too.
		strays := r.strays()
		room := n + surge - (routed + r.pending(r.s.From) + ordered + strays)
		if ordered < n && room <= 0 && room+strays > 0 && r.heldByStrays() && r.s.Stage != StageDeploy {
			return true // failed at progress_deadline
		}
		if k := min(n-ordered, room); k > 0 {
			r.ensure(r.s.To, TrackStable, ordered+k)
			r.s.Step++
			r.s.StepApplied, r.s.StepPassed, r.s.StepPromoted = false, false, false
			r.s.ProgressAt = r.now
			return true
		}
	}
	if !progressed && healthyNew < ordered {
		r.waitHealthy(ordered)
	}
	return progressed
}

// canaryStep runs step Step: enough instances for its weight, healthy, then
// the weight, then its pause.
func (r *run) canaryStep() bool {
	steps := r.s.Config.Steps
	if r.s.Promoted || r.s.Step >= len(steps) {
		r.s.Stage, r.s.Step, r.s.StepApplied = StageFinal, len(steps), false
		r.s.ProgressAt = r.now // a full promote out of a long timed pause
		return true
	}
	st := steps[r.s.Step]
	target := canaryCount(r.s.Count, st.Weight)
	if target > r.s.Ordered[r.s.To] && r.heldByStrays() {
		return r.s.Stage == StageRestore // the step's new instances wait for the strays to go
	}
	r.ensure(r.s.To, TrackCanary, target)
	if !r.s.StepApplied {
		if !r.waitHealthy(target) {
			return false
		}
		if st.Weight == 100 {
			// all traffic to the new release: the promotion
			if pass, _ := r.gate(HookConfirmPromotion); !pass {
				return false
			}
		}
		r.setTraffic(dropZero(map[uint64]int{r.s.To: st.Weight, r.s.From: 100 - st.Weight}), r.headerPins())
		r.s.StepApplied = true
		r.s.StepStartedAt, r.s.ProgressAt = r.now, r.now
		r.s.AnalysisFrom, r.s.StepPassed = r.now, false
		r.event("step", "step %d/%d: #%d at %d%% with %d instances", r.s.Step+1, len(steps), r.s.To, st.Weight, target)
	}
	if st.Analysis != nil && r.judge(*st.Analysis) {
		return true // the rollout failed
	}
	if !r.s.StepPromoted && !r.s.Promoted {
		if pass, failed := r.gate(HookRollout); !pass {
			return failed
		}
	}
	switch {
	case st.Manual && !r.s.StepPromoted:
		return r.waitPromote(fmt.Sprintf("step %d/%d (#%d at %d%%) waits for promote", r.s.Step+1, len(steps), r.s.To, st.Weight))
	case !r.s.StepPromoted && r.now.Before(r.s.StepStartedAt.Add(st.Pause)):
		return false
	case !r.s.StepPromoted && st.Analysis != nil && !r.s.StepPassed:
		return false // waits for a passing verdict
	}
	r.running()
	r.s.Step++
	r.s.StepApplied, r.s.StepPromoted = false, false
	r.s.StepPassed = false
	r.s.ProgressAt = r.now
	return true
}

// headerPins are the canary's header routes as pins to To (nil without
// any).
func (r *run) headerPins() []Pin {
	var pins []Pin
	for _, h := range r.s.Config.HeaderRoutes {
		pins = append(pins, Pin{Header: h.Header, Cookie: h.Cookie, Value: h.Value, Release: r.s.To})
	}
	return pins
}

// canaryFinal brings To to full count and all traffic, then drains From.
func (r *run) canaryFinal() bool {
	steps := r.s.Config.Steps
	last := steps[len(steps)-1]
	if !(last.Weight == 100 || last.Manual || r.s.Config.AutoPromote || r.s.Promoted || r.s.StepPromoted) {
		return r.waitPromote(fmt.Sprintf("all steps done (#%d at %d%%); waits for promote", r.s.To, last.Weight))
	}
	if last.Weight < 100 { // else confirmed before the last step's weight
		if pass, _ := r.gate(HookConfirmPromotion); !pass {
			r.running()
			return false
		}
	}
	r.running()
	if r.s.Count > r.s.Ordered[r.s.To] && r.heldByStrays() {
		return r.s.Stage == StageRestore
	}
	r.ensure(r.s.To, TrackCanary, r.s.Count)
	if !r.waitHealthy(r.s.Count) {
		return false
	}
	r.setTraffic(map[uint64]int{r.s.To: 100}, nil)
	r.drain(r.live(r.s.From))
	r.succeed(fmt.Sprintf("#%d at 100%% with %d healthy instances", r.s.To, r.s.Count))
	return true
}

func (r *run) blueGreenDeploy() bool {
	if r.s.Count > r.s.Ordered[r.s.To] && r.heldByStrays() {
		return r.s.Stage == StageRestore
	}
	r.ensure(r.s.To, TrackPreview, r.s.Count)
	if !r.waitHealthy(r.s.Count) {
		return false
	}
	h := r.s.Config.PreviewHeader
	r.setTraffic(map[uint64]int{r.s.From: 100}, []Pin{{Header: h, Release: r.s.To}})
	r.s.Stage, r.s.Step = StagePreview, 1
	r.s.ProgressAt, r.s.StepStartedAt = r.now, r.now
	r.event("step", "#%d healthy with %d instances; preview with header %s", r.s.To, r.s.Count, h)
	if r.s.Config.Analysis != nil {
		r.startAnalysis() // judged on the preview's traffic
	}
	return true
}

func (r *run) blueGreenPreview() bool {
	ok, failed := r.analysed()
	if failed {
		return true
	}
	if !(r.s.Config.AutoPromote || r.s.Promoted || r.s.StepPromoted) {
		return r.waitPromote(fmt.Sprintf("#%d in preview; waits for promote", r.s.To))
	}
	if !ok {
		return false // auto_promote: the switch waits for a passing verdict
	}
	if pass, _ := r.gate(HookConfirmPromotion); !pass {
		r.running()
		return false
	}
	r.running()
	r.s.StepPromoted, r.s.StepApplied, r.s.StepPassed = false, false, false
	r.setTraffic(map[uint64]int{r.s.To: 100}, nil)
	r.s.SwitchedAt = r.now
	r.s.Stage, r.s.Step = StageWarm, 2
	r.s.ProgressAt, r.s.StepStartedAt = r.now, r.now
	r.event("step", "switched all traffic to #%d; #%d kept warm for %s", r.s.To, r.s.From, r.s.Config.ScaleDownDelay)
	return true
}

func (r *run) blueGreenWarm() bool {
	if !r.s.StepPromoted && r.now.Before(r.s.SwitchedAt.Add(r.s.Config.ScaleDownDelay)) {
		return false
	}
	r.s.StepPromoted = false
	r.drain(r.live(r.s.From))
	r.succeed(fmt.Sprintf("#%d serving all traffic; #%d scaled down", r.s.To, r.s.From))
	return true
}

// fail handles a failed release: revert when asked and possible, else stop
// where it is.
func (r *run) fail(reason string) {
	if !r.s.Config.AutoRevert || r.s.From == 0 {
		r.cancelPlacements(0) // stop where it is: nothing more starts
	}
	if r.s.Config.AutoRevert && r.s.From != 0 {
		r.event("failed", "%s; reverting to #%d", reason, r.s.From)
		r.rollback(phaseReverted, "reverted to v"+fmt.Sprint(r.s.From)+": "+reason)
		return
	}
	if r.s.Config.AutoRevert {
		reason += " (no previous release to revert to)"
	}
	r.s.Phase, r.s.Stage, r.s.Message = phaseFailed, StageDone, reason
	r.s.OperatorPaused = false
	r.event("failed", "%s", reason)
}

// rollback returns all traffic to From: at once when every From instance is
// still running, after replacing the stopped ones otherwise (rolling).
func (r *run) rollback(outcome deployv1.RolloutState, msg string) {
	r.s.OperatorPaused = false
	r.cancelPlacements(r.s.From)
	if r.s.From == 0 {
		r.setTraffic(map[uint64]int{}, nil)
		r.drain(r.liveAll())
		r.end(outcome, msg)
		return
	}
	// Old instances drained but not stopped yet are kept (strays, drained
	// before this rollout, stay drained).
	kept := r.s.PendingStops[:0:0]
	for _, ps := range r.s.PendingStops {
		if ps.Release != r.s.From || ps.Stray {
			kept = append(kept, ps)
		} else {
			r.dirty = true
		}
	}
	r.s.PendingStops = nilIfEmpty(kept)
	if missing := r.s.Stopped[r.s.From] - r.s.Ordered[r.s.From]; missing > 0 {
		r.s.Stage, r.s.Outcome, r.s.Message = StageRestore, outcome, msg
		r.s.Phase = phaseRunning
		r.s.RestoreStartedAt = r.now
		r.event("restoring", "%s: restoring %d stopped instances of #%d, %d at a time, before moving traffic back", msg, missing, r.s.From, max(r.s.Config.MaxParallel, 1))
		r.restoreBatch()
		return
	}
	r.finishRollback(outcome, msg)
}

// cancelPlacements withdraws the placements this Step decided for any
// release but keep, before the rollout ends or rolls back in the same Step:
// they are not committed yet, so nothing was started, and once the rollout
// is over nothing would drain them (their instances are not observed before
// the plan is committed).
func (r *run) cancelPlacements(keep uint64) {
	kept := r.plan.Place[:0:0]
	for _, p := range r.plan.Place {
		if p.Release == keep {
			kept = append(kept, p)
			continue
		}
		r.s.Ordered[p.Release] -= p.Count
		r.event("unplaced", "#%d x%d withdrawn before it started", p.Release, p.Count)
	}
	r.plan.Place = nilIfEmpty(kept)
}

// restore is StageRestore: the stopped instances of From come back
// max_parallel at a time, like a rolling update in reverse, so that no more
// than count + max_parallel instances serve. As From instances become
// healthy as many To instances are drained (the ones not healthy first) and
// traffic moves in proportion; the next batch is placed once the drained
// ones are stopped. Once FromCount instances of From are healthy all traffic
// returns to From.
func (r *run) restore() bool {
	if r.countHealthy(r.s.From) >= r.s.FromCount {
		r.finishRollback(r.s.Outcome, r.s.Message)
		return true
	}
	if r.now.Sub(r.s.RestoreStartedAt) > r.s.Config.HealthyDeadline {
		msg := fmt.Sprintf("%s; rollback failed: %d/%d instances of #%d healthy within healthy_deadline %s",
			r.s.Message, r.countHealthy(r.s.From), r.s.FromCount, r.s.From, r.s.Config.HealthyDeadline)
		r.s.Phase, r.s.Stage, r.s.Message = phaseFailed, StageDone, msg
		r.event("failed", "%s", msg)
		return false
	}
	r.restoreBatch()
	return false
}

// restoreBatch drains the To instances the healthy From instances make
// unnecessary, moves traffic in proportion and, once no drained To
// instance still serves, places the next batch of From.
func (r *run) restoreBatch() {
	from, to := r.s.From, r.s.To
	healthy := r.countHealthy(from)
	keep := max(r.s.FromCount-healthy, 0)
	cur := r.live(to)
	if excess := len(cur) - keep; excess > 0 {
		// Unhealthy ones go first (they carry no traffic), then the
		// oldest ids.
		sort.SliceStable(cur, func(i, j int) bool { return !r.healthyNow(cur[i]) && r.healthyNow(cur[j]) })
		r.drain(cur[:excess])
		cur = cur[excess:]
	}
	weights := map[uint64]int{from: 100}
	if total := healthy + len(cur); len(cur) > 0 && total > 0 {
		w := (100*len(cur) + total/2) / total
		weights = dropZero(map[uint64]int{to: w, from: 100 - w})
	}
	r.setTraffic(weights, nil)
	if r.pending(to) > 0 || r.strays() > 0 {
		return // drained instances serve until they are stopped
	}
	p := max(r.s.Config.MaxParallel, 1)
	// From instances not healthy yet: the ones ordered (observed or not:
	// this Step's placements are not) and the ones never stopped.
	starting := max(r.s.FromCount-r.s.Stopped[from]+r.s.Ordered[from]-healthy, 0)
	missing := r.s.Stopped[from] - r.s.Ordered[from]
	if n := min(missing, p-starting); n > 0 {
		r.ensure(from, TrackStable, r.s.Ordered[from]+n)
		r.s.RestoreStartedAt = r.now // each batch gets healthy_deadline
	}
}

func (r *run) finishRollback(outcome deployv1.RolloutState, msg string) {
	r.setTraffic(map[uint64]int{r.s.From: 100}, nil)
	var out []Instance
	for _, in := range r.liveAll() {
		if in.Release != r.s.From {
			out = append(out, in)
		}
	}
	r.drain(out)
	r.end(outcome, msg)
}

func (r *run) end(outcome deployv1.RolloutState, msg string) {
	r.s.Phase, r.s.Stage, r.s.Message = outcome, StageDone, msg
	r.event(phaseName(outcome), "%s", msg)
}

func (r *run) succeed(msg string) {
	r.s.Phase, r.s.Stage, r.s.Message = phaseSucceeded, StageDone, msg
	r.event("succeeded", "%s", msg)
}

// waitPromote parks the rollout in PAUSED until a promote command, marking
// it AwaitingPromote.
func (r *run) waitPromote(msg string) bool {
	if r.s.Phase != phasePaused {
		r.s.Phase, r.s.Message = phasePaused, msg
		r.event("paused", "%s", msg)
	}
	r.s.AwaitingPromote = true
	return false
}

// running leaves a promote-wait pause.
func (r *run) running() {
	r.s.AwaitingPromote = false
	if r.s.Phase == phasePaused && !r.s.OperatorPaused {
		r.s.Phase, r.s.Message = phaseRunning, ""
	}
}

// waitHealthy reports whether target instances of To are healthy; while
// they are not, it fails the rollout once progress_deadline has passed
// without progress.
func (r *run) waitHealthy(target int) bool {
	n := r.countHealthy(r.s.To)
	if n >= target {
		return true
	}
	if d := r.s.Config.ProgressDeadline; r.now.Sub(r.s.ProgressAt) > d {
		r.fail(fmt.Sprintf("no progress within progress_deadline %s: %d/%d instances of #%d healthy", d, n, target, r.s.To))
	}
	return false
}

// heldByStrays reports whether strays may still serve (see strays), so
// that new instances placed now could make more than count + max_parallel
// serve. The wait is bounded: the caller lists no stray past its node's
// grace, and a rollout held for progress_deadline without progress fails
// (reverting where it may) rather than wait for ever.
func (r *run) heldByStrays() bool {
	n := r.strays()
	if n == 0 {
		return false
	}
	if d := r.s.Config.ProgressDeadline; r.now.Sub(r.s.ProgressAt) > d {
		r.fail(fmt.Sprintf("no progress within progress_deadline %s: %d instances outside the rollout still serve", d, n))
	}
	return true
}

// ensure orders instances of release until target were ordered in all.
func (r *run) ensure(release uint64, track string, target int) {
	if n := target - r.s.Ordered[release]; n > 0 {
		r.plan.Place = append(r.plan.Place, Placement{Release: release, Track: track, Count: n})
		if r.s.Ordered == nil {
			r.s.Ordered = map[uint64]int{}
		}
		r.s.Ordered[release] = target
		r.event("placed", "#%d x%d on track %s", release, n, track)
	}
}

func (r *run) setTraffic(w map[uint64]int, pins []Pin) {
	if maps.Equal(w, r.s.Weights) && slices.Equal(pins, r.s.Pins) {
		return
	}
	r.s.Weights, r.s.Pins = w, pins
	r.dirty = true
}

// drain takes instances out of traffic; they are stopped once the next
// generation is acknowledged.
func (r *run) drain(ins []Instance) {
	for _, in := range ins {
		if r.isPending(in.ID) || contains(r.s.StoppedIDs, in.ID) {
			continue
		}
		r.s.PendingStops = append(r.s.PendingStops, PendingStop{ID: in.ID, Release: in.Release})
		r.dirty = true
	}
	sort.Slice(r.s.PendingStops, func(i, j int) bool { return r.s.PendingStops[i].ID < r.s.PendingStops[j].ID })
}

// finish issues the new traffic generation if anything changed.
func (r *run) finish() {
	if !r.dirty {
		return
	}
	r.s.Generation++
	drain := []string{}
	for i := range r.s.PendingStops {
		if r.s.PendingStops[i].After == 0 {
			r.s.PendingStops[i].After = r.s.Generation
		}
		drain = append(drain, r.s.PendingStops[i].ID)
	}
	r.plan.Traffic = &Traffic{
		Generation: r.s.Generation,
		Weights:    copyWeights(r.s.Weights),
		Pins:       slices.Clone(r.s.Pins),
		Drain:      drain,
	}
	r.event("traffic", "generation %d: %s%s", r.s.Generation, showWeights(r.s.Weights), formatPins(r.s.Pins))
}

// flush stops drained instances whose generation the edges acknowledged.
// A drained instance that is no longer observed (its node went away) counts
// as stopped without a stop decision.
func (r *run) flush() {
	observed := make(map[string]bool, len(r.obs.Instances))
	for _, in := range r.obs.Instances {
		observed[in.ID] = true
	}
	// A stopped instance is remembered only while it is still observed
	// (until the entry that stops it is committed and it leaves the
	// state): the state does not grow with every instance ever stopped.
	if len(r.s.StoppedIDs) > 0 {
		still := r.s.StoppedIDs[:0:0]
		for _, id := range r.s.StoppedIDs {
			if observed[id] {
				still = append(still, id)
			}
		}
		r.s.StoppedIDs = nilIfEmpty(still)
	}
	var stop, gone []string
	kept := r.s.PendingStops[:0:0]
	for _, ps := range r.s.PendingStops {
		switch {
		case !observed[ps.ID]:
			gone = append(gone, ps.ID)
		case ps.After != 0 && ps.After <= r.obs.AckedGeneration:
			stop = append(stop, ps.ID)
		default:
			kept = append(kept, ps)
			continue
		}
		if !ps.Stray {
			if r.s.Stopped == nil {
				r.s.Stopped = map[uint64]int{}
			}
			r.s.Stopped[ps.Release]++
		}
		r.s.StoppedIDs = insertSorted(r.s.StoppedIDs, ps.ID)
	}
	if len(stop)+len(gone) == 0 {
		return
	}
	r.s.PendingStops = nilIfEmpty(kept)
	if len(gone) > 0 {
		r.event("gone", "%s no longer running; nothing to stop", strings.Join(gone, " "))
	}
	if len(stop) > 0 {
		sort.Strings(stop)
		r.plan.Stop = append(r.plan.Stop, stop...)
		r.event("stopped", "%s (generation %d acknowledged)", strings.Join(stop, " "), r.obs.AckedGeneration)
	}
}

func (r *run) event(kind, format string, args ...any) {
	r.plan.Events = append(r.plan.Events, Event{Kind: kind, Message: fmt.Sprintf(format, args...)})
}

// liveAll returns the observed instances neither stopped nor pending a
// stop, sorted by id.
func (r *run) liveAll() []Instance {
	var out []Instance
	for _, in := range r.obs.Instances {
		if contains(r.s.StoppedIDs, in.ID) || r.isPending(in.ID) {
			continue
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r *run) live(release uint64) []Instance {
	var out []Instance
	for _, in := range r.liveAll() {
		if in.Release == release {
			out = append(out, in)
		}
	}
	return out
}

func (r *run) healthyNow(in Instance) bool {
	return in.Health == HealthPassing && !r.now.Before(in.Since.Add(r.s.Config.MinHealthyTime))
}

func (r *run) countHealthy(release uint64) int {
	n := 0
	for _, in := range r.live(release) {
		if r.healthyNow(in) {
			n++
		}
	}
	return n
}

// pending counts the instances of release this rollout drained that are not
// stopped yet (strays excluded).
func (r *run) pending(release uint64) int {
	n := 0
	for _, ps := range r.s.PendingStops {
		if ps.Release == release && !ps.Stray {
			n++
		}
	}
	return n
}

// strays counts the instances this rollout does not count as its own
// that may still serve: the drained instances not stopped yet that a
// superseded rollout left (the ones it had drained, Spec.Draining, and the
// ones of releases other than From and To), and the unowned instances
// their agents still run registered (Observation.Unowned). Only passing
// ones count: an instance whose check is not passing is not in Consul's
// passing set, so no edge routes to it (its agent may also have stopped it
// already), and waiting for the edges to acknowledge its drain would hold
// the rollout on an edge that does not apply the generation.
func (r *run) strays() int {
	passing := map[string]bool{}
	for _, in := range r.obs.Instances {
		if in.Health == HealthPassing {
			passing[in.ID] = true
		}
	}
	n := 0
	for _, ps := range r.s.PendingStops {
		if !passing[ps.ID] {
			continue
		}
		if ps.Stray || ps.Release != r.s.From && ps.Release != r.s.To {
			n++
		}
	}
	seen := map[string]bool{}
	for _, in := range r.obs.Unowned {
		if in.Health != HealthPassing || seen[in.ID] || r.observed(in.ID) {
			continue
		}
		seen[in.ID] = true
		n++
	}
	return n
}

// observed reports whether id is one of the service's allocations (a
// caller listing it as unowned too is ignored there).
func (r *run) observed(id string) bool {
	for _, in := range r.obs.Instances {
		if in.ID == id {
			return true
		}
	}
	return false
}

func (r *run) isPending(id string) bool {
	for _, ps := range r.s.PendingStops {
		if ps.ID == id {
			return true
		}
	}
	return false
}

// canaryCount is the number of instances a canary needs for weight percent
// of traffic: in proportion, at least one.
func canaryCount(count, weight int) int {
	if weight <= 0 || count == 0 {
		return 0
	}
	return max(1, (count*weight+99)/100)
}

func (s State) clone() State {
	c := s
	c.Config.Steps = slices.Clone(s.Config.Steps)
	c.Ordered = maps.Clone(s.Ordered)
	c.Stopped = maps.Clone(s.Stopped)
	c.StoppedIDs = slices.Clone(s.StoppedIDs)
	c.Healthy = slices.Clone(s.Healthy)
	c.Weights = copyWeights(s.Weights)
	c.Pins = slices.Clone(s.Pins)
	c.PendingStops = slices.Clone(s.PendingStops)
	c.Restarts = maps.Clone(s.Restarts)
	c.Pulls = maps.Clone(s.Pulls)
	return c
}

func copyWeights(w map[uint64]int) map[uint64]int {
	if w == nil {
		return nil
	}
	return maps.Clone(w)
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func dropZero(w map[uint64]int) map[uint64]int {
	for k, v := range w {
		if v == 0 {
			delete(w, k)
		}
	}
	return w
}

func contains(sorted []string, id string) bool {
	_, ok := slices.BinarySearch(sorted, id)
	return ok
}

func insertSorted(sorted []string, id string) []string {
	i, ok := slices.BinarySearch(sorted, id)
	if ok {
		return sorted
	}
	return slices.Insert(sorted, i, id)
}

// showWeights renders weights for event messages, releases named as
// everywhere people read them: "#1=90 #2=10".
func showWeights(w map[uint64]int) string {
	return strings.ReplaceAll(" "+formatWeights(w), " v", " #")[1:]
}

// formatWeights renders weights in the scripts' form, "v1=90 v2=10".
func formatWeights(w map[uint64]int) string {
	keys := slices.Sorted(maps.Keys(w))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("v%d=%d", k, w[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func formatPins(pins []Pin) string {
	var b strings.Builder
	for _, p := range pins {
		fmt.Fprintf(&b, " pin %s->#%d", p.match(), p.Release)
	}
	return b.String()
}

func strategyName(s deployv1.Strategy) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STRATEGY_"))
}

func phaseName(p deployv1.RolloutState) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "ROLLOUT_STATE_"))
}

// match names what a pin matches: "X-Canary", "X-Canary=on", "cookie:beta".
func (p Pin) match() string {
	m := p.Header
	if p.Cookie != "" {
		m = "cookie:" + p.Cookie
	}
	if p.Value != "" {
		m += "=" + p.Value
	}
	return m
}
