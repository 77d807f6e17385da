package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"slipway.dev/coordinator/state"
)

type logEntry struct {
	at   time.Time
	size int
}

type raftLog struct {
	entries   []logEntry
	snapshot  int64 // bytes of the final state's snapshot
	compacted bool
}

// readRaft reads a stopped coordinator's raft log: every entry's append
// time and size, and the size of a snapshot of the state it replays to
// (the latest snapshot on disk restored first, then the log after it).
func readRaft(dataDir string) (raftLog, error) {
	var out raftLog
	store, err := raftboltdb.NewBoltStore(filepath.Join(dataDir, "raft.db"))
	if err != nil {
		return out, fmt.Errorf("open raft log: %w", err)
	}
	defer store.Close()
	fsm := state.New()
	after := uint64(0)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, hclog.NewNullLogger())
	if err != nil {
		return out, err
	}
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		_, rc, err := snaps.Open(metas[0].ID)
		if err != nil {
			return out, err
		}
		if err := fsm.Restore(rc); err != nil {
			return out, fmt.Errorf("restore snapshot: %w", err)
		}
		after = metas[0].Index
	}
	first, err := store.FirstIndex()
	if err != nil {
		return out, err
	}
	last, err := store.LastIndex()
	if err != nil {
		return out, err
	}
	out.compacted = first > 1
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			return out, fmt.Errorf("raft log %d: %w", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		out.entries = append(out.entries, logEntry{at: l.AppendedAt, size: len(l.Data)})
		if i > after {
			fsm.Apply(&l)
		}
	}
	b, err := fsm.MarshalSnapshot()
	if err != nil {
		return out, err
	}
	out.snapshot = int64(len(b))
	return out, nil
}
