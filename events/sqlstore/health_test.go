package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

// TestStoreClassifiesStorageFailures: storage failures are told from every
// other error by code (SQLite result codes, Postgres SQLSTATE), never by
// message, and an append the store cannot write fails with
// events.ErrUnavailable wrapping the cause.
func TestStoreClassifiesStorageFailures(t *testing.T) {
	pg := map[string]bool{
		"53000": true, "53100": true, "53200": true, "53300": true, "53400": true, // insufficient resources
		"58000": true, "58030": true, "58P01": true, // system error
		"25006": true, // read_only_sql_transaction
		"23505": false, "23503": false, "HA001": false, "40001": false, "40P01": false,
		"42P01": false, "42601": false, "57014": false, "P0001": false, "22P02": false,
	}
	for code, want := range pg {
		err := fmt.Errorf("events: insert: %w", &pgconn.PgError{Code: code, Message: "could not extend file: No space left on device"})
		if got := sqldb.IsStorageFailure(err); got != want {
			t.Errorf("SQLSTATE %s: IsStorageFailure = %v, want %v", code, got, want)
		}
	}
	for _, err := range []error{nil, context.Canceled, context.DeadlineExceeded, sql.ErrNoRows, sql.ErrTxDone,
		errors.New("database or disk is full"), errors.New("ERROR: could not extend file (SQLSTATE 53100)")} {
		if sqldb.IsStorageFailure(err) {
			t.Errorf("IsStorageFailure(%v) = true: a message is not a code", err)
		}
	}

	// Real SQLite errors.
	db, _ := sqltest.OpenSQLite(t)
	ctx := context.Background()
	failing := func(d *sql.DB, q string) error {
		t.Helper()
		_, err := d.ExecContext(ctx, q)
		if err == nil {
			t.Fatalf("%s succeeded", q)
		}
		return err
	}
	mustExec(t, db, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
	mustExec(t, db, "INSERT INTO t VALUES (1, x'00')")
	readonly := failing(db.Read, "INSERT INTO t VALUES (2, x'00')") // the read pool is query_only
	unique := failing(db.Write, "INSERT INTO t VALUES (1, x'00')")
	syntax := failing(db.Write, "INSERT INTO nowhere VALUES (1)")
	fillSQLite(t, db)
	full := failing(db.Write, "INSERT INTO t VALUES (3, zeroblob(8192))")
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{{"SQLITE_READONLY", readonly, true}, {"SQLITE_FULL", full, true}, {"SQLITE_CONSTRAINT_PRIMARYKEY", unique, false}, {"no such table", syntax, false}} {
		if got := sqldb.IsStorageFailure(fmt.Errorf("wrapped: %w", c.err)); got != c.want {
			t.Errorf("%s (%v): IsStorageFailure = %v, want %v", c.name, c.err, got, c.want)
		}
	}

	// The store wraps a storage failure, and only that.
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			s, err := sqlstore.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			refuse := `CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END`
			if db.Dialect == sqldb.Postgres {
				mustExec(t, db, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$`)
				refuse = `CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse()`
			}
			mustExec(t, db, refuse)
			if _, err := s.Append(ctx, bigEvent("t", "refused")); err == nil || errors.Is(err, events.ErrUnavailable) {
				t.Errorf("an append a trigger refuses: %v; want an error, not ErrUnavailable", err)
			}
			if db.Dialect == sqldb.Postgres {
				mustExec(t, db, "DROP TRIGGER refuse ON events")
			} else {
				mustExec(t, db, "DROP TRIGGER refuse")
			}
			if db.Dialect == sqldb.Postgres {
				// A read-only transaction refuses writes with a real 25006.
				tx, err := db.Write.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				_, err = tx.ExecContext(ctx, "INSERT INTO store_probe (probed_at, pad) VALUES (1, '')")
				tx.Rollback()
				if err == nil || !sqldb.IsStorageFailure(err) {
					t.Errorf("a write in a read-only transaction: %v; want a storage failure", err)
				}
			}
			free := fillStore(t, db)
			_, err = s.Append(ctx, bigEvent("t", "full"))
			if !errors.Is(err, events.ErrUnavailable) {
				t.Fatalf("an append on a full store: %v; want ErrUnavailable", err)
			}
			if !sqldb.IsStorageFailure(err) {
				t.Errorf("ErrUnavailable does not wrap its cause: %v", err)
			}
			free()
		})
	}
}

// TestStoreReadyFollowsWrites: Ready fails with ErrUnavailable as soon as
// an append cannot be written, and while the store cannot write even when
// nothing is appended (its probe finds out); it succeeds again once the
// store can write, and the ledger holds exactly what was acknowledged.
func TestStoreReadyFollowsWrites(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			ctx := context.Background()
			s, err := sqlstore.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var acked []string
			appendOK := func(stream string) {
				t.Helper()
				e := bigEvent("t", stream)
				if _, err := s.Append(ctx, e); err != nil {
					t.Fatal(err)
				}
				acked = append(acked, e.ID)
			}
			readyWithin := func(why string, want error) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for {
					err := s.Ready(ctx)
					if (want == nil && err == nil) || (want != nil && errors.Is(err, want)) {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: Ready = %v after 5 s, want %v", why, err, want)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if err := s.Ready(ctx); err != nil {
				t.Fatalf("a fresh store: Ready = %v", err)
			}
			appendOK("before")

			free := fillStore(t, db)
			// Concurrent appends share a transaction and fail together.
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.Append(ctx, bigEvent("t", fmt.Sprint("full-", i))); !errors.Is(err, events.ErrUnavailable) {
						t.Errorf("an append on a full store: %v; want ErrUnavailable", err)
					}
				}()
			}
			wg.Wait()
			if err := s.Ready(ctx); !errors.Is(err, events.ErrUnavailable) {
				t.Errorf("Ready right after appends failed: %v; want ErrUnavailable", err)
			}
			time.Sleep(1200 * time.Millisecond) // past the remembered outcome: the probe decides
			if err := s.Ready(ctx); !errors.Is(err, events.ErrUnavailable) {
				t.Errorf("Ready while the store still cannot write: %v; want ErrUnavailable", err)
			}
			free()
			readyWithin("the store can write again", nil)
			appendOK("after")

			// Idle: no append fails, the probe does.
			free = fillStore(t, db)
			readyWithin("idle on a full store", events.ErrUnavailable)
			free()
			readyWithin("idle, the store can write again", nil)
			appendOK("last")

			rep, err := events.VerifyAll(ctx, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != int64(len(acked)) {
				t.Errorf("the ledger holds %d events, %d were acknowledged", rep.Checked, len(acked))
			}
			for _, id := range acked {
				if _, ok, err := s.Lookup(ctx, id); err != nil || !ok {
					t.Errorf("acknowledged event %s: found %v, %v", id, ok, err)
				}
			}
		})
	}
}

func mustExec(t *testing.T, db *sqldb.DB, q string) {
	t.Helper()
	if _, err := db.Write.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// bigEvent is an event bigger than a SQLite page: writing it always takes
// a new page.
func bigEvent(tenant, stream string) events.Proposed {
	return events.Proposed{ID: events.NewID(), Tenant: tenant, Stream: stream, ExpectedVersion: events.AnyVersion,
		Type: "test.big", Payload: []byte(`{"pad":"` + strings.Repeat("p", 6000) + `"}`)}
}

// fillSQLite makes SQLite's file full for real: VACUUM leaves no free page
// and max_page_count on the writer connection (SQLite's only one) caps the
// file at its size, so a write needing one page more fails with
// SQLITE_FULL, as on a full disk. It returns the function that lifts the
// cap.
func fillSQLite(t *testing.T, db *sqldb.DB) (free func()) {
	t.Helper()
	mustExec(t, db, "VACUUM")
	var pages, limit int64
	if err := db.Write.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if err := db.Write.QueryRow(fmt.Sprintf("PRAGMA max_page_count = %d", pages)).Scan(&limit); err != nil || limit != pages {
		t.Fatalf("max_page_count = %d (%v), want %d", limit, err, pages)
	}
	return func() {
		t.Helper()
		if err := db.Write.QueryRow("PRAGMA max_page_count = 4294967294").Scan(&limit); err != nil || limit <= pages {
			t.Fatalf("lifting max_page_count: %d, %v", limit, err)
		}
	}
}

// fillStore makes the store unable to write: for real on SQLite
// (fillSQLite); on Postgres, whose disk a test cannot fill, with triggers
// on the ledger and the probe table raising SQLSTATE 53100 disk_full, the
// error a Postgres server returns for a write it has no space for.
func fillStore(t *testing.T, db *sqldb.DB) (free func()) {
	t.Helper()
	if db.Dialect == sqldb.SQLite {
		return fillSQLite(t, db)
	}
	mustExec(t, db, `CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`)
	tables := []string{"events", "store_probe"}
	for _, table := range tables {
		mustExec(t, db, fmt.Sprintf("CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION test_disk_full()", table))
	}
	return func() {
		t.Helper()
		for _, table := range tables {
			mustExec(t, db, fmt.Sprintf("DROP TRIGGER test_disk_full ON %s", table))
		}
		mustExec(t, db, "DROP FUNCTION test_disk_full()")
	}
}
