package transparency

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
)

// BundleFormat is the format of the bundle's header line.
const BundleFormat = "haldir-bundle/v1"

// MaxBundleLine is the longest bundle line, newline excluded, that
// WriteBundle writes and VerifyBundle reads.
const MaxBundleLine = 16 << 20

// Each line of a bundle, in its canonical encoding, starts with one of
// these.
const (
	eventPrefix      = `{"kind":"event",`
	checkpointPrefix = `{"kind":"checkpoint",`
)

// BundleHeader describes a bundle: whose events it holds, and when it was
// exported. ExportedAt is informational; nothing signs it.
type BundleHeader struct {
	Tenant     string
	ExportedAt time.Time
}

// The JSON lines of a bundle. Field order is the wire order.
type (
	headerLine struct {
		Kind       string    `json:"kind"` // "header"
		Format     string    `json:"format"`
		Tenant     string    `json:"tenant"`
		ExportedAt time.Time `json:"exported_at"`
	}
	eventLine struct {
		Kind       string `json:"kind"` // "event"
		Seq        int64  `json:"seq"`
		ID         string `json:"id"`
		Tenant     string `json:"tenant"`
		Stream     string `json:"stream"`
		Version    int64  `json:"version"`
		Type       string `json:"type"`
		RecordedAt int64  `json:"recorded_at"`
		Position   int64  `json:"position"`
		Payload    string `json:"payload"`
		Metadata   string `json:"metadata"`
		PrevHash   Hash   `json:"prev_hash"`
		Hash       Hash   `json:"hash"`
	}
	checkpointLine struct {
		Kind        string `json:"kind"` // "checkpoint"
		Events      int64  `json:"events"`
		Checkpoint  string `json:"checkpoint"`
		VerifierKey string `json:"verifier_key"`
	}
)

// WriteBundle writes the offline bundle of h.Tenant to w: the header line,
// one line per event of evs in the order given (all of the tenant's events,
// seq 1 onwards), and the line holding the signed checkpoint note and the
// verifier key vkey that signed it. The checkpoint must open with vkey and
// be the tenant's.
//
// The events are written as stored, even if their chain is broken, so that
// the bundle is evidence; VerifyBundle judges it. WriteBundle fails only on
// what it cannot encode (an event of another tenant, a string that is not
// UTF-8, a line over MaxBundleLine) or an error from evs or w, after which
// the output is incomplete and must be discarded.
func WriteBundle(w io.Writer, h BundleHeader, evs iter.Seq2[*events.Event, error], checkpoint []byte, vkey string) error {
	if err := checkTenant(h.Tenant); err != nil {
		return err
	}
	cp, err := OpenCheckpoint(checkpoint, vkey)
	if err != nil {
		return err
	}
	if cp.Tenant != h.Tenant {
		return fmt.Errorf("transparency: checkpoint is for tenant %q, bundle for %q", cp.Tenant, h.Tenant)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	writeLine := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("transparency: encoding bundle line: %w", err)
		}
		if len(b) > MaxBundleLine {
			return fmt.Errorf("transparency: bundle line of %d bytes is longer than %d", len(b), MaxBundleLine)
		}
		bw.Write(b)
		return bw.WriteByte('\n')
	}
	if err := writeLine(headerLine{Kind: "header", Format: BundleFormat, Tenant: h.Tenant, ExportedAt: h.ExportedAt.UTC()}); err != nil {
		return err
	}
	var n int64
	for e, err := range evs {
		if err != nil {
			return fmt.Errorf("transparency: reading events after %d: %w", n, err)
		}
		if e.Tenant != h.Tenant {
			return fmt.Errorf("transparency: event %s (seq %d) is of tenant %q, bundle of %q", e.ID, e.Seq, e.Tenant, h.Tenant)
		}
		for _, s := range [...]string{e.ID, e.Stream, e.Type} {
			if !utf8.ValidString(s) {
				return fmt.Errorf("transparency: event seq %d has a string field that is not UTF-8", e.Seq)
			}
		}
		if err := writeLine(newEventLine(e)); err != nil {
			return fmt.Errorf("transparency: event seq %d: %w", e.Seq, trimPrefix(err))
		}
		n++
	}
	if err := writeLine(checkpointLine{Kind: "checkpoint", Events: n, Checkpoint: string(checkpoint), VerifierKey: vkey}); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("transparency: writing bundle: %w", err)
	}
	return nil
}

