package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/docker"
	"slipway.dev/nodeagent/internal/nodetest"
	"slipway.dev/nodeagent/process"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	"slipway.dev/platform/testenv"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("SLIPWAY_NODE_ID", "from-env")
	t.Setenv("SLIPWAY_DRAIN_WINDOW", "3s")
	o, err := parseFlags([]string{"-labels", "zone=a,disk=ssd", "-drain-window", "4s", "-insecure"})
	if err != nil {
		t.Fatal(err)
	}
	if o.nodeID != "from-env" || o.drainWindow != 4*time.Second {
		t.Errorf("node %q window %s: want env node id and the flag over the env", o.nodeID, o.drainWindow)
	}
	for flag, bad := range map[string][]string{
		"-pull-timeout":       {"-insecure", "-pull-timeout", "0s"},
		"-registry-auth-file": {"-insecure", "-registry-auth-file", filepath.Join(t.TempDir(), "missing.json")},
	} {
		if _, err := parseFlags(bad); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("parseFlags(%v) = %v, want an error naming %s", bad, err, flag)
		}
	}
	for _, bad := range [][]string{{"-driver", "podman"}, {"-labels", "novalue"}, {"-node-id", ""}, {"-node-id", "a/b"}, {"-advertise", "0.0.0.0"}, {"-advertise", "host"}, {"-tls-ca", "ca.pem"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%v) = nil error", bad)
		}
	}
}

// agentProc is a real slipway-nodeagent process.
type agentProc struct {
	t    *testing.T
	bin  string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *agentProc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(done) }()
	p.done = done
}

