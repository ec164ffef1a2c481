package keystore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/storage/keystore"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/vault"
)

func newMaster(t testing.TB) vault.MasterKey {
	t.Helper()
	m, err := vault.ParseMasterKey(vault.GenerateMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func open(t *testing.T, b sqltest.Backend) (*sqldb.DB, *keystore.Store) {
	t.Helper()
	db, _ := b.Open(t)
	return db, keystore.New(db)
}

// secret is one sealed secret version and its wrapped data key.
type secret struct {
	key    keystore.Key
	sealed vault.Sealed
	value  []byte
}

func (s secret) ref() vault.Ref {
	return vault.Ref{Tenant: s.key.Tenant, Name: s.key.Name, Version: s.key.Version}
}

// seal seals a value for tenant/name/version under ring and stores its
// data key as keyID.
func seal(t *testing.T, ks *keystore.Store, ring *vault.Keyring, keyID, tenant, name string, version uint64) secret {
	t.Helper()
	ref := vault.Ref{Tenant: tenant, Name: name, Version: version}
	value := []byte(fmt.Sprintf("value of %s/%s v%d", tenant, name, version))
	sealed, wrapped, err := ring.Seal(ref, value)
	if err != nil {
		t.Fatal(err)
	}
	k := keystore.Key{KeyID: keyID, Tenant: tenant, Name: name, Version: version, Wrapped: wrapped}
	if err := ks.Put(context.Background(), k); err != nil {
		t.Fatalf("Put %s: %v", keyID, err)
	}
	return secret{key: k, sealed: sealed, value: value}
}

// view is a Key in comparable form.
type view struct {
	KeyID, Tenant, Name string
	Version             uint64
	KEKVersion          uint32
	Wrapped             []byte
}

func viewOf(k keystore.Key) view {
	return view{k.KeyID, k.Tenant, k.Name, k.Version, k.Wrapped.KEKVersion(), k.Wrapped.Bytes()}
}

// storedKeyIDs returns every key id in secret_keys, sorted.
func storedKeyIDs(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.Read.Query("SELECT key_id FROM secret_keys ORDER BY key_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// fixture stores five keys: two versions of t_a/db, one of t_a/api and two
// versions of t_b/db, the same secret name in another tenant.
func fixture(t *testing.T, ks *keystore.Store, ring *vault.Keyring) map[string]secret {
	t.Helper()
	return map[string]secret{
		"k_a_db_1":  seal(t, ks, ring, "k_a_db_1", "t_a", "db", 1),
		"k_a_db_2":  seal(t, ks, ring, "k_a_db_2", "t_a", "db", 2),
		"k_a_api_1": seal(t, ks, ring, "k_a_api_1", "t_a", "api", 1),
		"k_b_db_1":  seal(t, ks, ring, "k_b_db_1", "t_b", "db", 1),
		"k_b_db_2":  seal(t, ks, ring, "k_b_db_2", "t_b", "db", 2),
	}
}

func TestPutGet(t *testing.T) {
	cases := []struct {
		name                string
		tenant, secret, key string
		wantFound           bool
	}{
		{name: "first version", tenant: "t_a", secret: "db", key: "k_a_db_1", wantFound: true},
		{name: "second version", tenant: "t_a", secret: "db", key: "k_a_db_2", wantFound: true},
		{name: "other secret of the tenant", tenant: "t_a", secret: "api", key: "k_a_api_1", wantFound: true},
		{name: "same name in another tenant", tenant: "t_b", secret: "db", key: "k_b_db_1", wantFound: true},
		{name: "another tenant's key id", tenant: "t_b", secret: "db", key: "k_a_db_1"},
		{name: "another tenant asks for it", tenant: "t_c", secret: "db", key: "k_a_db_1"},
		{name: "another secret's key id", tenant: "t_a", secret: "api", key: "k_a_db_1"},
		{name: "unknown key id", tenant: "t_a", secret: "db", key: "k_nope"},
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			_, ks := open(t, b)
			ring, err := ks.LoadKeyring(context.Background(), newMaster(t))
			if err != nil {
				t.Fatal(err)
			}
			stored := fixture(t, ks, ring)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					got, found, err := ks.Get(context.Background(), tc.tenant, tc.secret, tc.key)
					if err != nil {
						t.Fatal(err)
					}
					if found != tc.wantFound {
						t.Fatalf("Get(%s, %s, %s) found = %v, want %v", tc.tenant, tc.secret, tc.key, found, tc.wantFound)
					}
					if !found {
						return
					}
					want := stored[tc.key]
					if diff := cmp.Diff(viewOf(want.key), viewOf(got)); diff != "" {
						t.Errorf("Get (-want +got):\n%s", diff)
					}
					// The key read back opens the sealed value.
					value, err := ring.Open(want.ref(), want.sealed, got.Wrapped)
					if err != nil {
						t.Fatalf("Open with the stored key: %v", err)
					}
					if diff := cmp.Diff(want.value, value); diff != "" {
						t.Errorf("opened value (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

// TestPutRefusesADuplicateKeyID: a key id names one data key in the whole
// store, so a second Put with it, from any tenant, must not replace it.
func TestPutRefusesADuplicateKeyID(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			_, ks := open(t, b)
			ring, err := ks.LoadKeyring(ctx, newMaster(t))
			if err != nil {
				t.Fatal(err)
			}
			orig := seal(t, ks, ring, "k1", "t_a", "db", 1)
			for _, tenant := range []string{"t_a", "t_b"} {
				_, w, err := ring.Seal(vault.Ref{Tenant: tenant, Name: "db", Version: 1}, []byte("other"))
				if err != nil {
					t.Fatal(err)
				}
				if err := ks.Put(ctx, keystore.Key{KeyID: "k1", Tenant: tenant, Name: "db", Version: 1, Wrapped: w}); err == nil {
					t.Errorf("Put of an existing key id from %s succeeded", tenant)
				}
			}
			got, found, err := ks.Get(ctx, "t_a", "db", "k1")
			if err != nil || !found {
				t.Fatalf("Get = %v, %v", found, err)
			}
			if diff := cmp.Diff(viewOf(orig.key), viewOf(got)); diff != "" {
				t.Errorf("stored key after the refused Puts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDeleteCryptoShreds: deleting data keys leaves exactly the others,
// across tenants, and a deleted key's sealed value can no longer be opened
// because its wrapped data key is nowhere in the store.
func TestDeleteCryptoShreds(t *testing.T) {
	all := []string{"k_a_api_1", "k_a_db_1", "k_a_db_2", "k_b_db_1", "k_b_db_2"}
	cases := []struct {
		name     string
		delete   func(ctx context.Context, ks *keystore.Store) error
		wantKept []string
	}{
		{
			name:     "Delete one version",
			delete:   func(ctx context.Context, ks *keystore.Store) error { return ks.Delete(ctx, "k_a_db_1") },
			wantKept: []string{"k_a_api_1", "k_a_db_2", "k_b_db_1", "k_b_db_2"},
		},
		{
			name:     "Delete an unknown key",
			delete:   func(ctx context.Context, ks *keystore.Store) error { return ks.Delete(ctx, "k_nope") },
			wantKept: all,
		},
		{
			name:     "DeleteSecret destroys every version in that tenant only",
			delete:   func(ctx context.Context, ks *keystore.Store) error { return ks.DeleteSecret(ctx, "t_a", "db") },
			wantKept: []string{"k_a_api_1", "k_b_db_1", "k_b_db_2"},
		},
		{
			name:     "DeleteSecret of a name another tenant has",
			delete:   func(ctx context.Context, ks *keystore.Store) error { return ks.DeleteSecret(ctx, "t_c", "db") },
			wantKept: all,
		},
		{
			name:     "DeleteSecret of an unknown name",
			delete:   func(ctx context.Context, ks *keystore.Store) error { return ks.DeleteSecret(ctx, "t_a", "nope") },
			wantKept: all,
		},
		{
			name: "DeleteOtherVersions keeps only the current one",
			delete: func(ctx context.Context, ks *keystore.Store) error {
				return ks.DeleteOtherVersions(ctx, "t_a", "db", "k_a_db_2")
			},
			wantKept: []string{"k_a_api_1", "k_a_db_2", "k_b_db_1", "k_b_db_2"},
		},
		{
			name: "DeleteOtherVersions in the other tenant",
			delete: func(ctx context.Context, ks *keystore.Store) error {
				return ks.DeleteOtherVersions(ctx, "t_b", "db", "k_b_db_1")
			},
			wantKept: []string{"k_a_api_1", "k_a_db_1", "k_a_db_2", "k_b_db_1"},
		},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					db, ks := open(t, b)
					ring, err := ks.LoadKeyring(ctx, newMaster(t))
					if err != nil {
						t.Fatal(err)
					}
					stored := fixture(t, ks, ring)
					if err := tc.delete(ctx, ks); err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(tc.wantKept, storedKeyIDs(t, db)); diff != "" {
						t.Errorf("stored key ids (-want +got):\n%s", diff)
					}
					kept := map[string]bool{}
					for _, id := range tc.wantKept {
						kept[id] = true
					}
					var remaining [][]byte
					for _, id := range tc.wantKept {
						remaining = append(remaining, stored[id].key.Wrapped.Bytes())
					}
					for id, s := range stored {
						got, found, err := ks.Get(ctx, s.key.Tenant, s.key.Name, id)
						if err != nil {
							t.Fatal(err)
						}
						if found != kept[id] {
							t.Errorf("Get %s: found = %v, want %v", id, found, kept[id])
							continue
						}
						if found {
							if _, err := ring.Open(s.ref(), s.sealed, got.Wrapped); err != nil {
								t.Errorf("kept %s no longer opens: %v", id, err)
							}
							continue
						}
						// Shredded: no stored wrapped key opens the value.
						for _, w := range remaining {
							if bytes.Equal(w, s.key.Wrapped.Bytes()) {
								t.Errorf("%s's wrapped data key is still stored", id)
							}
							wk, err := vault.ParseWrappedKey(w)
							if err != nil {
								t.Fatal(err)
							}
							if _, err := ring.Open(s.ref(), s.sealed, wk); err == nil {
								t.Errorf("%s's sealed value opens with another stored key", id)
							}
						}
					}
				})
			}
		})
	}
}

// TestSweepOrphans: only data keys older than the cutoff that neither a
// current secret nor a webhook (its previous key only during the grace
// period) names are destroyed.
func TestSweepOrphans(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		// ref inserts the row that names the key, if any.
		ref       string
		args      func(keyID string) []any
		wantSwept bool
	}{
		{name: "named by nothing", wantSwept: true},
		{
			name: "a current secret",
			ref:  "INSERT INTO secrets (tenant_id, name, version, scope_required, key_id, sealed, created_at, updated_at) VALUES (?, ?, 1, '', ?, ?, 0, 0)",
			args: func(id string) []any { return []any{"t_a", "s_" + id, id, []byte{1}} },
		},
		{
			name: "a webhook's current secret",
			ref: `INSERT INTO webhooks (tenant_id, webhook_id, url, name, events, active, secret_version, key_id, sealed, prev_version, prev_key_id, prev_expires_at, created_at)
VALUES (?, ?, 'https://example.com', 'w', '', 1, 2, ?, ?, 1, 'k_unrelated', 0, 0)`,
			args: func(id string) []any { return []any{"t_a", "w_" + id, id, []byte{1}} },
		},
		{
			name: "a webhook's previous secret in its grace period",
			ref: `INSERT INTO webhooks (tenant_id, webhook_id, url, name, events, active, secret_version, key_id, sealed, prev_version, prev_key_id, prev_expires_at, created_at)
VALUES (?, ?, 'https://example.com', 'w', '', 1, 2, 'k_unrelated', ?, 1, ?, ?, 0)`,
			args: func(id string) []any { return []any{"t_a", "w_" + id, []byte{1}, id, now.Add(time.Hour).UnixNano()} },
		},
		{
			name: "a webhook's previous secret after its grace period",
			ref: `INSERT INTO webhooks (tenant_id, webhook_id, url, name, events, active, secret_version, key_id, sealed, prev_version, prev_key_id, prev_expires_at, created_at)
VALUES (?, ?, 'https://example.com', 'w', '', 1, 2, 'k_unrelated', ?, 1, ?, ?, 0)`,
			args:      func(id string) []any { return []any{"t_a", "w_" + id, []byte{1}, id, now.Add(-time.Hour).UnixNano()} },
			wantSwept: true,
		},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, ks := open(t, b)
			ring, err := ks.LoadKeyring(ctx, newMaster(t))
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now().Add(-time.Minute)
			var wantKept []string
			var wantSwept int64
			for i, tc := range cases {
				id := fmt.Sprintf("k%d", i)
				seal(t, ks, ring, id, "t_a", "s_"+id, 1)
				if tc.ref != "" {
					if _, err := db.Write.ExecContext(ctx, db.Rebind(tc.ref), tc.args(id)...); err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
				}
				if tc.wantSwept {
					wantSwept++
				} else {
					wantKept = append(wantKept, id)
				}
			}
			all := storedKeyIDs(t, db)
			// Keys younger than the cutoff may belong to a store still
			// between its key and its event: none is swept.
			n, err := ks.SweepOrphans(ctx, before)
			if err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("SweepOrphans with a cutoff before every key = %d, want 0", n)
			}
			if diff := cmp.Diff(all, storedKeyIDs(t, db)); diff != "" {
				t.Errorf("keys after sweeping with an early cutoff (-want +got):\n%s", diff)
			}
			n, err = ks.SweepOrphans(ctx, time.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if n != wantSwept {
				t.Errorf("SweepOrphans = %d, want %d", n, wantSwept)
			}
			got := storedKeyIDs(t, db)
			sort.Strings(wantKept)
			if diff := cmp.Diff(wantKept, got); diff != "" {
				for i, tc := range cases {
					t.Logf("k%d: %s", i, tc.name)
				}
				t.Errorf("keys kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadKeyring(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, ks := open(t, b)
			m := newMaster(t)
			ring, err := ks.LoadKeyring(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if ring.Current() != 1 {
				t.Errorf("a new store's KEK version = %d, want 1", ring.Current())
			}
			var version int64
			var fp string
			if err := db.Read.QueryRow("SELECT kek_version, fingerprint FROM vault_state WHERE id = 1").Scan(&version, &fp); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{int64(1), m.Fingerprint()}, []any{version, fp}); diff != "" {
				t.Errorf("vault_state (-want +got):\n%s", diff)
			}
			s := seal(t, ks, ring, "k1", "t_a", "db", 1)

			again, err := ks.LoadKeyring(ctx, m)
			if err != nil {
				t.Fatalf("second LoadKeyring with the same key: %v", err)
			}
			if _, err := again.Open(s.ref(), s.sealed, s.key.Wrapped); err != nil {
				t.Errorf("reloaded keyring does not open: %v", err)
			}
			if _, err := ks.LoadKeyring(ctx, newMaster(t)); !errors.Is(err, keystore.ErrWrongMasterKey) {
				t.Errorf("LoadKeyring with another master key: err = %v, want ErrWrongMasterKey", err)
			}
		})
	}
}

// TestLoadKeyringRace starts replicas with different master keys on a new
// store at once: one key is recorded and every other is refused.
func TestLoadKeyringRace(t *testing.T) {
	const n = 8
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			_, ks := open(t, b)
			masters := make([]vault.MasterKey, n)
			for i := range masters {
				masters[i] = newMaster(t)
			}
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, errs[i] = ks.LoadKeyring(context.Background(), masters[i%2])
				}()
			}
			close(start)
			wg.Wait()
			ok := map[int]bool{}
			for i, err := range errs {
				switch {
				case err == nil:
					ok[i%2] = true
				case !errors.Is(err, keystore.ErrWrongMasterKey):
					t.Fatalf("LoadKeyring %d: %v", i, err)
				}
			}
			if len(ok) != 1 {
				t.Errorf("master keys accepted: %v, want exactly one of the two", ok)
			}
		})
	}
}

