// Package secretfs writes the secrets and configs an allocation mounts as
// files under a root directory on tmpfs, one private directory per
// allocation, and removes them when the instance stops. A root that is not
// on tmpfs (or ramfs) is refused: the values must never reach a disk in
// clear.
package secretfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"slipway.dev/nodeagent/allocation"
)

// ErrUnavailable: the root is not usable for secrets (not tmpfs, or not
// writable); every allocation mounting one fails with it.
var ErrUnavailable = errors.New("secretfs: no tmpfs for secrets")

// ErrNoData: a file's value has not been received (an agent restarted
// since the last sync; the leader sends values with every sync).
var ErrNoData = errors.New("secretfs: value not received")

// Filesystem magic numbers (statfs(2)).
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// Owner overrides the owner of every file and directory of an allocation
// (the process driver's children's user); nil keeps each file's uid and
// gid and the directories root's.
type Owner struct {
	UID, GID int
}

// Dir is the root of the allocations' secret directories.
type Dir struct {
	root string
	err  error // why the root cannot be used, nil when it can
}

// New prepares root (created mode 0700 when missing). When root is not on
// tmpfs or ramfs, Dir is still returned and every Write fails with an error
// saying so: allocations without secrets are not affected.
func New(root string) *Dir {
	d := &Dir{root: filepath.Clean(root)}
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		d.err = fmt.Errorf("secrets dir %s: %v: %w", root, err, ErrUnavailable)
		return d
	}
	if err := os.Chmod(d.root, 0o700); err != nil {
		d.err = fmt.Errorf("secrets dir %s: %v: %w", root, err, ErrUnavailable)
		return d
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.root, &st); err != nil {
		d.err = fmt.Errorf("secrets dir %s: %v: %w", root, err, ErrUnavailable)
		return d
	}
	if t := int64(st.Type); t != tmpfsMagic && t != ramfsMagic {
		d.err = fmt.Errorf("secrets dir %s is not on tmpfs (filesystem type %#x): secrets would be written to disk in clear; give -secrets-dir a directory on tmpfs, e.g. under /dev/shm or a tmpfs mounted for it: %w", root, st.Type, ErrUnavailable)
	}
	return d
}

// Err says why the root cannot hold secrets, nil when it can.
func (d *Dir) Err() error { return d.err }

// Root is the root directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) allocDir(allocID string) (string, error) {
	if allocID == "" || allocID == "." || allocID == ".." || strings.ContainsAny(allocID, "/\x00") {
		return "", fmt.Errorf("secretfs: allocation id %q cannot name a directory", allocID)
	}
	return filepath.Join(d.root, allocID), nil
}

// Path is where file target of an allocation lives on the host.
func (d *Dir) Path(allocID, target string) string {
	return filepath.Join(d.root, allocID, filepath.Clean("/"+target))
}

// AllocDir is the allocation's directory (the process driver's
// SLIPWAY_SECRETS_DIR).
func (d *Dir) AllocDir(allocID string) string { return filepath.Join(d.root, allocID) }

// Write writes the files of an allocation: each at its target under the
// allocation's directory, with its mode and owner. A file without data is
// kept as it is when it exists (the agent restarted and lost the values,
// which live in memory only) and fails with ErrNoData when it does not.
// On error nothing new is left behind.
func (d *Dir) Write(allocID string, files []allocation.File, owner *Owner) error {
	if d.err != nil {
		return d.err
	}
	dir, err := d.allocDir(allocID)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(dir)
	fresh := errors.Is(statErr, os.ErrNotExist)
	if err := d.write(dir, files, owner); err != nil {
		if fresh {
			_ = os.RemoveAll(dir)
		}
		return err
	}
	return nil
}

func (d *Dir) write(dir string, files []allocation.File, owner *Owner) error {
	if err := mkdir(dir, owner); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.Clean("/"+f.Target))
		if len(f.Data) == 0 {
			if _, err := os.Stat(p); err == nil {
				continue
			}
			return fmt.Errorf("%s %s version %d: %w: it comes with the leader's next sync", f.Kind, f.Name, f.Version, ErrNoData)
		}
		if err := mkdirAll(dir, filepath.Dir(p), owner); err != nil {
			return err
		}
		uid, gid := int(f.UID), int(f.GID)
		if owner != nil {
			uid, gid = owner.UID, owner.GID
		}
		if err := writeFile(p, f.Data, os.FileMode(f.Mode&0o777), uid, gid); err != nil {
			return fmt.Errorf("secretfs: %s %s: %w", f.Kind, f.Name, err)
		}
	}
	return nil
}

func mkdir(p string, owner *Owner) error {
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("secretfs: %w", err)
	}
	if owner != nil {
		if err := os.Lchown(p, owner.UID, owner.GID); err != nil {
			return fmt.Errorf("secretfs: %w", err)
		}
	}
	return nil
}

// mkdirAll makes every directory from base (which exists) down to p.
func mkdirAll(base, p string, owner *Owner) error {
	rel, err := filepath.Rel(base, p)
	if err != nil || rel == "." {
		return err
	}
	cur := base
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if err := mkdir(cur, owner); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(p string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if os.Geteuid() == 0 || uid != os.Geteuid() {
		if err := os.Chown(tmp.Name(), uid, gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Remove deletes the allocation's directory with its files.
func (d *Dir) Remove(allocID string) error {
	dir, err := d.allocDir(allocID)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("secretfs: remove %s: %w", dir, err)
	}
	return nil
}
