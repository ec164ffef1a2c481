package events

import (
	"context"
	"errors"
	"fmt"
)

// Store is the ledger. Implementations must be safe for concurrent use and
// pass storetest.Run.
type Store interface {
	// Append atomically appends the proposed events, in order, and returns
	// them as recorded. It returns only after the events are committed and
	// durable. Either every event is appended or none is.
	//
	// Each event's ExpectedVersion must equal its stream's version at the
	// moment of appending (counting earlier events of the same call), or
	// Append fails with an error matching ErrConflict. If the first event's
	// ID is already recorded with the same content, Append returns the
	// recorded events and appends nothing; an ID recorded with different
	// content fails with ErrDuplicateID.
	//
	// Once the events are handed to the writer, Append waits for the outcome
	// even if ctx is cancelled, so that a caller never mistakes a committed
	// event for a failed one.
	//
	// When the store cannot write (disk full, read-only, I/O error), Append
	// fails with an error matching ErrUnavailable.
	Append(ctx context.Context, batch ...Proposed) ([]Event, error)

	// AppendAsync hands the events to the writer and returns at once with a
	// function that waits for Append's outcome. Calls are written in the
	// order AppendAsync returned, possibly in one transaction, so a caller
	// may decide a stream's next event assuming this one lands: if it does
	// not, the next one fails its expected-version check too.
	AppendAsync(ctx context.Context, batch ...Proposed) (wait func() ([]Event, error), err error)

	// Lookup returns the recorded event with the given id.
	Lookup(ctx context.Context, id string) (Event, bool, error)

	// ReadStream returns the events of one stream with Version > after, in
	// version order.
	ReadStream(ctx context.Context, tenant, stream string, after int64) ([]Event, error)

	// ReadTenant returns up to limit events of one tenant with Seq > after,
	// in sequence order.
	ReadTenant(ctx context.Context, tenant string, after int64, limit int) ([]Event, error)

	// ReadAll returns up to limit events with Position > after, in position
	// order. Because positions are gapless and become visible in order, a
	// reader that has seen position p never later finds a new event below p.
	ReadAll(ctx context.Context, after int64, limit int) ([]Event, error)

	// Tail is ReadAll for consumers following the ledger: it may serve
	// events this process committed from memory instead of reading them
	// back. Readers that must see what is stored (verification) use
	// ReadAll.
	Tail(ctx context.Context, after int64, limit int) ([]Event, error)

	// Head returns the last committed position, 0 for an empty ledger.
	Head(ctx context.Context) (int64, error)

	// TenantHead returns the last sequence number and hash of a tenant's
	// chain; 0 and the zero Hash for a tenant with no events.
	TenantHead(ctx context.Context, tenant string) (int64, Hash, error)

	// Appended returns a channel that is closed at the next commit. Waiters
	// re-read the store; the channel carries no events.
	Appended() <-chan struct{}

	// Ping checks that the store answers.
	Ping(ctx context.Context) error

	// Close stops the writer and releases the store. Appends after Close
	// fail with ErrClosed.
	Close() error
}

// RecentReader is implemented by stores that keep the events this process
// appended last in memory. Recent returns the consecutive events after
// position after that it holds (at most limit), without a query; nil means
// only that it holds none, not that there are none.
type RecentReader interface {
	Recent(after int64, limit int) []Event
}

// StreamWatcher is implemented by stores that know, without a read, when
// they appended every event in a range of positions themselves. It lets a
// check that must see every event of a rare stream committed before a
// given append (the kill switch) skip the read when none can exist.
type StreamWatcher interface {
	// WatchStream has the store note where it appends events of streams
	// named stream (in any tenant). Until it is called, Quiet is false.
	WatchStream(stream string)
	// Quiet reports that no event of a stream named stream, in any
	// tenant, was committed by anyone at a position in (after, before),
	// where before is the position of an event this store appended and
	// acknowledged. False means only that the store does not know.
	Quiet(stream string, after, before int64) bool
	// LastAppended returns the last position this store committed: a
	// read begun after the call sees every event at or below it.
	LastAppended() int64
}

// Errors returned by Store implementations. Match them with errors.Is.
var (
	ErrConflict    = errors.New("events: stream version conflict")
	ErrDuplicateID = errors.New("events: event id already recorded with different content")
	ErrClosed      = errors.New("events: store closed")
	ErrInvalid     = errors.New("events: invalid event")
	// ErrUnavailable wraps the cause when the store cannot write for want
	// of storage (a full disk, a read-only database, an I/O error). The
	// append was not acknowledged; retrying it with the same event ids once
	// the store can write is safe (see Append on recorded ids).
	ErrUnavailable = errors.New("events: store cannot write")
)

// ConflictError reports an optimistic-concurrency conflict. It matches
// ErrConflict.
type ConflictError struct {
	Tenant, Stream   string
	Expected, Actual int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("events: stream %q of tenant %q is at version %d, append expected %d", e.Stream, e.Tenant, e.Actual, e.Expected)
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Validate checks the fields every proposed event must carry.
func (p *Proposed) Validate() error {
	switch {
	case p.ID == "":
		return fmt.Errorf("%w: missing id", ErrInvalid)
	case p.Tenant == "":
		return fmt.Errorf("%w: event %s has no tenant", ErrInvalid, p.ID)
	case p.Stream == "":
		return fmt.Errorf("%w: event %s has no stream", ErrInvalid, p.ID)
	case p.Type == "":
		return fmt.Errorf("%w: event %s has no type", ErrInvalid, p.ID)
	case p.ExpectedVersion < AnyVersion:
		return fmt.Errorf("%w: event %s expects version %d", ErrInvalid, p.ID, p.ExpectedVersion)
	}
	return nil
}

// Scanner is implemented by stores that can stream events without holding
// them all in memory. VerifyAll uses it when available.
type Scanner interface {
	// Scan calls fn for every event with from <= Position <= to, in
	// position order. The *Event and its byte slices are reused between
	// calls: fn must copy what it keeps.
	Scan(ctx context.Context, from, to int64, fn func(*Event) error) error
}
