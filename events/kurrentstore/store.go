package kurrentstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/haldir-dev/haldir/events"
)

// DefaultLedger is the ledger stream's name when Options.Ledger is empty.
const DefaultLedger = "haldir-ledger"

// Limits and defaults.
const (
	maxCallEvents         = 1024      // events in one Append call, as the SQL store
	maxGroupEvents        = 1024      // events in one AppendToStream
	defaultMaxAppendBytes = 1_000_000 // under KurrentDB's default MaxAppendSize of 1 MiB
	defaultAppendTimeout  = 30 * time.Second
	ringSize              = 8192 // recent events served from memory
	syncPage              = 4096 // events per catch-up read
	maxLedgerName         = 200
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Ledger names the stream that holds the ledger, DefaultLedger if
	// empty. Cells sharing one KurrentDB cluster each need their own.
	Ledger string
	// Roles may read and append to the ledger. When the store finds the
	// ledger without an ACL it sets one: these roles read and write, and
	// only $admins may delete the stream or change its metadata (so
	// neither Haldir nor anyone holding its credentials can truncate or
	// delete the ledger). Empty means the connection's user; with no user
	// (an insecure server, or certificate authentication without Roles)
	// no ACL is set and the store logs that the ledger is unprotected.
	Roles []string
	// KeepACL leaves the ledger's ACL as the server has it.
	KeepACL bool
	// MaxAppendBytes bounds one AppendToStream request, estimated;
	// default 1,000,000 (KurrentDB refuses appends over its
	// MaxAppendSize, 1 MiB unless configured). A call larger than this
	// fails with events.ErrInvalid.
	MaxAppendBytes int
	// AppendTimeout bounds how long one group of appends is retried
	// (after conflicts with other replicas or while the server cannot be
	// reached) before its calls fail; default 30 s.
	AppendTimeout time.Duration
	// Log receives the store's and the client's messages; nil discards
	// them.
	Log *slog.Logger
}

