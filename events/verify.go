package events

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// VerifyError names the first position at which the ledger is inconsistent.
type VerifyError struct {
	// Position is the first bad global position. For a tenant-scoped
	// verification it is the position of the first bad event read.
	Position int64
	Tenant   string
	// Seq is the tenant sequence number that was expected at Position.
	Seq    int64
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("events: ledger broken at position %d (tenant %q, seq %d): %s", e.Position, e.Tenant, e.Seq, e.Reason)
}

// CorruptError is returned by a Store that cannot decode a stored row, for
// example a hash column of the wrong length. Verification reports it as a
// VerifyError at that position.
type CorruptError struct {
	Position int64
	Reason   string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("events: stored row at position %d is corrupt: %s", e.Position, e.Reason)
}

// Verifier recomputes the chain hash of every event fed to it and checks the
// links between them. The zero Verifier is not usable; see NewVerifier.
type Verifier struct {
	global  bool
	lastPos int64
	heads   map[string]chainHead
	// firsts, when non-nil, makes the Verifier start mid-ledger: a tenant's
	// first event is accepted as is and its link recorded here, to be
	// checked against the preceding range later.
	firsts map[string]chainLink
	buf    []byte
	// Checked counts the events that passed.
	Checked int64
}

type chainHead struct {
	seq  int64
	hash Hash
}

// chainLink is where a tenant's chain enters a range of the ledger.
type chainLink struct {
	position int64
	seq      int64
	prev     Hash
}

// NewVerifier returns a Verifier for events fed in ascending global position
// starting at position 1. With global false it checks only the tenant
// chains, for events of one tenant fed in sequence order.
func NewVerifier(global bool) *Verifier {
	return &Verifier{global: global, heads: make(map[string]chainHead), buf: make([]byte, 0, 1024)}
}

// Check verifies e against the events checked before it. It returns a
// *VerifyError on the first inconsistency; after that the Verifier's state is
// undefined.
func (v *Verifier) Check(e *Event) error {
	h, known := v.heads[e.Tenant]
	if !known && v.firsts != nil {
		v.firsts[e.Tenant] = chainLink{position: e.Position, seq: e.Seq, prev: e.PrevHash}
		h = chainHead{seq: e.Seq - 1, hash: e.PrevHash}
	}
	fail := func(reason string, args ...any) error {
		return &VerifyError{Position: e.Position, Tenant: e.Tenant, Seq: h.seq + 1, Reason: fmt.Sprintf(reason, args...)}
	}
	if v.global && e.Position != v.lastPos+1 {
		if e.Position > v.lastPos+1 {
			return &VerifyError{Position: v.lastPos + 1, Tenant: e.Tenant, Seq: h.seq + 1,
				Reason: fmt.Sprintf("position %d is missing (next stored position is %d)", v.lastPos+1, e.Position)}
		}
		return fail("position %d appears after position %d", e.Position, v.lastPos)
	}
	if e.Seq != h.seq+1 {
		return fail("tenant sequence %d found where %d was expected (an event was deleted, inserted or moved)", e.Seq, h.seq+1)
	}
	if e.PrevHash != h.hash {
		return fail("previous hash does not match the hash of sequence %d", h.seq)
	}
	v.buf = AppendEnvelope(v.buf[:0], e)
	if sha256.Sum256(v.buf) != e.Hash {
		return fail("stored hash does not match the event's content (the event was modified)")
	}
	v.heads[e.Tenant] = chainHead{seq: e.Seq, hash: e.Hash}
	v.lastPos = e.Position
	v.Checked++
	return nil
}

// Report summarises a successful verification.
type Report struct {
	// Checked is the number of events verified.
	Checked int64
	// Head is the last position checked.
	Head int64
	// Heads holds each tenant's last sequence number and hash.
	Heads map[string]TenantHead
}

// TenantHead is the end of one tenant's chain.
type TenantHead struct {
	Seq  int64
	Hash Hash
}

// VerifyAll reads the whole ledger in position order and checks every hash
// and link. progress, if non-nil, is called as verification advances with
// the count checked so far. It returns a *VerifyError naming the first bad
// position.
//
// The chain proves that no event was modified, inserted, reordered or
// deleted before a tenant's last event. Truncation of a tenant's tail is only
// detectable against a signed checkpoint.
//
// When s implements Scanner, ranges of the ledger are checked in parallel
// and the tenant chains are stitched across range boundaries afterwards;
// the result is the same as a sequential pass.
func VerifyAll(ctx context.Context, s Store, progress func(checked int64)) (Report, error) {
	sc, ok := s.(Scanner)
	if !ok {
		return verify(ctx, NewVerifier(true), progress, func(after int64) ([]Event, error) {
			return s.ReadAll(ctx, after, verifyPage)
		}, func(e *Event) int64 { return e.Position })
	}
	head, err := s.Head(ctx)
	if err != nil {
		return Report{}, err
	}
	return verifyRanges(ctx, sc, head, progress)
}

// minParallelRange is the smallest range worth a worker of its own, and
// verifyWorkers caps the workers (0: GOMAXPROCS, at most 4).
var (
	minParallelRange int64 = 20_000
	verifyWorkers          = 0
)