func TestRotate(t *testing.T) {
	cases := []struct {
		name      string
		newMaster bool
	}{
		{name: "same master key"},
		{name: "new master key", newMaster: true},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					db, ks := open(t, b)
					current := newMaster(t)
					ring, err := ks.LoadKeyring(ctx, current)
					if err != nil {
						t.Fatal(err)
					}
					stored := fixture(t, ks, ring)
					master := current
					for round := uint32(2); round <= 3; round++ {
						var next *vault.MasterKey
						if tc.newMaster {
							m := newMaster(t)
							next = &m
						}
						type step struct{ Done, Total int64 }
						var steps []step
						n, version, err := ks.Rotate(ctx, master, next, func(done, total int64) { steps = append(steps, step{done, total}) })
						if err != nil {
							t.Fatalf("Rotate to %d: %v", round, err)
						}
						if n != int64(len(stored)) || version != round {
							t.Errorf("Rotate = %d keys, version %d; want %d, %d", n, version, len(stored), round)
						}
						if len(steps) == 0 || steps[len(steps)-1] != (step{int64(len(stored)), int64(len(stored))}) {
							t.Errorf("progress = %v, want it to end at %d of %d", steps, len(stored), len(stored))
						}
						if next != nil {
							if _, err := ks.LoadKeyring(ctx, master); !errors.Is(err, keystore.ErrWrongMasterKey) {
								t.Errorf("the replaced master key still loads: %v", err)
							}
							master = *next
						}
						// The recorded state gives a keyring at the new
						// version; built from the current master key alone
						// it opens every value, old ciphertext unchanged.
						ring, err := ks.LoadKeyring(ctx, master)
						if err != nil {
							t.Fatal(err)
						}
						if ring.Current() != round {
							t.Errorf("loaded keyring version = %d, want %d", ring.Current(), round)
						}
						alone, err := vault.NewKeyring(master, round)
						if err != nil {
							t.Fatal(err)
						}
						for id, s := range stored {
							got, found, err := ks.Get(ctx, s.key.Tenant, s.key.Name, id)
							if err != nil || !found {
								t.Fatalf("Get %s = %v, %v", id, found, err)
							}
							if v := got.Wrapped.KEKVersion(); v != round {
								t.Errorf("%s: KEK version %d, want %d", id, v, round)
							}
							if bytes.Equal(got.Wrapped.Bytes(), s.key.Wrapped.Bytes()) {
								t.Errorf("%s: wrapped key unchanged by rotation", id)
							}
							for _, r := range []*vault.Keyring{ring, alone} {
								value, err := r.Open(s.ref(), s.sealed, got.Wrapped)
								if err != nil {
									t.Fatalf("%s after rotation to %d: %v", id, round, err)
								}
								if !bytes.Equal(value, s.value) {
									t.Errorf("%s: opened %q, want %q", id, value, s.value)
								}
							}
							// The version column follows the wrapping.
							var col int64
							if err := db.Read.QueryRow(db.Rebind("SELECT kek_version FROM secret_keys WHERE key_id = ?"), id).Scan(&col); err != nil {
								t.Fatal(err)
							}
							if col != int64(round) {
								t.Errorf("%s: kek_version column %d, want %d", id, col, round)
							}
							s.key = got
							stored[id] = s
						}
					}
				})
			}
		})
	}
}

