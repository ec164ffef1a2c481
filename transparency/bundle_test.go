package transparency

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/events"
)

// bundleOf writes the bundle of evs with a checkpoint of the first size
// events signed by skey.
func bundleOf(t testing.TB, skey, vkey, tenant string, evs []events.Event, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	cp := signedCheckpoint(t, skey, storeOf(t, evs), tenant, size, testTime.Add(time.Hour))
	if err := WriteBundle(&buf, BundleHeader{Tenant: tenant, ExportedAt: testTime.Add(2 * time.Hour)}, seqOf(evs), cp, vkey); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBundleRoundTrip(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	evs := chain("ten_b", 25, "a")
	b := bundleOf(t, skey, vkey, "ten_b", evs, 25)
	rep, err := VerifyBundle(bytes.NewReader(b), vkey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tenant != "ten_b" || rep.Events != 25 || rep.Head != evs[24].Hash || rep.Checkpoint.Size != 25 || rep.Old != nil ||
		!rep.ExportedAt.Equal(testTime.Add(2*time.Hour)) || !rep.Checkpoint.Time.Equal(testTime.Add(time.Hour)) {
		t.Fatalf("report %+v", rep)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) != 28 || lines[27] != "" {
		t.Fatalf("%d lines", len(lines))
	}
	if want := `{"kind":"header","format":"haldir-bundle/v1","tenant":"ten_b","exported_at":"2025-01-02T05:04:05Z"}`; lines[0] != want {
		t.Fatalf("header\n%s\nwant\n%s", lines[0], want)
	}
	e := &evs[4] // the one with an empty payload
	want := fmt.Sprintf(`{"kind":"event","seq":5,"id":"evt_a0005","tenant":"ten_b","stream":"session/ses_1","version":2,"type":"audit.logged","recorded_at":%d,"position":11,"payload":"","metadata":"%s","prev_hash":"%x","hash":"%x"}`,
		e.RecordedAt.UnixNano(), "eyJhY3RvciI6ImhrX3Rlc3QiLCJhZ2VudF9pZCI6ImFnZW50LTEifQ==", e.PrevHash[:], e.Hash[:])
	if lines[5] != want {
		t.Fatalf("event line\n%s\nwant\n%s", lines[5], want)
	}
	if !strings.HasPrefix(lines[26], `{"kind":"checkpoint","events":25,"checkpoint":"haldir.ledger/ten_b\n25\n`) ||
		!strings.HasSuffix(lines[26], `","verifier_key":"`+vkey+`"}`) {
		t.Fatalf("checkpoint line %s", lines[26])
	}
	// An old checkpoint of the same history verifies as consistent.
	old := signedCheckpoint(t, skey, storeOf(t, evs), "ten_b", 9, testTime)
	rep, err = VerifyBundle(bytes.NewReader(b), vkey, old)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Old == nil || rep.Old.Size != 9 {
		t.Fatalf("old checkpoint in report: %+v", rep.Old)
	}
}

func TestBundleEdges(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	evs := chain("ten_b", 25, "a")
	s := storeOf(t, evs)

	// Events after the checkpoint are chained but unsigned.
	rep, err := VerifyBundle(bytes.NewReader(bundleOf(t, skey, vkey, "ten_b", evs, 20)), vkey, nil)
	if err != nil || rep.Events != 25 || rep.Checkpoint.Size != 20 {
		t.Fatalf("unsigned tail: %+v, %v", rep, err)
	}
	// An old checkpoint larger than the bundle's, within its events.
	rep, err = VerifyBundle(bytes.NewReader(bundleOf(t, skey, vkey, "ten_b", evs, 20)), vkey, signedCheckpoint(t, skey, s, "ten_b", 23, testTime))
	if err != nil || rep.Old.Size != 23 {
		t.Fatalf("old checkpoint ahead of the bundle's: %+v, %v", rep, err)
	}
	// A tenant with no events.
	rep, err = VerifyBundle(bytes.NewReader(bundleOf(t, skey, vkey, "ten_b", nil, 0)), vkey, signedCheckpoint(t, skey, s, "ten_b", 0, testTime))
	if err != nil || rep.Events != 0 || rep.Checkpoint.Root != EmptyRoot() {
		t.Fatalf("empty bundle: %+v, %v", rep, err)
	}
}

// flipErr verifies a bundle that must fail, and returns its *BundleError.
func flipErr(t *testing.T, b []byte, vkey, desc string) *BundleError {
	t.Helper()
	_, err := VerifyBundle(bytes.NewReader(b), vkey, nil)
	if err == nil {
		t.Fatalf("%s: bundle verified", desc)
	}
	var be *BundleError
	if !errors.As(err, &be) {
		t.Fatalf("%s: error %v is not a *BundleError", desc, err)
	}
	return be
}

// TestBundleEveryFlippedByte changes every byte of every line, four ways
// each (XOR 0x01, 0x02, 0x20 and 0x80: digits, letters, case, UTF-8), and
// checks that verification fails naming the line, and for an event line
// the event's seq. (A header changed to name another tenant fails at the
// first event, whose tenant differs.)
//
// The exceptions are two values nothing signs, as documented: an event's
// position, which the chain hash does not cover (events.ComputeHash), so
// that a change keeping positions increasing goes unnoticed; and the
// header's exported_at.
func TestBundleEveryFlippedByte(t *testing.T) {
	t.Parallel()
	skey, vkey := testKey(t, "haldir.example", 7)
	evs := chain("ten_b", 6, "a")
	b := bundleOf(t, skey, vkey, "ten_b", evs, 6)
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, nil); err != nil {
		t.Fatal(err)
	}
	var start int
	flips := 0
	for line := int64(1); start < len(b); line++ {
		end := start + bytes.IndexByte(b[start:], '\n') + 1
		seq := line - 1
		if line == 1 || end == len(b) {
			seq = 0
		}
		// Unauthenticated values, skipped: see below.
		skipStart, skipEnd := -1, -1
		for _, key := range []string{`"position":`, `"exported_at":`} {
			if i := bytes.Index(b[start:end], []byte(key)); i >= 0 {
				skipStart = start + i + len(key)
				skipEnd = skipStart + bytes.IndexAny(b[skipStart:], ",}")
			}
		}
		for i := start; i < end; i++ {
			if skipStart <= i && i < skipEnd {
				continue
			}
			for _, mask := range []byte{0x01, 0x02, 0x20, 0x80} {
				b[i] ^= mask
				desc := fmt.Sprintf("line %d byte %d (%q→%q)", line, i-start, b[i]^mask, b[i])
				be := flipErr(t, b, vkey, desc)
				b[i] ^= mask
				flips++
				// A line whose newline is changed runs into the next one (or
				// ends the file unterminated): the error still names it. A
				// header naming another tenant is self-consistent, and the
				// error names the first event, of the right tenant.
				if be.Line != line && line != 1 {
					t.Fatalf("%s: error names line %d: %v", desc, be.Line, be)
				}
				if seq > 0 && be.Seq != seq {
					t.Fatalf("%s: error names seq %d, want %d: %v", desc, be.Seq, seq, be)
				}
				if seq > 0 && !strings.Contains(be.Error(), fmt.Sprintf("(event seq %d)", seq)) {
					t.Fatalf("%s: message %q does not name the seq", desc, be)
				}
			}
		}
		start = end
	}
	t.Logf("%d flipped bytes detected", flips)

	// Positions must still increase.
	bad := bytes.Replace(b, []byte(`"position":9,`), []byte(`"position":4,`), 1)
	if be := flipErr(t, bad, vkey, "decreasing position"); be.Seq != 4 || !strings.Contains(be.Error(), "position 4 does not increase") {
		t.Fatalf("decreasing position: %v", be)
	}
}

// TestBundleEveryTruncation cuts the file at every byte: all must fail.
func TestBundleEveryTruncation(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	b := bundleOf(t, skey, vkey, "ten_b", chain("ten_b", 4, "a"), 4)
	for i := range b {
		if _, err := VerifyBundle(bytes.NewReader(b[:i]), vkey, nil); err == nil {
			t.Fatalf("bundle cut at byte %d of %d verified", i, len(b))
		}
	}
	if _, err := VerifyBundle(bytes.NewReader(append(bytes.Clone(b), "{}\n"...)), vkey, nil); err == nil || !strings.Contains(err.Error(), "data after the checkpoint line") {
		t.Fatalf("trailing line: %v", err)
	}
}

// TestBundleAttacks plays a server that holds the signing key and rewrites
// or truncates its ledger, re-signing checkpoints to match: the bundle
// verifies on its own, and only an older checkpoint the auditor kept
// exposes it.
func TestBundleAttacks(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	askey, avkey := testKey(t, "attacker.example", 99)
	orig := chain("ten_b", 25, "a")
	origStore := storeOf(t, orig)
	old15 := signedCheckpoint(t, skey, origStore, "ten_b", 15, testTime)
	old25 := signedCheckpoint(t, skey, origStore, "ten_b", 25, testTime)
	old9 := signedCheckpoint(t, skey, origStore, "ten_b", 9, testTime)

	// Truncation: the last three events deleted, a new checkpoint signed.
	short := orig[:22]
	b := bundleOf(t, skey, vkey, "ten_b", short, 22)
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, nil); err != nil {
		t.Fatalf("truncated bundle alone: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, old25); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "signs 25 events, the bundle has only 22") {
		t.Errorf("truncated log against an old checkpoint: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, old15); err != nil {
		t.Errorf("truncated log against an older, shorter checkpoint: %v", err)
	}

	// Rewrite: event 10's payload changed, the chain and tree recomputed.
	forged := append([]events.Event(nil), orig...)
	forged[9].Payload = []byte(`{"action":"nothing to see"}`)
	for i := 9; i < len(forged); i++ {
		if i > 0 {
			forged[i].PrevHash = forged[i-1].Hash
		}
		forged[i].Hash = events.ComputeHash(&forged[i])
	}
	b = bundleOf(t, skey, vkey, "ten_b", forged, 25)
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, nil); err != nil {
		t.Fatalf("rewritten bundle alone: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, old15); !errors.Is(err, ErrFork) || !strings.Contains(err.Error(), "history was rewritten") {
		t.Errorf("rewritten log against an old checkpoint: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, old25); !errors.Is(err, ErrFork) {
		t.Errorf("rewritten log against an old checkpoint of the same size: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, old9); err != nil {
		t.Errorf("rewrite after an old checkpoint's events is consistent with it: %v", err)
	}

	// Without re-signing: the old checkpoint travels with changed events.
	var buf bytes.Buffer
	if err := WriteBundle(&buf, BundleHeader{Tenant: "ten_b"}, seqOf(forged), old25, vkey); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyBundle(&buf, vkey, nil); !errors.Is(err, ErrFork) || !strings.Contains(err.Error(), "the events are not the signed history") {
		t.Errorf("rewritten events under the original checkpoint: %v", err)
	}
	buf.Reset()
	if err := WriteBundle(&buf, BundleHeader{Tenant: "ten_b"}, seqOf(short), old25, vkey); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyBundle(&buf, vkey, nil); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "signs 25 events, the bundle has only 22") {
		t.Errorf("events cut under the original checkpoint: %v", err)
	}

	// Keys: a bundle made with another key, declared or not.
	b = bundleOf(t, askey, avkey, "ten_b", orig, 25)
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, nil); err == nil || !strings.Contains(err.Error(), "not the trusted key") {
		t.Errorf("bundle of another key: %v", err)
	}
	b = bytes.Replace(b, []byte(`"verifier_key":"`+avkey), []byte(`"verifier_key":"`+vkey), 1)
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, nil); err == nil || !strings.Contains(err.Error(), "not signed by key haldir.example") {
		t.Errorf("bundle of another key, declaring the trusted key: %v", err)
	}
	b = bundleOf(t, skey, vkey, "ten_b", orig, 25)
	if _, err := VerifyBundle(bytes.NewReader(b), avkey, nil); err == nil {
		t.Error("bundle verified with the attacker's key as trusted")
	}
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, signedCheckpoint(t, askey, origStore, "ten_b", 9, testTime)); err == nil || !strings.Contains(err.Error(), "old checkpoint") {
		t.Errorf("old checkpoint of another key: %v", err)
	}
	otherTenant := signedCheckpoint(t, skey, storeOf(t, chain("ten_c", 9, "a")), "ten_c", 9, testTime)
	if _, err := VerifyBundle(bytes.NewReader(b), vkey, otherTenant); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Errorf("old checkpoint of another tenant: %v", err)
	}
	if _, err := VerifyBundle(bytes.NewReader(b), "not a key", nil); err == nil || !strings.Contains(err.Error(), "trusted verifier key is malformed") {
		t.Errorf("malformed trusted key: %v", err)
	}

	// Events of another tenant spliced in, with their own valid chain.
	spliced := bytes.Replace(bundleOf(t, skey, vkey, "ten_b", orig, 25), []byte(`"tenant":"ten_b","stream"`), []byte(`"tenant":"ten_c","stream"`), 1)
	if be := flipErr(t, spliced, vkey, "tenant"); be.Seq != 1 {
		t.Errorf("event of another tenant: %v", be)
	}
}

