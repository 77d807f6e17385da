package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/testenv"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

var seq atomic.Int64

type env struct {
	t      testing.TB
	consul *testenv.Consul
	client *api.Client
	demo   string
}

// newEnv starts a Consul agent and builds the demo backend for a test or
// benchmark; everything it starts is stopped at t's cleanup.
func newEnv(t testing.TB) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: real Consul, nginx and backends")
	}
	// Consul as in production: ACLs default deny, the edge with only its
	// policy (deployments/consul/edge.hcl); the test itself is the admin.
	c := testenv.StartConsul(t, testenv.ConsulACL())
	return &env{t: t, consul: c, client: c.AdminClient(t), demo: testenv.BuildBinary(t, "./deployments/demo")}
}

// startProcess runs bin with env and stops it (SIGTERM, then SIGKILL) at
// cleanup. It returns a stop function that is safe to call twice.
func startProcess(t testing.TB, name, bin string, args []string, environ ...string) func() {
	stop, _ := startProcessKill(t, name, bin, args, environ...)
	return stop
}

// startProcessKill is startProcess that also returns a SIGKILL function.
func startProcessKill(t testing.TB, name, bin string, args []string, environ ...string) (stop, kill func()) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), environ...)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	stop = func() {
		select {
		case <-done:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("%s log (tail):\n%s", name, b)
		}
	})
	kill = func() {
		cmd.Process.Kill()
		<-done
	}
	return stop, kill
}

// instance is a demo backend registered in Consul as a node agent would.
type instance struct {
	id, service string
	release     uint64
	port        int
	stop        func()
	env         *env
	probes      int64 // requests served() sent to it directly
}

// startInstance runs a demo backend whose X-Slipway-Colour is its id and
// registers it with a real HTTP check, waiting until Consul says passing.
func (e *env) startInstance(service string, release uint64) *instance {
	t := e.t
	t.Helper()
	n := seq.Add(1)
	id := fmt.Sprintf("%s-r%d-%d", service, release, n)
	port := testenv.FreePort(t)
	stop := startProcess(t, id, e.demo, nil, "PORT="+strconv.Itoa(port), "VERSION=v"+strconv.FormatUint(release, 10), "COLOUR="+id)
	inst := &instance{id: id, service: service, release: release, port: port, stop: stop, env: e}
	reg := &api.AgentServiceRegistration{
		ID: id, Name: service, Address: "127.0.0.1", Port: port,
		Tags: []string{catalog.Tag, catalog.ReleaseTag(release), catalog.TrackTag("stable")},
		Meta: map[string]string{catalog.MetaRelease: strconv.FormatUint(release, 10), catalog.MetaTrack: "stable",
			catalog.MetaAllocation: "alloc-" + id, catalog.MetaNode: "node-1"},
		Check: &api.AgentServiceCheck{HTTP: fmt.Sprintf("http://127.0.0.1:%d/healthz", port), Interval: "1s", Timeout: "1s"},
	}
	if err := e.client.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	t.Cleanup(func() { e.client.Agent().ServiceDeregister(id) })
	testenv.Eventually(t, 20*time.Second, "instance "+id+" passing", func() error {
		status, _, err := e.client.Agent().AgentHealthServiceByID(id)
		if err != nil {
			return err
		}
		if status != api.HealthPassing {
			return fmt.Errorf("Consul reports %s", status)
		}
		return nil
	})
	return inst
}

// remove deregisters the instance, waits until the edge's ack no longer
// lists it, then stops it: what the node agent does.
func (i *instance) remove(edgeID string) {
	i.env.t.Helper()
	if err := i.env.client.Agent().ServiceDeregister(i.id); err != nil {
		i.env.t.Fatalf("deregister %s: %v", i.id, err)
	}
	i.env.waitAck(edgeID, "ack without "+i.id, func(a *edgev1.EdgeAck) bool {
		return !slices.Contains(a.GetInstances()[i.service].GetIds(), i.id)
	})
	i.stop()
}

// served returns how many requests on "/" the instance has answered apart
// from served's own: the demo backend numbers its answers ("..., request N")
// and counts the one request served sends it directly too.
func (i *instance) served(client *http.Client) (int64, error) {
	resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(i.port) + "/")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", i.id, err)
	}
	i.probes++ // answered, so counted by the backend
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("%s: read body: %w", i.id, err)
	}
	const mark = ", request "
	text := strings.TrimSpace(string(body))
	k := strings.LastIndex(text, mark)
	if k < 0 {
		return 0, fmt.Errorf("%s: no request count in %q", i.id, body)
	}
	n, err := strconv.ParseInt(text[k+len(mark):], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: bad request count in %q: %w", i.id, body, err)
	}
	return n - i.probes, nil
}

