package projections

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"

	"github.com/haldir-dev/haldir/storage/sqldb"
)

// scratch is a set of empty copies of a group's tables, named
// prefix+table, that a replay fills; Rebuild then swaps them in.
//
// A copy starts with its table's columns and primary key (which every
// conflict clause names) and no other index: indexes maintained row by row
// cost more than the replay's inserts, so each is made once, in one sorted
// pass, when the copy is full. A unique index the replay violates fails
// the rebuild before anything is swapped.
type scratch struct {
	db     *sqldb.DB
	prefix string
	tables []string
	// indexes holds, per table, the live table's index DDL (SQLite), or
	// its indexes and constraints (Postgres).
	sqlite   map[string][]string
	postgres map[string][]pgIndex
}

// pgIndex is an index of a live Postgres table; constraint names the
// primary key or unique constraint it backs, with its definition.
type pgIndex struct {
	name, def, constraint, constraintDef string
}

// pgMaxName is Postgres's longest identifier; a longer one is cut short,
// which would break the swap's renames.
const pgMaxName = 63

// newScratch creates the copies, dropping any left by an earlier run.
func newScratch(ctx context.Context, db *sqldb.DB, tables []string, prefix string) (*scratch, error) {
	s := &scratch{db: db, prefix: prefix, tables: tables, sqlite: map[string][]string{}, postgres: map[string][]pgIndex{}}
	s.drop(ctx)
	for _, t := range tables {
		var stmts []string
		var err error
		switch db.Dialect {
		case sqldb.Postgres:
			stmts, err = s.clonePostgres(ctx, t)
		case sqldb.SQLite:
			stmts, err = s.cloneSQLite(ctx, t)
		}
		if err != nil {
			return nil, err
		}
		for _, q := range stmts {
			if _, err := db.Write.ExecContext(ctx, q); err != nil {
				return nil, fmt.Errorf("projections: copy %s: %w", t, err)
			}
		}
	}
	return s, nil
}

var (
	sqliteIndex = regexp.MustCompile(`(?is)^CREATE\s+(UNIQUE\s+)?INDEX\s`)
	createTable = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+"?(\w+)"?`)
	// pgIndexDef matches the head of pg_get_indexdef's output, "CREATE
	// [UNIQUE] INDEX name ON [ONLY] [schema.]table".
	pgIndexDef = regexp.MustCompile(`^(CREATE (?:UNIQUE )?INDEX )(\w+)( ON (?:ONLY )?)(?:\w+\.)?(\w+) `)
)

// cloneSQLite returns the statements creating t's copy, and records t's
// indexes for the swap.
func (s *scratch) cloneSQLite(ctx context.Context, t string) ([]string, error) {
	rows, err := s.db.Write.QueryContext(ctx, "SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type = 'index', name", t)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var stmts []string
	for rows.Next() {
		var typ, ddl string
		if err := rows.Scan(&typ, &ddl); err != nil {
			return nil, err
		}
		switch {
		case typ == "table":
			stmts = append(stmts, createTable.ReplaceAllString(ddl, "CREATE TABLE "+s.prefix+t))
		case sqliteIndex.MatchString(ddl):
			s.sqlite[t] = append(s.sqlite[t], ddl)
		default:
			return nil, fmt.Errorf("projections: cannot copy %s of %s: %s", typ, t, ddl)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(stmts) == 0 {
		return nil, fmt.Errorf("projections: table %s does not exist", t)
	}
	return stmts, nil
}

// clonePostgres returns the statements creating t's copy, with its
// constraints under prefixed names, and records t's indexes.
func (s *scratch) clonePostgres(ctx context.Context, t string) ([]string, error) {
	rows, err := s.db.Write.QueryContext(ctx, `SELECT i.relname, pg_get_indexdef(i.oid), COALESCE(c.conname, ''), COALESCE(pg_get_constraintdef(c.oid), '')
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
WHERE x.indrelid = $1::regclass ORDER BY i.relname`, t)
	if err != nil {
		return nil, fmt.Errorf("projections: read the indexes of %s: %w", t, err)
	}
	defer rows.Close()
	stmts := []string{fmt.Sprintf("CREATE TABLE %s%s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)", s.prefix, t, t)}
	for rows.Next() {
		var ix pgIndex
		if err := rows.Scan(&ix.name, &ix.def, &ix.constraint, &ix.constraintDef); err != nil {
			return nil, err
		}
		if len(s.prefix+ix.name) > pgMaxName || len(s.prefix+ix.constraint) > pgMaxName {
			return nil, fmt.Errorf("projections: index %s of %s: its copy's name would exceed %d characters", ix.name, t, pgMaxName)
		}
		if ix.constraint == "" && !pgIndexDef.MatchString(ix.def) {
			return nil, fmt.Errorf("projections: cannot copy index %s of %s: %s", ix.name, t, ix.def)
		}
		if ix.constraint != "" {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s%s ADD CONSTRAINT %s%s %s", s.prefix, t, s.prefix, ix.constraint, ix.constraintDef))
		}
		s.postgres[t] = append(s.postgres[t], ix)
	}
	return stmts, rows.Err()
}

// index makes the copies' indexes on Postgres, where the swap renames
// them; SQLite cannot rename an index, so there the swap makes them.
func (s *scratch) index(ctx context.Context) error {
	for _, t := range s.tables {
		for _, ix := range s.postgres[t] {
			if ix.constraint != "" {
				continue
			}
			q := pgIndexDef.ReplaceAllString(ix.def, "${1}"+s.prefix+"${2}${3}"+s.prefix+"${4} ")
			if _, err := s.db.Write.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("projections: index the copy of %s: %w", t, err)
			}
		}
	}
	return nil
}

// swap replaces each live table with its copy, in tx: the table is
// dropped and the copy renamed to it. On Postgres the copy's indexes and
// constraints are renamed too, so the transaction changes only the
// catalogue and holds each table's lock for moments; on SQLite the
// indexes are made under their own names.
func (s *scratch) swap(ctx context.Context, tx *sql.Tx) error {
	for _, t := range s.tables {
		stmts := []string{"DROP TABLE " + t, "ALTER TABLE " + s.prefix + t + " RENAME TO " + t}
		stmts = append(stmts, s.sqlite[t]...)
		for _, ix := range s.postgres[t] {
			if ix.constraint != "" {
				stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s RENAME CONSTRAINT %s%s TO %s", t, s.prefix, ix.constraint, ix.constraint))
			} else {
				stmts = append(stmts, fmt.Sprintf("ALTER INDEX %s%s RENAME TO %s", s.prefix, ix.name, ix.name))
			}
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("projections: swap %s: %w", t, err)
			}
		}
	}
	return nil
}

// drop removes the copies that are left (after a swap, none).
func (s *scratch) drop(ctx context.Context) {
	for _, t := range s.tables {
		s.db.Write.ExecContext(ctx, "DROP TABLE IF EXISTS "+s.prefix+t)
	}
}
