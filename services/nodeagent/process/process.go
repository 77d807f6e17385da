// Package process runs allocations as local executables, for hosts without
// Docker: the allocation's image names an executable in a directory.
//
// Image to executable: every '/' and ':' of the image name becomes '_', so
// "slipway/demo:v2" runs <dir>/slipway_demo_v2. The process gets the spec's
// env plus PORT=<host port> (it must listen there: there is no port
// mapping) and, for named ports, PORT_<NAME>=<host port> of each. It runs
// in its own process group, so it survives an agent restart and is
// adopted from the state file the driver keeps per allocation in its
// state directory. An agent running as root runs its
// children as another user (DefaultUser, "nobody", unless WithUser names
// one), never as root; the executables and every directory above them must
// be searchable and executable by that user, and a static host port below
// 1024 cannot be bound by it.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"slipway.dev/nodeagent/allocation"
	"slipway.dev/nodeagent/secretfs"
	"slipway.dev/platform/specrules"
)

// ErrNoExecutable is returned when an image names no executable.
var ErrNoExecutable = errors.New("process: no executable for image")

// ErrPortInUse is returned when a static host port is taken.
var ErrPortInUse = errors.New("process: host port in use")

// Executable maps an image name to its executable under dir.
func Executable(dir, image string) (string, error) {
	if image == "" || strings.Contains(image, "..") {
		return "", fmt.Errorf("image %q: %w", image, ErrNoExecutable)
	}
	name := strings.NewReplacer("/", "_", ":", "_").Replace(image)
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("image %q: no executable file %s: %w", image, p, ErrNoExecutable)
	}
	return p, nil
}

// record is the state file of one allocation's process.
type record struct {
	AllocID     string    `json:"alloc_id"`
	Service     string    `json:"service"`
	Release     uint64    `json:"release"`
	Track       string    `json:"track"`
	Fingerprint string    `json:"fingerprint"`
	PID         int       `json:"pid"`
	StartTicks  string    `json:"start_ticks"` // /proc/<pid>/stat field 22, against pid reuse
	HostPort    int       `json:"host_port"`
	StartedAt   time.Time `json:"started_at"`
	// HostPorts maps the other named ports' container ports (keys only:
	// there is no mapping) to the host ports they got.
	HostPorts map[int]int `json:"host_ports,omitempty"`
}

// DefaultUser is the user children run as when the agent runs as root.
const DefaultUser = "nobody"

// ErrNotRunnable is returned by Start for an executable the children's user
// cannot run (a directory on its path not searchable, or the file not
// executable, by that user).
var ErrNotRunnable = errors.New("process: executable not runnable by the children's user")

// Driver runs allocations as processes. When the agent runs as root its
// children never do: they run as a configured user (DefaultUser unless
// WithUser says otherwise), with that user's group and no supplementary
// groups.
type Driver struct {
	dir, stateDir, address string
	logger                 *slog.Logger
	user                   string
	cred                   *syscall.Credential // nil: children run as the agent's user
	secrets                *secretfs.Dir       // nil: no secrets

	mu     sync.Mutex
	exited map[int]int // pid -> exit code of children we reaped
	notify func(allocID, pid string)
}

// Option configures a Driver.
type Option func(*Driver)

// WithUser names the user (a name or a numeric uid) children run as when
// the agent runs as root; it must not be root. Without root the agent
// cannot switch users and children run as the agent's own user.
func WithUser(name string) Option { return func(d *Driver) { d.user = name } }

// WithSecrets writes the secrets and configs allocations mount under dir:
// a private 0700 directory per allocation, owned by the children's user,
// named to the process in SLIPWAY_SECRETS_DIR (each file at its target
// below it). Without it such allocations fail to start.
func WithSecrets(dir *secretfs.Dir) Option { return func(d *Driver) { d.secrets = dir } }

// New returns a driver running executables from dir, keeping state in
// stateDir, and binding host ports on address.
func New(dir, stateDir, address string, logger *slog.Logger, opts ...Option) (*Driver, error) {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Driver{dir: dir, stateDir: stateDir, address: address, logger: logger, user: DefaultUser, exited: map[int]int{}}
	for _, o := range opts {
		o(d)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		d.dir = abs
	}
	if os.Geteuid() == 0 {
		cred, err := credential(d.user)
		if err != nil {
			return nil, err
		}
		d.cred = cred
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("process: state dir: %w", err)
	}
	return d, nil
}

