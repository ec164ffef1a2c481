package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"time"

	"github.com/haldir-dev/haldir/events"
)

const selectColumns = "SELECT position, tenant_id, seq, event_id, stream, stream_version, type, payload, metadata, recorded_at, prev_hash, hash FROM events"

// ReadStream implements events.Store.
func (s *Store) ReadStream(ctx context.Context, tenant, stream string, after int64) ([]events.Event, error) {
	rows, err := s.db.QueryRead(ctx, selectColumns+" WHERE tenant_id = ? AND stream = ? AND stream_version > ? ORDER BY stream_version",
		tenant, stream, after)
	if err != nil {
		return nil, fmt.Errorf("events: read stream: %w", err)
	}
	return scanEvents(rows)
}

// ReadTenant implements events.Store.
func (s *Store) ReadTenant(ctx context.Context, tenant string, after int64, limit int) ([]events.Event, error) {
	rows, err := s.db.QueryRead(ctx, selectColumns+" WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?",
		tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("events: read tenant: %w", err)
	}
	return scanEvents(rows)
}

// Tail implements events.Store: events this process committed recently are
// served from memory, everything else is read from the database.
func (s *Store) Tail(ctx context.Context, after int64, limit int) ([]events.Event, error) {
	if evs := s.Recent(after, limit); evs != nil {
		return evs, nil
	}
	return s.ReadAll(ctx, after, limit)
}

// ReadAll implements events.Store.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]events.Event, error) {
	rows, err := s.db.QueryRead(ctx, selectColumns+" WHERE position > ? ORDER BY position LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("events: read: %w", err)
	}
	return scanEvents(rows)
}

// Lookup implements events.Store.
func (s *Store) Lookup(ctx context.Context, id string) (events.Event, bool, error) {
	rows, err := s.db.QueryRead(ctx, selectColumns+" WHERE event_id = ?", id)
	if err != nil {
		return events.Event{}, false, fmt.Errorf("events: look up %s: %w", id, err)
	}
	evs, err := scanEvents(rows)
	if err != nil || len(evs) == 0 {
		return events.Event{}, false, err
	}
	return evs[0], true, nil
}

// Head implements events.Store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	var h int64
	if err := s.db.QueryRowRead(ctx, "SELECT COALESCE(MAX(position), 0) FROM events").Scan(&h); err != nil {
		return 0, fmt.Errorf("events: read head: %w", err)
	}
	return h, nil
}

// TenantHead implements events.Store.
func (s *Store) TenantHead(ctx context.Context, tenant string) (int64, events.Hash, error) {
	h, err := tenantHead(ctx, s.db.Read, s.db.Dialect, tenant)
	return h.Seq, h.Hash, err
}

// Ping implements events.Store.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

func scanEvents(rows *sql.Rows) ([]events.Event, error) {
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var e events.Event
		var recorded int64
		var prev, hash []byte
		if err := rows.Scan(&e.Position, &e.Tenant, &e.Seq, &e.ID, &e.Stream, &e.Version, &e.Type,
			&e.Payload, &e.Metadata, &recorded, &prev, &hash); err != nil {
			return nil, fmt.Errorf("events: scan: %w", err)
		}
		if len(prev) != events.HashSize || len(hash) != events.HashSize {
			return nil, &events.CorruptError{Position: e.Position, Reason: fmt.Sprintf("hash columns hold %d and %d bytes, want %d", len(prev), len(hash), events.HashSize)}
		}
		copy(e.PrevHash[:], prev)
		copy(e.Hash[:], hash)
		e.RecordedAt = time.Unix(0, recorded).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events: scan: %w", err)
	}
	return out, nil
}

// Scan implements events.Scanner. It reads through the driver's own rows,
// below database/sql, so a row's columns are converted and copied once, by
// the driver: verification spends its time hashing, not scanning.
func (s *Store) Scan(ctx context.Context, from, to int64, fn func(*events.Event) error) error {
	conn, err := s.db.Read.Conn(ctx)
	if err != nil {
		return fmt.Errorf("events: scan: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("events: scan: driver %T cannot run queries", dc)
		}
		rows, err := q.QueryContext(ctx, s.db.Rebind(selectColumns+" WHERE position >= ? AND position <= ? ORDER BY position"),
			[]driver.NamedValue{{Ordinal: 1, Value: from}, {Ordinal: 2, Value: to}})
		if err != nil {
			return fmt.Errorf("events: scan: %w", err)
		}
		defer rows.Close()
		vals := make([]driver.Value, 12)
		var e events.Event
		for {
			if err := rows.Next(vals); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("events: scan: %w", err)
			}
			var c columns
			e.Position = c.int(vals[0])
			e.Tenant, e.Seq, e.ID, e.Stream = c.text(vals[1]), c.int(vals[2]), c.text(vals[3]), c.text(vals[4])
			e.Version, e.Type, e.Payload, e.Metadata = c.int(vals[5]), c.text(vals[6]), c.blob(vals[7]), c.blob(vals[8])
			recorded, prev, hash := c.int(vals[9]), c.blob(vals[10]), c.blob(vals[11])
			if c.bad != "" {
				return &events.CorruptError{Position: e.Position, Reason: "a column holds a value of type " + c.bad}
			}
			if len(prev) != events.HashSize || len(hash) != events.HashSize {
				return &events.CorruptError{Position: e.Position, Reason: fmt.Sprintf("hash columns hold %d and %d bytes, want %d", len(prev), len(hash), events.HashSize)}
			}
			copy(e.PrevHash[:], prev)
			copy(e.Hash[:], hash)
			e.RecordedAt = time.Unix(0, recorded).UTC()
			if err := fn(&e); err != nil {
				return err
			}
		}
	})
}

// columns converts a driver's column values, naming the type of the first
// unexpected one in bad.
type columns struct{ bad string }

func (c *columns) int(v driver.Value) int64 {
	if n, ok := v.(int64); ok {
		return n
	}
	c.fail(v)
	return 0
}

func (c *columns) text(v driver.Value) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	}
	c.fail(v)
	return ""
}

func (c *columns) blob(v driver.Value) []byte {
	switch t := v.(type) {
	case []byte:
		return t
	case string:
		return []byte(t)
	}
	c.fail(v)
	return nil
}

func (c *columns) fail(v driver.Value) {
	if c.bad == "" {
		c.bad = fmt.Sprintf("%T", v)
		if v == nil {
			c.bad = "NULL"
		}
	}
}
