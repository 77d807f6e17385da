package agent

import (
	"context"
	"time"

	"slipway.dev/nodeagent/consul"
)

// heartbeat keeps the agent's own Consul check passing, four times per
// consul.AgentTTL, until ctx ends. It runs on its own, apart from driver
// and Consul operations that may take long, so a busy agent does not look
// dead; a dead or hung one misses its heartbeats, and its node and
// instances turn critical in Consul. Only an agent that registers itself
// (Config.GRPCAddr set) heartbeats.
func (a *Agent) heartbeat(ctx context.Context) {
	if a.cfg.GRPCAddr == "" {
		return
	}
	t := time.NewTicker(consul.AgentTTL / 4)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, consul.AgentTTL/2)
		err := a.reg.Heartbeat(hctx)
		cancel()
		switch {
		case err != nil && !failing:
			failing = true // until the agent registers itself again (refresh)
			a.log.Warn("node agent heartbeat failed", "err", err)
		case err == nil && failing:
			failing = false
			a.log.Info("node agent heartbeat works again")
		}
	}
}
