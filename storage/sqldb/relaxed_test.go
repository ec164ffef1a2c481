package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

// TestRelaxedTxRestoresDurability: a relaxed transaction commits without
// flushing only while it runs: SQLite's synchronous setting is NORMAL
// inside and FULL again afterwards on the writer connection, which ledger
// appends use; Postgres's synchronous_commit is off for the transaction
// alone. Its first statement's row is returned, its last statement lands
// with the commit, and a rollback leaves nothing, the connection reusable.
func TestRelaxedTxRestoresDurability(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			ctx := context.Background()
			setting, relaxed, durable := "PRAGMA synchronous", "1", "2"
			if db.Dialect == sqldb.Postgres {
				setting, relaxed, durable = "SHOW synchronous_commit", "off", "on"
			}
			level := func() string {
				var v string
				if err := db.Write.QueryRowContext(ctx, setting).Scan(&v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			if got := level(); got != durable {
				t.Fatalf("the writer starts at %s = %s, want %s", setting, got, durable)
			}
			for i, commit := range []bool{true, false} {
				name := fmt.Sprint("relaxed-", i)
				var inside string
				tx, err := db.BeginRelaxedQuery(ctx, []any{&inside}, setting)
				if err != nil {
					t.Fatal(err)
				}
				if inside != relaxed {
					t.Errorf("inside the relaxed transaction %s = %s, want %s", setting, inside, relaxed)
				}
				if _, err := tx.Q.ExecContext(ctx, db.Rebind("INSERT INTO checkpoints (name, position, updated_at) VALUES (?, 1, 0)"), name); err != nil {
					t.Fatal(err)
				}
				if commit {
					err = tx.CommitAfter(ctx, db.Rebind("UPDATE checkpoints SET position = 7 WHERE name = ?"), name)
				} else {
					err = tx.Rollback()
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := level(); got != durable {
					t.Fatalf("after the relaxed transaction (commit %v) %s = %s, want %s", commit, setting, got, durable)
				}
				var pos int64
				err = db.Read.QueryRowContext(ctx, db.Rebind("SELECT position FROM checkpoints WHERE name = ?"), name).Scan(&pos)
				switch {
				case commit && (err != nil || pos != 7):
					t.Errorf("committed: position %d (%v), want 7, the last statement's", pos, err)
				case !commit && !errors.Is(err, sql.ErrNoRows):
					t.Errorf("rolled back: the row is there (position %d, %v)", pos, err)
				}
			}
		})
	}
}
