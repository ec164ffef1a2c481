package kurrentstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/haldir-dev/haldir/events"
)

// errLedgerGone: the ledger stream reads as not found although the store
// has indexed events of it. Someone deleted (or truncated) it; the store
// refuses to append on top of that.
var errLedgerGone = errors.New("kurrentstore: the ledger stream reads as not found although it held events: it was deleted")

// readLedger calls fn for up to count records of stream from revision from
// on, in order. found is false when the stream does not exist (or was
// deleted).
func (s *Store) readLedger(ctx context.Context, stream string, from int64, count uint64, fn func(*esdb.RecordedEvent) error) (found bool, err error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	found = true
	err = s.conn.do(func(cl *esdb.Client) error {
		rs, err := cl.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(uint64(from))}, count)
		if err != nil {
			return err
		}
		defer rs.Close()
		for {
			ev, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := fn(ev.OriginalEvent()); err != nil {
				return err
			}
		}
	})
	if isNotFound(err) {
		return false, nil
	}
	return found, err
}

// readTimeout bounds a read whose context has no deadline: the client
// sets none on streaming calls, and a server that stops answering must
// not hang a reader (or the writer) for good.
const readTimeout = 30 * time.Second

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, readTimeout)
}

// sync reads the ledger from the index's head to the end and indexes what
// it finds: other replicas' appends the catch-up subscription has not
// delivered yet. Every read that must reflect the whole ledger, and the
// writer before it plans, calls it first.
func (s *Store) sync(ctx context.Context) error {
	type rec struct {
		pos    int64
		e      events.Event
		parsed bool
		ok     bool
	}
	for {
		s.mu.RLock()
		next, ledger := s.idx.next, s.idx.stream
		s.mu.RUnlock()
		var recs []rec
		found, err := s.readLedger(ctx, ledger, next, syncPage, func(r *esdb.RecordedEvent) error {
			e, parsed, derr := decodeRecord(r)
			recs = append(recs, rec{int64(r.EventNumber) + 1, e, parsed, derr == nil})
			return nil
		})
		if err != nil {
			return fmt.Errorf("kurrentstore: read ledger: %w", err)
		}
		if !found && next > 0 {
			return fmt.Errorf("%w (%q, %d events indexed)", errLedgerGone, ledger, next)
		}
		applied := false
		s.mu.Lock()
		if s.idx.stream == ledger {
			for i := range recs {
				var e *events.Event
				if recs[i].parsed {
					e = &recs[i].e
				}
				if s.idx.apply(recs[i].pos, e, recs[i].ok) {
					applied = true
				}
			}
		}
		s.mu.Unlock()
		if applied {
			s.notify()
		}
		if len(recs) < syncPage {
			return nil
		}
	}
}

// maxFetchRuns bounds the reads one fetch runs at once.
const maxFetchRuns = 4

// fetch returns the events at the given positions, from the ring of recent
// events where it holds them and otherwise read from the ledger, one read
// per run of consecutive positions. A record that does not decode, or a
// position the ledger stream no longer holds, fails with a
// *events.CorruptError.
func (s *Store) fetch(ctx context.Context, ps []int64) ([]events.Event, error) {
	out := make([]events.Event, len(ps))
	var missing []int
	s.mu.RLock()
	ledger := s.idx.stream
	for i, p := range ps {
		if e, ok := s.idx.cached(p); ok {
			out[i] = e
		} else {
			missing = append(missing, i)
		}
	}
	s.mu.RUnlock()
	var runs [][2]int // [start, end) into missing
	for i := 0; i < len(missing); {
		j := i + 1
		for j < len(missing) && ps[missing[j]] == ps[missing[j-1]]+1 {
			j++
		}
		runs = append(runs, [2]int{i, j})
		i = j
	}
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxFetchRuns)
	for k, run := range runs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			idx := missing[run[0]:run[1]]
			from := ps[idx[0]] - 1
			n := 0
			_, err := s.readLedger(ctx, ledger, from, uint64(len(idx)), func(r *esdb.RecordedEvent) error {
				if n >= len(idx) {
					return nil
				}
				want := ps[idx[n]]
				if int64(r.EventNumber)+1 != want {
					return &events.CorruptError{Position: want, Reason: fmt.Sprintf("the ledger stream no longer holds revision %d", want-1)}
				}
				e, _, derr := decodeRecord(r)
				if derr != nil {
					return derr
				}
				out[idx[n]] = e
				n++
				return nil
			})
			if err == nil && n < len(idx) {
				err = &events.CorruptError{Position: ps[idx[n]], Reason: fmt.Sprintf("the ledger stream no longer holds revision %d", ps[idx[n]]-1)}
			}
			errs[k] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadStream implements events.Store.