type intent struct {
	gen     uint64
	host    string
	weights map[uint64]int32
	pins    []*edgev1.Pin
	sticky  *edgev1.Sticky
}

func (e *env) writeIntent(service string, in intent) {
	e.t.Helper()
	pb := &edgev1.TrafficIntent{Service: service, Generation: in.gen, Host: in.host, Path: "/", Weights: map[string]int32{}, Pins: in.pins, Sticky: in.sticky}
	for rel, w := range in.weights {
		pb.Weights[strconv.FormatUint(rel, 10)] = w
	}
	b, err := protojson.Marshal(pb)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.client.KV().Put(&api.KVPair{Key: catalog.RouteKey(service), Value: b}, nil); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { e.client.KV().Delete(catalog.RouteKey(service), nil) })
}

func (e *env) ack(edgeID string) *edgev1.EdgeAck {
	kv, _, err := e.client.KV().Get(catalog.EdgeKey(edgeID), nil)
	if err != nil || kv == nil {
		return nil
	}
	var a edgev1.EdgeAck
	if err := protojson.Unmarshal(kv.Value, &a); err != nil {
		e.t.Fatalf("bad ack JSON: %v", err)
	}
	return &a
}

func (e *env) waitAck(edgeID, what string, ok func(*edgev1.EdgeAck) bool) *edgev1.EdgeAck {
	e.t.Helper()
	var got *edgev1.EdgeAck
	testenv.Eventually(e.t, 20*time.Second, what, func() error {
		got = e.ack(edgeID)
		switch {
		case got == nil:
			return fmt.Errorf("no ack from %s", edgeID)
		case !ok(got):
			return fmt.Errorf("last ack: %v", got)
		}
		return nil
	})
	return got
}

// ackedGen waits until the edge acknowledges generation gen of service
// routing exactly the instance ids want.
func (e *env) ackedGen(edgeID, service string, gen uint64, want ...*instance) {
	e.t.Helper()
	var ids []string
	for _, i := range want {
		ids = append(ids, i.id)
	}
	slices.Sort(ids)
	e.waitAck(edgeID, fmt.Sprintf("ack of %s generation %d with %v", service, gen, ids), func(a *edgev1.EdgeAck) bool {
		return a.GetGenerations()[service] == gen && slices.Equal(a.GetInstances()[service].GetIds(), ids)
	})
}

type edge struct {
	id, mode, httpAddr, grpcAddr, metricsAddr, dir string
	stop, kill                                     func()
}

func (e *env) startEdge(mode string) *edge { return e.startEdgeWith(mode, nil) }

// startEdgeWith is startEdge with extra environment variables and
// command-line flags.
func (e *env) startEdgeWith(mode string, environ []string, extra ...string) *edge {
	t := e.t
	t.Helper()
	bin := testenv.BuildBinary(t, "./services/edge/cmd/slipway-edge")
	ed := &edge{id: fmt.Sprintf("edge-%s-%d", mode, seq.Add(1)), mode: mode, httpAddr: testenv.FreeAddr(t), grpcAddr: testenv.FreeAddr(t), metricsAddr: testenv.FreeAddr(t), dir: t.TempDir()}
	args := []string{"-id", ed.id, "-consul-addr", e.consul.Addr(), "-mode", mode, "-http-addr", ed.httpAddr,
		"-grpc-addr", ed.grpcAddr, "-metrics-addr", ed.metricsAddr, "-log-level", "debug", "-session-ttl", "10s"}
	args = append(args, testenv.TLSFlags(t, pki.RoleEdge, ed.id)...)
	args = append(args, extra...)
	if mode == "nginx" {
		args = append(args, "-nginx-dir", ed.dir, "-nginx-control-addr", testenv.FreeAddr(t))
	}
	// Its Consul token (policy deployments/consul/edge.hcl) comes as
	// Consul's own CONSUL_HTTP_TOKEN.
	ed.stop, ed.kill = startProcessKill(t, ed.id, bin, args, append(e.consul.Env(e.consul.ComponentToken(t, "edge")), environ...)...)
	t.Cleanup(func() {
		// Stop the edge (which stops its nginx gracefully), then, as a
		// safety net, kill any nginx process group still there.
		ed.stop()
		if b, err := os.ReadFile(filepath.Join(ed.dir, "nginx.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
	return ed
}

// get sends one request through the edge and returns the status and the
// X-Slipway-Colour (instance id) and X-Slipway-Version headers.
func get(client *http.Client, ed *edge, host string, hdr map[string]string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ed.httpAddr+"/", nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, "", "", err
	}
	return resp.StatusCode, resp.Header.Get("X-Slipway-Colour"), resp.Header.Get("X-Slipway-Version"), nil
}

func kv(service, value string) *api.KVPair {
	return &api.KVPair{Key: catalog.RouteKey(service), Value: []byte(value)}
}