func newEventLine(e *events.Event) eventLine {
	return eventLine{
		Kind: "event", Seq: e.Seq, ID: e.ID, Tenant: e.Tenant, Stream: e.Stream, Version: e.Version, Type: e.Type,
		RecordedAt: e.RecordedAt.UnixNano(), Position: e.Position,
		Payload:  base64.StdEncoding.EncodeToString(e.Payload),
		Metadata: base64.StdEncoding.EncodeToString(e.Metadata),
		PrevHash: Hash(e.PrevHash), Hash: Hash(e.Hash),
	}
}

// Report is the outcome of a successful VerifyBundle.
type Report struct {
	Tenant string
	// Events is the number of events in the bundle, every one of whose
	// chain hashes was recomputed.
	Events int64
	// Head is the chain hash of the last event.
	Head events.Hash
	// Checkpoint is the bundle's signed checkpoint, verified with the
	// trusted key; its root is the root of the first Checkpoint.Size
	// events. Events after those are chained but not yet signed.
	Checkpoint Checkpoint
	// Old is the older checkpoint given to VerifyBundle, verified and
	// consistent with the bundle; nil if none was given.
	Old *Checkpoint
	// ExportedAt is the header's export time, which nothing signs.
	ExportedAt time.Time
}

// BundleError reports where a bundle is bad: the 1-based line, and for an
// event line the tenant sequence number expected on it (line - 1).
type BundleError struct {
	Line int64
	Seq  int64
	Err  error
}

// Error returns "transparency: bundle line L (event seq S): what failed".
func (e *BundleError) Error() string {
	msg := strings.TrimPrefix(e.Err.Error(), "transparency: ")
	if e.Seq > 0 {
		return fmt.Sprintf("transparency: bundle line %d (event seq %d): %s", e.Line, e.Seq, msg)
	}
	return fmt.Sprintf("transparency: bundle line %d: %s", e.Line, msg)
}

// Unwrap returns the underlying error.
func (e *BundleError) Unwrap() error { return e.Err }

// VerifyBundle reads a bundle from r and verifies it with no server:
//
//   - every line is in canonical form, and the header names BundleFormat;
//   - every event's chain hash is recomputed and every link checked
//     (events.NewVerifier(false)), seq 1, 2, … in order, all of the
//     header's tenant, positions increasing;
//   - the checkpoint line's verifier key is exactly trustedKey, the key the
//     auditor trusts (the bundle's copy is informational; a different one
//     is refused), and the checkpoint's signature verifies with it;
//   - the Merkle root of the first Checkpoint.Size event hashes equals the
//     signed root (ErrFork otherwise), and the bundle has that many events
//     (ErrTruncated otherwise);
//   - if oldCheckpoint is not nil, it is a note signed by trustedKey for
//     the same tenant, the bundle has at least its size in events
//     (ErrTruncated otherwise), its root is the root of that many of the
//     bundle's events (ErrFork otherwise), and a consistency proof computed
//     locally links it to the bundle's checkpoint.
//
// An error about one line is a *BundleError naming the line and, for an
// event, its seq. Events are streamed; memory grows by 64 to 128 bytes per
// event, for the tree's stored hashes.
func VerifyBundle(r io.Reader, trustedKey string, oldCheckpoint []byte) (Report, error) {
	if _, err := note.NewVerifier(trustedKey); err != nil {
		return Report{}, fmt.Errorf("transparency: trusted verifier key is malformed: %w", err)
	}
	br := newBundleReader(r)
	h, err := br.header()
	if err != nil {
		return Report{}, err
	}
	c, cpLine, err := br.chain(h.Tenant)
	if err != nil {
		return Report{}, err
	}
	cp, err := br.checkpoint(cpLine, trustedKey, c)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Tenant: h.Tenant, Events: c.n, Head: c.head, Checkpoint: cp, ExportedAt: h.ExportedAt}
	if oldCheckpoint != nil {
		if rep.Old, err = verifyOld(oldCheckpoint, trustedKey, cp, c); err != nil {
			return Report{}, err
		}
	}
	return rep, nil
}