func (s *Store) ReadStream(ctx context.Context, tenant, stream string, after int64) ([]events.Event, error) {
	if err := s.sync(ctx); err != nil {
		return nil, fmt.Errorf("events: read stream: %w", err)
	}
	s.mu.RLock()
	ps := s.idx.streamPositions(streamKey{tenant, stream}, after, 0)
	s.mu.RUnlock()
	evs, err := s.fetch(ctx, ps)
	if err != nil {
		return nil, fmt.Errorf("events: read stream: %w", err)
	}
	return keep(evs, func(e *events.Event) bool { return e.Version > after }), nil
}

// ReadTenant implements events.Store.
func (s *Store) ReadTenant(ctx context.Context, tenant string, after int64, limit int) ([]events.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := s.sync(ctx); err != nil {
		return nil, fmt.Errorf("events: read tenant: %w", err)
	}
	s.mu.RLock()
	ps := s.idx.tenantPositions(tenant, after, limit)
	s.mu.RUnlock()
	evs, err := s.fetch(ctx, ps)
	if err != nil {
		if ce, ok := errors.AsType[*events.CorruptError](err); ok {
			return nil, ce // verification reports it at its position
		}
		return nil, fmt.Errorf("events: read tenant: %w", err)
	}
	return keep(evs, func(e *events.Event) bool { return e.Seq > after }), nil
}

func keep(evs []events.Event, ok func(*events.Event) bool) []events.Event {
	out := evs[:0]
	for i := range evs {
		if ok(&evs[i]) {
			out = append(out, evs[i])
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// ReadAll implements events.Store. It reads the ledger stream itself: the
// events at revisions after … after+limit-1. A record that is not a Haldir
// record, or sits at a revision other than its position-1, fails with a
// *events.CorruptError, returned as is so that verification names it.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]events.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	after = max(after, 0)
	var out []events.Event
	err := s.scan(ctx, after, uint64(limit), func(e *events.Event) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// Scan implements events.Scanner.
func (s *Store) Scan(ctx context.Context, from, to int64, fn func(*events.Event) error) error {
	from = max(from, 1)
	if to < from {
		return nil
	}
	return s.scan(ctx, from-1, uint64(to-from+1), fn)
}

func (s *Store) scan(ctx context.Context, fromRevision int64, count uint64, fn func(*events.Event) error) error {
	s.mu.RLock()
	ledger, indexed := s.idx.stream, s.idx.next
	s.mu.RUnlock()
	found, err := s.readLedger(ctx, ledger, fromRevision, count, func(r *esdb.RecordedEvent) error {
		e, _, err := decodeRecord(r)
		if err != nil {
			return err
		}
		return fn(&e)
	})
	if ce, ok := errors.AsType[*events.CorruptError](err); ok {
		return ce
	}
	if err != nil {
		return fmt.Errorf("events: read ledger: %w", err)
	}
	if !found && indexed > 0 {
		return fmt.Errorf("events: read ledger: %w (%q)", errLedgerGone, ledger)
	}
	return nil
}

// Tail implements events.Store: events this process has indexed recently
// (its own appends and those the catch-up subscription delivered) come
// from memory, everything else from the ledger stream.
func (s *Store) Tail(ctx context.Context, after int64, limit int) ([]events.Event, error) {
	if evs := s.Recent(after, limit); evs != nil {
		return evs, nil
	}
	return s.ReadAll(ctx, after, limit)
}

// Recent implements events.RecentReader.
func (s *Store) Recent(after int64, limit int) []events.Event {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.recent(after, limit)
}

// Lookup implements events.Store.
func (s *Store) Lookup(ctx context.Context, id string) (events.Event, bool, error) {
	if err := s.sync(ctx); err != nil {
		return events.Event{}, false, fmt.Errorf("events: look up %s: %w", id, err)
	}
	s.mu.RLock()
	pos, ok := s.idx.position(id)
	s.mu.RUnlock()
	if !ok {
		return events.Event{}, false, nil
	}
	evs, err := s.fetch(ctx, []int64{pos})
	if err != nil {
		return events.Event{}, false, fmt.Errorf("events: look up %s: %w", id, err)
	}
	return evs[0], true, nil
}

// Head implements events.Store: the ledger stream's event count, after
// reading its end.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := s.sync(ctx); err != nil {
		return 0, fmt.Errorf("events: read head: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.next, nil
}

// TenantHead implements events.Store.
func (s *Store) TenantHead(ctx context.Context, tenant string) (int64, events.Hash, error) {
	if err := s.sync(ctx); err != nil {
		return 0, events.Hash{}, fmt.Errorf("events: read tenant head: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.idx.head(tenant)
	return h.Seq, h.Hash, nil
}

// Ping implements events.Store: it reads the ledger stream's last event.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	s.mu.RLock()
	ledger := s.idx.stream
	s.mu.RUnlock()
	err := s.conn.do(func(cl *esdb.Client) error {
		rs, err := cl.ReadStream(ctx, ledger, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		_, err = rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("kurrentstore: ping: %w", err)
	}
	return nil
}