func TestWriteBundleRefuses(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	_, avkey := testKey(t, "attacker.example", 99)
	evs := chain("ten_b", 5, "a")
	cp := signedCheckpoint(t, skey, storeOf(t, evs), "ten_b", 5, testTime)
	w := func(h BundleHeader, it iter.Seq2[*events.Event, error], cp []byte, vkey string) error {
		return WriteBundle(&bytes.Buffer{}, h, it, cp, vkey)
	}
	if err := w(BundleHeader{Tenant: "ten_b"}, seqOf(evs), cp, vkey); err != nil {
		t.Fatal(err)
	}
	if err := w(BundleHeader{Tenant: "ten_c"}, seqOf(evs), cp, vkey); err == nil {
		t.Error("checkpoint of another tenant written")
	}
	if err := w(BundleHeader{Tenant: "ten_b"}, seqOf(evs), cp, avkey); err == nil {
		t.Error("checkpoint with the wrong key written")
	}
	if err := w(BundleHeader{Tenant: ""}, seqOf(evs), cp, vkey); err == nil {
		t.Error("bundle without tenant written")
	}
	bad := chain("ten_b", 5, "a")
	bad[2].Stream = "s\xff"
	if err := w(BundleHeader{Tenant: "ten_b"}, seqOf(bad), cp, vkey); err == nil || !strings.Contains(err.Error(), "seq 3") {
		t.Errorf("invalid UTF-8: %v", err)
	}
	mixed := append(chain("ten_b", 2, "a"), chain("ten_c", 1, "a")...)
	if err := w(BundleHeader{Tenant: "ten_b"}, seqOf(mixed), cp, vkey); err == nil {
		t.Error("event of another tenant written")
	}
	boom := errors.New("boom")
	failing := func(yield func(*events.Event, error) bool) { yield(nil, boom) }
	if err := w(BundleHeader{Tenant: "ten_b"}, failing, cp, vkey); !errors.Is(err, boom) {
		t.Errorf("iterator error: %v", err)
	}
	big := chain("ten_b", 1, "a")
	big[0].Payload = make([]byte, MaxBundleLine)
	if err := w(BundleHeader{Tenant: "ten_b"}, seqOf(big), cp, vkey); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("oversized event: %v", err)
	}
}

