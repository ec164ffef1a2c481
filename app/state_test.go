package app_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// TestOneFileStoreMovesItsStateToTheStateFile: an embedded store made when
// haldir.db held everything starts with its state moved to state.db, not
// rebuilt: the vault's data keys (a secret still reads), the projections'
// checkpoints (the webhook outbox does not queue its deliveries again) and
// the read models (a session's spend) are all there, and the ledger
// file's copies are emptied.
func TestOneFileStoreMovesItsStateToTheStateFile(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("a")
	s.NewTenant("b")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	c.Do("POST", "/v1/webhooks", map[string]any{"url": hook.URL, "events": []string{"session.revoked"}}).Expect(t, 201)
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot", "scopes": []string{"read"}, "spend_limit": 10}).Expect(t, 201).Str("session_id")
	c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 2}).Expect(t, 200)
	c.Do("POST", "/v1/secrets", map[string]any{"name": "token", "value": "s3cret"}).Expect(t, 201)
	gone := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201).Str("session_id")
	c.Do("DELETE", "/v1/sessions/"+gone, nil).Expect(t, 200)
	outboxAtHead(t, s)
	deliveries := count(t, s.App.DB.State(), "webhook_deliveries")
	if deliveries == 0 {
		t.Fatal("the revocation queued no webhook delivery")
	}
	cfg := s.Config
	s.Stop()

	joinFiles(t, cfg.DataDir)
	s = apptest.StartConfig(t, "sqlite", cfg)
	c = s.WithKey(c.Key, c.Tenant)
	if r := c.Do("GET", "/v1/sessions/"+ses, nil).Expect(t, 200); r.Num("spent") != 2 {
		t.Errorf("the session after the move: %s", r)
	}
	if r := c.Do("GET", "/v1/secrets/token", nil, "X-Session-ID", ses).Expect(t, 200); r.Str("value") != "s3cret" {
		t.Errorf("the secret after the move: %s", r)
	}
	outboxAtHead(t, s)
	if n := count(t, s.App.DB.State(), "webhook_deliveries"); n != deliveries {
		t.Errorf("%d webhook deliveries after the move, %d before: the outbox replayed", n, deliveries)
	}
	for _, table := range []string{"checkpoints", "sessions", "secret_keys", "webhook_deliveries", "tree_checkpoints"} {
		if n := count(t, s.App.DB, table); n != 0 {
			t.Errorf("the ledger file still holds %d rows of %s", n, table)
		}
		if n := count(t, s.App.DB.State(), table); n == 0 && table != "tree_checkpoints" {
			t.Errorf("the state file holds no rows of %s", table)
		}
	}
}

// outboxAtHead waits until the webhook outbox group, which WaitFor does not
// wait for, has passed the ledger head.
func outboxAtHead(t *testing.T, s *apptest.Server) {
	t.Helper()
	head := s.AwaitFlags(t) // the other groups at the head
	deadline := time.Now().Add(30 * time.Second)
	for s.App.Projector.Position("outbox") < head {
		if time.Now().After(deadline) {
			t.Fatal("the webhook outbox did not reach the ledger head")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// joinFiles puts an embedded store back in the one-file layout: every
// table's rows from state.db copied into haldir.db, and state.db removed.
func joinFiles(t *testing.T, dir string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqldb.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("ATTACH DATABASE ? AS state", filepath.Join(dir, sqldb.StateFile))
	exec("PRAGMA foreign_keys = OFF")
	rows, err := db.QueryContext(ctx, "SELECT name FROM state.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('events', 'schema_migrations', 'idempotency_keys', 'store_probe')")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	for _, table := range tables {
		exec(`INSERT INTO main."` + table + `" SELECT * FROM state."` + table + `"`)
	}
	exec("DETACH DATABASE state")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, sqldb.StateFile+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

func count(t *testing.T, db *sqldb.DB, table string) int {
	t.Helper()
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.Read.QueryRowContext(ctx, `SELECT COUNT(*) FROM "`+table+`"`).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}
