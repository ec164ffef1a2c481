package sqldb

import (
	"context"
	"database/sql"
	"sync"
)

// maxReadStmts bounds the read statement cache; queries beyond it (such as
// ones built with a variable number of placeholders) run unprepared.
const maxReadStmts = 256

// readStmts caches statements prepared on the read pool, by query text.
// database/sql prepares a cached statement once on each connection it runs
// on, which spares SQLite from parsing every query of the read hot path.
type readStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (db *DB) readStmt(ctx context.Context, query string) *sql.Stmt {
	c := &db.reads
	c.mu.Lock()
	s, full := c.m[query], len(c.m) >= maxReadStmts
	c.mu.Unlock()
	if s != nil || full {
		return s
	}
	s, err := db.Read.PrepareContext(ctx, query)
	if err != nil {
		return nil // the query runs unprepared, where its error surfaces
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.m[query]; prev != nil {
		s.Close()
		return prev
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = s
	return s
}

// QueryRead runs query (with "?" placeholders) on the read pool, through
// the read statement cache.
func (db *DB) QueryRead(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = db.Rebind(query)
	if s := db.readStmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return db.Read.QueryContext(ctx, query, args...)
}

// QueryRowRead is QueryRead for a query returning at most one row.
func (db *DB) QueryRowRead(ctx context.Context, query string, args ...any) *sql.Row {
	query = db.Rebind(query)
	if s := db.readStmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.Read.QueryRowContext(ctx, query, args...)
}

func (c *readStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
}
