package projections

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/haldir-dev/haldir/events"
)

// Message metadata keys carried beside each event's payload.
const (
	metaPosition = "position"
	metaTenant   = "tenant"
	metaStream   = "stream"
	metaVersion  = "version"
	metaType     = "type"
	metaSeq      = "seq"
	metaRecorded = "recorded_at"
	metaPrev     = "prev_hash"
	metaHash     = "hash"
	metaMeta     = "metadata"
	// metaFlush marks the last event the ledger held when it was read: a
	// consumer batching its writes commits after it.
	metaFlush = "flush"
)

// ToMessage wraps a ledger event in a watermill message whose UUID is the
// event id and whose payload is the event's stored payload bytes.
func ToMessage(e *events.Event) *message.Message {
	m := message.NewMessage(e.ID, e.Payload)
	m.Metadata = message.Metadata{
		metaPosition: strconv.FormatInt(e.Position, 10),
		metaTenant:   e.Tenant,
		metaStream:   e.Stream,
		metaVersion:  strconv.FormatInt(e.Version, 10),
		metaType:     e.Type,
		metaSeq:      strconv.FormatInt(e.Seq, 10),
		metaRecorded: strconv.FormatInt(e.RecordedAt.UnixNano(), 10),
		metaPrev:     string(e.PrevHash[:]),
		metaHash:     string(e.Hash[:]),
		metaMeta:     string(e.Metadata),
	}
	return m
}

// FromMessage recovers the ledger event carried by a message made with
// ToMessage.
func FromMessage(m *message.Message) events.Event {
	e := events.Event{
		ID:       m.UUID,
		Tenant:   m.Metadata.Get(metaTenant),
		Stream:   m.Metadata.Get(metaStream),
		Type:     m.Metadata.Get(metaType),
		Payload:  m.Payload,
		Metadata: []byte(m.Metadata.Get(metaMeta)),
	}
	e.Position, _ = strconv.ParseInt(m.Metadata.Get(metaPosition), 10, 64)
	e.Version, _ = strconv.ParseInt(m.Metadata.Get(metaVersion), 10, 64)
	e.Seq, _ = strconv.ParseInt(m.Metadata.Get(metaSeq), 10, 64)
	ns, _ := strconv.ParseInt(m.Metadata.Get(metaRecorded), 10, 64)
	e.RecordedAt = time.Unix(0, ns).UTC()
	copy(e.PrevHash[:], m.Metadata.Get(metaPrev))
	copy(e.Hash[:], m.Metadata.Get(metaHash))
	return e
}

// LedgerSubscriber is a watermill Subscriber that tails the ledger by its
// gapless position. It delivers one message at a time and waits for its Ack
// before the next. After a Nack it asks Checkpoint where to resume, so a
// consumer that rolled back a batch gets every event of it again.
//
// Because ledger positions are gapless and commit-ordered, tailing them
// never skips an event; the in-process wake-up from the store only shortens
// the wait, and Poll bounds it when another process appends.
type LedgerSubscriber struct {
	Store events.Store
	// Checkpoint returns the last position the consumer has durably
	// applied; delivery starts after it.
	Checkpoint func(ctx context.Context) (int64, error)
	// Page is how many events are read per query (default 500).
	Page int
	// Poll is the longest wait between reads when idle (default 100 ms).
	Poll time.Duration
	// OnError is told about read errors, which are retried.
	OnError func(error)

	mu     sync.Mutex
	cancel []context.CancelFunc
	wg     sync.WaitGroup
}

// Subscribe implements message.Subscriber. The topic is ignored: the ledger
// has one.
func (s *LedgerSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.cancel = append(s.cancel, cancel)
	s.mu.Unlock()
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.run(ctx, out)
	}()
	return out, nil
}

