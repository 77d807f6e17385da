package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/nodeagent/agent"
	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/consul"
	"slipway.dev/nodeagent/docker"
	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/nodeagent/process"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

var drivers = []string{"docker", "process"}

type harness struct {
	t       *testing.T
	node    string
	consul  *testenv.Consul
	reg     *consul.Registry
	drv     agent.Driver
	a       *agent.Agent
	stop    func() // stops a, leaving its instances running
	docker  *client.Client
	service string
	log     *slog.Logger

	mu     sync.Mutex
	events []agent.Event
}

type opts struct {
	drainWindow time.Duration
	grpcAddr    string
	// dataDir, when set, is kept across agents of one test (a restart).
	dataDir                 string
	holdAfter, confirmGrace time.Duration
	healthPoll              time.Duration
	// leaderLapse is agent.Config.LeaderLapse (nil: none).
	leaderLapse func(time.Time) (time.Duration, time.Duration)
}

func newHarness(t *testing.T, driver string, o opts) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: real Consul and Docker; skipped by -short")
	}
	imgDir := nodetest.ImagesDir(t)
	h := &harness{t: t, node: nodetest.NodeID(t), consul: testenv.StartConsul(t)}
	h.service = "web-" + h.node
	var err error
	h.log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.reg, err = consul.New(h.consul.Addr(), h.node, h.log)
	if err != nil {
		t.Fatal(err)
	}
	switch driver {
	case "docker":
		h.docker = nodetest.Docker(t)
		nodetest.CleanupContainers(t, h.docker, h.node)
		h.drv = docker.New(h.docker, h.node, "127.0.0.1", h.log)
	case "process":
		stateDir := filepath.Join(t.TempDir(), "process")
		nodetest.CleanupProcesses(t, stateDir)
		h.drv, err = process.New(imgDir, stateDir, "127.0.0.1", h.log)
		if err != nil {
			t.Fatal(err)
		}
	}
	h.a, h.stop = h.runAgent(o)
	return h
}

func (h *harness) newAgent(o opts) *agent.Agent {
	a, _ := h.runAgent(o)
	return a
}

// runAgent starts an agent and returns it with a func that stops it (the
// instances it runs keep running), also called when the test ends.
func (h *harness) runAgent(o opts) (*agent.Agent, func()) {
	h.t.Helper()
	window := o.drainWindow
	if window == 0 {
		window = 300 * time.Millisecond
	}
	dataDir := o.dataDir
	if dataDir == "" {
		dataDir = filepath.Join(h.t.TempDir(), "data")
	}
	a, err := agent.New(agent.Config{
		NodeID: h.node, Address: "127.0.0.1", GRPCAddr: o.grpcAddr, DataDir: dataDir,
		DrainTimeout: 10 * time.Second, DrainWindow: window, CPUMHz: 1000, MemoryMB: 1024, Logger: h.log,
		ReadyWithin: 20 * time.Second, // long, so that a start held by its probe shows
		HoldAfter:   o.holdAfter, ConfirmGrace: o.confirmGrace, HealthPoll: o.healthPoll, LeaderLapse: o.leaderLapse,
	}, h.drv, h.reg)
	if err != nil {
		h.t.Fatal(err)
	}
	_, ch, cancelSub := a.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-ch:
				if !ok {
					return
				}
				h.mu.Lock()
				h.events = append(h.events, ev)
				h.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancelSub(); cancel(); <-done }) }
	h.t.Cleanup(stop)
	return a, stop
}

func (h *harness) spec(id, image string) allocation.Spec {
	return allocation.Spec{ID: h.node + "-" + id, NodeID: h.node, Service: h.service, Release: 1, Track: "stable",
		Image: image, Port: 8080, MemoryMB: 64, CPUMHz: 100, KillTimeout: 2 * time.Second,
		Check: allocation.Check{HTTP: "/healthz", Interval: time.Second, Timeout: time.Second}}
}

