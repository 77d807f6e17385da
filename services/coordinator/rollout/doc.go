// Package rollout is the pure state machine that moves a service from one
// release to another with a rolling, blue/green or canary strategy.
//
// The machine does no I/O and reads no clock: the caller passes the time and
// everything it observes, and gets decisions back, in the style of
// hashicorp/nomad's scheduler and etcd-io/raft. Its whole persistent state is
// the plain State struct, which encodes deterministically with encoding/json
// so that it can be committed through raft.
//
// # Driving the machine
//
// The leader engine owns one State per active rollout and drives it so:
//
//  1. Deploy: build a Spec (Config from ConfigFromSpec of the release's
//     UpdateStrategy; From/FromCount the stable release and how many of its
//     instances run; Generation and Weights the service's current traffic
//     intent; Draining the service's allocations drained and not stopped
//     yet) and call New. When a Deploy supersedes an active rollout, the
//     Deploy entry itself marks the old rollout SUPERSEDED and records the
//     link to the new one (state.FSM.SupersededBy); the leader then calls
//     Supersede on the old rollout's committed State, before it steps the
//     new one, and commits the result as that rollout's next step.
//  2. Observe: gather an Observation: Now; every live allocation of the
//     service (any release) with its health and when that health began
//     (Instance.Since, "passing since" for a passing check) and when the
//     allocation was created; AckedGeneration, the lowest route generation
//     acknowledged by every live edge for the service (the route barrier);
//     and the rollout's operator commands, numbered by Seq. Instances
//     include allocations committed but not started yet; an instance missing
//     from the list is gone (a drained one then needs no stop). Replacing
//     the allocations of a node that went away is the caller's job: the
//     machine counts the instances of a release it sees, not their ids.
//  3. Step: next, plan := Step(state, obs).
//  4. Commit: if plan is not Empty, commit next together with plan through
//     raft, turning each Placement into concrete allocations (ids, nodes:
//     see package placement) in that same entry. Nothing is acted on before
//     the commit succeeds. If the commit fails, drop next and plan: the old
//     State is still the truth, and stepping it again decides the same.
//  5. Act on the committed plan: create the placed allocations (send each
//     affected node its desired set); write plan.Traffic as the service's
//     traffic intent (weights, pins, generation), making sure the edges no
//     longer route to the allocations in Traffic.Drain; stop the allocations
//     in plan.Stop. A new leader re-acts the last committed plan (acting is
//     declarative and idempotent: desired sets and intents are overwritten,
//     not appended).
//  6. Repeat from 2 whenever an observation changes, and at the time Wake
//     returns (pauses, deadlines and min_healthy_time are driven by time),
//     until Done. Stepping more often is harmless.
//
// Because Step is deterministic and runs to a fixed point, stepping a
// committed State again with the same observation decides nothing: a leader
// that dies between commit and action is succeeded by one that resumes
// exactly where it stopped, and nothing is placed or stopped twice. The
// machine counts what it ordered (State.Ordered), so placements that the
// caller has committed but that agents have not started yet are not ordered
// again.
//
// # Behaviour
//
// Health uses hysteresis: an instance counts as healthy once its check has
// passed continuously for min_healthy_time. An instance not healthy within
// healthy_deadline of its creation, one whose container exited, or one that
// was healthy and then stayed critical for longer than Config.FlapTolerance
// fails the rollout; a shorter flap only holds progress. Instance deadlines
// keep running while the rollout is paused. A rollout waiting
// for instances for progress_deadline without any becoming healthy fails.
// On failure with auto_revert, all traffic returns to the stable release at
// once (canary, blue/green) or after the stopped stable instances were
// replaced (rolling), and the new release is drained; without auto_revert
// the rollout stops where it is (FAILED) and nothing moves. Abort does the
// same as a revert and ends ABORTED.
//
// An instance is stopped only after a generation that no longer routes to it
// (Traffic.Drain) has been acknowledged by the edges. A rollout that
// starts while instances a superseded rollout left still serve (the ones it
// drained, Spec.Draining, and any of another release) drains them and
// places nothing until they are stopped, so that never more than count +
// max_parallel (or max_surge) instances serve. Instances no allocation
// holds any more that their agent still runs registered
// (Observation.Unowned: stopped while their agent was cut off, or left on
// a node whose allocations were replaced) count the same way at every
// placement: a rollout places nothing beside one that passes (a rolling
// update bounded by max_surge counts it against its surge). Only strays
// that can really serve count (passing; the caller drops what its agent
// reports deregistered or stopped, and what is on a node down or lost),
// and a rollout held by them for progress_deadline fails. Terminal rollouts
// (Terminal) may still hold pending stops; Done reports when none remain.
//
// Operator commands: pause holds the rollout (paused time counts neither
// toward step pauses nor toward progress_deadline); resume undoes it; promote
// ends the current step's pause (a manual step, a timed pause, the blue/green
// preview or its warm period) and resumes a paused rollout; a full promote
// skips every remaining canary step; abort returns traffic to the stable
// release.
//
// Strategies: rolling replaces max_parallel instances per batch (new ones
// healthy first, then as many old ones drained, weights in proportion).
// Canary steps set traffic weights at the edge and run as many new instances
// as the weight needs (at least one); after the last step, all traffic moves
// to the new release and the old one is drained, by itself when the last
// weight is 100 or the last step was manual, with auto_promote, or on a
// promote. Blue/green starts the new colour at full count, pins the preview
// header to it, switches on promote (or auto_promote), and keeps the old
// colour for scale_down_delay, during which a revert or abort is one traffic
// flip. A first deploy (no stable release) places every instance at once.
package rollout