// Close implements message.Subscriber.
func (s *LedgerSubscriber) Close() error {
	s.mu.Lock()
	for _, c := range s.cancel {
		c()
	}
	s.cancel = nil
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// run tails the ledger into out until ctx ends: fetch a batch after the
// last acknowledged position, deliver it, repeat. A Nack drops the rest of
// the batch and resumes after the consumer's checkpoint.
func (s *LedgerSubscriber) run(ctx context.Context, out chan<- *message.Message) {
	t := &tail{s: s, out: out, page: s.Page, poll: s.Poll}
	if t.page <= 0 {
		t.page = 500
	}
	if t.poll <= 0 {
		t.poll = 100 * time.Millisecond
	}
	after, ok := t.resume(ctx)
	if !ok {
		return
	}
	var batch []events.Event
	for ctx.Err() == nil {
		if len(batch) == 0 {
			if batch = t.fetch(ctx, after); len(batch) == 0 {
				continue
			}
		}
		var o outcome
		batch, after, o = t.deliver(ctx, batch, after)
		switch o {
		case cancelled:
			return
		case nacked:
			if !t.wait(ctx) {
				return
			}
			var err error
			if after, err = s.Checkpoint(ctx); err != nil {
				s.report(err)
			}
		}
	}
}

// tail is one subscription's loop, with the subscriber's settings
// defaulted.
type tail struct {
	s    *LedgerSubscriber
	out  chan<- *message.Message
	page int
	poll time.Duration
}

// outcome is how the delivery of a message, or of a batch, ended.
type outcome int

const (
	acked     outcome = iota // the consumer acknowledged it (all of them)
	nacked                   // the consumer rejected it (one of them)
	cancelled                // the subscription's context ended first
)

// wait waits one poll interval; false if ctx ended first.
func (t *tail) wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(t.poll):
		return true
	}
}

// resume returns the consumer's checkpoint, retrying every poll interval
// until it is read; false if ctx ended first.
func (t *tail) resume(ctx context.Context) (int64, bool) {
	after, err := t.s.Checkpoint(ctx)
	for err != nil {
		t.s.report(err)
		if !t.wait(ctx) {
			return 0, false
		}
		after, err = t.s.Checkpoint(ctx)
	}
	return after, true
}

// fetch reads the next page of events after position after, and returns
// what the store returned: the caller tries again when that is nothing.
// After a read error, reported, it first waits a poll interval; when there
// are no events, until an append in this process, a poll interval or ctx's
// end.
func (t *tail) fetch(ctx context.Context, after int64) []events.Event {
	wake := t.s.Store.Appended()
	batch, err := t.s.Store.Tail(ctx, after, t.page)
	if err != nil {
		t.s.report(err)
		t.wait(ctx)
	} else if len(batch) == 0 {
		select {
		case <-ctx.Done():
		case <-wake:
		case <-time.After(t.poll):
		}
	}
	return batch
}

// deliver sends batch's events to the consumer one at a time, each after
// the previous one's Ack, and returns the events that follow the batch (read
// ahead to mark its last message, see peek), the position of the last event
// acknowledged, and how the delivery ended. After a Nack or ctx's end the
// following events are nil.
func (t *tail) deliver(ctx context.Context, batch []events.Event, after int64) ([]events.Event, int64, outcome) {
	var next []events.Event
	for i := range batch {
		last := i == len(batch)-1
		if last {
			next = t.peek(ctx, batch[i].Position)
		}
		m := ToMessage(&batch[i])
		if last && len(next) == 0 {
			m.Metadata.Set(metaFlush, "1")
		}
		m.SetContext(ctx)
		if o := t.send(ctx, m); o != acked {
			return nil, after, o
		}
		after = batch[i].Position
	}
	return next, after, acked
}

// peek returns the events after position pos, so that the consumer learns
// whether the event at pos is the last one for now: from memory when the
// store can (an event it does not hold only ends the batch early; the next
// Tail finds it), or by a read (an error, reported, counts as none).
func (t *tail) peek(ctx context.Context, pos int64) []events.Event {
	if rr, ok := t.s.Store.(events.RecentReader); ok {
		return rr.Recent(pos, t.page)
	}
	next, err := t.s.Store.Tail(ctx, pos, t.page)
	if err != nil {
		t.s.report(err)
		return nil
	}
	return next
}

// send hands m to the consumer and waits for its answer.
func (t *tail) send(ctx context.Context, m *message.Message) outcome {
	select {
	case t.out <- m:
	case <-ctx.Done():
		return cancelled
	}
	select {
	case <-m.Acked():
		return acked
	case <-m.Nacked():
		return nacked
	case <-ctx.Done():
		return cancelled
	}
}

func (s *LedgerSubscriber) report(err error) {
	if s.OnError != nil && err != nil && !errors.Is(err, context.Canceled) {
		s.OnError(err)
	}
}