func (h *harness) sync(tok uint64, specs ...allocation.Spec) (map[string]agent.Status, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := h.a.Sync(ctx, h.node, agent.Token{Term: 1, Index: tok}, specs)
	out := map[string]agent.Status{}
	for _, s := range res.Allocations {
		out[s.AllocID] = s
	}
	return out, err
}

// instances returns the Consul instances of the test service by id.
func (h *harness) instances() map[string]*api.ServiceEntry {
	h.t.Helper()
	es, _, err := h.reg.Client().Health().Service(h.service, "", false, nil)
	if err != nil {
		return nil
	}
	out := map[string]*api.ServiceEntry{}
	for _, e := range es {
		out[e.Service.ID] = e
	}
	return out
}

// instanceIDs renders allocation id -> instance id and host port.
func instanceIDs(m map[string]allocation.Instance) string {
	out := map[string]string{}
	for id, in := range m {
		out[id] = in.ID + ":" + strconv.Itoa(in.HostPort)
	}
	return fmt.Sprint(out)
}

func passing(e *api.ServiceEntry) bool {
	return e != nil && e.Checks.AggregatedStatus() == api.HealthPassing
}

// running returns the driver's running instances by allocation id.
func (h *harness) running() map[string]allocation.Instance {
	h.t.Helper()
	is, err := h.drv.List(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]allocation.Instance{}
	for _, i := range is {
		if i.Running {
			out[i.AllocID] = i
		}
	}
	return out
}

func (h *harness) status(id string) agent.Status {
	for _, s := range h.a.Statuses() {
		if s.AllocID == id {
			return s
		}
	}
	return agent.Status{}
}

