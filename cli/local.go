package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/migrations"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// openLocal opens the store named by --data-dir or DATABASE_URL for an
// operator command (app.OpenExisting), with the command line's exit codes.
func (e *env) openLocal(ctx context.Context) (*sqldb.DB, error) {
	db, err := app.OpenExisting(ctx, e.config())
	return db, operatorError(err)
}

// openLedger opens the local store and its ledger; the schema must exist.
func (e *env) openLedger(ctx context.Context) (*sqldb.DB, *sqlstore.Store, error) {
	db, store, err := app.OpenLedger(ctx, e.config())
	return db, store, operatorError(err)
}

// batchGC lets the heap grow to five times what is live before the garbage
// collector runs (GOGC=400), for the rest of a command that streams the
// whole ledger (verify, rebuild, replay): they allocate short-lived rows by
// the million and keep little, so the trade is a few megabytes for about a
// sixth of their CPU. An explicit GOGC in the environment wins.
func batchGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// operatorError gives an operator opener's error its exit code.
func operatorError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, app.ErrUnreachable):
		return fail(ExitUnreachable, "cannot connect to Postgres: %v", err)
	case errors.Is(err, app.ErrNoStore):
		return fail(ExitUsage, "%v", err)
	}
	return fail(ExitCheckFailed, "%v", err)
}

func newMigrate(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "migrate",
		Short:   "Apply or show schema migrations",
		Example: "  haldir migrate up\n  haldir migrate status --json",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "up",
		Short:   "Apply pending migrations",
		Example: "  DATABASE_URL=postgres://… haldir migrate up",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := app.OpenForMigration(cmd.Context(), e.config())
			if err != nil {
				return operatorError(err)
			}
			defer db.Close()
			applied, err := migrations.Up(cmd.Context(), db, func(m migrations.Migration) {
				if !e.json {
					fmt.Fprintf(e.stdout, "applied %s\n", m.Name)
				}
			})
			if err != nil {
				return fail(ExitCheckFailed, "%v", err)
			}
			names := []string{}
			for _, m := range applied {
				names = append(names, m.Name)
			}
			return e.print(map[string]any{"applied": names}, func(w io.Writer) {
				if len(applied) == 0 {
					fmt.Fprintln(w, "schema is up to date")
				}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "status",
		Short:   "Show applied and pending migrations",
		Example: "  haldir migrate status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := e.openLocal(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			status, err := migrations.Status(cmd.Context(), db)
			if err != nil {
				return fail(ExitCheckFailed, "%v", err)
			}
			type row struct {
				Version   int    `json:"version"`
				Name      string `json:"name"`
				State     string `json:"state"`
				Checksum  string `json:"checksum"`
				AppliedAt string `json:"applied_at,omitempty"`
			}
			var rows []row
			bad := false
			for _, m := range status {
				r := row{Version: m.Version, Name: m.Name, Checksum: m.Checksum, State: "pending"}
				if !m.Pending() {
					r.State, r.AppliedAt = "applied", m.AppliedAt.Format(time.RFC3339)
				}
				if m.Modified {
					r.State, bad = "modified", true
				}
				rows = append(rows, r)
			}
			err = e.print(map[string]any{"migrations": rows}, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED\tCHECKSUM")
				for _, r := range rows {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Version, r.Name, r.State, r.AppliedAt, r.Checksum[:12])
				}
				tw.Flush()
			})
			if err == nil && bad {
				return fail(ExitCheckFailed, "an applied migration file was modified")
			}
			return err
		},
	})
	return cmd
}

func newAudit(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "audit",
		Short:   "Inspect and verify the audit ledger",
		Example: "  haldir audit verify --data-dir ./haldir-data",
	}
	cmd.AddCommand(newVerify(e), newTail(e), newLog(e), newTrail(e), newSpend(e), newExport(e), newProve(e), newConsistency(e))
	return cmd
}

