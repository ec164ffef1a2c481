package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/storage/keystore"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/vault"
)

func newSession(t *testing.T, c *apptest.Client, scopes ...string) string {
	t.Helper()
	return c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "vault-bot", "scopes": scopes}).Expect(t, 201).Str("session_id")
}

func TestSecrets(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a, b := s.NewTenant("a"), s.NewTenant("b")
		reader := newSession(t, a, "read")
		admin := newSession(t, a, "admin")
		a.Do("POST", "/v1/secrets", map[string]any{"name": "stripe_key", "value": "sk_live_a"}).Expect(t, 201)
		r := a.Do("POST", "/v1/secrets", map[string]any{"name": "db.password", "value": "pw-1", "scope_required": "admin"}).Expect(t, 201)
		if r.Num("version") != 1 || !r.Bool("stored") {
			t.Errorf("store: %s", r)
		}
		// Reads need vault:read and a valid session holding the scope.
		if got := a.Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", reader).Expect(t, 200).Str("value"); got != "sk_live_a" {
			t.Errorf("value = %q", got)
		}
		if got := a.Do("GET", "/v1/secrets/db.password?session_id="+admin, nil).Expect(t, 200).Str("value"); got != "pw-1" {
			t.Errorf("value via session_id query = %q", got)
		}
		a.Do("GET", "/v1/secrets/stripe_key", nil).Expect(t, 403, "session_invalid")
		a.Do("GET", "/v1/secrets/db.password", nil, "X-Session-ID", reader).Expect(t, 403, "insufficient_scope")
		a.Do("GET", "/v1/secrets/nothing", nil, "X-Session-ID", reader).Expect(t, 404, "not_found")
		a.KeyWithScopes("sessions:read").Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", reader).Expect(t, 403, "insufficient_scope")
		// Upsert makes a new version.
		if r := a.Do("POST", "/v1/secrets", map[string]any{"name": "db.password", "value": "pw-2", "scope_required": "admin"}).Expect(t, 201); r.Num("version") != 2 {
			t.Errorf("second store: %s", r)
		}
		if got := a.Do("GET", "/v1/secrets/db.password", nil, "X-Session-ID", admin).Str("value"); got != "pw-2" {
			t.Errorf("after upsert value = %q", got)
		}
		list := a.Do("GET", "/v1/secrets", nil).Expect(t, 200)
		if fmt.Sprint(list.Body["secrets"]) != "[db.password stripe_key]" || list.Num("count") != 2 || strings.Contains(string(list.Raw), "pw-") {
			t.Errorf("list: %s", list)
		}
		// Two tenants with the same name are two secrets.
		b.Do("POST", "/v1/secrets", map[string]any{"name": "stripe_key", "value": "sk_live_b"}).Expect(t, 201)
		bses := newSession(t, b, "read")
		if got := b.Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", bses).Str("value"); got != "sk_live_b" {
			t.Errorf("tenant b reads %q", got)
		}
		if got := a.Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", reader).Str("value"); got != "sk_live_a" {
			t.Errorf("tenant a reads %q after tenant b stored the same name", got)
		}
		// A tenant cannot use another tenant's session, nor read its secret.
		b.Do("GET", "/v1/secrets/db.password", nil, "X-Session-ID", admin).Expect(t, 404, "not_found")
		b.Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", reader).Expect(t, 403, "session_invalid")
		if r := b.Do("GET", "/v1/secrets", nil); fmt.Sprint(r.Body["secrets"]) != "[stripe_key]" {
			t.Errorf("tenant b lists %s", r)
		}
		// A revoked session reads nothing.
		a.Do("DELETE", "/v1/sessions/"+reader, nil).Expect(t, 200)
		a.Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", reader).Expect(t, 403, "session_invalid")
		// Delete: gone for reads, gone from the list, repeat is 404.
		a.Do("DELETE", "/v1/secrets/stripe_key", nil).Expect(t, 200)
		a.Do("GET", "/v1/secrets/stripe_key", nil, "X-Session-ID", admin).Expect(t, 404, "not_found")
		a.Do("DELETE", "/v1/secrets/stripe_key", nil).Expect(t, 404, "not_found")
		// Every read and refusal is in the ledger, without the value.
		trail := a.Do("GET", "/v1/audit?tool=vault&limit=1000", nil).Expect(t, 200)
		counts := map[string]int{}
		for _, e := range trail.Body["entries"].([]any) {
			counts[e.(map[string]any)["action"].(string)]++
		}
		// Reads: stripe_key, db.password twice, stripe_key after tenant b.
		// Refusals: no session, wrong scope, no such secret, a key without
		// vault:read, a revoked session, after deletion.
		want := map[string]int{"store": 3, "read": 4, "read_denied": 6, "delete": 1}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Errorf("vault events %v, want %v", counts, want)
		}
		for _, v := range []string{"sk_live_a", "pw-1", "pw-2"} {
			if strings.Contains(string(trail.Raw), v) || strings.Contains(string(a.Do("GET", "/v1/audit/export", nil).Raw), v) {
				t.Errorf("the audit trail or export contains a secret value %q", v)
			}
		}
		if v := a.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
			t.Errorf("verify after delete: %s", v)
		}
		// Validation.
		a.Do("POST", "/v1/secrets", map[string]any{"name": "bad name!", "value": "x"}).Expect(t, 400, "invalid_request")
		a.Do("POST", "/v1/secrets", map[string]any{"name": "x"}).Expect(t, 400, "invalid_request")
		a.Do("POST", "/v1/secrets", map[string]any{"name": "x", "value": 5}).Expect(t, 400, "invalid_request")
		a.Do("POST", "/v1/secrets", map[string]any{"name": "x", "value": strings.Repeat("v", vault.MaxValueSize+1)}).Expect(t, 400, "invalid_request")
	})
}