// eventCount counts the events that are not check results (which follow
// the instances' own health, not the agent's actions).
func (h *harness) eventCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.events {
		if !strings.HasPrefix(ev.Message, "health ") {
			n++
		}
	}
	return n
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, driver, opts{})
			a, b, c := h.spec("a", "slipway/demo:v1"), h.spec("b", "slipway/demo:v1"), h.spec("c", "slipway/demo:v2")

			// Three allocations: three healthy instances registered with the
			// right tags and meta.
			st, err := h.sync(5, a, b, c)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []allocation.Spec{a, b, c} {
				if st[s.ID].State != agent.Running || st[s.ID].HostPort == 0 || st[s.ID].InstanceID == "" {
					t.Fatalf("after sync %s = %+v, want running with a host port", s.ID, st[s.ID])
				}
			}
			nodetest.Eventually(t, 15*time.Second, "three passing instances in Consul", func() bool {
				in := h.instances()
				return len(in) == 3 && passing(in[a.ID]) && passing(in[b.ID]) && passing(in[c.ID])
			})
			e := h.instances()[c.ID]
			wantTags := []string{catalog.Tag, catalog.ReleaseTag(1), catalog.TrackTag("stable")}
			if !slices.Equal(e.Service.Tags, wantTags) || e.Service.Meta[catalog.MetaAllocation] != c.ID ||
				e.Service.Meta[catalog.MetaNode] != h.node || e.Service.Meta[catalog.MetaRelease] != "1" ||
				e.Service.Meta[catalog.MetaTrack] != "stable" || e.Service.Port != st[c.ID].HostPort {
				t.Errorf("registration of %s: tags %v meta %v port %d", c.ID, e.Service.Tags, e.Service.Meta, e.Service.Port)
			}
			if len(h.running()) != 3 {
				t.Fatalf("driver runs %d instances, want 3", len(h.running()))
			}
			nodetest.Eventually(t, 10*time.Second, "agent reports passing health", func() bool {
				return h.status(c.ID).Health == consul.Passing && !h.status(c.ID).HealthySince.IsZero()
			})

			// Repeating the sync is a no-op: same instances, no events.
			before := h.running()
			n := h.eventCount()
			if _, err := h.sync(5, a, b, c); err != nil {
				t.Fatal(err)
			}
			if got := h.running(); instanceIDs(got) != instanceIDs(before) {
				t.Errorf("repeat sync changed instances:\n%v\n%v", before, got)
			}
			if h.eventCount() != n {
				t.Errorf("repeat sync emitted %d events", h.eventCount()-n)
			}

			// A stale token is refused and changes nothing.
			if _, err := h.sync(4); !errors.Is(err, agent.ErrStaleToken) {
				t.Fatalf("stale sync = %v, want ErrStaleToken", err)
			}
			if len(h.running()) != 3 || len(h.instances()) != 3 {
				t.Fatalf("stale sync changed things: %d running, %d registered", len(h.running()), len(h.instances()))
			}

			// A live edge still routes to c: removing c deregisters it first,
			// then holds it running until the edge stops routing to it.
			kv := h.reg.Client().KV()
			sid, _, err := h.reg.Client().Session().Create(&api.SessionEntry{Name: "edge-test", TTL: "30s", Behavior: api.SessionBehaviorDelete}, nil)
			if err != nil {
				t.Fatal(err)
			}
			putAck := func(ids ...string) {
				ack := &edgev1.EdgeAck{EdgeId: "e1", Instances: map[string]*edgev1.InstanceList{h.service: {Ids: ids}}}
				b, _ := protojson.Marshal(ack)
				if ok, _, err := kv.Acquire(&api.KVPair{Key: catalog.EdgeKey("e1-" + h.node), Value: b, Session: sid}, nil); err != nil || !ok {
					t.Fatalf("put edge ack: %v %v", ok, err)
				}
			}
			putAck(a.ID, b.ID, c.ID)

			type obs struct{ deregistered, stopped time.Time }
			var o obs
			if _, err := h.sync(6, a, b); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 10*time.Second, "c deregistered", func() bool {
				_, ok := h.instances()[c.ID]
				return !ok
			})
			o.deregistered = time.Now()
			if _, ok := h.running()[c.ID]; !ok {
				t.Fatal("c stopped before (or as) it was deregistered")
			}
			if s := h.status(c.ID); s.State != agent.Draining {
				t.Errorf("c state = %v while edges route to it, want draining", s.State)
			}
			// Longer than the drain window: the barrier, not the window, holds it.
			// The 1s (over three 300ms drain windows) is the test's input: c
			// must stay running through all of it, so there is no condition to
			// wait for, only a window to sample.
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) { // samples a deliberate window, not a wait
				if _, ok := h.running()[c.ID]; !ok {
					t.Fatal("c stopped while a live edge still routed to it")
				}
			}
			putAck(a.ID, b.ID)
			nodetest.Eventually(t, 10*time.Second, "c stopped after the edge acked", func() bool {
				_, ok := h.running()[c.ID]
				return !ok
			})
			o.stopped = time.Now()
			if !o.deregistered.Before(o.stopped) {
				t.Errorf("order: deregistered %v, stopped %v", o.deregistered, o.stopped)
			}
			nodetest.Eventually(t, 10*time.Second, "c forgotten", func() bool { return h.status(c.ID).AllocID == "" })
			if len(h.running()) != 2 || len(h.instances()) != 2 {
				t.Errorf("after shrink: %d running, %d registered; want 2, 2", len(h.running()), len(h.instances()))
			}
			if driver == "docker" {
				if cs := nodetest.Containers(t, h.docker, h.node); len(cs) != 2 {
					t.Errorf("%d containers left, want 2", len(cs))
				}
			}
		})
	}
}

// TestHealthyFromThePassingProbe: an instance registered after its probe
// passed is reported passing, healthy since that probe, by the time the
// sync that started it returns, not only once the agent next reads the
// checks from Consul (here never: the read is an hour away). Every batch of
// a rolling update would otherwise wait up to that read on top of its
// min_healthy_time.
func TestHealthyFromThePassingProbe(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "process", opts{healthPoll: time.Hour})
	a := h.spec("a", "slipway/demo:v1")
	began := time.Now()
	st, err := h.sync(5, a)
	if err != nil {
		t.Fatal(err)
	}
	got := st[a.ID]
	if got.State != agent.Running || got.Health != consul.Passing {
		t.Fatalf("after sync %s = %+v, want running and passing", a.ID, got)
	}
	if got.HealthySince.Before(began) || got.HealthySince.After(time.Now()) {
		t.Errorf("healthy since %s, want within the sync (from %s)", got.HealthySince, began)
	}
	if !passing(h.instances()[a.ID]) {
		t.Errorf("%s is not passing in Consul: %+v", a.ID, h.instances()[a.ID])
	}
}