func (o *Options) defaults() error {
	if o.Ledger == "" {
		o.Ledger = DefaultLedger
	}
	if err := validLedgerName(o.Ledger); err != nil {
		return err
	}
	if o.MaxAppendBytes <= 0 {
		o.MaxAppendBytes = defaultMaxAppendBytes
	}
	if o.AppendTimeout <= 0 {
		o.AppendTimeout = defaultAppendTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// validLedgerName refuses names KurrentDB reserves ("$" streams are system
// streams, "$$" ones hold metadata) and names the client cannot send.
func validLedgerName(name string) error {
	switch {
	case name == "":
		return errors.New("kurrentstore: empty ledger stream name")
	case strings.HasPrefix(name, "$"):
		return fmt.Errorf("kurrentstore: ledger stream %q: names starting with $ are KurrentDB's system streams", name)
	case len(name) > maxLedgerName:
		return fmt.Errorf("kurrentstore: ledger stream name of %d bytes (at most %d)", len(name), maxLedgerName)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("kurrentstore: ledger stream %q: not printable UTF-8", name)
	}
	return nil
}

// Store is the ledger on a KurrentDB stream. Create it with Open or
// OpenURL; it is safe for concurrent use, and any number of stores (one
// per replica) may share a ledger.
type Store struct {
	conn *conn
	opts Options
	log  *slog.Logger

	// mu guards idx, which the writer, the follower and the readers share.
	mu  sync.RWMutex
	idx *index

	queue chan *appendCall
	stop  chan struct{}
	done  chan struct{}
	// closeMu guards closed: AppendAsync holds it for reading while
	// enqueueing so that Close never closes under a sender.
	closeMu sync.RWMutex
	closed  bool

	wakeMu sync.Mutex
	wake   chan struct{}

	followMu     sync.Mutex
	followCancel context.CancelFunc
	followDone   chan struct{}

	// conflicts counts appends KurrentDB refused with WrongExpectedVersion
	// because another writer appended first (each was planned again).
	conflicts atomic.Int64
}

var (
	_ events.Store        = (*Store)(nil)
	_ events.Scanner      = (*Store)(nil)
	_ events.RecentReader = (*Store)(nil)
)

type appendCall struct {
	events []events.Proposed
	size   int // estimated bytes in an append request
	result chan appendResult
}

type appendResult struct {
	events []events.Event
	err    error
}

// OpenURL opens the ledger at a KurrentDB connection string (see ParseURL),
// the value of HALDIR_EVENT_STORE_URL.
func OpenURL(ctx context.Context, connectionString string, opts Options) (*Store, error) {
	cfg, err := ParseURL(connectionString)
	if err != nil {
		return nil, err
	}
	return Open(ctx, cfg, opts)
}

// Open connects to KurrentDB, reads the ledger stream from its start to
// build the store's index, and starts the writer and the catch-up
// subscription that keeps the index current with other replicas' appends.
// It always reads from and writes to the cluster's leader, whatever
// cfg.NodePreference says. An unreachable server fails with an error
// matching events.ErrUnavailable.
func Open(ctx context.Context, cfg *esdb.Configuration, opts Options) (*Store, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := *cfg
	c.Logger = clientLogger(opts.Log)
	if c.NodePreference != esdb.NodePreferenceLeader {
		// A follower may not hold what the leader acknowledged yet: the
		// writer would plan on a stale head, and a read could miss a
		// position the index already names.
		if c.NodePreference != "" {
			opts.Log.Warn("kurrentstore: the ledger is read from the leader; ignoring nodePreference", "nodePreference", c.NodePreference)
		}
		c.NodePreference = esdb.NodePreferenceLeader
	}
	cn, err := newConn(&c)
	if err != nil {
		return nil, fmt.Errorf("kurrentstore: %w", err)
	}
	s := &Store{
		conn:  cn,
		opts:  opts,
		log:   opts.Log,
		idx:   newIndex(opts.Ledger, ringSize),
		queue: make(chan *appendCall, 4096),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		wake:  make(chan struct{}),
	}
	if err := s.sync(ctx); err != nil {
		cn.close()
		return nil, fmt.Errorf("kurrentstore: open ledger %q: %w", opts.Ledger, unreachable(err))
	}
	if err := s.protect(ctx, &c); err != nil {
		cn.close()
		return nil, err
	}
	go s.writer()
	s.startFollower()
	return s, nil
}

// Append implements events.Store.
func (s *Store) Append(ctx context.Context, batch ...events.Proposed) ([]events.Event, error) {
	wait, err := s.AppendAsync(ctx, batch...)
	if err != nil {
		return nil, err
	}
	return wait()
}

// AppendAsync implements events.Store. Besides what events.Proposed.Validate
// checks, an event's Type must be UTF-8 and must not start with "$" (KurrentDB
// reserves those event types), and a call must fit in one append request
// (Options.MaxAppendBytes); otherwise it fails with events.ErrInvalid.
func (s *Store) AppendAsync(ctx context.Context, batch ...events.Proposed) (func() ([]events.Event, error), error) {
	if len(batch) == 0 {
		return func() ([]events.Event, error) { return nil, nil }, nil
	}
	size, err := s.check(batch)
	if err != nil {
		return nil, err
	}
	call := &appendCall{events: batch, size: size, result: make(chan appendResult, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, events.ErrClosed
	}
	select {
	case s.queue <- call:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	return func() ([]events.Event, error) {
		r := <-call.result // the writer always answers, even on Close
		return r.events, r.err
	}, nil
}

// check validates a call and returns its estimated size in an append.
func (s *Store) check(batch []events.Proposed) (int, error) {
	if len(batch) > maxCallEvents {
		return 0, fmt.Errorf("%w: %d events in one append (at most %d)", events.ErrInvalid, len(batch), maxCallEvents)
	}
	size := 0
	for i := range batch {
		p := &batch[i]
		if err := p.Validate(); err != nil {
			return 0, err
		}
		if !utf8.ValidString(p.Type) || strings.HasPrefix(p.Type, "$") {
			return 0, fmt.Errorf("%w: event %s has type %q (KurrentDB event types must be UTF-8 and not start with $)", events.ErrInvalid, p.ID, p.Type)
		}
		size += recordSize(&events.Event{ID: p.ID, Tenant: p.Tenant, Stream: p.Stream, Type: p.Type, Payload: p.Payload, Metadata: events.EncodeMetadata(p.Meta)})
	}
	if size > s.opts.MaxAppendBytes {
		return 0, fmt.Errorf("%w: an append of about %d bytes (at most %d in one KurrentDB append)", events.ErrInvalid, size, s.opts.MaxAppendBytes)
	}
	return size, nil
}

// Appended implements events.Store. It fires at this store's commits and
// whenever the catch-up subscription brings in another replica's.
func (s *Store) Appended() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wake
}

func (s *Store) notify() {
	s.wakeMu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.wakeMu.Unlock()
}

// Ready reports whether the store can take appends: it is open and the
// server answers a read of the ledger.
func (s *Store) Ready(ctx context.Context) error {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return events.ErrClosed
	}
	return s.Ping(ctx)
}

// Close stops the writer after it has answered every queued call, stops
// the catch-up subscription and closes the client.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.closeMu.Unlock()
	<-s.done
	s.stopFollower()
	return s.conn.close()
}

// group is the calls one AppendToStream carries.
type group struct {
	calls             []*appendCall
	events, bytes     int
	maxEvents, maxLen int
}

// add adds c if it fits, or if the group is empty (a call alone is never
// refused here; check bounded it already), and reports whether it did.
func (g *group) add(c *appendCall) bool {
	if len(g.calls) > 0 && (g.events+len(c.events) > g.maxEvents || g.bytes+c.size > g.maxLen) {
		return false
	}
	g.calls = append(g.calls, c)
	g.events += len(c.events)
	g.bytes += c.size
	return true
}

func (g *group) full() bool { return g.events >= g.maxEvents || g.bytes >= g.maxLen }

// writer is the group-commit loop: it takes every queued call that fits in
// one append request and commits them together.
func (s *Store) writer() {
	defer close(s.done)
	var carry *appendCall
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-s.queue:
			case <-s.stop:
				for {
					select {
					case c := <-s.queue:
						s.commit([]*appendCall{c})
					default:
						return
					}
				}
			}
		}
		g := group{maxEvents: maxGroupEvents, maxLen: s.opts.MaxAppendBytes}
		g.add(first)
	drain:
		for !g.full() {
			select {
			case c := <-s.queue:
				if !g.add(c) {
					carry = c
					break drain
				}
			default:
				break drain
			}
		}
		s.commit(g.calls)
	}
}