// TestSecretPlaintextAppearsNowhere stores a distinctive secret, uses it,
// deletes it, then reads every byte the server wrote: the store's files (or
// every Postgres table), the logs and the audit export. The plaintext is
// nowhere, in raw, hex or base64 form; the chain still verifies; and even
// with the master key the ciphertext left in the ledger cannot be opened.
func TestSecretPlaintextAppearsNowhere(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			cfg := app.Config{AdminToken: apptest.AdminToken, Version: "test", EncryptionKey: vault.GenerateMasterKey()}
			if backend == "sqlite" {
				cfg.DataDir = t.TempDir()
			} else {
				cfg.DatabaseURL = sqltest.NewPostgresDatabase(t)
				cfg.SigningKey, _, _ = transparency.GenerateSigningKey("test")
			}
			log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			s := apptest.StartLogged(t, backend, cfg, log)
			c := s.NewTenant("shred")
			var rnd [12]byte
			rand.Read(rnd[:])
			secret := "plaintext-" + hex.EncodeToString(rnd[:])
			// A positive control: a value that is not secret, stored as an
			// agent id. The scans must find it where data lands, or they
			// prove nothing.
			rand.Read(rnd[:])
			marker := "marker-" + hex.EncodeToString(rnd[:])
			ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": marker, "scopes": []string{"read"}}).Expect(t, 201).Str("session_id")
			c.Do("POST", "/v1/secrets", map[string]any{"name": "doomed", "value": secret}).Expect(t, 201)
			if got := c.Do("GET", "/v1/secrets/doomed", nil, "X-Session-ID", ses).Str("value"); got != secret {
				t.Fatalf("read back %q", got)
			}
			c.Do("DELETE", "/v1/secrets/doomed", nil).Expect(t, 200)
			export := c.Do("GET", "/v1/audit/export?format=jsonl", nil).Expect(t, 200).Raw
			csvExport := c.Do("GET", "/v1/audit/export?format=csv", nil).Expect(t, 200).Raw
			if v := c.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
				t.Fatalf("verify after delete: %s", v)
			}
			db := s.App.DB
			s.Stop()

			forms := map[string]string{
				"raw": secret, "hex": hex.EncodeToString([]byte(secret)),
				"base64": base64.StdEncoding.EncodeToString([]byte(secret)), "base64url": base64.RawURLEncoding.EncodeToString([]byte(secret)),
			}
			found := map[string]bool{}
			check := func(where string, b []byte) {
				if bytes.Contains(b, []byte(marker)) {
					found[where] = true
				}
				for form, v := range forms {
					if bytes.Contains(b, []byte(v)) {
						t.Errorf("%s holds the secret (%s form)", where, form)
					}
				}
			}
			mu.Lock()
			logged := append([]byte(nil), logs.Bytes()...)
			mu.Unlock()
			check("the server log", logged)
			check("the JSONL export", export)
			check("the CSV export", csvExport)
			scanned := 0
			if backend == "sqlite" {
				entries, err := os.ReadDir(cfg.DataDir)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range entries {
					b, err := os.ReadFile(filepath.Join(cfg.DataDir, e.Name()))
					if err != nil {
						t.Fatal(err)
					}
					check(e.Name(), b)
					scanned += len(b)
				}
			} else {
				scanned = scanPostgres(t, cfg.DatabaseURL, check)
			}
			for _, where := range []string{"the JSONL export", "the CSV export"} {
				if !found[where] {
					t.Errorf("the control value was not found in %s: the scan proves nothing", where)
				}
			}
			stored := 0
			for where := range found {
				if strings.HasPrefix(where, "table ") || strings.HasPrefix(where, sqldb.DatabaseFile) {
					stored++
				}
			}
			if stored == 0 {
				t.Errorf("the control value was found in no stored file or table (scanned %v): the scan proves nothing", found)
			}
			if len(logged) == 0 {
				t.Error("the server logged nothing: the log scan proves nothing")
			}
			t.Logf("scanned %d bytes of stored data, %d bytes of logs, %d+%d bytes of exports", scanned, len(logged), len(export), len(csvExport))
			_ = db

			// Unrecoverable: reopen the store with the master key; no data key
			// for the secret remains, so its ciphertext in the ledger is noise.
			db2, err := openDB(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db2.Close()
			var n int
			if err := db2.Read.QueryRow(db2.Rebind("SELECT COUNT(*) FROM secret_keys WHERE name = ?"), "doomed").Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d data keys of the deleted secret remain (%v)", n, err)
			}
			var payload []byte
			if err := db2.Read.QueryRow(db2.Rebind("SELECT payload FROM events WHERE type = ?"), "secret.stored").Scan(&payload); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(payload, []byte(`"sealed":`)) {
				t.Fatalf("the stored event carries no ciphertext: %s", payload)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func openDB(cfg app.Config) (*sqldb.DB, error) {
	if cfg.DatabaseURL != "" {
		return sqldb.OpenPostgres(context.Background(), cfg.DatabaseURL, 2)
	}
	return sqldb.OpenSQLite(cfg.DataDir)
}

// scanPostgres reads every column of every row of every table in the
// database as text and passes it to check; it returns the bytes read.
func scanPostgres(t *testing.T, url string, check func(string, []byte)) int {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
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
	if len(tables) < 10 {
		t.Fatalf("only %d tables found: %v", len(tables), tables)
	}
	total := 0
	for _, table := range tables {
		// Each row as text, plus bytea columns decoded to raw bytes.
		var buf bytes.Buffer
		r, err := db.Query(fmt.Sprintf("SELECT t::text FROM %s t", table))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var line string
			r.Scan(&line)
			buf.WriteString(line)
		}
		r.Close()
		cols, err := db.Query("SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND data_type = 'bytea'", table)
		if err != nil {
			t.Fatal(err)
		}
		var byteaCols []string
		for cols.Next() {
			var c string
			cols.Scan(&c)
			byteaCols = append(byteaCols, c)
		}
		cols.Close()
		for _, col := range byteaCols {
			r, err := db.Query(fmt.Sprintf("SELECT %s FROM %s", col, table))
			if err != nil {
				t.Fatal(err)
			}
			for r.Next() {
				var b []byte
				r.Scan(&b)
				buf.Write(b)
			}
			r.Close()
		}
		check("table "+table, buf.Bytes())
		total += buf.Len()
	}
	return total
}