func (p *agentProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

func TestAgentKilledAndRestartedAdoptsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: real agent process, Consul and Docker; skipped by -short")
	}
	t.Parallel()
	bin := testenv.BuildBinary(t, "./services/nodeagent/cmd/slipway-nodeagent")
	imgDir := nodetest.ImagesDir(t)
	for _, driver := range []string{"docker", "process"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			c := testenv.StartConsul(t)
			node := nodetest.NodeID(t)
			dataDir := t.TempDir()
			grpcAddr := testenv.FreeAddr(t)
			metricsAddr := testenv.FreeAddr(t)
			p := &agentProc{t: t, bin: bin, log: filepath.Join(t.TempDir(), "agent.log"), args: []string{
				"-node-id", node, "-grpc-addr", grpcAddr, "-consul-addr", c.Addr(), "-driver", driver,
				"-process-dir", imgDir, "-data-dir", dataDir, "-drain-window", "200ms", "-labels", "zone=a",
				"-log-level", "debug", "-metrics-addr", metricsAddr,
			}}
			p.args = append(p.args, testenv.TLSFlags(t, pki.RoleNodeAgent, node)...)
			cli := nodetest.Docker(t)
			nodetest.CleanupContainers(t, cli, node)
			nodetest.CleanupProcesses(t, filepath.Join(dataDir, "process"))
			t.Cleanup(func() {
				p.kill()
				if t.Failed() {
					b, _ := os.ReadFile(p.log)
					t.Logf("agent log:\n%s", b)
				}
			})
			p.start()

			conn, err := rpc.Dial(grpcAddr, testenv.Creds(t, pki.RoleCoordinator, "test"), rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: node})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ac := agentv1.NewNodeAgentServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			nodetest.Eventually(t, 20*time.Second, "agent answers", func() bool {
				_, err := ac.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
				return err == nil
			})

			service := "web-" + node
			alloc := func(id, image string) *agentv1.Allocation {
				return &agentv1.Allocation{Id: node + "-" + id, NodeId: node, Service: service, Release: 2, Track: "blue",
					Image: image, Port: 8080, MemoryMb: 64, KillTimeout: durationpb.New(2 * time.Second),
					Check: &agentv1.Check{Http: "/healthz", Interval: durationpb.New(time.Second)}}
			}
			want := []*agentv1.Allocation{alloc("a", "slipway/demo:v1"), alloc("b", "slipway/demo:v1"), alloc("c", "slipway/demo:v2")}
			res, err := ac.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 2, Index: 10}, Allocations: want})
			if err != nil {
				t.Fatal(err)
			}
			before := map[string]string{}
			for _, s := range res.GetAllocations() {
				if s.GetState() != agentv1.AllocationState_ALLOCATION_STATE_RUNNING {
					t.Fatalf("%s: %v %s", s.GetAllocationId(), s.GetState(), s.GetError())
				}
				before[s.GetAllocationId()] = s.GetContainerId()
			}
			consulIDs := func() []string {
				es, _, err := c2(c).Health().Service(service, "", true, nil)
				if err != nil {
					return nil
				}
				var ids []string
				for _, e := range es {
					ids = append(ids, e.Service.ID)
				}
				sort.Strings(ids)
				return ids
			}
			wantIDs := fmt.Sprint([]string{node + "-a", node + "-b", node + "-c"})
			nodetest.Eventually(t, 15*time.Second, "three passing in Consul", func() bool { return fmt.Sprint(consulIDs()) == wantIDs })
			svcs, err := c2(c).Agent().Services()
			if err != nil {
				t.Fatal(err)
			}
			self := svcs[catalog.AgentServiceID(node)]
			if self == nil || self.Service != catalog.AgentService || self.Meta[catalog.MetaNodeID] != node ||
				self.Meta[catalog.MetaDriver] != driver || self.Meta[catalog.MetaLabelPrefix+"zone"] != "a" {
				t.Fatalf("agent self-registration: %+v", self)
			}

			// The agent's own gRPC health check passes in Consul.
			nodetest.Eventually(t, 15*time.Second, "agent's own check passing", func() bool {
				es, _, err := c2(c).Health().Service(catalog.AgentService, "", true, nil)
				return err == nil && len(es) == 1 && es[0].Service.ID == catalog.AgentServiceID(node)
			})
			nodetest.Eventually(t, 5*time.Second, "metrics show three running", func() bool {
				resp, err := testenv.MetricsClient(t).Get("https://" + metricsAddr + "/metrics")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return strings.Contains(string(b), "slipway_nodeagent_allocations_running 3") &&
					strings.Contains(string(b), `slipway_nodeagent_syncs_total{result="ok"} 1`)
			})

			// The agent has recorded a heartbeat (its data dir's heartbeat
			// file): restarted at once, it was not seen dead for longer
			// than -hold-after, so it keeps its instances in traffic. A
			// kill before the first one (a starved machine) would make the
			// restart hold them out until a leader confirms.
			nodetest.Eventually(t, 10*time.Second, "a heartbeat recorded", func() bool {
				_, err := os.Stat(filepath.Join(dataDir, "heartbeat"))
				return err == nil
			})

			// SIGKILL, then leave an orphan registration and a stray instance
			// behind, as a crash mid-operation would.
			p.kill()
			ghost := &api.AgentServiceRegistration{ID: node + "-ghost", Name: service, Port: 1,
				Tags: []string{catalog.Tag}, Meta: map[string]string{catalog.MetaNode: node}}
			if err := c2(c).Agent().ServiceRegister(ghost); err != nil {
				t.Fatal(err)
			}
			stray := allocation.Spec{ID: node + "-stray", NodeID: node, Service: service, Image: "slipway/demo:v3", Port: 8080, MemoryMB: 64}
			switch driver {
			case "docker":
				if _, err := docker.New(cli, node, "127.0.0.1", nil).Start(ctx, stray); err != nil {
					t.Fatal(err)
				}
			case "process":
				pd, err := process.New(imgDir, filepath.Join(dataDir, "process"), "127.0.0.1", nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pd.Start(ctx, stray); err != nil {
					t.Fatal(err)
				}
			}

			p.start()
			var last *agentv1.GetNodeStatusResponse
			defer func() {
				if t.Failed() {
					t.Logf("last node status: %v\nconsul: %v", last, consulIDs())
				}
			}()
			nodetest.Eventually(t, 20*time.Second, "restarted agent converged", func() bool {
				st, err := ac.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
				last = st
				if err != nil || len(st.GetAllocations()) != 3 {
					return false
				}
				for _, s := range st.GetAllocations() {
					if s.GetState() != agentv1.AllocationState_ALLOCATION_STATE_RUNNING || before[s.GetAllocationId()] != s.GetContainerId() {
						return false
					}
				}
				return fmt.Sprint(consulIDs()) == wantIDs
			})
			// No duplicates, no orphans: exactly the three adopted instances.
			nodetest.Eventually(t, 10*time.Second, "stray instance and ghost registration removed", func() bool {
				svcs, err := c2(c).Agent().Services()
				if err != nil || svcs[node+"-ghost"] != nil {
					return false
				}
				switch driver {
				case "docker":
					return len(nodetest.Containers(t, cli, node)) == 3
				default:
					ents, _ := os.ReadDir(filepath.Join(dataDir, "process"))
					n := 0
					for _, e := range ents {
						if strings.HasSuffix(e.Name(), ".json") {
							n++
						}
					}
					return n == 3
				}
			})
			for _, cn := range nodetest.Containers(t, cli, node) {
				if before[cn.Labels[docker.LabelAllocation]] != cn.ID {
					t.Errorf("container %s of %s is not one of the adopted ones", cn.ID, cn.Labels[docker.LabelAllocation])
				}
			}

			// The fencing token survived the restart.
			_, err = ac.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 2, Index: 9}})
			if status.Code(err) != codes.FailedPrecondition {
				t.Errorf("stale token after restart: %v, want FAILED_PRECONDITION", err)
			}
			_, err = ac.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node})
			if status.Code(err) != codes.InvalidArgument || len(rpc.Violations(err)) != 1 || rpc.Violations(err)[0].Field != "token" {
				t.Errorf("missing token: %v, want INVALID_ARGUMENT naming token", err)
			}
			st, err := ac.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
			if err != nil || st.GetToken().GetIndex() != 10 || st.GetDriver() != driver || st.GetLabels()["zone"] != "a" {
				t.Errorf("node status: %v %v", st, err)
			}

			// The watch starts with every allocation's current status.
			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			ws, err := ac.WatchAllocations(wctx, &agentv1.WatchAllocationsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for len(seen) < 3 {
				ev, err := ws.Recv()
				if err != nil {
					t.Fatal(err)
				}
				seen[ev.GetAllocation().GetAllocationId()] = true
			}
			// ... then each change.
			d := alloc("d", "slipway/demo:v4")
			if _, err := ac.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 2, Index: 11},
				Allocations: append(want, d)}); err != nil {
				t.Fatal(err)
			}
			for {
				ev, err := ws.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if a := ev.GetAllocation(); a.GetAllocationId() == d.GetId() && a.GetState() == agentv1.AllocationState_ALLOCATION_STATE_RUNNING {
					break
				}
			}
			wcancel()

			// SIGTERM: the agent exits cleanly and leaves the workloads running.
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				t.Fatal("agent did not exit within 20s of SIGTERM")
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit code after SIGTERM = %d", code)
			}
			p.cmd = nil
			if driver == "docker" {
				running := 0
				for _, cn := range nodetest.Containers(t, cli, node) {
					if cn.State == "running" {
						running++
					}
				}
				if running != 4 {
					t.Errorf("%d containers running after the agent stopped, want 4", running)
				}
			} else {
				for id, pid := range before {
					n, _ := strconv.Atoi(pid)
					if err := syscall.Kill(n, 0); err != nil {
						t.Errorf("process %s of %s gone after the agent stopped: %v", pid, id, err)
					}
				}
			}
		})
	}
}

func c2(c *testenv.Consul) *api.Client {
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr()
	cl, _ := api.NewClient(cfg)
	return cl
}
