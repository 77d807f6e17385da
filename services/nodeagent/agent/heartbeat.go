package agent

import (
	"context"
	"fmt"
	"time"
)

// heartbeat keeps the agent's own Consul check passing, four times per
// a.reg.HeartbeatTTL(), until ctx ends. It runs on its own, apart from driver
// and Consul operations that may take long, so a busy agent does not look
// dead; a dead or hung one misses its heartbeats, and its node and
// instances turn critical in Consul. Only an agent that registers itself
// (Config.GRPCAddr set) heartbeats.
func (a *Agent) heartbeat(ctx context.Context) {
	if a.cfg.GRPCAddr == "" {
		return
	}
	t := time.NewTicker(a.reg.HeartbeatTTL() / 4)
	defer t.Stop()
	failing := false
	lastOK := a.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if failing && a.cfg.LeaderLapse != nil {
			// Cut off from Consul, and from the leader past its TTL: held
			// before the heartbeat that makes its instances pass again.
			if down, ttl := a.cfg.LeaderLapse(a.now()); ttl > 0 && down > ttl {
				a.hold(fmt.Sprintf("heartbeats failing, and no leader holds the heartbeat stream for %s (past its TTL %s)",
					down.Round(time.Millisecond), ttl))
			}
		}
		hctx, cancel := context.WithTimeout(ctx, a.reg.HeartbeatTTL()/2)
		err := a.reg.Heartbeat(hctx)
		cancel()
		now := a.now()
		switch {
		case err != nil && !failing:
			failing = true // until the agent registers itself again (refresh)
			a.log.Warn("node agent heartbeat failed", "err", err)
		case err == nil && failing:
			failing = false
			a.log.Info("node agent heartbeat works again", "lapsed", now.Sub(lastOK).Round(time.Millisecond))
		}
		if err == nil {
			// Failed heartbeats or none at all (the process was paused or
			// starved): either way Consul saw the agent dead this long.
			if lapse := now.Sub(lastOK); lapse > a.cfg.HoldAfter {
				a.hold(fmt.Sprintf("heartbeats lapsed for %s", lapse.Round(time.Millisecond)))
			}
			lastOK = now
			touchBeat(a.cfg.DataDir, now)
			a.confirmAfterGrace(now)
		}
	}
}

// hold keeps the agent's instances out of traffic until a leader confirms
// its desired set (reconcile.Observed.Unconfirmed): Consul saw it dead, and
// the leader may have replaced them elsewhere meanwhile (it waits
// HoldAfter, its node grace, before it does).
func (a *Agent) hold(why string) {
	a.mu.Lock()
	was := a.unconfirmed
	a.unconfirmed, a.heldSince = true, time.Time{}
	a.mu.Unlock()
	if !was {
		a.log.Warn(why+": instances stay out of traffic until a leader confirms the desired set", "grace", a.cfg.ConfirmGrace)
	}
	a.poke()
}

// confirmAfterGrace ends a hold that no leader ended within ConfirmGrace of
// heartbeats: with no leader to ask (the control plane down), the last known
// desired set serves rather than nothing.
func (a *Agent) confirmAfterGrace(now time.Time) {
	a.mu.Lock()
	switch {
	case !a.unconfirmed:
		a.mu.Unlock()
		return
	case a.heldSince.IsZero():
		a.heldSince = now
		a.mu.Unlock()
		return
	case now.Sub(a.heldSince) < a.cfg.ConfirmGrace:
		a.mu.Unlock()
		return
	}
	a.unconfirmed, a.heldSince = false, time.Time{}
	a.mu.Unlock()
	a.log.Warn("no leader confirmed the desired set within the grace: serving the last known one", "grace", a.cfg.ConfirmGrace)
	a.poke()
}
