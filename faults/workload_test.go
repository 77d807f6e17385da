package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/faults/check"
	"slipway.dev/platform/spec"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
)

// service is one service the workload deploys.
type service struct {
	name, host  string
	count       int32
	maxParallel int32
	// maxSurge and maxUnavailable, when set, replace max_parallel for a
	// rolling update (absolute or a percentage of count, as in the spec).
	maxSurge, maxUnavailable string
	strategy                 deployv1.Strategy
	driver                   string // the node driver it is placed on: process or docker
}

// bound is the most instances that may serve at once: count +
// max(max_parallel, max_surge) for a rolling update (max_surge resolved
// against count as the rollout machine does: with max_surge or
// max_unavailable set, max_parallel is not used); a canary (like
// blue/green) places the new release at full count beside the old by
// design (weights are traffic shares, not instance counts), so twice the
// count.
func (s service) bound() int {
	if s.strategy == deployv1.Strategy_STRATEGY_ROLLING {
		if surge, _, ok := spec.SurgeBounds(s.maxSurge, s.maxUnavailable, int(s.count)); ok {
			return int(s.count) + surge
		}
		return int(s.count) + max(int(s.maxParallel), 1) // 0: the default, 1
	}
	return int(2 * s.count)
}

// spec is the service's spec for an image version.
func (s service) spec(version int) *deployv1.ServiceSpec {
	u := &deployv1.UpdateStrategy{Strategy: s.strategy, MaxParallel: s.maxParallel, MaxSurge: s.maxSurge, MaxUnavailable: s.maxUnavailable,
		MinHealthyTime: durationpb.New(500 * time.Millisecond), HealthyDeadline: durationpb.New(20 * time.Second),
		ProgressDeadline: durationpb.New(90 * time.Second), AutoRevert: true}
	if s.strategy == deployv1.Strategy_STRATEGY_CANARY {
		u.Canary = &deployv1.CanaryStrategy{Steps: []*deployv1.CanaryStep{
			{Weight: 25, Pause: durationpb.New(time.Second)}, {Weight: 50, Manual: true}, {Weight: 100}}}
	}
	sp := &deployv1.ServiceSpec{Name: s.name, Image: fmt.Sprintf("slipway/demo:v%d", version), Count: s.count, Port: 8080,
		Check: &deployv1.HealthCheck{Http: "/healthz", Interval: durationpb.New(time.Second), Timeout: durationpb.New(time.Second)},
		Route: &deployv1.Route{Host: s.host}, KillTimeout: durationpb.New(2 * time.Second), Update: u}
	if s.driver != "" {
		sp.Constraints = []*deployv1.Constraint{{Attribute: "node.driver", Operator: "==", Value: s.driver}}
	}
	return sp
}

// recorder keeps every call of every client, in the order answered.
type recorder struct {
	mu    sync.Mutex
	calls []check.Call
}

func (r *recorder) add(c check.Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []check.Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]check.Call(nil), r.calls...)
}

// classify turns a gRPC error into an outcome: refusals that change
// nothing are Failed, the rest may have taken effect.
func classify(c *check.Call, err error) {
	if err == nil {
		c.Outcome = check.OK
		return
	}
	st, _ := status.FromError(err)
	c.Code, c.Err = st.Code().String(), st.Message()
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange:
		c.Outcome = check.Failed
	default:
		c.Outcome = check.Unknown
	}
	if st.Code() == codes.FailedPrecondition {
		switch {
		case (c.Kind == check.Deploy || c.Kind == check.Rollback) && strings.Contains(st.Message(), "has active rollout"):
			c.Refusal = check.RefusedActive
		case (c.Kind == check.Promote || c.Kind == check.Abort) && strings.Contains(st.Message(), ": it is ROLLOUT_STATE_"):
			c.Refusal = check.RefusedFinal
		}
	}
}

// workload runs clients against the coordinators until stopped.
type workload struct {
	c        *cluster
	services []service
	rec      *recorder
	seq      atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	run      string // makes request ids unique per run
	// supersede: Deploy and Rollback may supersede an active rollout.
	supersede bool
	// abort: the workload aborts rollouts.
	abort bool
}

// startWorkload starts clientsPer clients per service, each making one
// call at a time with a random pause between calls.
func startWorkload(c *cluster, services []service, clientsPer int, seed uint64, run string, supersede, abort bool) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{c: c, services: services, rec: &recorder{}, cancel: cancel, run: run, supersede: supersede, abort: abort}
	id := 0
	for si := range services {
		for range clientsPer {
			rng := rand.New(rand.NewPCG(seed, uint64(id)+1))
			client := id
			w.wg.Go(func() { w.client(ctx, client, services[si], rng) })
			id++
		}
	}
	return w
}

func (w *workload) stop() []check.Call {
	w.cancel()
	w.wg.Wait()
	return w.rec.snapshot()
}

