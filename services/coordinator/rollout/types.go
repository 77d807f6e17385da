package rollout

import (
	"time"

	"slipway.dev/coordinator/analysis"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// Tracks label the instances a rollout places (the catalog's "track=" tag).
const (
	// TrackStable is the track of instances placed by a first deploy, a
	// rolling update or a rollback that restores the stable release.
	TrackStable = "stable"
	// TrackCanary is the track of a canary release's instances.
	TrackCanary = "canary"
	// TrackPreview is the track of a blue/green rollout's new colour.
	TrackPreview = "preview"
)

// Stage is where a rollout is inside its strategy; together with State.Step
// it says exactly what the machine waits for.
type Stage string

// Stages of a rollout.
const (
	// StageDeploy places the new release and waits for it to be healthy
	// (first deploys, rolling batches, canary steps, the blue/green colour).
	StageDeploy Stage = "deploy"
	// StageFinal is a canary's last stage: full count, all traffic, old
	// release drained.
	StageFinal Stage = "final"
	// StagePreview is a blue/green rollout's new colour healthy and reachable
	// by the preview header, waiting for promotion.
	StagePreview Stage = "preview"
	// StageWarm is a blue/green rollout after the switch, the old colour kept
	// running for scale_down_delay.
	StageWarm Stage = "warm"
	// StageRestore replaces stopped instances of the stable release before
	// traffic returns to it (rolling revert or abort).
	StageRestore Stage = "restore"
	// StageDone is a final state; only pending stops remain to be issued.
	StageDone Stage = "done"
)

// Health is what the caller observed of one instance.
type Health string

// Instance health values.
const (
	// HealthStarting: allocated, no check result yet.
	HealthStarting Health = "starting"
	// HealthUnknown: its agent has not reported it (yet) to this leader:
	// after a leader change, or while its node's first report is on its
	// way. Not passing, so not counted healthy; but not judged either: an
	// instance that was healthy does not fail the rollout for being
	// unknown, however long (its node going down replaces it; the
	// progress deadline bounds the wait).
	HealthUnknown Health = "unknown"
	// HealthPassing: container running and its check passing.
	HealthPassing Health = "passing"
	// HealthCritical: the check is failing.
	HealthCritical Health = "critical"
	// HealthDead: the container exited and will not come back.
	HealthDead Health = "dead"
)

// CanaryStep is one weighted step of a canary rollout.
type CanaryStep struct {
	// Weight is the traffic percentage of the new release, 0-100.
	Weight int `json:"Weight"`
	// Pause holds the step this long once its weight is applied.
	Pause time.Duration `json:"Pause"`
	// Manual holds the step until an operator promotes.
	Manual bool `json:"Manual"`
	// Analysis judges the step from the edges' golden signals; nil: none.
	Analysis *analysis.Config `json:"Analysis,omitempty"`
}

// Config is a rollout's update strategy with every default applied.
type Config struct {
	// Strategy is rolling, blue/green or canary.
	Strategy deployv1.Strategy `json:"Strategy"`
	// MaxParallel is how many instances a rolling batch replaces.
	MaxParallel int `json:"MaxParallel"`
	// MinHealthyTime is how long a check must pass continuously before an
	// instance counts as healthy.
	MinHealthyTime time.Duration `json:"MinHealthyTime"`
	// HealthyDeadline fails an instance that is not healthy this long after
	// it was created.
	HealthyDeadline time.Duration `json:"HealthyDeadline"`
	// ProgressDeadline fails a rollout that waits this long for instances
	// without any becoming healthy.
	ProgressDeadline time.Duration `json:"ProgressDeadline"`
	// FlapTolerance is how long an instance that was healthy may be critical
	// before the rollout fails (hysteresis against flapping checks).
	FlapTolerance time.Duration `json:"FlapTolerance"`
	// AutoRevert returns traffic to the previous release on failure.
	AutoRevert bool `json:"AutoRevert"`
	// AutoPromote finishes blue/green and canary rollouts without an
	// operator.
	AutoPromote bool `json:"AutoPromote"`
	// ScaleDownDelay keeps the old blue/green colour running after the
	// switch.
	ScaleDownDelay time.Duration `json:"ScaleDownDelay"`
	// Steps are the canary steps.
	Steps []CanaryStep `json:"Steps"`
	// PreviewHeader routes requests carrying it to the new blue/green colour.
	PreviewHeader string `json:"PreviewHeader"`
	// MaxSurge and MaxUnavailable bound a rolling update as the spec
	// writes them ("2", "25%"; spec.SurgeBounds resolves them against
	// Count). When either is set the update runs by them and MaxParallel
	// is 0; when both are empty (every state committed before they
	// existed) it runs max_parallel batches as before.
	MaxSurge       string `json:"MaxSurge,omitempty"`
	MaxUnavailable string `json:"MaxUnavailable,omitempty"`
	// Stagger is the least wait between a rolling batch becoming healthy
	// and the next batch's placement.
	Stagger time.Duration `json:"Stagger,omitempty"`
	// HeaderRoutes are pinned to the canary release during its steps.
	HeaderRoutes []HeaderRoute `json:"HeaderRoutes,omitempty"`
	// Hooks are the rollout's HTTP hooks (see HookPoint).
	Hooks []Hook `json:"Hooks,omitempty"`
	// Analysis judges a blue/green preview (before the switch) or each
	// rolling batch but the last (before the next); nil: none. Canary steps
	// carry their own (CanaryStep.Analysis).
	Analysis *analysis.Config `json:"Analysis,omitempty"`
}

// Spec describes the rollout to start.
type Spec struct {
	// Service is the service name.
	Service string
	// From is the stable release being replaced, zero for a first deploy.
	From uint64
	// FromCount is how many instances of From run now.
	FromCount int
	// To is the release being rolled out.
	To uint64
	// Count is the desired number of instances of To.
	Count int
	// Config is the update strategy (see ConfigFromSpec).
	Config Config
	// Generation is the last traffic generation issued for the service, so
	// that generations keep increasing across rollouts.
	Generation uint64
	// Weights and Pins are the traffic currently in force for the service.
	Weights map[uint64]int
	// Pins are the pins currently in force.
	Pins []Pin
	// FastRollback, when set, says why this rollout is a rollback within
	// the rollback window (e.g. "rollback to #3 within rollback_window 3"):
	// it runs as if fully promoted from the start, skipping the canary
	// steps, the blue/green preview and every analysis, so nothing waits for
	// an operator or a verdict.
	FastRollback string
	// Draining are the service's instances out of traffic and not stopped
	// yet when the rollout starts (ID and Release; After is ignored): the
	// ones a superseded rollout drained. They still serve until the edges
	// acknowledge a generation without them, so the new rollout takes them
	// over as strays: it stops them after its first generation is
	// acknowledged and places nothing before (see State.PendingStops).
	Draining []PendingStop
}

// Pin routes requests carrying Header (or Cookie) to Release: with any
// value when Value is empty, else with exactly Value.
type Pin struct {
	// Header is the HTTP header name.
	Header string `json:"Header"`
	// Release is the release it selects.
	Release uint64 `json:"Release"`
	// Cookie is the cookie name, instead of Header.
	Cookie string `json:"Cookie,omitempty"`
	// Value is the value to match; empty matches any.
	Value string `json:"Value,omitempty"`
}

// HeaderRoute sends the requests matching it to the canary during its
// steps (a Pin to the new release).
type HeaderRoute struct {
	// Header or Cookie names what to match.
	Header string `json:"Header,omitempty"`
	Cookie string `json:"Cookie,omitempty"`
	// Value is the value to match; empty matches any.
	Value string `json:"Value,omitempty"`
}

// PendingStop is an instance taken out of traffic, to be stopped once the
// edges have acknowledged generation After.
type PendingStop struct {
	// ID is the allocation id.
	ID string `json:"ID"`
	// Release is its release.
	Release uint64 `json:"Release"`
	// After is the traffic generation that no longer routes to it.
	After uint64 `json:"After"`
	// Stray marks an instance drained before this rollout began
	// (Spec.Draining): it is none of the instances the rollout counts, so
	// its stop is not counted in Stopped.
	Stray bool `json:"Stray,omitempty"`
}

// State is the whole persistent state of one rollout. It is a plain value:
// the leader commits it through raft (encoding/json is deterministic for it)
// and a new leader resumes from the last committed State. Its JSON is part
// of the replicated log format: every field (here and in the types it
// holds) names its key in a tag, so a Go rename keeps the format; a golden
// test (testdata/golden) checks that states written before still decode.
type State struct {
	// Service is the service name.
	Service string `json:"Service"`
	// From and To are the stable and new releases.
	From uint64 `json:"From"`
	To   uint64 `json:"To"`
	// FromCount and Count are the instance counts of From and To.
	FromCount int `json:"FromCount"`
	Count     int `json:"Count"`
	// Config is the update strategy.
	Config Config `json:"Config"`
	// Phase is the rollout's state as the API reports it.
	Phase deployv1.RolloutState `json:"Phase"`
	// Stage and Step locate the rollout inside its strategy.
	Stage Stage `json:"Stage"`
	// Step is the rolling batch, canary step or blue/green stage index.
	Step int `json:"Step"`
	// StepApplied is set once the current canary step's weight is in force
	// (and, when analysed, once a blue/green preview's pin or a rolling
	// batch's weights are).
	StepApplied bool `json:"StepApplied"`
	// StepPromoted is set when an operator promoted the current step.
	StepPromoted bool `json:"StepPromoted"`
	// Promoted is set by a full promotion.
	Promoted bool `json:"Promoted"`
	// OperatorPaused is set between a pause and a resume command.
	OperatorPaused bool `json:"OperatorPaused"`
	// AwaitingPromote is set while the rollout is paused waiting for an
	// operator's promote: a manual canary step, the end of manual canary
	// steps, or a blue/green preview. Step recomputes it every time, so it is
	// never set while an operator's pause holds the rollout or once it is
	// final.
	AwaitingPromote bool `json:"AwaitingPromote"`
	// Message explains the phase.
	Message string `json:"Message"`
	// Outcome is the final phase a rollback in StageRestore ends in.
	Outcome deployv1.RolloutState `json:"Outcome"`
	// StartedAt is when the first Step ran.
	StartedAt time.Time `json:"StartedAt"`
	// StepStartedAt is when the current step's weight took effect.
	StepStartedAt time.Time `json:"StepStartedAt"`
	// ProgressAt is the last time the rollout made progress.
	ProgressAt time.Time `json:"ProgressAt"`
	// PausedAt is when the operator paused.
	PausedAt time.Time `json:"PausedAt"`
	// SwitchedAt is when blue/green traffic switched to the new colour.
	SwitchedAt time.Time `json:"SwitchedAt"`
	// RestoreStartedAt is when StageRestore began or placed its last batch.
	RestoreStartedAt time.Time `json:"RestoreStartedAt"`
	// Ordered counts the instances ordered per release (cumulative).
	Ordered map[uint64]int `json:"Ordered"`
	// Stopped counts the instances stopped per release.
	Stopped map[uint64]int `json:"Stopped"`
	// StoppedIDs lists the allocations this rollout stopped that were
	// still observed at its last step, sorted: an instance stopped by a
	// step is observed until that step's entry is committed, and then
	// forgotten, so the state does not grow with every instance stopped
	// (states written by older coordinators list them all; they decode
	// and are pruned at the next step).
	StoppedIDs []string `json:"StoppedIDs"`
	// Healthy lists the To allocations that have counted as healthy at least
	// once, sorted.
	Healthy []string `json:"Healthy"`
	// Weights are the traffic weights last issued, per release.
	Weights map[uint64]int `json:"Weights"`
	// Pins are the pins last issued.
	Pins []Pin `json:"Pins"`
	// Generation is the last traffic generation issued.
	Generation uint64 `json:"Generation"`
	// PendingStops are instances out of traffic waiting for the route
	// barrier before they are stopped.
	PendingStops []PendingStop `json:"PendingStops"`
	// LastCommand is the sequence number of the last operator command
	// applied.
	LastCommand uint64 `json:"LastCommand"`
	// AnalysisFrom is where the next analysis window of the current step
	// may start: when the step's weight took effect, then the end of the
	// last window judged.
	AnalysisFrom time.Time `json:"AnalysisFrom,omitzero"`
	// StepPassed is set once the current step had a passing verdict.
	StepPassed bool `json:"StepPassed,omitempty"`
	// AnalysisFailures counts the consecutive failed verdicts of the
	// rollout: a passing one resets it (analysis.Config.Tally). States of
	// older coordinators counted every failed verdict and hook answer; such
	// a count only errs towards failing sooner, and the next pass resets it.
	AnalysisFailures int `json:"AnalysisFailures,omitempty"`
	// Restarts is the restart count of each To instance as last reported
	// in an event.
	Restarts map[string]int `json:"Restarts,omitempty"`
	// Pulls is the image pull progress of each To instance as last
	// reported in an event.
	Pulls map[string]string `json:"Pulls,omitempty"`
	// PreRolloutDone is set once the pre_rollout hooks passed (or there
	// were none).
	PreRolloutDone bool `json:"PreRolloutDone,omitempty"`
	// HookGate is the gate ("point@step") the rollout waits at, HookAttempt
	// the answers it consumed there, HookRetryAt when a failed one is asked
	// again (see DueHooks).
	HookGate    string    `json:"HookGate,omitempty"`
	HookAttempt int       `json:"HookAttempt,omitempty"`
	HookRetryAt time.Time `json:"HookRetryAt,omitzero"`
	// HookPassed is the gate last passed.
	HookPassed string `json:"HookPassed,omitempty"`
	// FastRollback is Spec.FastRollback: why the steps, preview and
	// analysis are skipped; empty for a rollout that runs them.
	FastRollback string `json:"FastRollback,omitempty"`
}

// Instance is one allocation of the service as the caller observes it.
type Instance struct {
	// ID is the allocation id.
	ID string
	// Release is its release number.
	Release uint64
	// Health is its current health.
	Health Health
	// Since is when Health last changed (for passing: passing since).
	Since time.Time
	// CreatedAt is when the allocation was created (committed).
	CreatedAt time.Time
	// Reason is why a dead instance died, as its agent reported it (the
	// image is not present and could not be pulled, the host port is taken,
	// it exited with code N...); empty when unknown. A rollout failing on
	// the instance says it. For an instance still starting it is why the
	// last try failed (a restart after an exit, a retried start).
	Reason string
	// Restarts counts the in-place restarts its agent made (its restart
	// policy); each new one is an event of the rollout.
	Restarts int
	// Progress is its agent's last word on pulling its image; each new one
	// is a "pulling" event of the rollout.
	Progress string
}

// Command is an operator command recorded for the rollout.
type Command struct {
	// Seq orders commands; the machine applies each Seq once.
	Seq uint64
	// Kind is promote, pause, resume or abort.
	Kind deployv1.CommandKind
	// Full, for a promote, skips every remaining step.
	Full bool
	// By names the operator.
	By string
	// Reason says why.
	Reason string
}

// Observation is the world as the caller sees it when it calls Step.
type Observation struct {
	// Now is the current time.
	Now time.Time
	// Instances are every live allocation of the service, of any release.
	Instances []Instance
	// AckedGeneration is the lowest traffic generation acknowledged by every
	// live edge (the route barrier).
	AckedGeneration uint64
	// Commands are the rollout's operator commands; those with Seq at most
	// State.LastCommand were applied already and are skipped.
	Commands []Command
	// Signals are the golden signals of the window AnalysisWindow asked
	// for; nil when none was due (or none could be read).
	Signals *Signals
	// Hook is the answer to the gate DueHooks asked for, nil while none
	// came.
	Hook *HookAnswer
	// Unowned are instances of the service that no allocation holds any
	// more (a rollout stopped them, or their node's allocations were
	// replaced) but that their agent still runs: they are strays, and
	// those whose agent last reported them registered and passing
	// (HealthPassing) may still be routed by the edges, so they count as
	// serving (see the package doc). The caller lists only what can
	// really serve: nothing its agent reports deregistered (draining),
	// stopped or gone, and nothing on a node that is down or lost (its
	// grace or TTL is the deadline after which its instances are taken
	// as dead), so a stray never holds a rollout for longer than that.
	Unowned []Instance
}

// Signals are the canary's and the stable release's golden signals over
// [From, To), merged across the edges.
type Signals struct {
	From, To       time.Time
	Canary, Stable analysis.Sample
	// Gates are the step's webhooks' answers for the window.
	Gates []analysis.Gate
}

// AnalysisRecord is a verdict as an event carries it.
type AnalysisRecord struct {
	// From and To are the judged window.
	From, To time.Time
	// Verdict is the judgement with its evidence.
	Verdict analysis.Verdict
	// Counted is what the verdict counted as under the no_data policy
	// (pass, fail, or inconclusive for hold).
	Counted analysis.Result
	// Failures and FailureLimit are the rollout's consecutive failed
	// verdicts so far and the limit at which it fails.
	Failures, FailureLimit int
}

// Placement asks for Count new instances of Release on Track.
type Placement struct {
	// Release is the release to run.
	Release uint64
	// Track is the catalog track of the new instances.
	Track string
	// Count is how many new instances to create.
	Count int
}

// Traffic is a new traffic intent for the edges.
type Traffic struct {
	// Generation is the intent's generation, higher than any before.
	Generation uint64
	// Weights are traffic percentages per release, summing to 100 (empty
	// when the service has no release left to serve).
	Weights map[uint64]int
	// Pins route requests carrying a header to one release.
	Pins []Pin
	// Drain lists allocations that must receive no traffic from this
	// generation on; they are stopped once it is acknowledged.
	Drain []string
}

// Event is one thing that happened, for the audit trail and WatchRollout.
type Event struct {
	// Kind is e.g. "started", "placed", "health", "step", "paused",
	// "resumed", "promoted", "stopped", "succeeded", "failed", "reverted",
	// "aborted", "superseded", "ignored".
	Kind string
	// Message describes it for people.
	Message string
	// Analysis is set on "analysis" events: the verdict and its evidence.
	Analysis *AnalysisRecord
}

// Plan is what one Step decided. The caller commits it with the new State,
// then acts on it.
type Plan struct {
	// Place lists new instances to create.
	Place []Placement
	// Stop lists allocations to stop; each was drained by an acknowledged
	// generation.
	Stop []string
	// Traffic is the new traffic intent, nil when it did not change.
	Traffic *Traffic
	// Events describe the Step.
	Events []Event
	// Hooks are told of the rollout's end (post_rollout, rollback) once
	// the plan is committed; their answers change nothing.
	Hooks []HookCall
}

// Empty reports whether the plan decides nothing.
func (p Plan) Empty() bool {
	return len(p.Place) == 0 && len(p.Stop) == 0 && p.Traffic == nil && len(p.Events) == 0 && len(p.Hooks) == 0
}
