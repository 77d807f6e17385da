package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/probe"
	"slipway.dev/nodeagent/reconcile"
)

// opTimeout bounds one driver or Consul call.
const opTimeout = 60 * time.Second

// execute runs one action; it returns false when the action failed in a
// way worth retrying only later (Consul unreachable), so the loop waits for
// the next resync instead of spinning.
func (a *Agent) execute(ctx context.Context, act reconcile.Action) bool {
	a.mu.Lock()
	spec := a.desired[act.AllocID]
	inst, haveInst := a.instances[act.AllocID]
	a.mu.Unlock()
	id := act.AllocID
	switch act.Kind {
	case reconcile.Start:
		a.deregister(ctx, id)
		restarts := 0 // a retried start keeps the count of the spec's restarts
		a.mu.Lock()
		if f, ok := a.failures[id]; ok && f.Fingerprint == spec.Fingerprint() && a.status[id] != nil {
			restarts = a.status[id].Restarts
		}
		a.mu.Unlock()
		return a.start(ctx, spec, restarts)
	case reconcile.Restart:
		a.deregister(ctx, id)
		if err := a.stopInstance(ctx, inst, 0); err != nil {
			a.fail(id, spec, err, true)
			return true
		}
		a.mu.Lock()
		restarts := 0
		if st := a.status[id]; st != nil {
			restarts = st.Restarts + 1
		}
		a.mu.Unlock()
		a.met.restarts.Inc()
		return a.start(ctx, spec, restarts)
	case reconcile.Register:
		// A running instance (adopted, or Consul lost it) keeps passing if it
		// passes now, so edges do not drop it while Consul's first check is
		// still pending.
		passing := probe.Once(ctx, spec, a.cfg.Address, spec.CheckHostPort(inst)) == nil
		if !passing && spec.InStartPeriod(inst.StartedAt, a.now()) {
			// Adopted in its start period (the agent restarted): not
			// registered critical while the grace lasts; the next pass
			// plans the registration again.
			a.mu.Lock()
			if st := a.status[id]; st == nil || !st.InStartPeriod {
				a.updateLocked(id, "in start period: failing probes do not count", func(s *Status) {
					s.InStartPeriod, s.InstanceID, s.HostPort = true, inst.ID, inst.HostPort
				})
			}
			a.mu.Unlock()
			return true
		}
		if err := a.reg.Register(ctx, spec, inst, a.cfg.Address, passing); err != nil {
			a.log.Warn("register", "alloc", id, "err", err)
			return false
		}
		a.mu.Lock()
		a.registered[id] = true
		a.updateLocked(id, "registered in Consul", func(s *Status) {
			s.State, s.Error, s.InstanceID, s.HostPort, s.InStartPeriod = Running, "", inst.ID, inst.HostPort, false
		})
		a.mu.Unlock()
	case reconcile.Deregister:
		return a.deregister(ctx, id)
	case reconcile.GiveUp:
		a.deregister(ctx, id)
		err := a.stopInstance(ctx, inst, 0)
		why := giveUpError(act.Reason, "")
		a.mu.Lock()
		if st := a.status[id]; st != nil && strings.HasPrefix(st.Error, act.Reason) {
			why = st.Error // said when it exited
		} else if st != nil && st.Error != "" {
			why = giveUpError(act.Reason, st.Error)
		}
		a.mu.Unlock()
		a.fail(id, spec, errors.New(why), true)
		if err != nil {
			a.log.Warn("remove failed instance", "alloc", id, "err", err)
		}
	case reconcile.Stop:
		if haveInst {
			a.drain(ctx, id, inst, act)
		}
	}
	return true
}

