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

func (s *LedgerSubscriber) run(ctx context.Context, out chan<- *message.Message) {
	page := s.Page
	if page <= 0 {
		page = 500
	}
	poll := s.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	backoff := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(poll):
			return true
		}
	}
	after, err := s.Checkpoint(ctx)
	for err != nil {
		s.report(err)
		if !backoff() {
			return
		}
		after, err = s.Checkpoint(ctx)
	}
	var batch []events.Event
	for ctx.Err() == nil {
		if len(batch) == 0 {
			wake := s.Store.Appended()
			batch, err = s.Store.Tail(ctx, after, page)
			if err != nil {
				s.report(err)
				backoff()
				continue
			}
			if len(batch) == 0 {
				select {
				case <-ctx.Done():
					return
				case <-wake:
				case <-time.After(poll):
				}
				continue
			}
		}
		var next []events.Event
		resync := false
		for i := range batch {
			flush := false
			if i == len(batch)-1 {
				// Look ahead so the consumer learns whether this is the
				// last event for now: in memory when the store can (an
				// event it does not hold only ends the batch early; the
				// next Tail finds it).
				if rr, ok := s.Store.(events.RecentReader); ok {
					next = rr.Recent(batch[i].Position, page)
				} else if next, err = s.Store.Tail(ctx, batch[i].Position, page); err != nil {
					s.report(err)
					next = nil
				}
				flush = len(next) == 0
			}
			m := ToMessage(&batch[i])
			if flush {
				m.Metadata.Set(metaFlush, "1")
			}
			m.SetContext(ctx)
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
			select {
			case <-m.Acked():
				after = batch[i].Position
			case <-m.Nacked():
				resync = true
			case <-ctx.Done():
				return
			}
			if resync {
				break
			}
		}
		batch = next
		if resync {
			batch = nil
			if !backoff() {
				return
			}
			if after, err = s.Checkpoint(ctx); err != nil {
				s.report(err)
			}
		}
	}
}

func (s *LedgerSubscriber) report(err error) {
	if s.OnError != nil && err != nil && !errors.Is(err, context.Canceled) {
		s.OnError(err)
	}
}
