//go:build !linux

package cli

import "os"

// rawMode is unsupported here: --watch quits on Ctrl-C only.
func rawMode(*os.File) func() { return nil }