// TestRotateManyKeys rotates more keys than one batch holds.
func TestRotateManyKeys(t *testing.T) {
	const n = 1234
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, ks := open(t, b)
			m := newMaster(t)
			ring, err := ks.LoadKeyring(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			// Stored in one transaction: n separate durable Puts would be slow.
			tx, err := db.Write.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				ref := vault.Ref{Tenant: fmt.Sprintf("t_%d", i%3), Name: "s", Version: uint64(i + 1)}
				_, w, err := ring.Seal(ref, []byte("v"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO secret_keys (key_id, tenant_id, name, version, kek_version, wrapped, created_at) VALUES (?, ?, ?, ?, ?, ?, 0)"),
					fmt.Sprintf("k%04d", i), ref.Tenant, ref.Name, int64(ref.Version), int64(w.KEKVersion()), w.Bytes()); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			var last, calls int64
			moved, version, err := ks.Rotate(ctx, m, nil, func(done, total int64) {
				calls++
				if total != n || done < last || done > total {
					t.Errorf("progress(%d, %d) after %d, want done rising to total %d", done, total, last, n)
				}
				last = done
			})
			if err != nil {
				t.Fatal(err)
			}
			if moved != n || version != 2 || last != n {
				t.Errorf("Rotate = %d keys, version %d, progress ended at %d; want %d, 2, %d", moved, version, last, n, n)
			}
			if calls < 2 {
				t.Errorf("progress called %d times for %d keys, want once per batch", calls, n)
			}
			var left int64
			if err := db.Read.QueryRow("SELECT COUNT(*) FROM secret_keys WHERE kek_version <> 2").Scan(&left); err != nil {
				t.Fatal(err)
			}
			if left != 0 {
				t.Errorf("%d keys left at another KEK version", left)
			}
		})
	}
}

