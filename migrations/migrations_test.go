package migrations_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/haldir-dev/haldir/migrations"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

var dialects = []sqldb.Dialect{sqldb.SQLite, sqldb.Postgres}

// backend opens an empty, unmigrated database; connect opens another
// handle on the same database, as another process would.
type backend struct {
	name    string
	open    func(t *testing.T) (db *sqldb.DB, connect func(t *testing.T) *sqldb.DB)
	dialect sqldb.Dialect
}

var backends = []backend{
	{name: "sqlite", open: emptySQLite, dialect: sqldb.SQLite},
	{name: "postgres", open: emptyPostgres, dialect: sqldb.Postgres},
}

func emptySQLite(t *testing.T) (*sqldb.DB, func(t *testing.T) *sqldb.DB) {
	t.Helper()
	dir := t.TempDir()
	connect := func(t *testing.T) *sqldb.DB {
		t.Helper()
		db, err := sqldb.OpenSQLite(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return connect(t), connect
}

// emptyPostgres returns a database of the test's own with nothing in it.
// sqltest gives a migrated one (and skips, or fails under CI=true, without
// Postgres); its schema is dropped and created afresh.
func emptyPostgres(t *testing.T) (*sqldb.DB, func(t *testing.T) *sqldb.DB) {
	t.Helper()
	url := sqltest.NewPostgresDatabase(t)
	connect := func(t *testing.T) *sqldb.DB {
		t.Helper()
		db, err := sqldb.OpenPostgres(context.Background(), url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db := connect(t)
	if _, err := db.Write.Exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	if got := tables(t, db); len(got) != 0 {
		t.Fatalf("database is not empty: %v", got)
	}
	return db, connect
}

// tables lists the database's tables, sorted.
func tables(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	if db.Dialect == sqldb.Postgres {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
	}
	rows, err := db.Write.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// onDisk is a migration file as read from the source tree, independently
// of the embedded copy.
type onDisk struct {
	Version  int
	Name     string
	Checksum string
	tables   []string
}

var createTable = regexp.MustCompile(`(?i)\bCREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)`)

func readDisk(t *testing.T, d sqldb.Dialect) []onDisk {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(string(d), "*.sql"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no %s migrations on disk (%v)", d, err)
	}
	sort.Strings(paths)
	var out []onDisk
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m := onDisk{Version: i + 1, Name: strings.TrimSuffix(filepath.Base(p), ".sql"), Checksum: hex.EncodeToString(sum[:])}
		for _, g := range createTable.FindAllStringSubmatch(string(b), -1) {
			m.tables = append(m.tables, g[1])
		}
		out = append(out, m)
	}
	return out
}

// key is the part of a Migration that identifies the file.
type key struct {
	Version  int
	Name     string
	Checksum string
}

func keys[T any](ms []T, f func(T) key) []key {
	out := []key{}
	for _, m := range ms {
		out = append(out, f(m))
	}
	return out
}

func fromMigration(m migrations.Migration) key { return key{m.Version, m.Name, m.Checksum} }
func fromDisk(m onDisk) key                    { return key{m.Version, m.Name, m.Checksum} }

// recorded reads schema_migrations.
func recorded(t *testing.T, db *sqldb.DB) (ks []key, appliedAt map[int]int64) {
	t.Helper()
	rows, err := db.Write.Query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ks = []key{}
	appliedAt = map[int]int64{}
	for rows.Next() {
		var k key
		var at int64
		if err := rows.Scan(&k.Version, &k.Name, &k.Checksum, &at); err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
		appliedAt[k.Version] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ks, appliedAt
}

// TestAvailable: the embedded migrations are the files in the source tree,
// numbered 1, 2, 3… with the SHA-256 of each file as its checksum.
func TestAvailable(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			got, err := migrations.Available(d)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(keys(readDisk(t, d), fromDisk), keys(got, fromMigration)); diff != "" {
				t.Errorf("Available (-want +got):\n%s", diff)
			}
			for _, m := range got {
				if !m.Pending() || m.Modified {
					t.Errorf("%s: Available reports it applied (%v) or modified (%v)", m.Name, m.AppliedAt, m.Modified)
				}
			}
		})
	}
	t.Run("dialects in step", func(t *testing.T) {
		// Both dialects carry the same schema history, file for file.
		names := func(d sqldb.Dialect) []string {
			ms, err := migrations.Available(d)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, m := range ms {
				out = append(out, m.Name)
			}
			return out
		}
		if diff := cmp.Diff(names(sqldb.SQLite), names(sqldb.Postgres)); diff != "" {
			t.Errorf("migration names (-sqlite +postgres):\n%s", diff)
		}
	})
	t.Run("unknown dialect", func(t *testing.T) {
		if _, err := migrations.Available("mysql"); err == nil {
			t.Error("Available(mysql) succeeded")
		}
	})
}

// TestUp applies every migration to an empty database, then applies again
// from the same and from another connection: nothing more happens.
func TestUp(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, connect := b.open(t)
			disk := readDisk(t, b.dialect)
			want := keys(disk, fromDisk)

			before, err := migrations.Status(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range before {
				if !m.Pending() || m.Modified {
					t.Errorf("%s on an empty database: pending %v, modified %v; want pending", m.Name, m.Pending(), m.Modified)
				}
			}

			start := time.Now()
			var progressed []migrations.Migration
			done, err := migrations.Up(ctx, db, func(m migrations.Migration) { progressed = append(progressed, m) })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, keys(done, fromMigration)); diff != "" {
				t.Errorf("Up applied (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, keys(progressed, fromMigration)); diff != "" {
				t.Errorf("progress saw (-want +got):\n%s", diff)
			}
			// Each applied file is recorded with its SHA-256.
			rec, appliedAt := recorded(t, db)
			if diff := cmp.Diff(want, rec); diff != "" {
				t.Errorf("schema_migrations (-want +got):\n%s", diff)
			}
			status, err := migrations.Status(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range status {
				if m.Pending() || m.Modified {
					t.Errorf("%s after Up: pending %v, modified %v", m.Name, m.Pending(), m.Modified)
				}
				if m.AppliedAt.Before(start.Add(-time.Second)) || m.AppliedAt.After(time.Now().Add(time.Second)) {
					t.Errorf("%s applied at %v, want between %v and now", m.Name, m.AppliedAt, start)
				}
			}
			// The schema the files describe exists.
			wantTables := []string{"schema_migrations"}
			for _, m := range disk {
				wantTables = append(wantTables, m.tables...)
			}
			if diff := cmp.Diff(wantTables, tables(t, db), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("tables (-want +got):\n%s", diff)
			}

			for _, c := range []struct {
				name string
				db   *sqldb.DB
			}{{"same connection", db}, {"another connection", connect(t)}} {
				t.Run("again from "+c.name, func(t *testing.T) {
					called := 0
					again, err := migrations.Up(ctx, c.db, func(migrations.Migration) { called++ })
					if err != nil {
						t.Fatal(err)
					}
					if len(again) != 0 || called != 0 {
						t.Errorf("second Up applied %v and reported progress %d times, want nothing", keys(again, fromMigration), called)
					}
					rec2, appliedAt2 := recorded(t, c.db)
					if diff := cmp.Diff(rec, rec2); diff != "" {
						t.Errorf("schema_migrations changed (-before +after):\n%s", diff)
					}
					if diff := cmp.Diff(appliedAt, appliedAt2); diff != "" {
						t.Errorf("applied_at changed (-before +after):\n%s", diff)
					}
				})
			}
		})
	}
}

// TestModifiedMigration: a migration whose recorded checksum differs from
// its file is reported by Status, and Up refuses to run (and to apply
// anything pending) until the original is restored.
func TestModifiedMigration(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// sqltest's databases are migrated by Up; Postgres ones are
			// cloned from a migrated template, which is quicker than
			// migrating an empty database per case.
			n := len(readDisk(t, sqldb.Dialect(b.Name)))
			cases := []struct {
				name     string
				modified int
				pending  int // a later version whose record is removed, 0 for none
			}{
				{name: "first", modified: 1},
				{name: "middle", modified: n / 2},
				{name: "last", modified: n},
				{name: "with a later one pending", modified: 2, pending: n},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					db, _ := b.Open(t)
					if done, err := migrations.Up(ctx, db, nil); err != nil || len(done) != 0 {
						t.Fatalf("Up on a migrated database = %v, %v; want nothing to do", keys(done, fromMigration), err)
					}
					var original string
					if err := db.Write.QueryRow(db.Rebind("SELECT checksum FROM schema_migrations WHERE version = ?"), tc.modified).Scan(&original); err != nil {
						t.Fatal(err)
					}
					if _, err := db.Write.Exec(db.Rebind("UPDATE schema_migrations SET checksum = ? WHERE version = ?"),
						strings.Repeat("0", 64), tc.modified); err != nil {
						t.Fatal(err)
					}
					if tc.pending != 0 {
						if _, err := db.Write.Exec(db.Rebind("DELETE FROM schema_migrations WHERE version = ?"), tc.pending); err != nil {
							t.Fatal(err)
						}
					}
					status, err := migrations.Status(ctx, db)
					if err != nil {
						t.Fatal(err)
					}
					type state struct {
						Version           int
						Pending, Modified bool
					}
					var want, got []state
					for _, m := range status {
						want = append(want, state{m.Version, m.Version == tc.pending, m.Version == tc.modified})
						got = append(got, state{m.Version, m.Pending(), m.Modified})
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("Status (-want +got):\n%s", diff)
					}
					called := 0
					done, err := migrations.Up(ctx, db, func(migrations.Migration) { called++ })
					name := status[tc.modified-1].Name
					if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "changed") {
						t.Fatalf("Up over modified %s: err = %v, want one naming it as changed", name, err)
					}
					if len(done) != 0 || called != 0 {
						t.Errorf("Up over a modified migration applied %v", keys(done, fromMigration))
					}
					if tc.pending != 0 {
						var k int
						if err := db.Write.QueryRow(db.Rebind("SELECT COUNT(*) FROM schema_migrations WHERE version = ?"), tc.pending).Scan(&k); err != nil {
							t.Fatal(err)
						}
						if k != 0 {
							t.Errorf("pending version %d was applied past a modified one", tc.pending)
						}
					}
					// Restored, the database is up to date again.
					if _, err := db.Write.Exec(db.Rebind("UPDATE schema_migrations SET checksum = ? WHERE version = ?"), original, tc.modified); err != nil {
						t.Fatal(err)
					}
					if tc.pending == 0 {
						done, err := migrations.Up(ctx, db, nil)
						if err != nil || len(done) != 0 {
							t.Errorf("Up after restoring = %v, %v; want nothing to do", keys(done, fromMigration), err)
						}
					}
				})
			}
		})
	}
}