// TestBundleBrokenChainIsEvidence checks that WriteBundle writes a broken
// chain as stored, and VerifyBundle names the first bad event.
func TestBundleBrokenChainIsEvidence(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	evs := chain("ten_b", 8, "a")
	cp := signedCheckpoint(t, skey, storeOf(t, evs), "ten_b", 8, testTime)
	for _, tc := range []struct {
		desc   string
		f      func([]events.Event) []events.Event
		seq    int64
		reason string
	}{
		{"payload changed", func(e []events.Event) []events.Event { e[3].Payload = []byte("{}"); return e }, 4, "does not match the event's content"},
		{"event deleted", func(e []events.Event) []events.Event { return append(e[:5:5], e[6:]...) }, 6, "tenant sequence 7 found where 6 was expected"},
		{"events swapped", func(e []events.Event) []events.Event { e[1], e[2] = e[2], e[1]; return e }, 2, "tenant sequence 3 found where 2 was expected"},
		{"prev hash changed", func(e []events.Event) []events.Event { e[6].PrevHash[0] ^= 1; return e }, 7, "previous hash"},
		{"recorded_at changed", func(e []events.Event) []events.Event { e[7].RecordedAt = e[7].RecordedAt.Add(1); return e }, 8, "does not match"},
	} {
		var buf bytes.Buffer
		if err := WriteBundle(&buf, BundleHeader{Tenant: "ten_b"}, seqOf(tc.f(chain("ten_b", 8, "a"))), cp, vkey); err != nil {
			t.Fatalf("%s: %v", tc.desc, err)
		}
		be := flipErr(t, buf.Bytes(), vkey, tc.desc)
		if be.Seq != tc.seq || be.Line != tc.seq+1 || !strings.Contains(be.Error(), tc.reason) {
			t.Errorf("%s: %v", tc.desc, be)
		}
	}
}

