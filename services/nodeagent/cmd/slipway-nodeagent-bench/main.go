// Command slipway-nodeagent-bench measures allocation start latency: from
// SyncAllocations to the instance registered and passing in Consul, beside
// `docker run` of the same image to its /healthz answering, measured in the
// same run and interleaved, and prints p50/p99 with the ratio.
//
// It starts its own Consul dev agent and node agent (docker driver) on free
// loopback ports and removes everything it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/protobuf/types/known/durationpb"

	"slipway.dev/platform/pki"
	"slipway.dev/platform/rpc"
	agentv1 "slipway.dev/proto/slipway/agent/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-nodeagent-bench:", err)
		os.Exit(1)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	var out []int
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func start(name string, logPath string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return cmd, nil
}

func stop(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func run() error {
	n := flag.Int("n", 20, "starts per contender")
	image := flag.String("image", "slipway/demo:v1", "image to start")
	binDir := flag.String("bin", "bin", "directory with consul and slipway-nodeagent")
	flag.Parse()

	work, err := os.MkdirTemp("", "slipway-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(work)
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	consulAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	consul, err := start(filepath.Join(*binDir, "consul"), filepath.Join(work, "consul.log"), "agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-http-port", strconv.Itoa(ports[0]),
		"-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]), "-dns-port", "-1", "-grpc-port", "-1", "-log-level", "warn")
	if err != nil {
		return err
	}
	defer stop(consul)
	cfg := api.DefaultConfig()
	cfg.Address = consulAddr
	cc, err := api.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	if err := waitFor(30*time.Second, "consul leader", func() bool { l, err := cc.Status().Leader(); return err == nil && l != "" }); err != nil {
		return err
	}

	node := "bench" + strconv.Itoa(os.Getpid())
	grpcAddr := "127.0.0.1:" + strconv.Itoa(ports[4])
	ca, err := pki.NewDir(filepath.Join(work, "pki"), pki.CAOptions{CommonName: "Slipway bench CA"})
	if err != nil {
		return err
	}
	agentTLS, err := ca.Issue(pki.CertOptions{Identity: pki.Identity{Role: pki.RoleNodeAgent, Name: node}})
	if err != nil {
		return err
	}
	coordTLS, err := ca.Issue(pki.CertOptions{Identity: pki.Identity{Role: pki.RoleCoordinator, Name: "bench"}})
	if err != nil {
		return err
	}
	creds, err := rpc.NewCreds(rpc.Security{CAFile: coordTLS.CA, CertFile: coordTLS.Cert, KeyFile: coordTLS.Key}, nil)
	if err != nil {
		return err
	}
	agent, err := start(filepath.Join(*binDir, "slipway-nodeagent"), filepath.Join(work, "agent.log"),
		"-node-id", node, "-grpc-addr", grpcAddr, "-consul-addr", consulAddr, "-driver", "docker",
		"-data-dir", filepath.Join(work, "data"), "-drain-window", "0s", "-log-level", "warn",
		"-tls-ca", agentTLS.CA, "-tls-cert", agentTLS.Cert, "-tls-key", agentTLS.Key)
	if err != nil {
		return err
	}
	defer stop(agent)
	defer cleanupContainers(node)
	conn, err := rpc.Dial(grpcAddr, creds, rpc.Expect{Roles: []pki.Role{pki.RoleNodeAgent}, Name: node})
	if err != nil {
		return err
	}
	defer conn.Close()
	ac := agentv1.NewNodeAgentServiceClient(conn)
	ctx := context.Background()
	if err := waitFor(30*time.Second, "node agent", func() bool {
		_, err := ac.GetNodeStatus(ctx, &agentv1.GetNodeStatusRequest{})
		return err == nil
	}); err != nil {
		return err
	}

	service := "bench-" + node
	var index uint64
	agentStart := func(i int) (time.Duration, error) {
		id := fmt.Sprintf("%s-%d", node, i)
		index++
		t0 := time.Now()
		_, err := ac.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 1, Index: index},
			Allocations: []*agentv1.Allocation{{Id: id, NodeId: node, Service: service, Release: 1, Track: "stable", Image: *image, Port: 8080, MemoryMb: 64,
				Check: &agentv1.Check{Http: "/healthz", Interval: durationpb.New(time.Second)}, KillTimeout: durationpb.New(time.Second)}}})
		if err != nil {
			return 0, fmt.Errorf("sync: %w", err)
		}
		if err := waitFor(30*time.Second, id+" passing", func() bool {
			es, _, err := cc.Health().Service(service, "", true, nil)
			if err != nil {
				return false
			}
			for _, e := range es {
				if e.Service.ID == id {
					return true
				}
			}
			return false
		}); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		index++
		if _, err := ac.SyncAllocations(ctx, &agentv1.SyncAllocationsRequest{NodeId: node, Token: &agentv1.FencingToken{Term: 1, Index: index}}); err != nil {
			return 0, fmt.Errorf("sync empty: %w", err)
		}
		return d, waitFor(30*time.Second, id+" removed", func() bool { return len(containers(node)) == 0 })
	}
	dockerRun := func(i int) (time.Duration, error) {
		name := fmt.Sprintf("slipway-bench-%s-run-%d", node, i)
		t0 := time.Now()
		out, err := exec.Command("docker", "run", "-d", "--name", name, "--label", "slipway.node="+node,
			"-p", "127.0.0.1::8080", *image).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("docker run: %w: %s", err, out)
		}
		defer exec.Command("docker", "rm", "-f", name).Run()
		pout, err := exec.Command("docker", "port", name, "8080/tcp").Output()
		if err != nil {
			return 0, fmt.Errorf("docker port: %w", err)
		}
		hostPort := strings.TrimSpace(strings.Split(string(pout), "\n")[0])
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		if err := waitFor(30*time.Second, name+" healthz", func() bool {
			resp, err := c.Get("http://" + hostPort + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}

	// One warm-up each, then interleaved measurements.
	if _, err := agentStart(-1); err != nil {
		return err
	}
	if _, err := dockerRun(-1); err != nil {
		return err
	}
	var ag, dr []time.Duration
	for i := 0; i < *n; i++ {
		d, err := agentStart(i)
		if err != nil {
			return err
		}
		ag = append(ag, d)
		d, err = dockerRun(i)
		if err != nil {
			return err
		}
		dr = append(dr, d)
	}
	ap50, ap99 := pct(ag, 50), pct(ag, 99)
	dp50, dp99 := pct(dr, 50), pct(dr, 99)
	fmt.Printf("allocation start latency, %d starts each, image %s\n", *n, *image)
	fmt.Printf("%-52s %10s %10s\n", "contender", "p50", "p99")
	fmt.Printf("%-52s %10s %10s\n", "slipway-nodeagent: sync -> registered+passing", ms(ap50), ms(ap99))
	fmt.Printf("%-52s %10s %10s\n", "docker run -> /healthz 200 (peer)", ms(dp50), ms(dp99))
	fmt.Printf("%-52s %9.2fx %9.2fx\n", "ratio (nodeagent / docker run)", float64(ap50)/float64(dp50), float64(ap99)/float64(dp99))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// pct is the nearest-rank percentile.
func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := (p*len(s) + 99) / 100
	return s[max(rank-1, 0)]
}

func containers(node string) []string {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=slipway.node="+node).Output()
	if err != nil {
		return []string{"?"}
	}
	return strings.Fields(string(out))
}

func cleanupContainers(node string) {
	ids := containers(node)
	if len(ids) == 0 || ids[0] == "?" {
		return
	}
	if err := exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", errors.Unwrap(err))
	}
}