// bundleReader reads a bundle line by line, counting lines for errors.
type bundleReader struct {
	sc *bufio.Scanner
	// line is the 1-based number of the line last read, or tried: next
	// counts a line before reading it.
	line int64
}

// errUnterminated is the scanner's error for a last line without its
// newline.
var errUnterminated = errors.New("the last line does not end in a newline: the file is truncated")

func newBundleReader(r io.Reader) *bundleReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxBundleLine+1)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return 0, nil, errUnterminated
		}
		return 0, nil, nil
	})
	return &bundleReader{sc: sc}
}

// next returns the next line, newline excluded, valid until the next call;
// io.EOF after the last.
func (br *bundleReader) next() ([]byte, error) {
	br.line++
	if br.sc.Scan() {
		return br.sc.Bytes(), nil
	}
	switch err := br.sc.Err(); {
	case err == nil:
		return nil, io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		return nil, &BundleError{Line: br.line, Err: fmt.Errorf("line is longer than %d bytes", MaxBundleLine)}
	case err == errUnterminated:
		return nil, &BundleError{Line: br.line, Err: err}
	default:
		return nil, fmt.Errorf("transparency: reading bundle line %d: %w", br.line, err)
	}
}

// header reads and checks the header line.
func (br *bundleReader) header() (headerLine, error) {
	b, err := br.next()
	if err == io.EOF {
		return headerLine{}, errors.New("transparency: bundle is empty")
	}
	if err != nil {
		return headerLine{}, err
	}
	fail := func(err error) (headerLine, error) { return headerLine{}, &BundleError{Line: br.line, Err: err} }
	var h headerLine
	if err := decodeLine(b, &h); err != nil {
		return fail(fmt.Errorf("header: %w", err))
	}
	switch {
	case h.Kind != "header":
		return fail(fmt.Errorf("first line is of kind %q, want a header", h.Kind))
	case h.Format != BundleFormat:
		return fail(fmt.Errorf("unsupported bundle format %q, want %q", h.Format, BundleFormat))
	}
	if err := checkTenant(h.Tenant); err != nil {
		return fail(err)
	}
	if err := canonical(b, h); err != nil {
		return fail(fmt.Errorf("header: %w", err))
	}
	return h, nil
}

// bundleChain is the chain of a bundle's events read so far.
type bundleChain struct {
	tenant  string
	v       *events.Verifier
	tree    memTree
	lastPos int64
	// n is the number of events, head the chain hash of the last.
	n    int64
	head events.Hash
}

// chain reads the event lines of tenant's bundle, checking each event's
// chain hash and link and adding it to the Merkle tree, up to the
// checkpoint line, which it returns (valid until the next read).
func (br *bundleReader) chain(tenant string) (*bundleChain, []byte, error) {
	c := &bundleChain{tenant: tenant, v: events.NewVerifier(false)}
	for {
		b, err := br.next()
		if err == io.EOF {
			return nil, nil, &BundleError{Line: br.line - 1, Err: errors.New("the bundle ends without its checkpoint line: the file is truncated")}
		}
		if err != nil {
			return nil, nil, err
		}
		if bytes.HasPrefix(b, []byte(checkpointPrefix)) {
			return c, b, nil
		}
		e, err := parseEvent(b)
		if err == nil {
			err = c.add(&e)
		}
		if err != nil {
			return nil, nil, &BundleError{Line: br.line, Seq: br.line - 1, Err: fmt.Errorf("%v", err)}
		}
	}
}