// commit appends the calls' events in one AppendToStream and answers each
// call.
//
// The append expects the ledger stream at the revision the plan was made
// on. When another replica appended first, KurrentDB refuses it with
// WrongExpectedVersion and nothing is written; the store reads what the
// other replica wrote, plans the same calls again on top of it (a call
// whose expected stream version is now stale fails with a ConflictError,
// as it would have had it come second in one process) and retries. When
// the outcome is unknown (a timeout, a lost connection, a leader
// election), the ledger is read to see whether the append landed: it did
// exactly when its first event is recorded at the position planned for it,
// because an append at an expected revision lands there or nowhere.
func (s *Store) commit(calls []*appendCall) {
	batches := make([][]events.Proposed, len(calls))
	for i, c := range calls {
		batches[i] = c.events
	}
	now := recordedNow() // fixed across attempts, so an unchanged plan re-sends the same bytes
	deadline := time.Now().Add(s.opts.AppendTimeout)
	var last error
	lastOutcome := written
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if time.Now().After(deadline) {
				s.fail(calls, gaveUp(lastOutcome, last, s.opts.AppendTimeout))
				return
			}
			pause(attempt, lastOutcome)
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := s.sync(ctx); err != nil {
			cancel()
			last, lastOutcome = err, uncertain
			continue
		}
		s.mu.RLock()
		p := planCalls(s.idx, batches, now)
		ledger := s.idx.stream
		s.mu.RUnlock()
		if len(p.rows) == 0 {
			s.answer(ctx, calls, p)
			cancel()
			return
		}
		data := make([]esdb.EventData, len(p.rows))
		for i := range p.rows {
			data[i] = encodeRecord(&p.rows[i])
		}
		var res *esdb.WriteResult
		err := s.conn.do(func(cl *esdb.Client) error {
			var err error
			res, err = cl.AppendToStream(ctx, ledger, esdb.AppendToStreamOptions{ExpectedRevision: expectedRevision(p.base), RequiresLeader: true}, data...)
			return err
		})
		o := classify(err)
		if o == written && res.NextExpectedVersion != uint64(p.base)+uint64(len(p.rows))-1 {
			o, err = uncertain, fmt.Errorf("kurrentstore: append acknowledged at revision %d, planned %d", res.NextExpectedVersion, p.base+int64(len(p.rows))-1)
		}
		switch o {
		case written:
			s.landed(ledger, p)
			s.answer(ctx, calls, p)
			cancel()
			return
		case conflicted:
			s.conflicts.Add(1)
			last, lastOutcome = err, conflicted
		case uncertain:
			if ok, rerr := s.resolve(ctx, p); rerr == nil && ok {
				s.answer(ctx, calls, p)
				cancel()
				return
			}
			last, lastOutcome = err, uncertain
		case refused:
			cancel()
			if len(calls) > 1 {
				// Find the call the server refuses; the others land.
				for _, c := range calls {
					s.commit([]*appendCall{c})
				}
				return
			}
			s.fail(calls, refusal(err))
			return
		}
		cancel()
	}
}