// TestSecretCiphertextTampering: a ciphertext moved to another secret, or
// with one flipped byte, is refused with a clear 503, never a 500 and never
// the wrong value.
func TestSecretCiphertextTampering(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("tamper")
		s.NewTenant("bystander")
		ses := newSession(t, c, "read")
		c.Do("POST", "/v1/secrets", map[string]any{"name": "one", "value": "value-one"}).Expect(t, 201)
		c.Do("POST", "/v1/secrets", map[string]any{"name": "two", "value": "value-two"}).Expect(t, 201)
		db, state := s.App.DB, s.App.DB.State() // the ledger's, and the keys' and read models'
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := state.Write.Exec(state.Rebind(q), args...); err != nil {
				t.Fatal(err)
			}
		}
		var one, two []byte
		state.Read.QueryRow(state.Rebind("SELECT sealed FROM secrets WHERE name = ?"), "one").Scan(&one)
		state.Read.QueryRow(state.Rebind("SELECT sealed FROM secrets WHERE name = ?"), "two").Scan(&two)
		if len(one) == 0 || len(two) == 0 {
			t.Fatal("the secrets' read model holds no ciphertext")
		}
		// The read model is what reads decide on only for listing; the
		// command reads the ledger. Tamper where an attacker with database
		// access would: move secret one's ciphertext into secret two's
		// ledger event and key row.
		var keyOne string
		state.Read.QueryRow(state.Rebind("SELECT key_id FROM secrets WHERE name = ?"), "one").Scan(&keyOne)
		exec("UPDATE secret_keys SET name = ?, version = 1 WHERE key_id = ?", "two", keyOne)
		exec("DELETE FROM secret_keys WHERE name = ? AND key_id <> ?", "two", keyOne)
		swapSealed(t, db, "two", one, keyOne)
		r := c.Do("GET", "/v1/secrets/two", nil, "X-Session-ID", ses)
		if r.Status != 503 || r.Code() != "unavailable" || strings.Contains(string(r.Raw), "value-one") {
			t.Errorf("a ciphertext moved to another name: %s; want 503 unavailable without the value", r)
		}
		// One flipped byte in secret one's ciphertext.
		flipped := append([]byte{}, one...)
		flipped[len(flipped)-3] ^= 0x10
		swapSealed(t, db, "one", flipped, keyOne)
		exec("UPDATE secret_keys SET name = ? WHERE key_id = ?", "one", keyOne)
		r = c.Do("GET", "/v1/secrets/one", nil, "X-Session-ID", ses)
		if r.Status != 503 || r.Code() != "unavailable" || !strings.Contains(r.Str("error"), "integrity") {
			t.Errorf("a flipped ciphertext byte: %s; want a clear 503", r)
		}
		// And the chain notices the edit to the ledger.
		if v := c.Do("GET", "/v1/audit/verify", nil); v.Bool("verified") {
			t.Error("verify passed after a ledger payload was rewritten")
		}
	})
}