// client makes calls about one service: deploys (mostly superseding),
// promotes, aborts, rollbacks and linearizable reads; after an unknown
// outcome it sometimes retries with the same request id.
func (w *workload) client(ctx context.Context, id int, s service, rng *rand.Rand) {
	latest := uint64(0)
	retry := ""
	retryKind := check.Deploy
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(200+rng.IntN(600)) * time.Millisecond): // think time between calls
		}
		coord := rng.IntN(len(w.c.conns))
		cl := w.c.deploy(coord)
		call := check.Call{Client: id, Service: s.name, Coordinator: fmt.Sprintf("c%d", coord)}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p := rng.IntN(100)
		switch {
		case retry != "" && p < 50:
			call.Kind, call.RequestID, call.Supersede = retryKind, retry, w.supersede
		case p < 30:
			call.Kind = check.Deploy
			call.RequestID = fmt.Sprintf("%s/%s/%d/%d", w.run, s.name, id, w.seq.Add(1))
			call.Supersede = w.supersede && rng.IntN(100) < 75
		case p < 38:
			call.Kind = check.Rollback
			call.RequestID = fmt.Sprintf("%s/%s/%d/%d", w.run, s.name, id, w.seq.Add(1))
			call.Supersede = w.supersede
		case p < 58:
			call.Kind, call.Rollout = check.Promote, latest
		case p < 66:
			call.Kind, call.Rollout = check.Abort, latest
		case p < 83:
			call.Kind = check.GetService
		default:
			call.Kind, call.Rollout = check.GetRollout, latest
		}
		if call.Kind == check.Abort && !w.abort {
			call.Kind = check.GetRollout
		}
		if (call.Kind == check.Promote || call.Kind == check.Abort || call.Kind == check.GetRollout) && latest == 0 {
			call.Kind = check.GetService
		}
		var err error
		call.Start = time.Now()
		switch call.Kind {
		case check.Deploy:
			var resp *deployv1.DeployResponse
			resp, err = cl.Deploy(cctx, &deployv1.DeployRequest{Spec: s.spec(1 + rng.IntN(demoVersions)), RequestId: call.RequestID,
				Supersede: call.Supersede, CreatedBy: "faults"})
			call.Release = resp.GetRelease().GetNumber()
		case check.Rollback:
			var resp *deployv1.RollbackServiceResponse
			resp, err = cl.RollbackService(cctx, &deployv1.RollbackServiceRequest{Service: s.name, RequestId: call.RequestID,
				Supersede: call.Supersede, By: "faults"})
			call.Release = resp.GetRelease().GetNumber()
		case check.Promote:
			_, err = cl.PromoteRollout(cctx, &deployv1.PromoteRolloutRequest{Id: rolloutID(s.name, call.Rollout), Full: rng.IntN(2) == 0, By: "faults"})
		case check.Abort:
			_, err = cl.AbortRollout(cctx, &deployv1.AbortRolloutRequest{Id: rolloutID(s.name, call.Rollout), By: "faults"})
		case check.GetService:
			var resp *deployv1.GetServiceResponse
			resp, err = cl.GetService(cctx, &deployv1.GetServiceRequest{Name: s.name, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
			call.Release = resp.GetService().GetLatestRelease()
		case check.GetRollout:
			var resp *deployv1.GetRolloutResponse
			resp, err = cl.GetRollout(cctx, &deployv1.GetRolloutRequest{Id: rolloutID(s.name, call.Rollout), Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LEADER})
			call.State = resp.GetRollout().GetState().String()
			call.Final = final(resp.GetRollout().GetState())
		}
		call.End = time.Now()
		cancel()
		if ctx.Err() != nil && err != nil {
			// Stopped mid-call: the outcome is unknown, as for a timeout.
			classify(&call, err)
			call.Outcome = check.Unknown
		} else {
			classify(&call, err)
		}
		w.rec.add(call)
		if call.Outcome == check.OK && call.Release > latest {
			latest = call.Release
		}
		if call.Kind == check.Deploy || call.Kind == check.Rollback {
			if call.Outcome == check.Unknown {
				retry, retryKind = call.RequestID, call.Kind
			} else if call.RequestID == retry {
				retry = ""
			}
		}
	}
}

func rolloutID(service string, release uint64) string { return fmt.Sprintf("%s-%d", service, release) }

func final(s deployv1.RolloutState) bool {
	switch s {
	case deployv1.RolloutState_ROLLOUT_STATE_PENDING, deployv1.RolloutState_ROLLOUT_STATE_RUNNING, deployv1.RolloutState_ROLLOUT_STATE_PAUSED:
		return false
	}
	return true
}

// load sends HTTP requests through every edge to every service at a
// steady rate and records each failure with its time.
type load struct {
	mu       sync.Mutex
	requests int
	failed   []check.EdgeRequest
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startLoad(edges []string, edgeNames []string, services []service, rate int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for i, addr := range edges {
		for _, s := range services {
			l.wg.Go(func() { l.worker(ctx, addr, edgeNames[i], s.name, s.host, rate) })
		}
	}
	return l
}

func (l *load) worker(ctx context.Context, addr, edge, svc, host string, rate int) {
	tr := &http.Transport{MaxIdleConnsPerHost: 2, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return
		}
		l.mu.Lock()
		l.requests++
		if err != nil {
			l.failed = append(l.failed, check.EdgeRequest{At: sent, Done: time.Now(), Edge: edge, Service: svc, Err: err.Error()})
		}
		l.mu.Unlock()
	}
}

func (l *load) stop() (int, []check.EdgeRequest) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests, append([]check.EdgeRequest(nil), l.failed...)
}

func TestServiceBound(t *testing.T) {
	rolling, canary := deployv1.Strategy_STRATEGY_ROLLING, deployv1.Strategy_STRATEGY_CANARY
	for _, c := range []struct {
		s    service
		want int
	}{
		{service{count: 2, maxParallel: 1, strategy: rolling}, 3},
		{service{count: 4, maxParallel: 2, strategy: rolling}, 6},
		{service{count: 2, maxSurge: "100%", maxUnavailable: "0", strategy: rolling}, 4},
		{service{count: 4, maxSurge: "25%", maxUnavailable: "25%", strategy: rolling}, 5},
		{service{count: 4, maxSurge: "0", maxUnavailable: "1", strategy: rolling}, 4}, // drains before it places
		{service{count: 2, maxParallel: 1, strategy: canary}, 4},
	} {
		if got := c.s.bound(); got != c.want {
			t.Errorf("bound of %+v = %d, want %d", c.s, got, c.want)
		}
	}
}