// parseEvent parses an event line.
func parseEvent(b []byte) (events.Event, error) {
	if !bytes.HasPrefix(b, []byte(eventPrefix)) {
		return events.Event{}, fmt.Errorf("line is neither an event nor the checkpoint line (it does not start with %s)", eventPrefix)
	}
	el, err := parseEventLine(b)
	if err != nil {
		return events.Event{}, err
	}
	payload, ok := decodeBase64(el.Payload)
	if !ok {
		return events.Event{}, errors.New("payload is not canonical standard base64")
	}
	meta, ok := decodeBase64(el.Metadata)
	if !ok {
		return events.Event{}, errors.New("metadata is not canonical standard base64")
	}
	return events.Event{
		ID: el.ID, Tenant: el.Tenant, Stream: el.Stream, Version: el.Version, Type: el.Type, Payload: payload, Metadata: meta,
		RecordedAt: time.Unix(0, el.RecordedAt), Seq: el.Seq, Position: el.Position, PrevHash: events.Hash(el.PrevHash), Hash: events.Hash(el.Hash),
	}, nil
}

// add checks that e is of the bundle's tenant, at a higher position than
// the previous event, and the next link of the chain, and appends it to the
// tree.
func (c *bundleChain) add(e *events.Event) error {
	if e.Tenant != c.tenant {
		return fmt.Errorf("event is of tenant %q, the bundle of %q", e.Tenant, c.tenant)
	}
	if e.Position <= c.lastPos {
		return fmt.Errorf("position %d does not increase on the previous event's %d", e.Position, c.lastPos)
	}
	c.lastPos = e.Position
	if err := c.v.Check(e); err != nil {
		var ve *events.VerifyError
		if errors.As(err, &ve) {
			return errors.New(ve.Reason)
		}
		return err
	}
	if _, err := c.tree.append(e.Hash); err != nil {
		return err
	}
	c.n++
	c.head = e.Hash
	return nil
}

// checkpoint checks the checkpoint line b, which must be the bundle's last,
// and its signed checkpoint, against trustedKey and the events c.
func (br *bundleReader) checkpoint(b []byte, trustedKey string, c *bundleChain) (Checkpoint, error) {
	var cl checkpointLine
	if err := decodeLine(b, &cl); err != nil {
		return Checkpoint{}, &BundleError{Line: br.line, Err: fmt.Errorf("checkpoint line: %w", err)}
	}
	if err := canonical(b, cl); err != nil {
		return Checkpoint{}, &BundleError{Line: br.line, Err: fmt.Errorf("checkpoint line: %w", err)}
	}
	cpLine := br.line
	fail := func(err error) (Checkpoint, error) { return Checkpoint{}, &BundleError{Line: cpLine, Err: err} }
	if cl.Events != c.n {
		return fail(fmt.Errorf("the checkpoint line counts %d events, the bundle has %d: event lines were removed or added", cl.Events, c.n))
	}
	if cl.VerifierKey != trustedKey {
		return fail(fmt.Errorf("the bundle was exported with verifier key %q, not the trusted key %q", cl.VerifierKey, trustedKey))
	}
	cp, err := OpenCheckpoint([]byte(cl.Checkpoint), trustedKey)
	if err != nil {
		return fail(err)
	}
	if _, err := br.next(); err != io.EOF {
		if err != nil {
			return Checkpoint{}, err
		}
		return Checkpoint{}, &BundleError{Line: br.line, Err: errors.New("data after the checkpoint line")}
	}
	if err := c.signedBy(cp); err != nil {
		return fail(err)
	}
	return cp, nil
}

