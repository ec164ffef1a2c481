package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/migrations"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// Operator commands (haldir migrate, projections rebuild, replay, audit
// verify --local, tenants create, vault rotate-key) open the store through
// these, so that the server and the command line assemble it one way.

// Errors of the operator openers, for the command line's exit codes.
var (
	// ErrNoStore: the embedded store named does not exist.
	ErrNoStore = errors.New("no Haldir store")
	// ErrUnreachable: the database did not answer.
	ErrUnreachable = errors.New("the database is unreachable")
	// ErrSchema: the schema could not be read or is not fully migrated.
	ErrSchema = errors.New("the schema is not ready")
)

// operatorConns is the Postgres pool size of an operator command.
const operatorConns = 4

// OpenExisting opens the configured database for an operator command,
// without migrating it. It never creates an embedded store that does not
// exist (ErrNoStore).
func OpenExisting(ctx context.Context, cfg Config) (*sqldb.DB, error) {
	if cfg.DatabaseURL != "" {
		db, err := sqldb.OpenPostgres(ctx, cfg.DatabaseURL, operatorConns)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		return db, nil
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, sqldb.DatabaseFile)); err != nil {
		return nil, fmt.Errorf("%w in %s (run 'haldir serve' or 'haldir migrate up' first, or pass --data-dir)", ErrNoStore, cfg.DataDir)
	}
	return sqldb.OpenSQLite(cfg.DataDir)
}

// OpenForMigration opens the configured database to migrate it: an
// embedded store is created when it does not exist yet.
func OpenForMigration(ctx context.Context, cfg Config) (*sqldb.DB, error) {
	if cfg.DatabaseURL != "" {
		return OpenExisting(ctx, cfg)
	}
	return sqldb.OpenSQLite(cfg.DataDir)
}

// OpenLedger opens an existing, fully migrated store and its ledger.
// Close the store, then the database.
func OpenLedger(ctx context.Context, cfg Config) (*sqldb.DB, *sqlstore.Store, error) {
	db, err := OpenExisting(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	status, err := migrations.Status(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("%w: cannot read it: %v", ErrSchema, err)
	}
	for _, m := range status {
		if m.Pending() {
			db.Close()
			return nil, nil, fmt.Errorf("%w: migration %s is pending: run 'haldir migrate up' first", ErrSchema, m.Name)
		}
	}
	s, err := sqlstore.Open(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("cannot open the ledger: %w", err)
	}
	return db, s, nil
}

// CreateTenant creates a tenant and its first "*" key on the configured
// store, migrating it first (haldir tenants create).
func CreateTenant(ctx context.Context, cfg Config, a commands.Actor, name string) (commands.Tenant, error) {
	db, err := OpenDB(ctx, cfg)
	if err != nil {
		return commands.Tenant{}, err
	}
	defer db.Close()
	store, err := sqlstore.Open(ctx, db)
	if err != nil {
		return commands.Tenant{}, err
	}
	defer store.Close()
	return commands.New(store, nil, nil, commands.Options{}).CreateTenant(ctx, a, name)
}