func TestCrashBehindTheAgentsBack(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, driver, opts{})
			a := h.spec("a", "slipway/demo:v1")
			if _, err := h.sync(1, a); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 15*time.Second, "a passing", func() bool { return passing(h.instances()[a.ID]) })
			old := h.running()[a.ID]
			_, events, cancel := h.a.Subscribe()
			defer cancel()

			if driver == "docker" {
				if err := h.docker.ContainerKill(context.Background(), old.ID, "KILL"); err != nil {
					t.Fatal(err)
				}
			} else {
				pid, _ := strconv.Atoi(old.ID)
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			killed := time.Now() // the kill has been delivered
			// Noticed (and reported) within a second.
			timeout := time.After(time.Second)
		wait:
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						t.Fatal("subscription dropped")
					}
					if ev.Status.AllocID == a.ID && strings.Contains(ev.Message, "exited") {
						t.Logf("exit reported %s after the kill", time.Since(killed))
						break wait
					}
				case <-timeout:
					t.Fatal("exit not reported within a second")
				}
			}
			// Restarted: a new instance, registered and passing again.
			nodetest.Eventually(t, 20*time.Second, "a restarted and passing", func() bool {
				s := h.status(a.ID)
				n, ok := h.running()[a.ID]
				return ok && n.ID != old.ID && s.State == agent.Running && s.Restarts == 1 && passing(h.instances()[a.ID]) &&
					h.instances()[a.ID].Service.Port == n.HostPort
			})
		})
	}
}

func TestBadInputFailsOnlyThatAllocation(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, driver, opts{})
			good := h.spec("good", "slipway/demo:v1")
			unknown := h.spec("unknown", "slipway/nope:v9")
			badEnv := h.spec("badenv", "slipway/demo:v1")
			badEnv.Env = map[string]string{"A=B": "x"}
			other := h.spec("other", "slipway/demo:v1")
			other.NodeID = "someone-else"
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			clash := h.spec("clash", "slipway/demo:v1")
			clash.HostPort = l.Addr().(*net.TCPAddr).Port
			// Failed starts are retried until the start deadline; these
			// fail for good at the second try, a second later.
			unknown.StartDeadline, clash.StartDeadline = time.Millisecond, time.Millisecond

			st, err := h.sync(1, good, unknown, badEnv, other, clash)
			if err != nil {
				t.Fatal(err)
			}
			if st[good.ID].State != agent.Running {
				t.Errorf("good = %+v, want running", st[good.ID])
			}
			for id, want := range map[string]string{unknown.ID: "slipway/nope:v9", clash.ID: strconv.Itoa(clash.HostPort)} {
				// The sync may answer before or after the retry (it waits
				// for good's probe); either way the second failed start
				// is the last.
				if s := st[id]; !strings.Contains(s.Error, want) || s.State == agent.Starting && !strings.Contains(s.Error, "start retry 1 in 1s") {
					t.Errorf("%s = %v %q, want it starting (retried) or failed, naming %q", id, s.State, s.Error, want)
				}
				nodetest.Eventually(t, 20*time.Second, id+" failed once its start deadline passed", func() bool {
					s := h.status(id)
					return s.State == agent.Failed && strings.Contains(s.Error, want) && strings.Contains(s.Error, "start failed 2 times")
				})
				st[id] = h.status(id)
			}
			for id, want := range map[string]string{unknown.ID: "slipway/nope:v9", badEnv.ID: "env[A=B]", other.ID: "node_id", clash.ID: strconv.Itoa(clash.HostPort)} {
				if s := st[id]; s.State != agent.Failed || !strings.Contains(s.Error, want) {
					t.Errorf("%s = %v %q, want failed naming %q", id, s.State, s.Error, want)
				} else {
					t.Logf("%s: %s", id, s.Error)
				}
			}
			if r := h.running(); len(r) != 1 {
				t.Errorf("running %v, want only good", r)
			}
			nodetest.Eventually(t, 15*time.Second, "good passing", func() bool { return passing(h.instances()[good.ID]) })
			if len(h.instances()) != 1 {
				t.Errorf("registered %d, want 1", len(h.instances()))
			}
			if driver == "docker" {
				if cs := nodetest.Containers(t, h.docker, h.node); len(cs) != 1 {
					t.Errorf("%d containers, want 1 (failed starts leave nothing)", len(cs))
				}
			}
		})
	}
}

