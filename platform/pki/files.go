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

// Files are the PEM files a component is started with: the CA's
// certificate, and its own certificate and key.
type Files struct {
	CA, Cert, Key string
}

// Dir is a CA kept in a directory (ca.pem, ca-key.pem) with the
// certificates it issues written beside it as <role>-<name>.pem and
// <role>-<name>-key.pem: a throwaway CA for a demo, a benchmark or a test.
type Dir struct {
	// Path is the directory; CAFile is Path/ca.pem.
	Path, CAFile string
	ca           *CA
}

// NewDir creates a new CA in path (made 0700 if missing), replacing any
// that was there.
func NewDir(path string, o CAOptions) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certPEM, keyPEM, err := CreateCA(o)
	if err != nil {
		return nil, err
	}
	ca, err := LoadCA(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	caFile, _, err := WritePair(path, "ca", certPEM, keyPEM, true)
	if err != nil {
		return nil, err
	}
	return &Dir{Path: path, CAFile: caFile, ca: ca}, nil
}

// Issue signs a certificate as o asks and writes it, replacing the files of
// an earlier one for the same identity (a rotation: running components
// reload them).
func (d *Dir) Issue(o CertOptions) (Files, error) {
	certPEM, keyPEM, err := d.ca.CreateCert(o)
	if err != nil {
		return Files{}, err
	}
	cert, key, err := WritePair(d.Path, string(o.Identity.Role)+"-"+o.Identity.Name, certPEM, keyPEM, true)
	if err != nil {
		return Files{}, err
	}
	return Files{CA: d.CAFile, Cert: cert, Key: key}, nil
}
