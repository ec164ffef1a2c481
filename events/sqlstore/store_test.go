package sqlstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/events/storetest"
	"github.com/haldir-dev/haldir/sqldb"
	"github.com/haldir-dev/haldir/sqldb/sqltest"
)

func TestContract(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Harness {
				db, _ := b.Open(t)
				return harness(t, db)
			})
		})
	}
}

func harness(t *testing.T, db *sqldb.DB) storetest.Harness {
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return storetest.Harness{
		Store: s,
		Exec: func(ctx context.Context, q string, args ...any) error {
			_, err := db.Write.ExecContext(ctx, db.Rebind(q), args...)
			return err
		},
		Tamper: func(ctx context.Context, q string, args ...any) error {
			return Tamper(ctx, db, q, args...)
		},
		Query: func(ctx context.Context, q string, args ...any) (any, error) {
			var v any
			err := db.Read.QueryRowContext(ctx, db.Rebind(q), args...).Scan(&v)
			return v, err
		},
	}
}

// Tamper runs q with the ledger's append-only triggers lifted, as an
// attacker with direct database access could.
func Tamper(ctx context.Context, db *sqldb.DB, q string, args ...any) error {
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var lift, restore []string
	switch db.Dialect {
	case sqldb.SQLite:
		lift = []string{"DROP TRIGGER events_append_only_update", "DROP TRIGGER events_append_only_delete"}
		restore = []string{
			"CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'haldir: the ledger is append-only'); END",
			"CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'haldir: the ledger is append-only'); END",
		}
	case sqldb.Postgres:
		lift = []string{"ALTER TABLE events DISABLE TRIGGER USER"}
		restore = []string{"ALTER TABLE events ENABLE TRIGGER USER"}
	}
	for _, s := range lift {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("lift protection: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, db.Rebind(q), args...); err != nil {
		return err
	}
	for _, s := range restore {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("restore protection: %w", err)
		}
	}
	return tx.Commit()
}
