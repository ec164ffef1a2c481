// Package keystore keeps the vault's wrapped data keys and key-encryption
// key state in the database, outside the ledger. Deleting a data key
// crypto-shreds the secret version whose ciphertext stays in the ledger.
package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/haldir-dev/haldir/internal/keyfile"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/vault"
)

// Key is one wrapped data key.
type Key = vault.DataKey

// Store reads and writes data keys.
type Store struct {
	db *sqldb.DB
}

// New returns a Store on db.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// Put stores a wrapped data key.
func (s *Store) Put(ctx context.Context, k Key) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`INSERT INTO secret_keys (key_id, tenant_id, name, version, kek_version, wrapped, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`), k.KeyID, k.Tenant, k.Name, int64(k.Version), int64(k.Wrapped.KEKVersion()), k.Wrapped.Bytes(), time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("keystore: store data key: %w", err)
	}
	return nil
}

// Get returns the data key keyID of tenant's secret name; found is false
// once it has been destroyed.
func (s *Store) Get(ctx context.Context, tenant, name, keyID string) (Key, bool, error) {
	k := Key{KeyID: keyID, Tenant: tenant, Name: name}
	var version int64
	var wrapped []byte
	err := s.db.Read.QueryRowContext(ctx, s.db.Rebind("SELECT version, wrapped FROM secret_keys WHERE key_id = ? AND tenant_id = ? AND name = ?"),
		keyID, tenant, name).Scan(&version, &wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return k, false, nil
	}
	if err != nil {
		return k, false, fmt.Errorf("keystore: read data key: %w", err)
	}
	k.Version = uint64(version)
	if k.Wrapped, err = vault.ParseWrappedKey(wrapped); err != nil {
		return k, false, fmt.Errorf("keystore: data key %s: %w", keyID, err)
	}
	return k, true, nil
}

// Delete destroys one data key.
func (s *Store) Delete(ctx context.Context, keyID string) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM secret_keys WHERE key_id = ?"), keyID)
	return err
}

// DeleteSecret destroys every data key of tenant's secret name, which
// makes every stored version unrecoverable.
func (s *Store) DeleteSecret(ctx context.Context, tenant, name string) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM secret_keys WHERE tenant_id = ? AND name = ?"), tenant, name)
	if err != nil {
		return fmt.Errorf("keystore: destroy data keys: %w", err)
	}
	return nil
}

// DeleteOtherVersions destroys the data keys of every version of the
// secret except keep, so that only the current value can be opened.
func (s *Store) DeleteOtherVersions(ctx context.Context, tenant, name, keep string) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM secret_keys WHERE tenant_id = ? AND name = ? AND key_id <> ?"), tenant, name, keep)
	return err
}

// SweepOrphans destroys data keys older than cutoff that no current secret
// and no webhook names (a webhook's previous key only while its rotation
// grace lasts): leftovers of stores interrupted between the key and the
// event, and expired webhook secrets.
func (s *Store) SweepOrphans(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`DELETE FROM secret_keys WHERE created_at < ?
AND NOT EXISTS (SELECT 1 FROM secrets WHERE secrets.key_id = secret_keys.key_id)
AND NOT EXISTS (SELECT 1 FROM webhooks WHERE webhooks.key_id = secret_keys.key_id
    OR (webhooks.prev_key_id = secret_keys.key_id AND webhooks.prev_expires_at > ?))`), cutoff.UnixNano(), time.Now().UnixNano())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ErrWrongMasterKey means HALDIR_ENCRYPTION_KEY is not the key this store's
// secrets were sealed with.
var ErrWrongMasterKey = errors.New("keystore: HALDIR_ENCRYPTION_KEY does not match the key this store's secrets were sealed with (check the key, or restore the right one)")

// LoadKeyring returns the keyring for master at the store's current KEK
// version, after checking master against the stored fingerprint. A store
// without vault state is initialised at version 1.
func (s *Store) LoadKeyring(ctx context.Context, master vault.MasterKey) (*vault.Keyring, error) {
	var version int64
	var fp string
	err := s.db.Write.QueryRowContext(ctx, "SELECT kek_version, fingerprint FROM vault_state WHERE id = 1").Scan(&version, &fp)
	if errors.Is(err, sql.ErrNoRows) {
		version, fp = 1, master.Fingerprint()
		if _, err := s.db.Write.ExecContext(ctx, s.db.Rebind("INSERT INTO vault_state (id, kek_version, fingerprint, updated_at) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING"),
			version, fp, time.Now().UnixNano()); err != nil {
			return nil, fmt.Errorf("keystore: initialise vault state: %w", err)
		}
		return s.LoadKeyring(ctx, master)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: read vault state: %w", err)
	}
	if err := master.CheckFingerprint(fp); err != nil {
		return nil, ErrWrongMasterKey
	}
	return vault.NewKeyring(master, uint32(version))
}