// credential resolves the children's user; root is refused.
func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var uerr error
		if u, uerr = user.LookupId(name); uerr != nil {
			return nil, fmt.Errorf("process: children's user %q: %w", name, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("process: children's user %q has no numeric uid/gid (%s/%s)", name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("process: children's user %q is root; children never run as root, name another user", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// User returns the uid and gid children run as, and false when they run as
// the agent's own user (the agent is not root).
func (d *Driver) User() (uid, gid uint32, ok bool) {
	if d.cred == nil {
		return 0, 0, false
	}
	return d.cred.Uid, d.cred.Gid, true
}

// runnable checks that the children's user can reach and execute exe:
// search permission on every directory from the root down, execute (and,
// for scripts, read) permission on the file.
func (d *Driver) runnable(exe string) error {
	if d.cred == nil {
		return nil
	}
	uid, gid := d.cred.Uid, d.cred.Gid
	allowed := func(fi os.FileInfo, bits os.FileMode) bool {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return true
		}
		m := fi.Mode().Perm()
		switch {
		case st.Uid == uid:
			m >>= 6
		case st.Gid == gid:
			m >>= 3
		}
		return m&bits == bits
	}
	// The path as given and, for a symbolic link, the file it names.
	paths := []string{exe}
	if real, err := filepath.EvalSymlinks(exe); err == nil && real != exe {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			fi, err := os.Stat(dir)
			if err != nil {
				return fmt.Errorf("process: %s: %w", dir, err)
			}
			if !allowed(fi, 0o1) {
				return fmt.Errorf("%s: directory %s (mode %v) is not searchable by user %s (uid %d): %w", exe, dir, fi.Mode().Perm(), d.user, uid, ErrNotRunnable)
			}
			if dir == "/" || dir == "." {
				break
			}
		}
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return fmt.Errorf("process: %s: %w", exe, err)
	}
	if !allowed(fi, 0o5) {
		return fmt.Errorf("%s (mode %v) is not readable and executable by user %s (uid %d): %w", exe, fi.Mode().Perm(), d.user, uid, ErrNotRunnable)
	}
	return nil
}

// Name is "process".
func (d *Driver) Name() string { return "process" }

func (d *Driver) statePath(id string) string { return filepath.Join(d.stateDir, id+".json") }

// LogPath is where an allocation's output goes.
func (d *Driver) LogPath(id string) string { return filepath.Join(d.stateDir, id+".log") }

// hostPorts picks the host port of each of the spec's ports (the routed
// one first): its static one when free, else an ephemeral one. Each is
// held until all are picked, so two ephemeral picks never collide.
func (d *Driver) hostPorts(s allocation.Spec) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for _, p := range s.AllPorts() {
		addr := net.JoinHostPort(d.address, strconv.Itoa(p.HostPort))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if p.HostPort > 0 {
				return nil, fmt.Errorf("host port %s: %w", addr, ErrPortInUse)
			}
			return nil, fmt.Errorf("process: pick a port on %s: %w", d.address, err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Start runs the allocation's executable.
func (d *Driver) Start(ctx context.Context, s allocation.Spec) (allocation.Instance, error) {
	exe, err := Executable(d.dir, s.Image)
	if err != nil {
		return allocation.Instance{}, err
	}
	if err := d.runnable(exe); err != nil {
		return allocation.Instance{}, err
	}
	hps, err := d.hostPorts(s)
	if err != nil {
		return allocation.Instance{}, err
	}
	port := hps[0]
	portEnv := []string{}
	var others map[int]int
	for i, p := range s.AllPorts() {
		if p.Name != "" {
			portEnv = append(portEnv, specrules.PortEnv(p.Name)+"="+strconv.Itoa(hps[i]))
		}
		if i > 0 {
			if others == nil {
				others = map[int]int{}
			}
			others[p.Port] = hps[i]
		}
	}
	var secretsEnv []string
	if len(s.Files) > 0 {
		if d.secrets == nil {
			return allocation.Instance{}, fmt.Errorf("process: the allocation mounts secrets or configs, and this agent has no -secrets-dir")
		}
		owner := &secretfs.Owner{UID: os.Geteuid(), GID: os.Getegid()}
		if d.cred != nil {
			owner = &secretfs.Owner{UID: int(d.cred.Uid), GID: int(d.cred.Gid)}
		}
		if err := d.secrets.Write(s.ID, s.Files, owner); err != nil {
			return allocation.Instance{}, fmt.Errorf("process: %w", err)
		}
		secretsEnv = []string{"SLIPWAY_SECRETS_DIR=" + d.secrets.AllocDir(s.ID)}
	}
	started := false
	defer func() {
		if !started && len(s.Files) > 0 {
			_ = d.secrets.Remove(s.ID)
		}
	}()
	logf, err := os.OpenFile(d.LogPath(s.ID), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return allocation.Instance{}, fmt.Errorf("process: log file: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, s.Args...)
	cmd.Env = append(append([]string{"PORT=" + strconv.Itoa(port), "PATH=/usr/bin:/bin"}, portEnv...), secretsEnv...)
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: d.cred}
	if err := cmd.Start(); err != nil {
		return allocation.Instance{}, fmt.Errorf("process: start %s: %w", exe, err)
	}
	r := record{AllocID: s.ID, Service: s.Service, Release: s.Release, Track: s.Track, Fingerprint: s.Fingerprint(),
		PID: cmd.Process.Pid, StartTicks: startTicks(cmd.Process.Pid), HostPort: port, HostPorts: others, StartedAt: time.Now()}
	if err := d.write(r); err != nil {
		_ = syscall.Kill(-r.PID, syscall.SIGKILL)
		_ = cmd.Wait()
		return allocation.Instance{}, err
	}
	started = true
	go func() {
		err := cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code == 0 {
			code = -1
		}
		d.mu.Lock()
		d.exited[r.PID] = code
		notify := d.notify
		d.mu.Unlock()
		if notify != nil {
			notify(s.ID, strconv.Itoa(r.PID))
		}
	}()
	return r.instance(true), nil
}

func (r record) instance(running bool) allocation.Instance {
	return allocation.Instance{AllocID: r.AllocID, Service: r.Service, Release: r.Release, Track: r.Track,
		ID: strconv.Itoa(r.PID), Fingerprint: r.Fingerprint, HostPort: r.HostPort, HostPorts: r.HostPorts, Running: running, StartedAt: r.StartedAt}
}

func (d *Driver) write(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("process: encode state: %w", err)
	}
	tmp := d.statePath(r.AllocID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("process: write state: %w", err)
	}
	if err := os.Rename(tmp, d.statePath(r.AllocID)); err != nil {
		return fmt.Errorf("process: write state: %w", err)
	}
	return nil
}

// startTicks reads a process's start time in clock ticks since boot.
func startTicks(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) may contain spaces; fields after ')' are
	// plain. Field 3 is the state, field 22 the start time.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return ""
	}
	return f[19]
}

// alive reports whether the recorded process still runs (not a zombie,
// not a reused pid).
func (r record) alive() bool {
	t := startTicks(r.PID)
	return t != "" && t == r.StartTicks
}

// Stop sends SIGTERM to the process group, waits up to grace, kills it and
// forgets the allocation.
func (d *Driver) Stop(ctx context.Context, inst allocation.Instance, grace time.Duration) error {
	r, err := d.read(inst.AllocID)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.alive() {
		_ = syscall.Kill(-r.PID, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for r.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if r.alive() {
			_ = syscall.Kill(-r.PID, syscall.SIGKILL)
			for i := 0; i < 250 && r.alive(); i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if err := os.Remove(d.statePath(inst.AllocID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("process: remove state: %w", err)
	}
	_ = os.Remove(d.LogPath(inst.AllocID))
	if d.secrets != nil {
		if err := d.secrets.Remove(inst.AllocID); err != nil {
			d.logger.Warn("remove secrets", "alloc", inst.AllocID, "err", err)
		}
	}
	d.mu.Lock()
	delete(d.exited, r.PID)
	d.mu.Unlock()
	return nil
}

func (d *Driver) read(id string) (record, error) {
	var r record
	b, err := os.ReadFile(d.statePath(id))
	if err != nil {
		return r, fmt.Errorf("process: read state of %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("process: decode state of %s: %w", id, err)
	}
	return r, nil
}

// List returns every allocation with a state file, running or not.
func (d *Driver) List(ctx context.Context) ([]allocation.Instance, error) {
	ents, err := os.ReadDir(d.stateDir)
	if err != nil {
		return nil, fmt.Errorf("process: list state: %w", err)
	}
	var out []allocation.Instance
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, err := d.read(id)
		if err != nil {
			d.logger.Warn("skip unreadable state", "err", err)
			continue
		}
		d.mu.Lock()
		_, reaped := d.exited[r.PID]
		d.mu.Unlock()
		out = append(out, r.instance(!reaped && r.alive()))
	}
	return out, nil
}

// lastOutput returns the last lines of an allocation's log file, "" when
// there is none.
func (d *Driver) lastOutput(allocID string) string {
	f, err := os.Open(d.LogPath(allocID))
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > tail {
		if _, err := f.Seek(-tail, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, tail))
	if err != nil {
		return ""
	}
	return allocation.LastLines(b, 5, 400)
}

// exitCode is the exit status of a child this driver reaped, -1 when it
// did not reap it.
func (d *Driver) exitCode(pid string) int {
	n, err := strconv.Atoi(pid)
	if err != nil {
		return -1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	code, ok := d.exited[n]
	if !ok {
		return -1
	}
	return code
}

// Watch reports exits of the processes this driver started and polls the
// ones it adopted, until ctx ends.
func (d *Driver) Watch(ctx context.Context, report func(allocation.Event)) {
	exited := func(allocID, pid string) {
		report(allocation.Event{AllocID: allocID, InstanceID: pid, Exited: true, ExitCode: d.exitCode(pid), Output: d.lastOutput(allocID)})
	}
	d.mu.Lock()
	d.notify = exited
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.notify = nil
		d.mu.Unlock()
	}()
	// Adopted processes are not our children: poll them.
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	gone := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		insts, err := d.List(ctx)
		if err != nil {
			continue
		}
		for _, in := range insts {
			if !in.Running && !gone[in.AllocID+"/"+in.ID] {
				gone[in.AllocID+"/"+in.ID] = true
				d.mu.Lock()
				pid, _ := strconv.Atoi(in.ID)
				_, reaped := d.exited[pid]
				d.mu.Unlock()
				if !reaped {
					exited(in.AllocID, in.ID)
				}
			}
		}
	}
}