func (a *Agent) drain(ctx context.Context, id string, inst allocation.Instance, act reconcile.Action) {
	grace := allocation.DefaultKillTimeout
	a.mu.Lock()
	if s, ok := a.desired[id]; ok {
		grace = s.Grace()
	}
	service := inst.Service
	a.mu.Unlock()
	if act.Drain {
		a.update(id, "draining: "+act.Reason, func(s *Status) { s.State, s.Health, s.HealthySince = Draining, "", time.Time{} })
		a.deregister(ctx, id)
		t0 := a.now()
		if err := a.reg.WaitRoutes(ctx, service, id, a.cfg.DrainTimeout, a.cfg.DrainWindow); err != nil {
			a.log.Warn("route barrier not reached; stopping anyway", "alloc", id, "err", err)
		}
		a.met.drain.Observe(a.since(t0).Seconds())
	}
	if err := a.stopInstance(ctx, inst, grace); err != nil {
		a.update(id, "stop failed", func(s *Status) { s.Error = err.Error() })
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	spec, want := a.desired[id]
	a.updateLocked(id, "stopped: "+act.Reason, func(s *Status) {
		s.State, s.InstanceID, s.HostPort, s.Health, s.HealthySince = Stopped, "", 0, "", time.Time{}
	})
	if !want {
		delete(a.status, id)
		delete(a.failures, id)
	} else if !spec.Stopped {
		a.status[id].State = Pending // replaced: the next step starts the new spec
	}
}

// stopInstance stops and removes an instance and forgets it.
func (a *Agent) stopInstance(ctx context.Context, inst allocation.Instance, grace time.Duration) error {
	if inst.ID == "" {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, grace+opTimeout)
	defer cancel()
	if err := a.drv.Stop(sctx, inst, grace); err != nil && !errors.Is(err, allocation.ErrNotFound) {
		return fmt.Errorf("agent: stop %s: %w", inst.AllocID, err)
	}
	a.mu.Lock()
	delete(a.instances, inst.AllocID)
	delete(a.dead, inst.ID)
	a.mu.Unlock()
	return nil
}

// deregister removes the allocation's registration if it has one; false
// when Consul refused.
func (a *Agent) deregister(ctx context.Context, id string) bool {
	a.mu.Lock()
	reg := a.registered[id]
	a.mu.Unlock()
	if !reg {
		return true
	}
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := a.reg.Deregister(dctx, id); err != nil {
		a.log.Warn("deregister", "alloc", id, "err", err)
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.registered, id)
	if _, known := a.status[id]; known {
		a.updateLocked(id, "deregistered from Consul", func(*Status) {})
	} else {
		a.log.Info("removed orphan registration", "alloc", id)
	}
	return true
}

// start starts and registers an instance; false when it runs but Consul
// refused the registration.
func (a *Agent) start(ctx context.Context, spec allocation.Spec, restarts int) bool {
	id := spec.ID
	a.mu.Lock()
	// A restart or a retried start keeps saying why (the last exit or
	// failed start) until the instance runs.
	_, retry := a.failures[id]
	a.updateLocked(id, "starting", func(s *Status) {
		if !retry || a.failures[id].Fingerprint != spec.Fingerprint() {
			s.Error = ""
		}
		s.State, s.Restarts, s.Health, s.HealthySince = Starting, restarts, "", time.Time{}
	})
	a.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	// Exits seen while starting: the loop ignores busy allocations, so the
	// start itself must notice an instance that dies at once.
	w := &startWatch{exited: map[string]string{}, sig: make(chan struct{}, 1)}
	a.mu.Lock()
	a.starting[id] = w
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.starting, id)
		a.mu.Unlock()
	}()
	t0 := a.now()
	inst, err := a.drv.Start(sctx, spec)
	if err != nil {
		a.startFailed(id, spec, err)
		return true
	}
	inst.Service, inst.Release, inst.Track = spec.Service, spec.Release, spec.Track
	a.mu.Lock()
	a.instances[id] = inst
	a.updateLocked(id, "instance started", func(s *Status) { s.InstanceID, s.HostPort = inst.ID, inst.HostPort })
	a.mu.Unlock()
	// Probe it ourselves so it is registered as soon as it is ready, unless
	// it exits meanwhile. In the check's start period failing probes do not
	// count: the instance stays starting and out of Consul (so it is not
	// critical there) until a probe passes or the grace is over. The grace
	// is not bounded by the start timeout (which is for the pull and the
	// start).
	within := spec.ProbeWithin(a.cfg.ReadyWithin)
	pparent := sctx
	if spec.Check.StartPeriod > 0 {
		pparent = ctx
		a.update(id, "in start period "+spec.Check.StartPeriod.String()+": failing probes do not count", func(s *Status) { s.InStartPeriod = true })
	}
	pctx, pcancel := context.WithCancel(pparent)
	go func() {
		for {
			select {
			case <-pctx.Done():
				return
			case <-w.sig:
				if w.hasExited(a, inst.ID) {
					pcancel()
					return
				}
			}
		}
	}()
	passing := inst.Running && probe.Ready(pctx, spec, a.cfg.Address, spec.CheckHostPort(inst), a.cfg.ReadyWithin, 20*time.Millisecond, within) == nil
	passedAt := a.now()
	pcancel()
	if spec.Check.StartPeriod > 0 {
		msg := "start period over: the check passed"
		if !passing {
			msg = "start period over without a passing probe: the check counts from now"
		}
		a.update(id, msg, func(s *Status) { s.InStartPeriod = false })
	}
	if sctx.Err() != nil && ctx.Err() == nil {
		// A long start period outlived the start timeout: register with a
		// fresh bound.
		var rcancel context.CancelFunc
		sctx, rcancel = context.WithTimeout(ctx, opTimeout)
		defer rcancel()
	}
	if !inst.Running && !w.hasExited(a, inst.ID) {
		// Exited before the driver returned: its exit event (with the
		// exit code and last output) follows; wait a little for it.
		t := time.NewTimer(2 * time.Second)
		for !w.hasExited(a, inst.ID) {
			select {
			case <-w.sig:
				continue
			case <-t.C:
			case <-ctx.Done():
			}
			break
		}
		t.Stop()
	}
	if !inst.Running || w.hasExited(a, inst.ID) {
		a.mu.Lock()
		reason := exitError(-1, "")
		if r, ok := w.exited[inst.ID]; ok {
			reason = r // the driver's exit event: code and last output
		} else if !inst.Running {
			reason = exitError(inst.ExitCode, "") // exited before the driver returned
		}
		a.exitedLocked(id, "instance exited while starting", reason)
		a.mu.Unlock()
		a.met.exits.Inc()
		return true
	}
	if err := a.reg.Register(sctx, spec, inst, a.cfg.Address, passing); err != nil {
		// Running but unregistered: the next step retries the registration.
		a.update(id, "registration failed", func(s *Status) { s.Error = err.Error() })
		return false
	}
	a.met.start.Observe(a.since(t0).Seconds())
	a.mu.Lock()
	a.registered[id] = true
	if f, ok := a.failures[id]; ok && f.StartFailures > 0 {
		f.StartFailures, f.FirstStartFailure = 0, time.Time{}
		a.failures[id] = f
	}
	a.updateLocked(id, "running and registered", func(s *Status) {
		s.State, s.Error = Running, ""
		if passing {
			// Registered passing, so its Consul check starts passing: the
			// instance is healthy from the probe that passed, not from the
			// next read of the checks (up to HealthPoll later, which every
			// batch of a rolling update would wait on top of its
			// min_healthy_time).
			s.Health, s.HealthySince = HealthPassing, passedAt
		}
	})
	a.mu.Unlock()
	return true
}

