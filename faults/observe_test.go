package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/encoding/protojson"

	"slipway.dev/faults/check"
	"slipway.dev/platform/catalog"
	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
	deployv1 "slipway.dev/proto/slipway/deploy/v1"
	edgev1 "slipway.dev/proto/slipway/edge/v1"
)

// sampler samples each service's passing instances in Consul.
type sampler struct {
	mu      sync.Mutex
	samples []check.Serving
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startSampler(cl *api.Client, services []service, every time.Duration) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{cancel: cancel}
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// Serving is what the edges route to: the union of the
			// instances in every live edge's acknowledgement (an instance
			// draining is registered and passing until it stops, but no
			// longer routed).
			qctx, qcancel := context.WithTimeout(ctx, time.Second)
			kvs, _, err := cl.KV().List(catalog.EdgesPrefix, (&api.QueryOptions{}).WithContext(qctx))
			qcancel()
			if err != nil {
				continue // Consul down: nothing to sample
			}
			routed := map[string]map[string]bool{}
			for _, kv := range kvs {
				ack := &edgev1.EdgeAck{}
				if protojson.Unmarshal(kv.Value, ack) != nil {
					continue
				}
				for svc, l := range ack.GetInstances() {
					if routed[svc] == nil {
						routed[svc] = map[string]bool{}
					}
					for _, id := range l.GetIds() {
						routed[svc][id] = true
					}
				}
			}
			for _, svc := range services {
				smp := check.Serving{At: time.Now(), Service: svc.name, Passing: len(routed[svc.name]), Bound: svc.bound()}
				for id := range routed[svc.name] {
					smp.Instances = append(smp.Instances, id)
				}
				slices.Sort(smp.Instances)
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
		}
	})
	return s
}

func (s *sampler) stop() []check.Serving {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// agentLog reads a node agent's JSON log: allocation lines and the
// fencing tokens of the desired sets it accepted.
func agentLog(path, node string) ([]check.AgentEvent, []check.Token) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	var events []check.AgentEvent
	var tokens []check.Token
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			Alloc string    `json:"alloc"`
			State string    `json:"state"`
			Term  *uint64   `json:"term"`
			Index *uint64   `json:"index"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if l.Alloc != "" {
			events = append(events, check.AgentEvent{At: l.Time, Node: node, Alloc: l.Alloc, Msg: l.Msg, State: l.State})
		}
		if l.Msg == "desired set changed" && l.Term != nil && l.Index != nil {
			tokens = append(tokens, check.Token{At: l.Time, Node: node, Term: *l.Term, Index: *l.Index})
		}
	}
	return events, tokens
}

// staleCount scrapes an agent's count of refused stale fencing tokens, over
// mutual TLS with client.
func staleCount(client *http.Client, addr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, `slipway_nodeagent_syncs_total{result="stale"}`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v), err
		}
	}
	return 0, nil
}

// liveAllocations asks an agent for the allocations it holds live.
func (c *cluster) liveAllocations(a *agentProc) ([]string, error) {
	conn, err := rpc.Dial(a.h.ip+":"+agentGRPC, c.coordinatorCreds(), rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: a.node})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := agentv1.NewNodeAgentServiceClient(conn).GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, al := range st.GetAllocations() {
		switch al.GetState() {
		case agentv1.AllocationState_ALLOCATION_STATE_STOPPED, agentv1.AllocationState_ALLOCATION_STATE_FAILED:
		default:
			ids = append(ids, al.GetAllocationId())
		}
	}
	return ids, nil
}

func (c *cluster) coordinatorCreds() *rpc.Creds {
	files := c.pki.Files(c.t, pki.RoleCoordinator, "faults-observer")
	cr, err := rpc.NewCreds(files.Security(), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return cr
}

// runningInstances lists the allocation ids of the instances running on
// an agent's host: containers by label, or the processes in its namespace
// (named by the process driver's state files; an unknown one as pid:N).
func runningInstances(a *agentProc) ([]string, error) {
	if a.driver == "docker" {
		return containers(a.node)
	}
	out, err := exec.Command("ip", "netns", "pids", a.h.ns).Output()
	if err != nil {
		return nil, err
	}
	byPID := map[int]string{}
	files, _ := filepath.Glob(filepath.Join(a.data, "process", "*.json"))
	for _, f := range files {
		var r struct {
			AllocID string `json:"alloc_id"`
			PID     int    `json:"pid"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &r) == nil {
			byPID[r.PID] = r.AllocID
		}
	}
	var ids []string
	self := a.pid()
	for _, p := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(p)
		if pid == self || pid == 0 {
			continue
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			continue // a zombie is not running
		}
		if id, ok := byPID[pid]; ok {
			ids = append(ids, id)
		} else {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			ids = append(ids, fmt.Sprintf("pid:%d(%s)", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// registrations lists every instance registered in Consul under our tag.
func registrations(cl *api.Client, services []service) ([]check.Registration, error) {
	var out []check.Registration
	for _, s := range services {
		entries, _, err := cl.Health().Service(s.name, catalog.Tag, false, nil)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			out = append(out, check.Registration{Service: s.name, ID: e.Service.ID, Node: e.Service.Meta[catalog.MetaNode]})
		}
	}
	return out, nil
}

// releases reads every service's releases from coordinator i's own state.
func (c *cluster) releases(i int, services []service) ([]check.Release, error) {
	var out []check.Release
	for _, s := range services {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := c.deploy(i).ListReleases(ctx, &deployv1.ListReleasesRequest{Service: s.name, Consistency: deployv1.ReadConsistency_READ_CONSISTENCY_LOCAL})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, r := range resp.GetReleases() {
			out = append(out, check.Release{Service: s.name, Number: r.GetNumber(), RequestID: r.GetRequestId()})
		}
	}
	return out, nil
}
