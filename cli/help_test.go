package cli

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// TestEveryCommandHasAnExample walks the whole command tree: every runnable
// command's help shows an example.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := newRoot(&env{v: viper.New()})
	var walk func(*cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Runnable() && c.Name() != "help" && c.Parent() != nil && c.Parent().Name() != "completion" && c.Name() != "completion" {
			n++
			if c.Example == "" {
				t.Errorf("%q has no example in its help", c.CommandPath())
			}
		}
	}
	walk(root)
	if root.Example == "" {
		t.Error("haldir --help has no example")
	}
	if n < 30 {
		t.Errorf("only %d runnable commands found", n)
	}
}
