// Package cli is the haldir command: cobra commands, configuration read
// once through viper (flags, HALDIR_* environment, an optional config
// file), human and --json output, and documented exit codes.
//
// Exit codes: 0 ok, 1 a check failed, 2 usage error, 3 server unreachable,
// 4 authentication refused.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitCheckFailed = 1
	ExitUsage       = 2
	ExitUnreachable = 3
	ExitAuth        = 4
)

// Version is set at build time with -ldflags "-X …/cli.Version=…".
var Version = "dev"

// exitError carries an exit code with the one-sentence message printed to
// stderr.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// env is what every command receives: its output streams and the
// configuration read once for this invocation.
type env struct {
	v      *viper.Viper
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	json   bool
}

// Main runs the haldir command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{v: viper.New(), stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	if errors.As(err, &xe) {
		if xe.err != nil && xe.err.Error() != "" {
			fmt.Fprintln(stderr, "haldir: "+xe.err.Error())
		}
		return xe.code
	}
	// cobra's own errors: unknown command, bad flag, wrong argument count.
	fmt.Fprintln(stderr, "haldir: "+err.Error())
	fmt.Fprintln(stderr, "Run 'haldir --help' for usage.")
	return ExitUsage
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "haldir",
		Short: "Governance for AI agents: sessions, spend caps, secrets, approvals and a tamper-evident ledger",
		Long: `haldir runs the Haldir server and drives it from the terminal.

Every command takes --json for scripts. Exit codes: 0 ok, 1 a check failed,
2 usage error, 3 server unreachable, 4 authentication refused.`,
		Example: `  haldir serve                         # embedded store in ./haldir-data on :8000
  DATABASE_URL=postgres://… haldir serve
  haldir audit verify --data-dir ./haldir-data`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return e.load(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.BoolVar(&e.json, "json", false, "print machine-readable JSON on stdout and nothing else")
	pf.String("config", "", "config file (YAML, JSON or TOML); default ./haldir.yaml when present")
	pf.String("data-dir", "./haldir-data", "embedded store directory (env HALDIR_DATA_DIR)")
	pf.String("database-url", "", "Postgres URL; selects Postgres over the embedded store (env DATABASE_URL)")
	pf.String("base-url", "", "the Haldir server for remote commands (env HALDIR_BASE_URL; default from 'haldir login', else "+DefaultBaseURL+")")
	root.AddCommand(
		newServe(e),
		newMigrate(e),
		newAudit(e),
		newProjections(e),
		newReplay(e),
		newTenants(e),
		newVault(e),
		newCompliance(e),
		newLogin(e),
		newWhoami(e),
		newOverview(e),
		newStatus(e),
		newReady(e),
		newKeys(e),
		newSession(e),
		newKill(e),
		newUnkill(e),
		newKills(e),
		newAnomalies(e),
		newSecret(e),
		newPay(e),
		newApprovals(e),
		newWebhooks(e),
		newProxy(e),
		newMCP(e),
		newInit(e),
		newVersion(e),
	)
	return root
}

// load reads configuration once: flags beat environment, which beats the
// config file, which beats defaults.
func (e *env) load(cmd *cobra.Command) error {
	v := e.v
	v.SetEnvPrefix("HALDIR")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindEnv("database-url", "HALDIR_DATABASE_URL", "DATABASE_URL"); err != nil {
		return err
	}
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err := v.BindPFlag(f.Name, f); err != nil && bindErr == nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return bindErr
	}
	file := v.GetString("config")
	if file == "" {
		if _, err := os.Stat("haldir.yaml"); err == nil {
			file = "haldir.yaml"
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return fail(ExitUsage, "cannot read config file %s: %v", file, err)
		}
	}
	e.json = v.GetBool("json")
	return nil
}

func newVersion(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  haldir version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.print(map[string]any{"version": Version}, func(w io.Writer) {
				fmt.Fprintln(w, "haldir "+Version)
			})
		},
	}
}
