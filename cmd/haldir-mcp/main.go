// Command haldir-mcp is `haldir mcp` under the name MCP client configs use:
// Haldir's MCP tools over stdio, relayed to the server in HALDIR_BASE_URL
// with HALDIR_API_KEY. See package cli.
package main

import (
	"context"
	"os"

	"github.com/haldir-dev/haldir/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), append([]string{"mcp"}, os.Args[1:]...), os.Stdin, os.Stdout, os.Stderr))
}