// swapSealed rewrites the ciphertext and key id in the latest secret.stored
// event for name, lifting the ledger's append-only protection as an
// attacker would.
func swapSealed(t *testing.T, db *sqldb.DB, name string, sealed []byte, keyID string) {
	t.Helper()
	var pos int64
	var payload []byte
	err := db.Read.QueryRow(db.Rebind("SELECT position, payload FROM events WHERE type = 'secret.stored' AND stream = ? ORDER BY position DESC LIMIT 1"),
		"secret/"+name).Scan(&pos, &payload)
	if err != nil {
		t.Fatal(err)
	}
	p := string(payload)
	i := strings.Index(p, `"key_id":"`)
	j := strings.Index(p, `"sealed":"`)
	if i < 0 || j < 0 {
		t.Fatalf("unexpected payload %s", p)
	}
	k := strings.Index(p[i+10:], `"`)
	p = p[:i+10] + keyID + p[i+10+k:]
	j = strings.Index(p, `"sealed":"`)
	end := strings.Index(p[j+10:], `"`)
	p = p[:j+10] + base64.StdEncoding.EncodeToString(sealed) + p[j+10+end:]
	if err := sqltest.Tamper(context.Background(), db, "UPDATE events SET payload = ? WHERE position = ?", []byte(p), pos); err != nil {
		t.Fatal(err)
	}
}