// TestRotateFailureKeepsState: a data key that cannot be re-wrapped stops
// the rotation before the new version is recorded, so the master key in
// use keeps loading and every key keeps opening.
func TestRotateFailureKeepsState(t *testing.T) {
	cases := []struct {
		name      string
		newMaster bool
	}{
		{name: "same master key"},
		{name: "new master key", newMaster: true},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					db, ks := open(t, b)
					m := newMaster(t)
					ring, err := ks.LoadKeyring(ctx, m)
					if err != nil {
						t.Fatal(err)
					}
					stored := fixture(t, ks, ring)
					bad := stored["k_b_db_1"].key.Wrapped.Bytes()
					bad[len(bad)-1] ^= 1
					if _, err := db.Write.ExecContext(ctx, db.Rebind("UPDATE secret_keys SET wrapped = ? WHERE key_id = ?"), bad, "k_b_db_1"); err != nil {
						t.Fatal(err)
					}
					var next *vault.MasterKey
					if tc.newMaster {
						n := newMaster(t)
						next = &n
					}
					if _, _, err := ks.Rotate(ctx, m, next, nil); !errors.Is(err, vault.ErrTampered) {
						t.Fatalf("Rotate over a tampered key: err = %v, want ErrTampered", err)
					}
					ring, err = ks.LoadKeyring(ctx, m)
					if err != nil {
						t.Fatalf("the master key in use no longer loads after a failed rotation: %v", err)
					}
					if ring.Current() != 1 {
						t.Errorf("KEK version after a failed rotation = %d, want 1", ring.Current())
					}
					for id, s := range stored {
						if id == "k_b_db_1" {
							continue
						}
						got, _, err := ks.Get(ctx, s.key.Tenant, s.key.Name, id)
						if err != nil {
							t.Fatal(err)
						}
						if _, err := ring.Open(s.ref(), s.sealed, got.Wrapped); err != nil {
							t.Errorf("%s no longer opens after a failed rotation: %v", id, err)
						}
					}
				})
			}
		})
	}
}