// startFailed records a failed start: it is retried with the restart
// policy's backoff until the spec's start deadline has passed since the
// first failed start, then the allocation is failed. While retried the
// allocation is reported starting, with the error and the next try.
func (a *Agent) startFailed(id string, spec allocation.Spec, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := reconcile.StartFailed(a.failures[id], spec.Fingerprint(), spec.StartRetryDeadline(), a.now())
	a.failures[id] = f
	if f.Permanent {
		a.updateLocked(id, "failed", func(s *Status) {
			s.State, s.Health, s.HealthySince = Failed, "", time.Time{}
			s.Error = err.Error()
			if f.StartFailures > 1 {
				s.Error = fmt.Sprintf("%s (start failed %d times in %s)", err, f.StartFailures, f.At.Sub(f.FirstStartFailure).Round(time.Millisecond))
			}
		})
		return
	}
	v := reconcile.Next(f, spec.RestartPolicy())
	a.updateLocked(id, "start failed; "+v.Reason+" in "+v.Wait.String(), func(s *Status) {
		s.State, s.Health, s.HealthySince = Starting, "", time.Time{}
		s.Error = fmt.Sprintf("%s; %s in %s (retried until %s after the first failure)", err, v.Reason, v.Wait, spec.StartRetryDeadline())
	})
}

// startWatch collects the exits of an allocation's instances while it is
// being started.
type startWatch struct {
	exited map[string]string // instance id -> how it exited (exitError); guarded by Agent.mu
	sig    chan struct{}
}

func (w *startWatch) hasExited(a *Agent, instanceID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := w.exited[instanceID]
	return ok
}

// giveUpError is the status error of an allocation whose restart policy
// gave up (verdict), with how its instance last exited (exitError).
func giveUpError(verdict, last string) string {
	s := verdict + "; not restarting until the spec changes"
	if last != "" {
		s += " (last: " + last + ")"
	}
	return s
}

// exitError is the status error of an instance that exited with code (-1:
// not known) after printing output (its last lines, allocation.LastLines),
// which the coordinator reports as the rollout's reason.
func exitError(code int, output string) string {
	s := "instance exited unexpectedly"
	if code >= 0 {
		s = fmt.Sprintf("instance exited with code %d", code)
	}
	if output != "" {
		s += "; last output: " + output
	}
	return s
}

// fail records a failure of the current spec; permanent failures are not
// retried until the spec changes.
func (a *Agent) fail(id string, spec allocation.Spec, err error, permanent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.failures[id]
	if f.Fingerprint != spec.Fingerprint() {
		f = reconcile.Failure{Fingerprint: spec.Fingerprint()}
	}
	f.Count++
	f.At = a.now()
	f.Permanent = f.Permanent || permanent
	a.failures[id] = f
	a.updateLocked(id, "failed", func(s *Status) {
		s.State, s.Error, s.Health, s.HealthySince = Failed, err.Error(), "", time.Time{}
	})
}
