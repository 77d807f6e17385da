package faults

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// namePrefix starts every namespace, bridge, veth and iptables comment the
// suite creates, so that leftovers of crashed runs can be swept.
const namePrefix = "swf"

// sh runs a command and returns an error with its output when it fails.
func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// topology is a bridge in the root namespace (the test process's own host,
// where the clients run, at .1) and hosts, each a network namespace with a
// veth on the bridge.
type topology struct {
	t      testing.TB
	run    string // swf<pid hex><seq>: unique per run
	bridge string
	subnet string // "10.A.B."
	hosts  []*host
}

// host is one test host.
type host struct {
	name, ns, ip, veth string
	topo               *topology
}

// owner extracts the pid that created a name, or -1.
func owner(name string) int {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return -1
	}
	rest = strings.TrimPrefix(rest, "-")
	if len(rest) < 6 {
		return -1
	}
	pid, err := strconv.ParseInt(rest[:6], 16, 32)
	if err != nil {
		return -1
	}
	return int(pid)
}

func alive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// sweep removes what crashed runs of the suite left: namespaces (killing
// what runs in them), bridges and veths, iptables rules, mounts, whose
// creating process is gone.
func sweep(t testing.TB) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], namePrefix) || alive(owner(f[0])) {
			continue
		}
		killNamespace(f[0])
		if err := sh("ip", "netns", "del", f[0]); err != nil {
			t.Logf("sweep: %v", err)
		} else {
			t.Logf("sweep: removed namespace %s left by a crashed run", f[0])
		}
	}
	links, _ := net.Interfaces()
	for _, l := range links {
		if strings.HasPrefix(l.Name, namePrefix) && !alive(owner(l.Name)) {
			if err := sh("ip", "link", "del", l.Name); err == nil {
				t.Logf("sweep: removed link %s left by a crashed run", l.Name)
			}
		}
	}
	rules, _ := exec.Command("iptables", "-S", "FORWARD").Output()
	for _, r := range strings.Split(string(rules), "\n") {
		i := strings.Index(r, "--comment ")
		if !strings.HasPrefix(r, "-A FORWARD") || i < 0 {
			continue
		}
		c := strings.Trim(strings.Fields(r[i+len("--comment "):])[0], `"`)
		if strings.HasPrefix(c, namePrefix) && !alive(owner(c)) {
			args := append([]string{"iptables", "-D"}, strings.Fields(strings.TrimPrefix(r, "-A "))...)
			for j := range args {
				args[j] = strings.Trim(args[j], `"`)
			}
			_ = sh(args...)
		}
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, m := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(m)
		if len(f) > 1 && strings.HasPrefix(f[0], namePrefix) && !alive(owner(f[0])) {
			_ = sh("umount", "-l", f[1])
		}
	}
}