func TestLoadMasterKey(t *testing.T) {
	valid := vault.GenerateMasterKey()
	validKey, err := vault.ParseMasterKey(valid)
	if err != nil {
		t.Fatal(err)
	}
	other := vault.GenerateMasterKey()
	cases := []struct {
		name       string
		configured string
		noDataDir  bool   // Postgres: no data directory
		subdir     string // data directory below t.TempDir(), created by LoadMasterKey
		file       string // encryption.key content written first, if any
		wantErr    string
		wantKey    string // "" with no error: a generated key
		generated  bool
	}{
		{name: "configured", configured: valid, wantKey: valid},
		{name: "configured, with spaces", configured: "  " + valid + "\n", wantKey: valid},
		{name: "configured wins over the file", configured: valid, file: other + "\n", wantKey: valid},
		{name: "configured is not a key", configured: "not-a-key", wantErr: "HALDIR_ENCRYPTION_KEY is not 32 bytes"},
		{name: "postgres requires a key", noDataDir: true, wantErr: "HALDIR_ENCRYPTION_KEY is required with Postgres"},
		{name: "read from the data directory", file: valid + "\n", wantKey: valid},
		{name: "file is not a key", file: "garbage\n", wantErr: "does not hold a valid encryption key"},
		{name: "generated into an empty data directory", generated: true},
		{name: "generated into a data directory not yet made", subdir: "a/b", generated: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.subdir)
			if tc.noDataDir {
				dir = ""
			}
			if tc.file != "" {
				if err := os.WriteFile(filepath.Join(dir, keystore.MasterKeyFile), []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key, generated, err := keystore.LoadMasterKey(tc.configured, dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "garbage") || (tc.configured != "" && strings.Contains(err.Error(), tc.configured)) {
					t.Errorf("error repeats the bad key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if generated != tc.generated {
				t.Errorf("generated = %v, want %v", generated, tc.generated)
			}
			path := filepath.Join(dir, keystore.MasterKeyFile)
			if !tc.generated {
				want, _ := vault.ParseMasterKey(tc.wantKey)
				if key.Fingerprint() != want.Fingerprint() {
					t.Error("returned another key than the one configured or stored")
				}
				if tc.file == "" {
					if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("a configured key wrote %s (stat: %v)", path, err)
					}
				}
				return
			}
			if key.Fingerprint() == validKey.Fingerprint() {
				t.Error("generated key equals an unrelated one")
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s mode = %o, want 600", keystore.MasterKeyFile, perm)
			}
			// Restarting reads the same key back.
			again, generated, err := keystore.LoadMasterKey("", dir)
			if err != nil {
				t.Fatal(err)
			}
			if generated || again.Fingerprint() != key.Fingerprint() {
				t.Errorf("reload: generated = %v, same key = %v; want false, true", generated, again.Fingerprint() == key.Fingerprint())
			}
		})
	}
}

// TestLoadMasterKeyRace: processes starting on one new data directory at
// once must end up with one key, generated by exactly one of them.
func TestLoadMasterKeyRace(t *testing.T) {
	const n = 16
	dir := t.TempDir()
	keys := make([]vault.MasterKey, n)
	gen := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			keys[i], gen[i], errs[i] = keystore.LoadMasterKey("", dir)
		}()
	}
	close(start)
	wg.Wait()
	generated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadMasterKey %d: %v", i, errs[i])
		}
		if gen[i] {
			generated++
		}
		if keys[i].Fingerprint() != keys[0].Fingerprint() {
			t.Errorf("LoadMasterKey %d returned another key", i)
		}
	}
	if generated != 1 {
		t.Errorf("%d calls report generating the key, want 1", generated)
	}
}
