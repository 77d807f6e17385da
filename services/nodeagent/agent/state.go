package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"slipway.dev/nodeagent/allocation"
)

// persisted is what survives an agent restart: the newest fencing token, so
// stale commands stay refused, and the last desired set, so the agent
// converges at once instead of waiting for the next sync.
type persisted struct {
	Token   Token             `json:"token"`
	Desired []allocation.Spec `json:"desired"`
}

const stateFile = "agent-state.json"

func loadState(dir string) (persisted, error) {
	var p persisted
	if dir == "" {
		return p, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("agent: read state: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("agent: decode state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return p, nil
}

// saveState writes atomically (temp file, fsync, rename).
func saveState(dir string, p persisted) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("agent: encode state: %w", err)
	}
	f, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("agent: write state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("agent: sync state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	return nil
}

// beatFile's modification time is the agent's last successful heartbeat, so
// that a restarted agent knows whether Consul saw it dead meanwhile.
const beatFile = "heartbeat"

// touchBeat records a successful heartbeat (best effort: without it a
// restart is treated as one after a lapse, the safe side).
func touchBeat(dir string, at time.Time) {
	if dir == "" {
		return
	}
	p := filepath.Join(dir, beatFile)
	if err := os.Chtimes(p, at, at); errors.Is(err, os.ErrNotExist) {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Close()
			_ = os.Chtimes(p, at, at)
		}
	}
}

// lastBeat is the time of the last heartbeat recorded in dir; zero when
// none is.
func lastBeat(dir string) time.Time {
	if dir == "" {
		return time.Time{}
	}
	fi, err := os.Stat(filepath.Join(dir, beatFile))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