func TestBundleFormatErrors(t *testing.T) {
	skey, vkey := testKey(t, "haldir.example", 7)
	good := string(bundleOf(t, skey, vkey, "ten_b", chain("ten_b", 2, "a"), 2))
	for _, tc := range []struct{ desc, bundle, want string }{
		{"empty", "", "bundle is empty"},
		{"other format", strings.Replace(good, "haldir-bundle/v1", "haldir-bundle/v2", 1), `unsupported bundle format "haldir-bundle/v2"`},
		{"no header", good[strings.IndexByte(good, '\n')+1:], "want a header"},
		{"spaced JSON", strings.Replace(good, `{"kind":"header",`, `{"kind": "header",`, 1), "not in canonical form"},
		{"unknown field", strings.Replace(good, `"tenant":"ten_b","exported_at"`, `"tenant":"ten_b","x":1,"exported_at"`, 1), "not in canonical form"},
		{"CRLF", strings.Replace(good, "\n", "\r\n", 1), "line 1"},
		{"no trailer", good[:strings.LastIndex(good[:len(good)-1], "\n")+1], "without its checkpoint line"},
		{"long line", good[:strings.IndexByte(good, '\n')+1] + strings.Repeat("x", MaxBundleLine+1) + "\n", "longer than"},
		{"payload not base64", strings.Replace(good, `"payload":"`, `"payload":"*`, 1), "payload is not canonical standard base64"},
		{"payload newline", strings.Replace(good, `"payload":"`, `"payload":"\n`, 1), "payload is not canonical standard base64"},
		{"count", strings.Replace(good, `{"kind":"checkpoint","events":2`, `{"kind":"checkpoint","events":3`, 1), "counts 3 events, the bundle has 2"},
	} {
		_, err := VerifyBundle(strings.NewReader(tc.bundle), vkey, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.desc, err, tc.want)
		} else if !strings.HasPrefix(err.Error(), "transparency: ") {
			t.Errorf("%s: %q lacks the package prefix", tc.desc, err)
		}
	}
}