// Rotate moves every data key to a new KEK version, derived from next (the
// current master key, or a new one), re-wrapping keys without touching the
// ledger, then records the new version and fingerprint. Keys are re-wrapped
// in batches; progress, if non-nil, is told how many are done of how many.
// Old ciphertext keeps opening: only data-key wrapping changes.
func (s *Store) Rotate(ctx context.Context, current vault.MasterKey, next *vault.MasterKey, progress func(done, total int64)) (int64, uint32, error) {
	ring, err := s.LoadKeyring(ctx, current)
	if err != nil {
		return 0, 0, err
	}
	newMaster := current
	if next != nil {
		ring, err = ring.RotateMaster(*next)
		newMaster = *next
	} else {
		ring, err = ring.Rotate()
	}
	if err != nil {
		return 0, 0, err
	}
	var total int64
	if err := s.db.Read.QueryRowContext(ctx, s.db.Rebind("SELECT COUNT(*) FROM secret_keys WHERE kek_version < ?"), ring.Current()).Scan(&total); err != nil {
		return 0, 0, err
	}
	var done int64
	for {
		n, err := s.rewrapBatch(ctx, ring, 500)
		if err != nil {
			return done, 0, err
		}
		done += n
		if progress != nil {
			progress(done, total)
		}
		if n == 0 {
			break
		}
	}
	if _, err := s.db.Write.ExecContext(ctx, s.db.Rebind("UPDATE vault_state SET kek_version = ?, fingerprint = ?, updated_at = ? WHERE id = 1"),
		ring.Current(), newMaster.Fingerprint(), time.Now().UnixNano()); err != nil {
		return done, 0, fmt.Errorf("keystore: record rotation: %w", err)
	}
	return done, ring.Current(), nil
}

// rewrapBatch re-wraps up to n keys below the ring's current version in one
// transaction and returns how many it moved.
func (s *Store) rewrapBatch(ctx context.Context, ring *vault.Keyring, n int) (int64, error) {
	tx, err := s.db.Write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, s.db.Rebind("SELECT key_id, tenant_id, name, version, wrapped FROM secret_keys WHERE kek_version < ? LIMIT ?"), ring.Current(), n)
	if err != nil {
		return 0, err
	}
	var keys []Key
	for rows.Next() {
		var k Key
		var version int64
		var wrapped []byte
		if err := rows.Scan(&k.KeyID, &k.Tenant, &k.Name, &version, &wrapped); err != nil {
			rows.Close()
			return 0, err
		}
		k.Version = uint64(version)
		if k.Wrapped, err = vault.ParseWrappedKey(wrapped); err != nil {
			rows.Close()
			return 0, fmt.Errorf("keystore: data key %s: %w", k.KeyID, err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	for _, k := range keys {
		w, err := ring.Rewrap(vault.Ref{Tenant: k.Tenant, Name: k.Name, Version: k.Version}, k.Wrapped)
		if err != nil {
			return 0, fmt.Errorf("keystore: re-wrap data key %s: %w", k.KeyID, err)
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind("UPDATE secret_keys SET kek_version = ?, wrapped = ? WHERE key_id = ?"),
			int64(w.KEKVersion()), w.Bytes(), k.KeyID); err != nil {
			return 0, err
		}
	}
	return int64(len(keys)), tx.Commit()
}

// MasterKeyFile is where the embedded store keeps a generated master key.
const MasterKeyFile = "encryption.key"

// LoadMasterKey returns the master key from configured (the value of
// HALDIR_ENCRYPTION_KEY). When it is empty and dataDir is set (the
// embedded store), the key is read from, or generated into, dataDir with
// mode 0600; generated reports the latter so the caller can say so once.
// With Postgres (dataDir empty) a key is required.
func LoadMasterKey(configured, dataDir string) (key vault.MasterKey, generated bool, err error) {
	if configured != "" {
		k, err := vault.ParseMasterKey(configured)
		if err != nil {
			return k, false, fmt.Errorf("HALDIR_ENCRYPTION_KEY is not 32 bytes of base64url (generate one with 'haldir init'): %w", err)
		}
		return k, false, nil
	}
	if dataDir == "" {
		return vault.MasterKey{}, false, errors.New("HALDIR_ENCRYPTION_KEY is required with Postgres: generate one with 'haldir init' and set it in the server's environment")
	}
	path := filepath.Join(dataDir, MasterKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := vault.ParseMasterKey(strings.TrimSpace(string(b)))
		if err != nil {
			return k, false, fmt.Errorf("%s does not hold a valid encryption key: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return vault.MasterKey{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	s := vault.GenerateMasterKey()
	created, err := keyfile.Create(path, s+"\n")
	if err != nil {
		return vault.MasterKey{}, false, err
	}
	if !created { // another process made it first
		return LoadMasterKey(configured, dataDir)
	}
	k, err := vault.ParseMasterKey(s)
	return k, true, err
}