func newVerify(e *env) *cobra.Command {
	var bundle, key, checkpoint string
	var local bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute every hash of the ledger from stored bytes (server or local store)",
		Long: `Against the server (the default): ask it to verify your tenant's chain.

With --data-dir, DATABASE_URL or --local: recompute every event hash from the bytes stored in the ledger and check every
link of every tenant's chain and the gapless global order. Exits 1, naming the
first bad position, when anything was modified, inserted, deleted or reordered.
Truncation of a tenant's newest events is only detectable against a signed
checkpoint.

With --bundle, verify an exported bundle offline instead, with no server and
no database: the chain, the Merkle root, the checkpoint signature by the key
you trust (--key), and, with --checkpoint, consistency with an older signed
checkpoint you kept, which catches truncation and forks.`,
		Example: `  haldir audit verify --data-dir ./haldir-data
  DATABASE_URL=postgres://… haldir audit verify --json
  haldir audit verify --bundle audit.bundle --key ./checkpoint-key.txt --checkpoint ./kept-checkpoint.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bundle != "" {
				return e.verifyBundle(bundle, key, checkpoint)
			}
			if !local && !cmd.Flags().Changed("data-dir") && !cmd.Flags().Changed("database-url") &&
				os.Getenv("HALDIR_DATA_DIR") == "" && os.Getenv("DATABASE_URL") == "" && os.Getenv("HALDIR_DATABASE_URL") == "" {
				return e.verifyRemote(cmd)
			}
			batchGC()
			db, store, err := e.openLedger(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			defer store.Close()
			head, err := store.Head(cmd.Context())
			if err != nil {
				return fail(ExitCheckFailed, "%v", err)
			}
			p := e.progress("verifying")
			start := time.Now()
			r, err := events.VerifyAll(cmd.Context(), store, func(n int64) { p.update(n, head) })
			p.done()
			elapsed := time.Since(start)
			var ve *events.VerifyError
			if errors.As(err, &ve) {
				perr := e.print(map[string]any{"verified": false, "first_bad_position": ve.Position, "tenant": ve.Tenant, "seq": ve.Seq, "reason": ve.Reason},
					func(w io.Writer) {
						fmt.Fprintf(w, "✗ ledger BROKEN at position %d (tenant %s, seq %d): %s\n", ve.Position, ve.Tenant, ve.Seq, ve.Reason)
					})
				if perr != nil {
					return perr
				}
				return &exitError{code: ExitCheckFailed, err: fmt.Errorf("verification failed at position %d", ve.Position)}
			}
			if err != nil {
				return fail(ExitCheckFailed, "verification could not complete: %v", err)
			}
			tenants := make([]string, 0, len(r.Heads))
			for t := range r.Heads {
				tenants = append(tenants, t)
			}
			sort.Strings(tenants)
			heads := map[string]any{}
			for _, t := range tenants {
				h := r.Heads[t]
				heads[t] = map[string]any{"seq": h.Seq, "head_hash": hex.EncodeToString(h.Hash[:])}
			}
			rate := float64(r.Checked) / max(elapsed.Seconds(), 1e-9)
			return e.print(map[string]any{"verified": true, "events_checked": r.Checked, "head_position": r.Head, "tenants": heads,
				"seconds": elapsed.Seconds()}, func(w io.Writer) {
				fmt.Fprintf(w, "✓ ledger verified: %s events, %d chains, head position %d (%.0f events/s)\n", thousands(r.Checked), len(tenants), r.Head, rate)
				for _, t := range tenants {
					h := r.Heads[t]
					fmt.Fprintf(w, "  %-32s seq %-8d head %s\n", t, h.Seq, hex.EncodeToString(h.Hash[:])[:16])
				}
			})
		},
	}
	cmd.Flags().StringVar(&bundle, "bundle", "", "verify this exported bundle offline")
	cmd.Flags().BoolVar(&local, "local", false, "verify the local store (--data-dir or DATABASE_URL), not via the server")
	cmd.Flags().StringVar(&key, "key", "", "with --bundle: the verifier key you trust, inline or a file")
	cmd.Flags().StringVar(&checkpoint, "checkpoint", "", "with --bundle: an older signed checkpoint you kept (file)")
	return cmd
}

func newProjections(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "projections",
		Short:   "Manage the read models built from the ledger",
		Example: "  haldir projections rebuild",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rebuild",
		Short: "Replay the whole ledger into fresh read models and swap them in",
		Long: `Replay every event into fresh copies of the read-model tables and swap them in,
with the checkpoint, in one transaction. A running server may keep serving.`,
		Example: "  haldir projections rebuild --data-dir ./haldir-data",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			batchGC()
			db, store, err := e.openLedger(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			defer store.Close()
			p := e.progress("rebuilding")
			start := time.Now()
			pos, err := projections.Rebuild(cmd.Context(), db.State(), store, projections.CoreGroup, p.update)
			p.done()
			if err != nil {
				return fail(ExitCheckFailed, "rebuild failed: %v", err)
			}
			elapsed := time.Since(start)
			return e.print(map[string]any{"rebuilt": true, "position": pos, "seconds": elapsed.Seconds()}, func(w io.Writer) {
				fmt.Fprintf(w, "rebuilt read models to position %d in %s (%.0f events/s)\n", pos, elapsed.Round(time.Millisecond), float64(pos)/max(elapsed.Seconds(), 1e-9))
			})
		},
	})
	return cmd
}

func newReplay(e *env) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay the ledger into scratch tables and compare with the live read models",
		Long: `With --check, replay the ledger into scratch tables up to the live checkpoint
and compare every row with the live read models, printing any difference.
Exits 1 when they differ.`,
		Example: "  haldir replay --check",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !check {
				return fail(ExitUsage, "replay only runs as 'haldir replay --check'")
			}
			batchGC()
			db, store, err := e.openLedger(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			defer store.Close()
			p := e.progress("replaying")
			diffs, pos, err := projections.Check(cmd.Context(), db.State(), store, projections.CoreGroup, p.update)
			p.done()
			if err != nil {
				return fail(ExitCheckFailed, "replay failed: %v", err)
			}
			out := []map[string]string{}
			for _, d := range diffs {
				out = append(out, map[string]string{"table": d.Table, "diff": d.Diff})
			}
			if err := e.print(map[string]any{"identical": len(diffs) == 0, "position": pos, "differences": out}, func(w io.Writer) {
				if len(diffs) == 0 {
					fmt.Fprintf(w, "✓ replay to position %d matches the live read models\n", pos)
					return
				}
				for _, d := range diffs {
					fmt.Fprintf(w, "✗ %s differs (-live +replayed):\n%s\n", d.Table, d.Diff)
				}
			}); err != nil {
				return err
			}
			if len(diffs) > 0 {
				return &exitError{code: ExitCheckFailed, err: fmt.Errorf("%d read models differ from a replay of the ledger", len(diffs))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "compare a replay with the live read models")
	return cmd
}

func newTenants(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tenants",
		Short:   "Manage tenants on a local store",
		Example: "  haldir tenants create acme",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "create NAME",
		Short:   "Create a tenant and print its first API key (shown once)",
		Example: "  haldir tenants create acme --data-dir ./haldir-data",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := app.CreateTenant(cmd.Context(), e.config(), commands.Actor{KeyPrefix: "cli", Route: "haldir tenants create"}, args[0])
			if err != nil {
				return fail(ExitCheckFailed, "%v", err)
			}
			return e.print(map[string]any{"tenant_id": t.TenantID, "name": t.Name, "key": t.Key.Key, "prefix": t.Key.Prefix}, func(w io.Writer) {
				fmt.Fprintf(w, "created tenant %s (%s)\nAPI key (shown once): %s\n", t.TenantID, t.Name, t.Key.Key)
			})
		},
	})
	return cmd
}

// verifyRemote asks the server to verify the key's tenant chain.
func (e *env) verifyRemote(cmd *cobra.Command) error {
	var r map[string]any
	if err := e.call(cmd.Context(), "GET", "/v1/audit/verify", nil, &r); err != nil {
		return err
	}
	if err := e.show(r, func(w io.Writer, r map[string]any) {
		if r["verified"] == true {
			fmt.Fprintf(w, "✓ chain verified by the server: %v entries, head %v\n", r["entries_checked"], r["head_hash"])
			return
		}
		fmt.Fprintf(w, "✗ chain BROKEN at seq %v: %v\n", r["first_bad_seq"], r["reason"])
	}); err != nil {
		return err
	}
	if r["verified"] != true {
		return &exitError{code: ExitCheckFailed, err: fmt.Errorf("verification failed at seq %v", r["first_bad_seq"])}
	}
	return nil
}