// TestFailedMigrationRollsBack: a migration that fails part-way leaves
// nothing behind and is not recorded, so it applies once the cause is gone.
func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, _ := b.open(t)
			first := readDisk(t, b.dialect)[0]
			if len(first.tables) < 2 {
				t.Fatalf("%s creates %v; the test needs two tables", first.Name, first.tables)
			}
			// The first migration's last table already exists, so it fails
			// after creating the others.
			last := first.tables[len(first.tables)-1]
			if _, err := db.Write.Exec("CREATE TABLE " + last + " (x INTEGER)"); err != nil {
				t.Fatal(err)
			}
			done, err := migrations.Up(ctx, db, nil)
			if err == nil || !strings.Contains(err.Error(), first.Name) {
				t.Fatalf("Up = %v, want an error naming %s", err, first.Name)
			}
			if len(done) != 0 {
				t.Errorf("Up reports %v applied", keys(done, fromMigration))
			}
			if rec, _ := recorded(t, db); len(rec) != 0 {
				t.Errorf("schema_migrations after the failure: %v, want nothing", rec)
			}
			if diff := cmp.Diff([]string{last, "schema_migrations"}, tables(t, db), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("tables after the failure (-want +got):\n%s", diff)
			}
			if _, err := db.Write.Exec("DROP TABLE " + last); err != nil {
				t.Fatal(err)
			}
			done, err = migrations.Up(ctx, db, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(keys(readDisk(t, b.dialect), fromDisk), keys(done, fromMigration)); diff != "" {
				t.Errorf("Up after the fix applied (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConcurrentUp starts several processes' Up on one empty database at
// once: every call succeeds and each migration is applied exactly once.
func TestConcurrentUp(t *testing.T) {
	const n = 4
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			_, connect := b.open(t)
			dbs := make([]*sqldb.DB, n)
			for i := range dbs {
				dbs[i] = connect(t)
			}
			done := make([][]migrations.Migration, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					done[i], errs[i] = migrations.Up(ctx, dbs[i], nil)
				}()
			}
			close(start)
			wg.Wait()
			applied := map[int]int{}
			for i := range n {
				if errs[i] != nil {
					t.Errorf("Up %d: %v", i, errs[i])
				}
				for _, m := range done[i] {
					applied[m.Version]++
				}
			}
			disk := readDisk(t, b.dialect)
			want := map[int]int{}
			for _, m := range disk {
				want[m.Version] = 1
			}
			if diff := cmp.Diff(want, applied); diff != "" {
				t.Errorf("times each version was applied (-want +got):\n%s", diff)
			}
			rec, _ := recorded(t, dbs[0])
			if diff := cmp.Diff(keys(disk, fromDisk), rec); diff != "" {
				t.Errorf("schema_migrations (-want +got):\n%s", diff)
			}
			if t.Failed() {
				t.Log(fmt.Sprint(errs))
			}
		})
	}
}
