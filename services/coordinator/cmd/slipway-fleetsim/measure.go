package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"slipway.dev/coordinator/state"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTicks = 100

// procCPU is the user+system CPU seconds process pid has used.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	// Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the comm.
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return (ut + st) / clockTicks, nil
}

// procMem is process pid's resident set size now and at its peak (VmRSS,
// VmHWM), in bytes.
func procMem(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

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
