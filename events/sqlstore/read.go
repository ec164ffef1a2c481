package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
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

// Scan implements events.Scanner.
func (s *Store) Scan(ctx context.Context, from, to int64, fn func(*events.Event) error) error {
	rows, err := s.db.QueryRead(ctx, selectColumns+" WHERE position >= ? AND position <= ? ORDER BY position", from, to)
	if err != nil {
		return fmt.Errorf("events: scan: %w", err)
	}
	defer rows.Close()
	var e events.Event
	var recorded int64
	var tenant, id, stream, typ, payload, meta, prev, hash sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&e.Position, &tenant, &e.Seq, &id, &stream, &e.Version, &typ,
			&payload, &meta, &recorded, &prev, &hash); err != nil {
			return fmt.Errorf("events: scan: %w", err)
		}
		if len(prev) != events.HashSize || len(hash) != events.HashSize {
			return &events.CorruptError{Position: e.Position, Reason: fmt.Sprintf("hash columns hold %d and %d bytes, want %d", len(prev), len(hash), events.HashSize)}
		}
		e.Tenant, e.ID, e.Stream, e.Type = internString(e.Tenant, tenant), string(id), internString(e.Stream, stream), internString(e.Type, typ)
		e.Payload, e.Metadata = payload, meta
		copy(e.PrevHash[:], prev)
		copy(e.Hash[:], hash)
		e.RecordedAt = time.Unix(0, recorded).UTC()
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("events: scan: %w", err)
	}
	return nil
}

// internString returns prev when it already holds b, saving an allocation
// for the repetitive tenant, stream and type columns.
func internString(prev string, b []byte) string {
	if prev == string(b) {
		return prev
	}
	return string(b)
}
