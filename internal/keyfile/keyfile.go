// Package keyfile creates the key files of an embedded store (the vault's
// master key, the checkpoint signing key) so that a process starting at the
// same moment never reads a partly written one.
package keyfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Create writes contents to path, readable by the owner only, unless path
// exists. The file appears whole or not at all: contents are written and
// fsynced under a temporary name, then linked into place, which fails if
// another process linked its own first. It reports whether this call
// created the file; when it did not, the caller reads the winner's.
func Create(path, contents string) (created bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("keyfile: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("keyfile: %w", err)
	}
	_, werr := tmp.WriteString(contents)
	if serr := tmp.Sync(); werr == nil {
		werr = serr
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return false, fmt.Errorf("keyfile: write %s: %w", path, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("keyfile: create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		d.Sync()
		d.Close()
	}
	return true, nil
}