func TestVaultKeyHandling(t *testing.T) {
	t.Run("rotation keeps old and new secrets readable", func(t *testing.T) {
		each(t, func(t *testing.T, s *apptest.Server) {
			c := s.NewTenant("rotate")
			ses := newSession(t, c, "read")
			c.Do("POST", "/v1/secrets", map[string]any{"name": "old", "value": "before"}).Expect(t, 201)
			master, _, err := keystore.LoadMasterKey(s.Config.EncryptionKey, dataDirOf(s.Config))
			if err != nil {
				t.Fatal(err)
			}
			n, version, err := keystore.New(s.App.DB.State()).Rotate(context.Background(), master, nil, nil)
			if err != nil || n != 1 || version != 2 {
				t.Fatalf("rotate: %d keys to version %d, %v", n, version, err)
			}
			// The running server learns the new version on its own.
			if got := c.Do("GET", "/v1/secrets/old", nil, "X-Session-ID", ses).Expect(t, 200).Str("value"); got != "before" {
				t.Errorf("old secret after rotation = %q", got)
			}
			c.Do("POST", "/v1/secrets", map[string]any{"name": "new", "value": "after"}).Expect(t, 201)
			if got := c.Do("GET", "/v1/secrets/new", nil, "X-Session-ID", ses).Str("value"); got != "after" {
				t.Errorf("new secret = %q", got)
			}
			// Rotation to a new master key; then a restart with it.
			nextKey := vault.GenerateMasterKey()
			next, _ := vault.ParseMasterKey(nextKey)
			if _, v, err := keystore.New(s.App.DB.State()).Rotate(context.Background(), master, &next, nil); err != nil || v != 3 {
				t.Fatalf("rotate to a new master: version %d, %v", v, err)
			}
			cfg := s.Config
			s.Stop()
			cfg.EncryptionKey = nextKey
			s2 := apptest.StartConfig(t, s.Backend, cfg)
			c2 := s2.WithKey(c.Key, c.Tenant)
			for name, want := range map[string]string{"old": "before", "new": "after"} {
				if got := c2.Do("GET", "/v1/secrets/"+name, nil, "X-Session-ID", ses).Expect(t, 200).Str("value"); got != want {
					t.Errorf("%s after master rotation = %q", name, got)
				}
			}
		})
	})
	t.Run("a wrong key is refused at start", func(t *testing.T) {
		for _, backend := range apptest.Backends {
			t.Run(backend, func(t *testing.T) {
				s := apptest.Start(t, backend)
				s.NewTenant("x").Do("POST", "/v1/secrets", map[string]any{"name": "k", "value": "v"}).Expect(t, 201)
				cfg := s.Config
				s.Stop()
				cfg.EncryptionKey = vault.GenerateMasterKey()
				_, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
				if !errors.Is(err, keystore.ErrWrongMasterKey) {
					t.Fatalf("open with another key: %v; want ErrWrongMasterKey", err)
				}
				cfg.EncryptionKey = "too-short"
				if _, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "HALDIR_ENCRYPTION_KEY") {
					t.Fatalf("open with a malformed key: %v", err)
				}
			})
		}
	})
	t.Run("postgres requires a key, sqlite generates one", func(t *testing.T) {
		cfg := app.Config{DatabaseURL: sqltest.NewPostgresDatabase(t)}
		if _, err := app.Open(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "required with Postgres") {
			t.Fatalf("postgres without a key: %v", err)
		}
		dir := t.TempDir()
		a, err := app.Open(context.Background(), app.Config{DataDir: dir}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
		st, err := os.Stat(filepath.Join(dir, keystore.MasterKeyFile))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("generated key file: %v, mode %v", err, st.Mode())
		}
		if st, err := os.Stat(filepath.Join(dir, sqldb.DatabaseFile)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("database file mode %v (%v); want 0600", st.Mode(), err)
		}
	})
}

func dataDirOf(cfg app.Config) string {
	if cfg.DatabaseURL != "" {
		return ""
	}
	return cfg.DataDir
}

// TestInjectSecrets covers the vault function the MCP proxy uses: the
// placeholder is replaced for a session holding the scope, the use is
// recorded, and a refused secret refuses the whole call.
func TestInjectSecrets(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("inject")
		s.NewTenant("bystander")
		ses := newSession(t, c, "read")
		c.Do("POST", "/v1/secrets", map[string]any{"name": "api_token", "value": "tok-123"}).Expect(t, 201)
		c.Do("POST", "/v1/secrets", map[string]any{"name": "root", "value": "r00t", "scope_required": "admin"}).Expect(t, 201)
		cmd := s.App.Commands
		actor := commandsActor(c.Tenant)
		got, err := cmd.InjectSecrets(context.Background(), actor, ses, []byte(`{"auth":"Bearer {{secret:api_token}}","n":1.50}`))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Arguments) != `{"auth":"Bearer tok-123","n":1.50}` || fmt.Sprint(got.Names) != "[api_token]" || fmt.Sprint(got.Values) != "[tok-123]" {
			t.Errorf("injected %s names %v", got.Arguments, got.Names)
		}
		if _, err := cmd.InjectSecrets(context.Background(), actor, ses, []byte(`{"a":"{{secret:api_token}}","b":"{{secret:root}}"}`)); err == nil || !strings.Contains(err.Error(), "admin") {
			t.Errorf("a secret the session may not read was injected: %v", err)
		}
		if _, err := cmd.InjectSecrets(context.Background(), actor, ses, []byte(`{"a":"{{secret:}}"}`)); err == nil {
			t.Error("a malformed placeholder was accepted")
		}
		trail := c.Do("GET", "/v1/audit?tool=vault", nil)
		if !strings.Contains(string(trail.Raw), `"via":"proxy"`) || strings.Contains(string(trail.Raw), "tok-123") {
			t.Errorf("injection not recorded, or recorded with the value: %s", trail.Raw)
		}
	})
}

func commandsActor(tenant string) commands.Actor {
	return commands.Actor{Tenant: tenant, KeyPrefix: "test", RequestID: "req_test"}
}