// killNamespace SIGKILLs every process in namespace ns.
func killNamespace(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, p := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(p); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

var runSeq int

// newTopology makes a bridge on a free 10.x.y.0/24 and hosts named names,
// removed (with every process in them) when the test ends.
func newTopology(t testing.TB, names ...string) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the fault suite needs root: network namespaces, iptables")
	}
	sweep(t)
	runSeq++
	tp := &topology{t: t, run: fmt.Sprintf("%s%06x%02x", namePrefix, os.Getpid(), runSeq%256)}
	tp.bridge = tp.run
	routes, _ := exec.Command("ip", "-4", "route").Output()
	for {
		s := fmt.Sprintf("10.%d.%d.", 200+rand.IntN(50), rand.IntN(250))
		if !bytes.Contains(routes, []byte(s+"0/")) {
			tp.subnet = s
			break
		}
	}
	t.Cleanup(tp.remove)
	must := func(args ...string) {
		t.Helper()
		if err := sh(args...); err != nil {
			t.Fatalf("topology: %v", err)
		}
	}
	must("ip", "link", "add", tp.bridge, "type", "bridge")
	must("ip", "addr", "add", tp.subnet+"1/24", "dev", tp.bridge)
	must("ip", "link", "set", tp.bridge, "up")
	// Docker's FORWARD policy is DROP and bridged traffic goes through it
	// (br_netfilter): let the hosts talk.
	must("iptables", "-I", "FORWARD", "-i", tp.bridge, "-o", tp.bridge, "-j", "ACCEPT", "-m", "comment", "--comment", tp.run)
	for i, n := range names {
		h := &host{name: n, ns: tp.run + "-" + n, ip: tp.subnet + strconv.Itoa(10+i), veth: fmt.Sprintf("%s%x", tp.run, i), topo: tp}
		tp.hosts = append(tp.hosts, h)
		must("ip", "netns", "add", h.ns)
		must("ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		must("ip", "link", "set", h.veth, "master", tp.bridge, "up")
		must("ip", "-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		must("ip", "-n", h.ns, "link", "set", "eth0", "up")
		must("ip", "-n", h.ns, "link", "set", "lo", "up")
		must("ip", "-n", h.ns, "route", "add", "default", "via", tp.subnet+"1")
	}
	return tp
}

// host returns the host named name.
func (tp *topology) host(name string) *host {
	for _, h := range tp.hosts {
		if h.name == name {
			return h
		}
	}
	tp.t.Fatalf("topology: no host %s", name)
	return nil
}

// remove kills every process in the hosts and removes the namespaces, the
// bridge and the iptables rule.
func (tp *topology) remove() {
	for _, h := range tp.hosts {
		killNamespace(h.ns)
		if err := sh("ip", "netns", "del", h.ns); err != nil {
			tp.t.Logf("cleanup: %v", err)
		}
	}
	_ = sh("ip", "link", "del", tp.bridge)
	_ = sh("iptables", "-D", "FORWARD", "-i", tp.bridge, "-o", tp.bridge, "-j", "ACCEPT", "-m", "comment", "--comment", tp.run)
}

// inNS is a command run in the host's namespace.
func (h *host) inNS(args ...string) []string {
	return append([]string{"ip", "netns", "exec", h.ns}, args...)
}

// isolate drops every packet between h and the given peers (both ways,
// in h's namespace): a partition.
func (h *host) isolate(peers ...*host) error {
	for _, p := range peers {
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			dir := "-s"
			if chain == "OUTPUT" {
				dir = "-d"
			}
			if err := sh(h.inNS("iptables", "-A", chain, dir, p.ip, "-j", "DROP", "-m", "comment", "--comment", "swf-partition")...); err != nil {
				return err
			}
		}
	}
	return nil
}

// heal removes every fault rule of h's namespace (partitions, loss).
func (h *host) heal() error {
	var errs []error
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		errs = append(errs, sh(h.inNS("iptables", "-F", chain)...))
	}
	return errors.Join(errs...)
}

// lossy drops the given share of the packets between h and peers, both
// ways (iptables statistic).
func (h *host) lossy(p float64, peers ...*host) error {
	for _, peer := range peers {
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			dir := "-s"
			if chain == "OUTPUT" {
				dir = "-d"
			}
			if err := sh(h.inNS("iptables", "-A", chain, dir, peer.ip, "-m", "statistic", "--mode", "random",
				"--probability", strconv.FormatFloat(p, 'f', 3, 64), "-j", "DROP")...); err != nil {
				return err
			}
		}
	}
	return nil
}

// lossyFrom drops the given share of the TCP packets between h's port and
// src (the delaying proxies on the bridge's address), both ways (iptables
// statistic); heal removes the rules.
func (h *host) lossyFrom(p float64, src, port string) error {
	prob := strconv.FormatFloat(p, 'f', 3, 64)
	if err := sh(h.inNS("iptables", "-A", "INPUT", "-s", src, "-p", "tcp", "--dport", port,
		"-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP")...); err != nil {
		return err
	}
	return sh(h.inNS("iptables", "-A", "OUTPUT", "-d", src, "-p", "tcp", "--sport", port,
		"-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP")...)
}

// dropped counts the packets h's INPUT and OUTPUT rules dropped so far.
func (h *host) dropped() int {
	n := 0
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		args := h.inNS("iptables", "-L", chain, "-v", "-n", "-x")
		out, err := exec.Command(args[0], args[1:]...).Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) > 2 && f[2] == "DROP" {
				if v, err := strconv.Atoi(f[0]); err == nil {
					n += v
				}
			}
		}
	}
	return n
}
