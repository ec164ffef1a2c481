package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// probeEvery is how long the outcome of the store's last write attempt
// answers Ready before a probe write checks again.
const probeEvery = time.Second

// probePad fills the probe row past one SQLite page (4096 bytes), so that
// writing it takes a free page or a new one, as the appends a full disk
// refuses do; a row that fits in a page with room to spare would still be
// taken.
var probePad = make([]byte, 4096)

// writeHealth is the outcome of the store's last write attempt, a ledger
// commit or a probe.
type writeHealth struct {
	mu  sync.Mutex
	at  time.Time // when it ended; zero before the first
	err error     // nil when it committed, else matching events.ErrUnavailable
}

// record notes the outcome of a write attempt: a commit (err == nil) or a
// storage failure. Any other error says nothing about whether the store can
// write (a refused event, a cancelled probe) and changes nothing.
func (h *writeHealth) record(err error) {
	if err != nil && !errors.Is(err, events.ErrUnavailable) {
		return
	}
	h.mu.Lock()
	h.at, h.err = time.Now(), err
	h.mu.Unlock()
}

// fresh returns the last outcome if it ended less than maxAge ago.
func (h *writeHealth) fresh(maxAge time.Duration) (err error, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.at.IsZero() || time.Since(h.at) >= maxAge {
		return nil, false
	}
	return h.err, true
}

// Ready reports whether the store can take appends now: it answers a
// query, and its last write attempt committed. The last attempt is the
// writer's last transaction or a probe, and its outcome answers for
// probeEvery; after that, when the ledger has been idle (or the last
// attempt failed), Ready writes a probe: one durable transaction that
// inserts a row of a little more than a page into store_probe and deletes
// the older ones. A commit of either kind makes the store ready again; a
// failure either way matches events.ErrUnavailable until the next one.
//
// Readiness polls are therefore answered from memory while the ledger is
// busy, and cost at most one small write a second (one probe at a time)
// when it is idle or failing.
func (s *Store) Ready(ctx context.Context) error {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return events.ErrClosed
	}
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if err, ok := s.health.fresh(probeEvery); ok {
		return err
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if err, ok := s.health.fresh(probeEvery); ok {
		return err // a concurrent call has just probed
	}
	err := sqldb.Unavailable(s.probe(ctx))
	s.health.record(err)
	return err
}

// probe commits a write to store_probe, durably, through the same
// connection pool (on SQLite, the same single writer connection) as the
// ledger's appends.
func (s *Store) probe(ctx context.Context) error {
	tx, err := s.db.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("events: probe: begin: %w", err)
	}
	defer tx.Rollback()
	now := time.Now().UnixNano()
	if _, err := tx.ExecContext(ctx, s.db.Rebind("INSERT INTO store_probe (probed_at, pad) VALUES (?, ?)"), now, probePad); err != nil {
		return fmt.Errorf("events: probe: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.db.Rebind("DELETE FROM store_probe WHERE probed_at < ?"), now); err != nil {
		return fmt.Errorf("events: probe: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("events: probe: commit: %w", err)
	}
	return nil
}