func TestConsulRestartRestoresRegistrations(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, driver, opts{grpcAddr: testenv.FreeAddr(t)})
			a, b := h.spec("a", "slipway/demo:v1"), h.spec("b", "slipway/demo:v2")
			if _, err := h.sync(1, a, b); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 15*time.Second, "two passing", func() bool {
				in := h.instances()
				return passing(in[a.ID]) && passing(in[b.ID])
			})
			before := h.running()
			h.consul.Stop()
			h.consul.Start() // a dev agent forgets everything
			nodetest.Eventually(t, 15*time.Second, "registrations restored and passing", func() bool {
				in := h.instances()
				return len(in) == 2 && passing(in[a.ID]) && passing(in[b.ID])
			})
			svcs, err := h.reg.Client().Agent().Services()
			if err != nil {
				t.Fatal(err)
			}
			self, ok := svcs[catalog.AgentServiceID(h.node)]
			if !ok || self.Meta[catalog.MetaNodeID] != h.node || self.Meta[catalog.MetaDriver] != driver {
				t.Errorf("agent's own registration after restart: %+v", self)
			}
			if got := h.running(); instanceIDs(got) != instanceIDs(before) {
				t.Errorf("instances changed across a Consul restart:\n%v\n%v", before, got)
			}
		})
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

func TestImageHealthcheckReachesConsul(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "docker", opts{})
	ok, sick := h.spec("ok", "slipway/demo:v1"), h.spec("sick", "slipway/demo:v1")
	// Only a TCP check in the spec: the image's HEALTHCHECK (GET /healthz,
	// failed by FAIL_HEALTH) is what finds the sick one.
	ok.Check = allocation.Check{TCP: true, Interval: time.Second}
	sick.Check = ok.Check
	sick.Env = map[string]string{"FAIL_HEALTH": "1"}
	if _, err := h.sync(1, ok, sick); err != nil {
		t.Fatal(err)
	}
	imageCheck := func(id string) string {
		for _, c := range h.instances()[id].Checks {
			if c.CheckID == consul.ImageCheckID(id) {
				return c.Status
			}
		}
		return ""
	}
	nodetest.Eventually(t, 20*time.Second, "image check critical for sick, passing for ok", func() bool {
		return imageCheck(sick.ID) == api.HealthCritical && imageCheck(ok.ID) == api.HealthPassing
	})
	if passing(h.instances()[sick.ID]) || !passing(h.instances()[ok.ID]) {
		t.Errorf("aggregated: sick passing=%v ok passing=%v", passing(h.instances()[sick.ID]), passing(h.instances()[ok.ID]))
	}
	nodetest.Eventually(t, 5*time.Second, "agent reports sick critical", func() bool { return h.status(sick.ID).Health == consul.Critical })
}

