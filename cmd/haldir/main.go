// Command haldir is the Haldir server and command line. See package cli.
package main

import (
	"context"
	"os"

	"github.com/haldir-dev/haldir/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
