package pki

import (
	"fmt"
	"os"
	"path/filepath"
)

// WritePair writes cert (0644) and key (0600) as dir/<base>.pem and
// dir/<base>-key.pem, refusing to overwrite unless force is set. It returns
// the two paths.
func WritePair(dir, base string, certPEM, keyPEM []byte, force bool) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, base+".pem")
	keyPath = filepath.Join(dir, base+"-key.pem")
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fmt.Errorf("pki: %s exists (use --force to overwrite)", p)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("pki: %w", err)
	}
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// writeAtomic writes data to a temporary file beside path and renames it
// into place, so a reader that reloads on change never sees half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
