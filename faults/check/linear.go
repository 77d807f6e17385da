package check

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// serviceState is the sequential specification's state of one service:
// its latest release, whether that release's rollout is known to be final
// (rollouts of older releases always are: a newer release supersedes its
// rollout or finds it final), and the request ids seen with the release
// each made. Engine transitions (a rollout succeeding or reverting) are
// not in the history: "final" is learnt from answers that show it.
type serviceState struct {
	latest      uint64
	latestFinal bool
	requests    string // sorted "rid=N;" pairs
}

func (s serviceState) request(rid string) (uint64, bool) {
	for _, kv := range strings.Split(s.requests, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == rid {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n, true
		}
	}
	return 0, false
}

func (s serviceState) withRequest(rid string, n uint64) serviceState {
	var pairs []string
	if s.requests != "" {
		pairs = strings.Split(strings.TrimSuffix(s.requests, ";"), ";")
	}
	pairs = append(pairs, rid+"="+strconv.FormatUint(n, 10))
	sort.Strings(pairs)
	s.requests = strings.Join(pairs, ";") + ";"
	return s
}

// create is the state after a Deploy or Rollback made release latest+1.
func (s serviceState) create(rid string) serviceState {
	n := s.latest + 1
	s = s.withRequest(rid, n)
	s.latest, s.latestFinal = n, false
	return s
}

// step returns the states a call can lead to from s (none: it cannot
// happen from s).
func step(s serviceState, c Call) []serviceState {
	switch c.Kind {
	case Deploy, Rollback:
		if prev, seen := s.request(c.RequestID); seen {
			// A replay changes nothing and answers the first release.
			if c.Outcome == OK && c.Release != prev {
				return nil
			}
			return []serviceState{s}
		}
		switch c.Outcome {
		case OK:
			if c.Release != s.latest+1 {
				return nil
			}
			if !c.Supersede && !s.latestFinal && s.latest != 0 {
				// Accepted without supersede: the engine had finished the
				// latest rollout by then, which the history cannot show.
				s.latestFinal = true
			}
			return []serviceState{s.create(c.RequestID)}
		case Failed:
			if c.Refusal == RefusedActive {
				// The latest rollout was active: not known final.
				if s.latestFinal || s.latest == 0 {
					return nil
				}
			}
			return []serviceState{s}
		default:
			return []serviceState{s, s.create(c.RequestID)}
		}
	case Promote, Abort:
		switch c.Outcome {
		case OK:
			// Accepted: the rollout was the latest and not final.
			if c.Rollout != s.latest || s.latestFinal {
				return nil
			}
			return []serviceState{s}
		case Failed:
			if c.Refusal == RefusedFinal && c.Rollout == s.latest {
				s.latestFinal = true
			}
			return []serviceState{s}
		default:
			return []serviceState{s}
		}
	case GetService:
		if c.Outcome != OK || c.Release == s.latest {
			return []serviceState{s}
		}
		return nil
	case GetRollout:
		if c.Outcome != OK {
			return []serviceState{s}
		}
		if c.Final {
			if c.Rollout == s.latest {
				s.latestFinal = true
			}
			return []serviceState{s}
		}
		if c.Rollout != s.latest || s.latestFinal {
			return nil
		}
		return []serviceState{s}
	}
	return []serviceState{s}
}

// Start is a service's state when its history begins: its latest release
// and whether that release's rollout had ended.
type Start struct {
	Latest uint64
	Final  bool
}

// modelFrom is the specification of one service's calls for porcupine,
// starting from start.
func modelFrom(start Start) porcupine.NondeterministicModel {
	m := model
	m.Init = func() []any { return []any{serviceState{latest: start.Latest, latestFinal: start.Final}} }
	return m
}

// model is the specification of one service's calls for porcupine.
var model = porcupine.NondeterministicModel{
	Init: func() []any { return []any{serviceState{}} },
	Step: func(state, input, _ any) []any {
		var out []any
		for _, s := range step(state.(serviceState), input.(Call)) {
			out = append(out, s)
		}
		return out
	},
	Hash: func(state any) uint64 {
		s := state.(serviceState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%v/%s", s.latest, s.latestFinal, s.requests)
		return h.Sum64()
	},
	DescribeOperation: func(input, _ any) string { return input.(Call).String() },
	DescribeState: func(state any) string {
		s := state.(serviceState)
		return fmt.Sprintf("latest=%d final=%v", s.latest, s.latestFinal)
	},
}

// Linearizable checks that one service's calls, as recorded, are
// linearizable against the sequential specification of releases and
// rollout commands: release numbers go up by one per created release,
// replays answer the first release, commands are accepted only on the
// latest rollout while it is not final, and reads answer the state at
// some point within the call. A call whose outcome is unknown may have
// taken effect at any time after it was sent. It returns "" when the
// history is linearizable, else a report naming the calls; timeout
// bounds the search (a timeout is reported too).
func Linearizable(service string, start Start, calls []Call, timeout time.Duration) string {
	ops := make([]porcupine.Operation, 0, len(calls))
	for _, c := range calls {
		if c.Service != service {
			continue
		}
		end := c.End.UnixNano()
		if c.Outcome == Unknown {
			if c.Kind != Deploy && c.Kind != Rollback {
				continue // no effect on the state and no answer to check
			}
			end = math.MaxInt64
		}
		ops = append(ops, porcupine.Operation{ClientId: c.Client, Input: c, Call: c.Start.UnixNano(), Return: end})
	}
	m := modelFrom(start)
	res, info := porcupine.CheckOperationsVerbose(m.ToModel(), ops, timeout)
	switch res {
	case porcupine.Ok:
		return ""
	case porcupine.Unknown:
		return fmt.Sprintf("%s: linearizability check timed out after %s on %d calls", service, timeout, len(ops))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: the history of %d calls is not linearizable.", service, len(ops))
	if parts := info.PartialLinearizations(); len(parts) == 0 || len(parts[0]) == 0 {
		fmt.Fprintf(&b, " No call fits first from release %d (final=%v); the first calls:", start.Latest, start.Final)
		for i, op := range ops {
			if i < 8 {
				fmt.Fprintf(&b, "\n    %s", op.Input.(Call))
			}
		}
	}
	// The longest linearizable prefix ends where no order works.
	for _, part := range info.PartialLinearizations() {
		if len(part) == 0 {
			continue
		}
		longest := part[0]
		for _, p := range part {
			if len(p) > len(longest) {
				longest = p
			}
		}
		fmt.Fprintf(&b, " Longest linearizable order (%d of %d calls, from release %d):", len(longest), len(ops), start.Latest)
		from := max(0, len(longest)-8)
		for _, i := range longest[from:] {
			fmt.Fprintf(&b, "\n    %s", ops[i].Input.(Call))
		}
		placed := map[int]bool{}
		for _, i := range longest {
			placed[i] = true
		}
		b.WriteString("\n  no call below fits next:")
		shown := 0
		for i, op := range ops {
			if !placed[i] && shown < 8 {
				fmt.Fprintf(&b, "\n    %s", op.Input.(Call))
				shown++
			}
		}
		break
	}
	return b.String()
}
