package stack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is one child process of the stack, in its own process group (so a
// Ctrl-C on the terminal reaches the guide only, which then stops the
// children in order), with its output in a log file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error
}

// startProc starts bin with args, output to <logDir>/<name>.log.
func startProc(name, logDir, bin string, args []string, env []string) (*Proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("stack: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("stack: start %s (%s): %w", name, bin, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process id (also its process group id).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// ExitErr describes how the process exited (valid after Exited is closed).
func (p *Proc) ExitErr() error { return p.err }

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs
// the group. It is safe to call on an exited process.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.exited:
		// The leader is gone; make sure nothing of its group lingers.
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		return
	default:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.exited
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// killGroup terminates process group pgid if its leader still runs the
// expected executable (guarding against pid reuse): SIGTERM, up to grace,
// then SIGKILL. It reports whether something was signalled.
func killGroup(pgid int, exeContains string, grace time.Duration) bool {
	if pgid <= 1 || !runs(pgid, exeContains) {
		return false
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pgid) {
			return true
		}
		time.Sleep(50 * time.Millisecond) // polling a foreign process's exit
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return true
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3 is the state; a zombie (Z) has exited.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func runs(pid int, exeContains string) bool {
	if !alive(pid) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return exeContains == "" || strings.Contains(string(b), exeContains)
}

var errNotReady = errors.New("stack: not ready")
