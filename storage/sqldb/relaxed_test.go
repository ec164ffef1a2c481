package sqldb_test

import (
	"context"
	"testing"

	"github.com/haldir-dev/haldir/storage/sqldb"
)

// TestRelaxedTxRestoresDurability: a relaxed transaction lowers SQLite's
// synchronous setting only while it runs; afterwards the writer connection,
// which ledger appends use, is back to FULL, whether it committed or not.
func TestRelaxedTxRestoresDurability(t *testing.T) {
	db, err := sqldb.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	level := func() int {
		var n int
		if err := db.Write.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := level(); got != 2 {
		t.Fatalf("writer starts at synchronous=%d, want 2 (FULL)", got)
	}
	for _, commit := range []bool{true, false} {
		tx, err := db.BeginRelaxed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var inside int
		if err := tx.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&inside); err != nil {
			t.Fatal(err)
		}
		if inside != 1 {
			t.Errorf("inside the relaxed transaction synchronous=%d, want 1 (NORMAL)", inside)
		}
		if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS t (x)"); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := level(); got != 2 {
			t.Fatalf("after the relaxed transaction (commit %v) synchronous=%d, want 2 (FULL)", commit, got)
		}
	}
}