func TestReplaceAndDesiredStopped(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, driver, opts{})
			a := h.spec("a", "slipway/demo:v1")
			if _, err := h.sync(1, a); err != nil {
				t.Fatal(err)
			}
			old := h.running()[a.ID]
			version := func() string {
				resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(h.running()[a.ID].HostPort) + "/")
				if err != nil {
					return ""
				}
				resp.Body.Close()
				return resp.Header.Get("X-Slipway-Version")
			}
			if v := version(); v != "v1" {
				t.Fatalf("version = %q, want v1", v)
			}

			// Same allocation id, new spec: the old instance is drained and
			// replaced.
			a2 := a
			a2.Image = "slipway/demo:v2"
			st, err := h.sync(2, a2)
			if err != nil {
				t.Fatal(err)
			}
			if st[a.ID].State != agent.Running || st[a.ID].InstanceID == old.ID {
				t.Fatalf("after replace: %+v (old instance %s)", st[a.ID], old.ID)
			}
			if v := version(); v != "v2" {
				t.Errorf("version after replace = %q, want v2", v)
			}
			nodetest.Eventually(t, 10*time.Second, "replacement passing", func() bool { return passing(h.instances()[a.ID]) })

			// Desired state stopped: drained and stopped but still reported.
			a3 := a2
			a3.Stopped = true
			if _, err := h.sync(3, a3); err != nil {
				t.Fatal(err)
			}
			nodetest.Eventually(t, 10*time.Second, "a stopped", func() bool {
				return h.status(a.ID).State == agent.Stopped && len(h.running()) == 0 && len(h.instances()) == 0
			})

			// Leaving the desired set once stopped: forgotten at once, not
			// listed as stopped forever.
			st, err = h.sync(4)
			if err != nil {
				t.Fatal(err)
			}
			if got, listed := st[a.ID]; listed {
				t.Errorf("after leaving the desired set stopped, still listed: %+v", got)
			}
		})
	}
}

func TestCrashLoopIsReportedFailed(t *testing.T) {
	t.Parallel()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, driver, opts{})
			good, bad := h.spec("good", "slipway/demo:v1"), h.spec("bad", "slipway/demo:v1")
			bad.Env = map[string]string{"HEALTH_FAIL_AFTER": "soon"} // the demo exits at once on bad config
			t0 := time.Now()
			st, err := h.sync(1, good, bad)
			if err != nil {
				t.Fatal(err)
			}
			// bad exited at once: it is starting again (not failed) while
			// its restart policy (default: 3 attempts in 5m, delay 1s
			// doubling) restarts it.
			if st[good.ID].State != agent.Running || st[bad.ID].State != agent.Starting || !strings.Contains(st[bad.ID].Error, "; restart 1 of 3 in 1s") {
				t.Fatalf("after sync: good %v, bad %v %q", st[good.ID].State, st[bad.ID].State, st[bad.ID].Error)
			}
			// The reason says how it exited: the coordinator puts it in
			// the rollout's failure.
			if e := st[bad.ID].Error; !strings.Contains(e, "instance exited with code 1; last output: ") || !strings.Contains(e, `HEALTH_FAIL_AFTER "soon"`) {
				t.Errorf("bad's error %q, want the exit code and its last output", e)
			}
			t.Logf("bad: %s", st[bad.ID].Error)
			if d := time.Since(t0); d > 15*time.Second {
				t.Errorf("sync took %s: a crashing instance must not hold it for the probe's 20s", d)
			}
			nodetest.Eventually(t, 30*time.Second, "bad given up after its restarts", func() bool {
				s := h.status(bad.ID)
				return s.State == agent.Failed && s.Restarts == 3 &&
					strings.Contains(s.Error, "exited 4 times within 5m0s, more than the restart policy's 3 attempts (mode fail); not restarting until the spec changes (last: instance exited with code 1; last output: ")
			})
			if _, ok := h.running()[bad.ID]; ok {
				t.Error("given-up instance still running")
			}
			if _, ok := h.instances()[bad.ID]; ok {
				t.Error("given-up instance still registered")
			}
			nodetest.Eventually(t, 10*time.Second, "good passing", func() bool { return passing(h.instances()[good.ID]) })
		})
	}
}
