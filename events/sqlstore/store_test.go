package sqlstore_test

import (
	"context"
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
			return sqltest.Tamper(ctx, db, q, args...)
		},
		Query: func(ctx context.Context, q string, args ...any) (any, error) {
			var v any
			err := db.Read.QueryRowContext(ctx, db.Rebind(q), args...).Scan(&v)
			return v, err
		},
	}
}
