package keyring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpenAndRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	k1, err := Init(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second Init: %v, want ErrExist", err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := f.Current()
	aad := []byte("secret/db/1")
	id1, ct1, err := kr.Seal(aad, []byte("hunter2"))
	if err != nil || id1 != k1.ID {
		t.Fatalf("seal: %s %v, want key %s", id1, err, k1.ID)
	}
	if bytes.Contains(ct1, []byte("hunter2")) {
		t.Fatal("ciphertext holds the plaintext")
	}
	d1 := kr.Digest([]byte("hunter2"))

	// Rotation: a new primary seals, the old key still opens.
	k2, err := Add(path, true)
	if err != nil {
		t.Fatal(err)
	}
	kr, err = f.Current()
	if err != nil {
		t.Fatal(err)
	}
	if kr.Primary().ID != k2.ID || len(kr.Keys) != 2 {
		t.Fatalf("after Add: primary %s of %v, want %s", kr.Primary().ID, kr.IDs(), k2.ID)
	}
	id2, ct2, err := kr.Seal([]byte("secret/db/2"), []byte("hunter3"))
	if err != nil || id2 != k2.ID {
		t.Fatalf("seal after rotation: %s %v", id2, err)
	}
	for _, c := range []struct {
		id, aad string
		ct      []byte
		want    string
	}{{id1, "secret/db/1", ct1, "hunter2"}, {id2, "secret/db/2", ct2, "hunter3"}} {
		got, err := kr.Open(c.id, []byte(c.aad), c.ct)
		if err != nil || string(got) != c.want {
			t.Fatalf("open %s: %q %v, want %q", c.id, got, err, c.want)
		}
	}
	if kr.Digest([]byte("hunter2")) == d1 {
		t.Fatal("digest did not change with the primary key")
	}
	// The additional data binds the ciphertext to its name and version.
	if _, err := kr.Open(id1, []byte("secret/other/1"), ct1); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open with other aad: %v, want ErrDecrypt", err)
	}
	// The primary cannot be removed; an old key can, and then its values
	// no longer open.
	if err := Remove(path, k2.ID); err == nil {
		t.Fatal("removed the primary key")
	}
	if err := Remove(path, k1.ID); err != nil {
		t.Fatal(err)
	}
	kr, _ = f.Current()
	if _, err := kr.Open(id1, aad, ct1); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), k1.ID) {
		t.Fatalf("open with a removed key: %v, want ErrUnknownKey naming %s", err, k1.ID)
	}
	if err := Use(path, "knope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("use unknown: %v", err)
	}
}

func TestWrongKeyAndCorruptCiphertext(t *testing.T) {
	a, _ := Generate()
	a.Primary = true
	b := a
	b.Key = bytes.Repeat([]byte{7}, KeySize) // same id, other key
	ka, kb := &Keyring{Keys: []Key{a}}, &Keyring{Keys: []Key{b}}
	id, ct, err := ka.Seal([]byte("x"), []byte("value"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kb.Open(id, []byte("x"), ct); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open with the wrong key: %v, want ErrDecrypt", err)
	}
	bad := bytes.Clone(ct)
	bad[len(bad)-1] ^= 1
	if _, err := ka.Open(id, []byte("x"), bad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open corrupt: %v, want ErrDecrypt", err)
	}
	if _, err := ka.Open(id, []byte("x"), ct[:5]); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open short: %v, want ErrDecrypt", err)
	}
}

func TestCorruptFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json":   "{keys:",
		"no keys":    `{"keys":[]}`,
		"no primary": `{"keys":[{"id":"k1","key":"` + strings.Repeat("A", 43) + `="}]}`,
		"short key":  `{"keys":[{"id":"k1","key":"AAAA","primary":true}]}`,
		"twice":      `{"keys":[{"id":"k1","key":"` + strings.Repeat("A", 43) + `=","primary":true},{"id":"k1","key":"` + strings.Repeat("A", 43) + `="}]}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenFile(p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want ErrInvalid naming the file", name, err)
		}
	}
	p := filepath.Join(dir, "open")
	if _, err := Init(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable file: %v, want a refusal", err)
	}
	if _, err := OpenFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	// A file broken while in use is reported, not silently replaced by the
	// last good keyring.
	q := filepath.Join(dir, "live")
	if _, err := Init(q); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(q)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(q, []byte("garbage, and longer than before to change the size"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Current(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Current after corruption: %v, want ErrInvalid", err)
	}
}
