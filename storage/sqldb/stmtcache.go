package sqldb

import (
	"context"
	"database/sql"
	"sync"
)

// StmtCache keeps statements prepared on SQLite's writer pool. SQLite
// parses a statement on every Exec that is not prepared; with the single
// writer connection a cached statement is parsed once for the life of the
// process. (Postgres needs no cache: pgx caches prepared statements per
// connection itself.)
//
// The writer pool has one connection, which the caller's transaction
// holds, so a statement can never be prepared on the pool from inside that
// transaction. A query seen for the first time therefore runs unprepared,
// and is prepared in the background once the connection is free.
type StmtCache struct {
	db      *sql.DB
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
	closed  bool
}

// NewStmtCache returns a cache preparing on db.
func NewStmtCache(db *sql.DB) *StmtCache {
	return &StmtCache{db: db, m: map[string]*sql.Stmt{}, pending: map[string]bool{}}
}

// lookup returns the prepared statement for query, or nil after arranging
// for it to be prepared.
func (c *StmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s
	}
	if !c.pending[query] && !c.closed {
		c.pending[query] = true
		go c.prepare(query)
	}
	return nil
}

func (c *StmtCache) prepare(query string) {
	s, err := c.db.PrepareContext(context.Background(), query)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, query)
	if err != nil {
		return // the query keeps running unprepared; its own errors surface there
	}
	if c.closed {
		s.Close()
		return
	}
	c.m[query] = s
}

// Close closes every cached statement.
func (c *StmtCache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, s := range c.m {
		s.Close()
	}
	clear(c.m)
}