// pause waits before another attempt: briefly and at random after a
// conflict, so that contending replicas fall out of step; with backoff
// while the server cannot be reached.
func pause(attempt int, o outcome) {
	if o == conflicted {
		time.Sleep(time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond))))
		return
	}
	time.Sleep(min(25*time.Millisecond<<min(attempt, 6), time.Second))
}

// gaveUp is the error of calls whose group could not be written within the
// append timeout.
func gaveUp(o outcome, last error, timeout time.Duration) error {
	if o == conflicted {
		return fmt.Errorf("%w: other writers kept appending to the ledger first for %s: %w", events.ErrConflict, timeout, last)
	}
	return unreachable(last)
}

// resolve reports whether the rows of p are in the ledger at the positions
// planned for them, after reading the ledger's end.
func (s *Store) resolve(ctx context.Context, p *plan) (bool, error) {
	if err := s.sync(ctx); err != nil {
		return false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	first, last := &p.rows[0], &p.rows[len(p.rows)-1]
	a, okA := s.idx.position(first.ID)
	b, okB := s.idx.position(last.ID)
	return okA && okB && a == first.Position && b == last.Position, nil
}

// landed adds committed rows to the index and wakes the waiters.
func (s *Store) landed(ledger string, p *plan) {
	s.mu.Lock()
	if s.idx.stream == ledger {
		for i := range p.rows {
			s.idx.apply(p.rows[i].Position, &p.rows[i], true)
		}
	}
	s.mu.Unlock()
	s.notify()
}

// answer tells every call its outcome once p's rows (if any) are in the
// ledger.
func (s *Store) answer(ctx context.Context, calls []*appendCall, p *plan) {
	for i, c := range calls {
		r := &p.results[i]
		switch {
		case r.err != nil:
			c.result <- appendResult{err: r.err}
		case r.refs != nil:
			c.result <- s.repeat(ctx, c.events, p, r.refs)
		default:
			c.result <- appendResult{events: append([]events.Event(nil), p.rows[r.first:r.first+r.n]...)}
		}
	}
}

// repeat answers an idempotent retry with the recorded events, or fails it
// with events.ErrDuplicateID when an event differs from the recorded one.
func (s *Store) repeat(ctx context.Context, batch []events.Proposed, p *plan, refs []ref) appendResult {
	out := make([]events.Event, len(refs))
	var positions []int64
	var at []int
	for i, r := range refs {
		if r.row >= 0 {
			out[i] = p.rows[r.row]
		} else {
			positions = append(positions, r.pos)
			at = append(at, i)
		}
	}
	if len(positions) > 0 {
		got, err := s.fetch(ctx, positions)
		if err != nil {
			return appendResult{err: fmt.Errorf("events: read recorded events of a retried append: %w", err)}
		}
		for j, i := range at {
			out[i] = got[j]
		}
	}
	for i := range batch {
		if !sameContent(&batch[i], &out[i]) {
			return appendResult{err: fmt.Errorf("%w: %s", events.ErrDuplicateID, batch[i].ID)}
		}
	}
	return appendResult{events: out}
}

// fail answers every call with err.
func (s *Store) fail(calls []*appendCall, err error) {
	for _, c := range calls {
		c.result <- appendResult{err: err}
	}
}

// clientLogger sends the client's log lines to l. The client logs every
// error it handles at error level, including ones the store handles as a
// matter of course (a leader change, a retried timeout), so they arrive
// as warnings, and its connection chatter as debug.
func clientLogger(l *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		lv := slog.LevelDebug
		switch level {
		case esdb.LogWarn, esdb.LogError:
			lv = slog.LevelWarn
		}
		if l.Enabled(context.Background(), lv) {
			l.Log(context.Background(), lv, "kurrentdb client: "+fmt.Sprintf(format, args...))
		}
	}
}
