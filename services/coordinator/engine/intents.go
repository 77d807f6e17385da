package engine

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// writeIntents makes what Routes holds match the committed intents. What
// the engine wrote is never trusted to still be there: a Consul agent
// restarted without its data (or an operator, or a deposed leader) may have
// dropped or changed a key. So every pass reads the intents back (one list
// query) and rewrites each one that is missing or differs from raft state,
// whatever generation was last written. When the read fails, intents whose
// generation moved since they were last written are still written, and the
// comparison is made again on the next pass.
func (e *Engine) writeIntents(ctx context.Context) []error {
	var errs []error
	held, err := e.call(ctx, func(c context.Context) (any, error) { return e.cfg.Routes.Intents(c) })
	if err != nil {
		errs = append(errs, fmt.Errorf("engine: read back traffic intents: %w", err))
	}
	current, _ := held.(map[string]*edgev1.TrafficIntent)
	for _, in := range e.cfg.FSM.Intents() {
		svc := in.GetService()
		g, wrote := e.written[svc]
		if err != nil {
			if wrote && g == in.GetGeneration() {
				continue
			}
		} else if proto.Equal(current[svc], in) {
			e.written[svc] = in.GetGeneration()
			continue
		}
		if _, werr := e.call(ctx, func(c context.Context) (any, error) { return nil, e.cfg.Routes.WriteIntent(c, in) }); werr != nil {
			errs = append(errs, fmt.Errorf("engine: write intent of %s: %w", svc, werr))
			continue
		}
		if wrote && g == in.GetGeneration() {
			what := "missing or undecodable"
			if current[svc] != nil {
				what = fmt.Sprintf("generation %d there instead", current[svc].GetGeneration())
			}
			e.log.Warn("traffic intent re-asserted: Routes had lost or changed it", "service", svc, "generation", in.GetGeneration(), "found", what)
		} else {
			e.log.Info("traffic intent written", "service", svc, "generation", in.GetGeneration(), "weights", in.GetWeights())
		}
		e.written[svc] = in.GetGeneration()
	}
	return errs
}
