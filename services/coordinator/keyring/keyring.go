// Package keyring holds the keys that encrypt secrets in the replicated
// state: a JSON file per coordinator, outside the raft log, with one
// primary key that seals new values and older keys that still open values
// sealed before a rotation (AES-256-GCM).
//
// Every coordinator of a cluster needs the same keys: whichever leads
// seals and opens. The file is made once (Init) and copied to each
// coordinator by the operator, as Consul's gossip encryption key is; a
// rotation adds a key everywhere (Add), makes it primary everywhere (Use),
// re-encrypts the stored secrets (SecretService.RekeySecrets) and only then
// removes the old key (Remove).
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sentinel errors.
var (
	// ErrUnknownKey: a value was sealed with a key the keyring lacks.
	ErrUnknownKey = errors.New("keyring: unknown key")
	// ErrDecrypt: the ciphertext does not open with its key (corrupt, or
	// the key differs from the one that sealed it).
	ErrDecrypt = errors.New("keyring: decryption failed")
	// ErrInvalid: the keyring file is malformed.
	ErrInvalid = errors.New("keyring: invalid keyring file")
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// Key is one key of a keyring.
type Key struct {
	// ID names the key in every ciphertext it seals.
	ID string `json:"id"`
	// Key is the 32 random bytes (base64 in the file).
	Key []byte `json:"key"`
	// Primary marks the key that seals new values; exactly one is.
	Primary bool `json:"primary,omitempty"`
	// Created is when the key was generated.
	Created time.Time `json:"created"`
}

// Keyring is a parsed keyring file.
type Keyring struct {
	Keys []Key `json:"keys"`
}

// Generate draws a new key (not primary).
func Generate() (Key, error) {
	k := Key{Key: make([]byte, KeySize), Created: time.Now().UTC().Truncate(time.Second)}
	if _, err := rand.Read(k.Key); err != nil {
		return Key{}, fmt.Errorf("keyring: random key: %w", err)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, fmt.Errorf("keyring: random key id: %w", err)
	}
	k.ID = "k" + hex.EncodeToString(id[:])
	return k, nil
}

// Parse decodes and validates a keyring file's contents.
func Parse(b []byte) (*Keyring, error) {
	var kr Keyring
	if err := json.Unmarshal(b, &kr); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := kr.validate(); err != nil {
		return nil, err
	}
	return &kr, nil
}

func (kr *Keyring) validate() error {
	if len(kr.Keys) == 0 {
		return fmt.Errorf("%w: it holds no key", ErrInvalid)
	}
	seen := map[string]bool{}
	primaries := 0
	for i, k := range kr.Keys {
		switch {
		case k.ID == "" || strings.ContainsAny(k.ID, " /\t\n"):
			return fmt.Errorf("%w: keys[%d].id %q is empty or has spaces or slashes", ErrInvalid, i, k.ID)
		case seen[k.ID]:
			return fmt.Errorf("%w: key id %s appears twice", ErrInvalid, k.ID)
		case len(k.Key) != KeySize:
			return fmt.Errorf("%w: key %s has %d bytes, want %d", ErrInvalid, k.ID, len(k.Key), KeySize)
		}
		seen[k.ID] = true
		if k.Primary {
			primaries++
		}
	}
	if primaries != 1 {
		return fmt.Errorf("%w: %d keys are primary, want exactly one", ErrInvalid, primaries)
	}
	return nil
}

// Primary returns the primary key.
func (kr *Keyring) Primary() Key {
	for _, k := range kr.Keys {
		if k.Primary {
			return k
		}
	}
	return Key{} // unreachable on a validated keyring
}

// IDs returns the key ids, in file order.
func (kr *Keyring) IDs() []string {
	ids := make([]string, len(kr.Keys))
	for i, k := range kr.Keys {
		ids[i] = k.ID
	}
	return ids
}

func (kr *Keyring) key(id string) (Key, bool) {
	for _, k := range kr.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext with the primary key, binding aad (which must be
// given again to Open). It returns the key id and the nonce followed by the
// sealed bytes.
func (kr *Keyring) Seal(aad, plaintext []byte) (string, []byte, error) {
	k := kr.Primary()
	aead, err := gcm(k.Key)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("keyring: random nonce: %w", err)
	}
	return k.ID, aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned.
func (kr *Keyring) Open(keyID string, aad, ciphertext []byte) ([]byte, error) {
	k, ok := kr.key(keyID)
	if !ok {
		return nil, fmt.Errorf("key %s is not in this coordinator's keyring (it holds %s): was it removed before RekeySecrets, or does this keyring file differ from the leader's? %w",
			keyID, strings.Join(kr.IDs(), ", "), ErrUnknownKey)
	}
	aead, err := gcm(k.Key)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < aead.NonceSize() {
		return nil, fmt.Errorf("ciphertext of %d bytes is shorter than a nonce: %w", len(ciphertext), ErrDecrypt)
	}
	out, err := aead.Open(nil, ciphertext[:aead.NonceSize()], ciphertext[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("with key %s: the ciphertext is corrupt or the key is not the one that sealed it: %w", keyID, ErrDecrypt)
	}
	return out, nil
}

// Digest is "hmac-sha256:<hex>" of value, keyed with a key derived from
// the primary key: equal values give equal digests under one primary key,
// and a reader of the state without the keyring cannot test guesses.
func (kr *Keyring) Digest(value []byte) string {
	dk := hmac.New(sha256.New, kr.Primary().Key)
	dk.Write([]byte("slipway secret digest"))
	m := hmac.New(sha256.New, dk.Sum(nil))
	m.Write(value)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// Marshal encodes the keyring as its file contents.
func (kr *Keyring) Marshal() ([]byte, error) {
	if err := kr.validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(kr, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keyring: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// Read reads and validates a keyring file. A file that others than its
// owner may read or write is refused.
func Read(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyring: %s has mode %04o: it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	kr, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kr, nil
}

// Write writes kr to path atomically with mode 0600.
func Write(path string, kr *Keyring) error {
	b, err := kr.Marshal()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("keyring: write %s: %w", path, err)
	}
	return nil
}

// Init creates a keyring file holding one new primary key; an existing
// file is left alone and refused.
func Init(path string) (Key, error) {
	if _, err := os.Stat(path); err == nil {
		return Key{}, fmt.Errorf("keyring: %s exists already: %w", path, os.ErrExist)
	}
	k, err := Generate()
	if err != nil {
		return Key{}, err
	}
	k.Primary = true
	return k, Write(path, &Keyring{Keys: []Key{k}})
}

// Add generates a key into the file at path (primary when primary is set)
// and returns it. Install the same key on every coordinator: copy the file,
// or pass the key to Install.
func Add(path string, primary bool) (Key, error) {
	kr, err := Read(path)
	if err != nil {
		return Key{}, err
	}
	k, err := Generate()
	if err != nil {
		return Key{}, err
	}
	kr.Keys = append(kr.Keys, k)
	if primary {
		setPrimary(kr, k.ID)
		k.Primary = true
	}
	return k, Write(path, kr)
}

// Use makes key id the primary key of the file at path.
func Use(path, id string) error {
	kr, err := Read(path)
	if err != nil {
		return err
	}
	if _, ok := kr.key(id); !ok {
		return fmt.Errorf("keyring: %s has no key %s (it holds %s): %w", path, id, strings.Join(kr.IDs(), ", "), ErrUnknownKey)
	}
	setPrimary(kr, id)
	return Write(path, kr)
}

// Remove deletes key id from the file at path; the primary key cannot be
// removed.
func Remove(path, id string) error {
	kr, err := Read(path)
	if err != nil {
		return err
	}
	k, ok := kr.key(id)
	if !ok {
		return fmt.Errorf("keyring: %s has no key %s (it holds %s): %w", path, id, strings.Join(kr.IDs(), ", "), ErrUnknownKey)
	}
	if k.Primary {
		return fmt.Errorf("keyring: key %s is the primary key: make another primary first (use)", id)
	}
	kr.Keys = slices.DeleteFunc(kr.Keys, func(k Key) bool { return k.ID == id })
	return Write(path, kr)
}

func setPrimary(kr *Keyring, id string) {
	for i := range kr.Keys {
		kr.Keys[i].Primary = kr.Keys[i].ID == id
	}
}

// File is a keyring file in use by a running coordinator: Current reads it
// again whenever it changed on disk, so the commands above take effect
// without a restart.
type File struct {
	path string

	mu    sync.Mutex
	kr    *Keyring
	mtime time.Time
	size  int64
}

// OpenFile reads the keyring file at path, which must exist and be valid.
func OpenFile(path string) (*File, error) {
	f := &File{path: path}
	if _, err := f.Current(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Current returns the keyring as the file holds it now. When the file was
// changed into something invalid, the error says so and the last good
// keyring is not used (an operator's mistake is reported, not hidden).
func (f *File) Current() (*Keyring, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if f.kr != nil && fi.ModTime().Equal(f.mtime) && fi.Size() == f.size {
		return f.kr, nil
	}
	kr, err := Read(f.path)
	if err != nil {
		return nil, err
	}
	f.kr, f.mtime, f.size = kr, fi.ModTime(), fi.Size()
	return kr, nil
}

// KeyString is a key's bytes as the file writes them (base64).
func KeyString(k Key) string { return base64.StdEncoding.EncodeToString(k.Key) }