// signedBy checks that cp is a checkpoint of c's tenant whose root is that
// of c's first cp.Size events.
func (c *bundleChain) signedBy(cp Checkpoint) error {
	if cp.Tenant != c.tenant {
		return fmt.Errorf("the checkpoint is for tenant %q, the bundle for %q", cp.Tenant, c.tenant)
	}
	if cp.Size > c.n {
		return fmt.Errorf("%w: the checkpoint signs %d events, the bundle has only %d", ErrTruncated, cp.Size, c.n)
	}
	root, err := tlog.TreeHash(cp.Size, c.tree.hashes)
	if err != nil {
		return err
	}
	if root != cp.Root {
		return fmt.Errorf("%w: the Merkle root of the bundle's first %d events is %s, the signed checkpoint's is %s: the events are not the signed history",
			ErrFork, cp.Size, Hash(root), Hash(cp.Root))
	}
	return nil
}

// verifyOld opens an auditor's older checkpoint with trustedKey and checks
// it against the bundle's checkpoint cp and events c.
func verifyOld(oldCheckpoint []byte, trustedKey string, cp Checkpoint, c *bundleChain) (*Checkpoint, error) {
	old, err := OpenCheckpoint(oldCheckpoint, trustedKey)
	if err != nil {
		return nil, fmt.Errorf("transparency: old checkpoint: %w", trimPrefix(err))
	}
	if err := checkOld(old, cp, c.n, c.tree.hashes); err != nil {
		return nil, err
	}
	return &old, nil
}

// checkOld checks an auditor's older checkpoint against the bundle's n
// events (stored hashes hs) and its checkpoint cp.
func checkOld(old, cp Checkpoint, n int64, hs hashSlice) error {
	if old.Tenant != cp.Tenant {
		return fmt.Errorf("transparency: old checkpoint is for tenant %q, the bundle for %q", old.Tenant, cp.Tenant)
	}
	if old.Size > n {
		return fmt.Errorf("%w: the old checkpoint of %s signs %d events, the bundle has only %d: events were removed from the end of the log",
			ErrTruncated, old.Time.Format(timeLayout), old.Size, n)
	}
	root, err := tlog.TreeHash(old.Size, hs)
	if err != nil {
		return fmt.Errorf("transparency: old checkpoint: %w", err)
	}
	if root != old.Root {
		return fmt.Errorf("%w: the old checkpoint of %s signs root %s for %d events, the bundle's first %d events give %s: history was rewritten or the log forked",
			ErrFork, old.Time.Format(timeLayout), Hash(old.Root), old.Size, old.Size, Hash(root))
	}
	a, b := old, cp
	if a.Size > b.Size {
		a, b = b, a
	}
	var proof tlog.TreeProof
	if a.Size > 0 && a.Size < b.Size {
		if proof, err = tlog.ProveTree(b.Size, a.Size, hs); err != nil {
			return fmt.Errorf("transparency: old checkpoint: %w", err)
		}
	}
	if err := CheckConsistency(a, b, proof); err != nil {
		return fmt.Errorf("transparency: old checkpoint: %w", trimPrefix(err))
	}
	return nil
}

// decodeBase64 decodes padded standard base64 that is exactly what
// EncodeToString would write (StdEncoding alone skips newlines and ignores
// nonzero padding bits).
func decodeBase64(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	return b, err == nil && base64.StdEncoding.EncodedLen(len(b)) == len(s)
}

// decodeLine decodes one bundle line into v.
func decodeLine(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// canonical checks that b is exactly the encoding of v, so that one bundle
// has one spelling: no reordered, repeated, unknown or differently cased
// keys, no spaces, no escapes but encoding/json's.
func canonical(b []byte, v any) error {
	c, err := json.Marshal(v)
	if err != nil || !bytes.Equal(b, c) {
		return errNotCanonical
	}
	return nil
}

// trimPrefix returns err with its message's "transparency: " prefix
// removed, keeping it unwrappable.
func trimPrefix(err error) error {
	return prefixless{err}
}

type prefixless struct{ error }

func (p prefixless) Error() string { return strings.TrimPrefix(p.error.Error(), "transparency: ") }
func (p prefixless) Unwrap() error { return p.error }