func verifyRanges(ctx context.Context, sc Scanner, head int64, progress func(int64)) (Report, error) {
	workers := min(runtime.GOMAXPROCS(0), 4)
	if verifyWorkers > 0 {
		workers = verifyWorkers
	}
	if n := int(head / minParallelRange); n < workers {
		workers = max(n, 1)
	}
	type part struct {
		from, to int64
		v        *Verifier
		err      error
	}
	parts := make([]part, workers)
	var checked sync.Mutex
	var total int64
	var wg sync.WaitGroup
	for i := range parts {
		p := &parts[i]
		p.from = head*int64(i)/int64(workers) + 1
		p.to = head * int64(i+1) / int64(workers)
		p.v = NewVerifier(true)
		p.v.lastPos = p.from - 1
		if i > 0 {
			p.v.firsts = make(map[string]chainLink)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.err = sc.Scan(ctx, p.from, p.to, func(e *Event) error {
				if err := p.v.Check(e); err != nil {
					return err
				}
				if progress != nil && p.v.Checked%50_000 == 0 {
					checked.Lock()
					total += 50_000
					progress(total)
					checked.Unlock()
				}
				return nil
			})
			if p.err == nil && p.v.lastPos != p.to {
				p.err = &VerifyError{Position: p.v.lastPos + 1, Reason: fmt.Sprintf("position %d is missing", p.v.lastPos+1)}
			}
		}()
	}
	wg.Wait()
	heads := make(map[string]chainHead)
	var n int64
	for i := range parts {
		p := &parts[i]
		var ce *CorruptError
		if errors.As(p.err, &ce) {
			p.err = &VerifyError{Position: ce.Position, Reason: ce.Reason}
		}
		// A bad link into this range comes before any error inside it
		// only if its position is smaller.
		var first *VerifyError
		for tenant, l := range p.v.firsts {
			h := heads[tenant]
			var reason string
			switch {
			case l.seq != h.seq+1:
				reason = fmt.Sprintf("tenant sequence %d found where %d was expected (an event was deleted, inserted or moved)", l.seq, h.seq+1)
			case l.prev != h.hash:
				reason = fmt.Sprintf("previous hash does not match the hash of sequence %d", h.seq)
			default:
				continue
			}
			if first == nil || l.position < first.Position {
				first = &VerifyError{Position: l.position, Tenant: tenant, Seq: h.seq + 1, Reason: reason}
			}
		}
		var inner *VerifyError
		if p.err != nil && !errors.As(p.err, &inner) {
			return Report{}, p.err
		}
		if inner != nil && (first == nil || inner.Position < first.Position) {
			first = inner
		}
		if first != nil {
			return Report{}, first
		}
		for t, h := range p.v.heads {
			heads[t] = h
		}
		n += p.v.Checked
	}
	if progress != nil {
		progress(n)
	}
	r := Report{Checked: n, Head: head, Heads: make(map[string]TenantHead, len(heads))}
	for t, h := range heads {
		r.Heads[t] = TenantHead{Seq: h.seq, Hash: h.hash}
	}
	return r, nil
}

// VerifyTenant checks one tenant's chain from its first event.
func VerifyTenant(ctx context.Context, s Store, tenant string, progress func(checked int64)) (Report, error) {
	return verify(ctx, NewVerifier(false), progress, func(after int64) ([]Event, error) {
		return s.ReadTenant(ctx, tenant, after, verifyPage)
	}, func(e *Event) int64 { return e.Seq })
}

const verifyPage = 5000

func verify(ctx context.Context, v *Verifier, progress func(int64), read func(after int64) ([]Event, error), cursor func(*Event) int64) (Report, error) {
	var after, head int64
	for {
		page, err := read(after)
		if err != nil {
			if ce, ok := err.(*CorruptError); ok {
				return Report{}, &VerifyError{Position: ce.Position, Reason: ce.Reason}
			}
			return Report{}, err
		}
		for i := range page {
			if err := v.Check(&page[i]); err != nil {
				return Report{}, err
			}
			head = page[i].Position
		}
		if progress != nil && len(page) > 0 {
			progress(v.Checked)
		}
		if len(page) < verifyPage {
			break
		}
		after = cursor(&page[len(page)-1])
		if err := ctx.Err(); err != nil {
			return Report{}, err
		}
	}
	r := Report{Checked: v.Checked, Head: head, Heads: make(map[string]TenantHead, len(v.heads))}
	for t, h := range v.heads {
		r.Heads[t] = TenantHead{Seq: h.seq, Hash: h.hash}
	}
	return r, nil
}

// Next returns the event p appends after head, at stream version version
// and ledger position pos, recorded at now: sequence, link and hash set.
// Every store builds its events with it, so the chain is computed the same
// way whatever holds it.
func (head TenantHead) Next(p Proposed, version, pos int64, now time.Time) Event {
	payload := p.Payload
	if payload == nil {
		payload = []byte{}
	}
	e := Event{ID: p.ID, Tenant: p.Tenant, Stream: p.Stream, Version: version, Type: p.Type, Payload: payload,
		Metadata: EncodeMetadata(p.Meta), RecordedAt: now, Seq: head.Seq + 1, Position: pos, PrevHash: head.Hash}
	e.Hash = ComputeHash(&e)
	return e
}
