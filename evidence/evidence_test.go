package evidence

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/transparency"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture is a small, fixed history: two keys (one revoked), sessions, a
// payment approved and one denied, a secret stored, read and deleted, an
// approval requested and approved.
func fixture(t *testing.T) Input {
	t.Helper()
	base := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var evs []events.Event
	add := func(at time.Duration, typ string, payload any) {
		b, err := json.Marshal(payload)
		if err != nil {
			t.Fatal(err)
		}
		e := events.Event{ID: "evt_" + string(rune('a'+len(evs))), Tenant: "tnt_acme", Stream: "s", Version: int64(len(evs) + 1), Type: typ,
			Payload: b, Metadata: []byte(`{}`), RecordedAt: base.Add(at), Seq: int64(len(evs) + 1), Position: int64(len(evs) + 1)}
		if len(evs) > 0 {
			e.PrevHash = evs[len(evs)-1].Hash
		}
		e.Hash = events.ComputeHash(&e)
		evs = append(evs, e)
	}
	add(-48*time.Hour, domain.TypeTenantCreated, domain.TenantCreated{TenantID: "tnt_acme", Name: "Acme | Corp"})
	add(-48*time.Hour, domain.TypeKeyCreated, domain.KeyCreated{Prefix: "hld_rootrootr", Name: "default", Scopes: domain.KeyScopes{"*"}})
	add(-47*time.Hour, domain.TypeApprovalRuleAdded, domain.ApprovalRule{RuleID: "rul_1", Type: domain.RuleSpendOver, Threshold: 100 * domain.Dollar})
	add(time.Hour, domain.TypeKeyCreated, domain.KeyCreated{Prefix: "hld_ciscisci", Name: "ci", Scopes: domain.KeyScopes{"audit:read"}})
	add(2*time.Hour, domain.TypeSessionCreated, domain.SessionCreated{SessionID: "ses_1", AgentID: "bot", Scopes: []string{"read"}, SpendLimit: 50 * domain.Dollar})
	add(3*time.Hour, domain.TypePaymentAuthorized, domain.PaymentAuthorized{SessionID: "ses_1", Amount: 2999 * domain.Cent})
	add(4*time.Hour, domain.TypePaymentDenied, domain.PaymentDenied{SessionID: "ses_1", Amount: 40 * domain.Dollar, Code: domain.CodeBudgetExceeded})
	add(5*time.Hour, domain.TypeAuditLogged, domain.AuditLogged{SessionID: "ses_1", Tool: "search", Action: "q", CostUSD: 15 * domain.Cent})
	add(6*time.Hour, domain.TypeSecretStored, domain.SecretStored{Name: "stripe_key", Version: 1, ScopeRequired: "read"})
	add(7*time.Hour, domain.TypeSecretAccessed, domain.SecretAccessed{Name: "stripe_key", Version: 1, SessionID: "ses_1", Via: "api"})
	add(8*time.Hour, domain.TypeSecretAccessDenied, domain.SecretAccessDenied{Name: "stripe_key", Code: domain.CodeSessionInvalid, Via: "api"})
	add(9*time.Hour, domain.TypeApprovalRequested, domain.ApprovalRequested{RequestID: "apr_1", SessionID: "ses_1", Amount: 150 * domain.Dollar})
	add(10*time.Hour, domain.TypeApprovalApproved, domain.ApprovalDecided{RequestID: "apr_1", DecidedBy: "alice"})
	add(11*time.Hour, domain.TypeKeyRevoked, domain.KeyRevoked{Prefix: "hld_ciscisci"})
	add(12*time.Hour, domain.TypeSecretDeleted, domain.SecretDeleted{Name: "stripe_key", Version: 1})
	add(13*time.Hour, domain.TypeAnomalyFlagged, domain.AnomalyFlagged{FlagID: "anm_1", Detector: domain.DetectorLoop, Severity: domain.SeverityHigh,
		AgentID: "bot", Tool: "search", Reason: "search called with the same arguments 21 times within 1m0s", Evidence: []string{"evt_h"}})
	add(14*time.Hour, domain.TypeAnomalyFlagged, domain.AnomalyFlagged{FlagID: "anm_2", Detector: domain.DetectorFirstUse, Severity: domain.SeverityLow,
		AgentID: "bot", Tool: "search", Reason: "first use of search", Evidence: []string{"evt_h"}})
	add(15*time.Hour, domain.TypeAnomalyAcknowledged, domain.AnomalyAcknowledged{FlagID: "anm_2", By: "hld_rootrootr"})
	add(16*time.Hour, domain.TypeAgentKilled, domain.AgentKill{AgentID: "bot", Reason: "looping", By: "hld_rootrootr"})
	add(60*24*time.Hour, domain.TypeSessionRevoked, domain.SessionRevoked{SessionID: "ses_1"}) // after the period
	last := evs[len(evs)-2]
	return Input{Tenant: "tnt_acme", TenantName: "Acme | Corp", Since: base, Until: base.Add(30 * 24 * time.Hour), Events: evs,
		Chain:    ChainStatus{Verified: true, Checked: int64(len(evs)), HeadHash: "4f2a" + "00000000000000000000000000000000000000000000000000000000000000"[:60]},
		TreeHead: &transparency.Checkpoint{Tenant: "tnt_acme", Size: last.Seq, Time: base.Add(30 * 24 * time.Hour)},
		Webhooks: WebhookStats{Registered: 2, Active: 2, Attempts: 541, Delivered: 540, Failed: 1}, KEKVersion: 2}
}

// testSigner returns a fixed Ed25519 note key, so the golden signature is
// stable (Ed25519 signatures are deterministic).
func testSigner(t *testing.T) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), "haldir-test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func build(t *testing.T) (Pack, string) {
	t.Helper()
	in := fixture(t)
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	p.GeneratedAt = in.Until.Add(time.Hour)
	s, vkey := testSigner(t)
	if err := Sign(&p, s, "haldir-test"); err != nil {
		t.Fatal(err)
	}
	return p, vkey
}

func TestBuild(t *testing.T) {
	p, _ := build(t)
	s := p.Sections
	got := map[string]any{
		"keys active": s.AccessControl.KeysActiveAtEnd, "wildcard": s.AccessControl.WildcardKeys,
		"keys created": s.AccessControl.KeysCreated, "keys revoked": s.AccessControl.KeysRevoked,
		"sessions": s.AccessControl.SessionsCreated, "sessions revoked": s.AccessControl.SessionsRevoked,
		"secrets at end": s.Encryption.SecretsAtEnd, "reads": s.Encryption.Reads, "refused": s.Encryption.ReadsRefused,
		"shredded": s.Encryption.CryptoShredded, "entries": s.AuditTrail.EntriesPeriod, "total": s.AuditTrail.EntriesTotal,
		"flagged": s.AuditTrail.Flagged, "authorized": s.Spend.AuthorizedTotal.String(), "denied over cap": s.Spend.DeniedOverCap,
		"logged": s.Spend.LoggedCost.String(), "rules": s.Approvals.Rules, "requested": s.Approvals.Requested, "approved": s.Approvals.Approved,
		"first seq": p.Manifest.FirstSeq, "last seq": p.Manifest.LastSeq, "events": p.Manifest.Events,
		"anomalies": s.Anomalies.Flagged, "by detector": s.Anomalies.ByDetector, "acked": s.Anomalies.Acknowledged,
		"kills": s.Anomalies.Kills, "killed at end": s.Anomalies.KilledAtEnd,
	}
	want := map[string]any{
		"keys active": 1, "wildcard": 1, "keys created": 1, "keys revoked": 1, "sessions": int64(1), "sessions revoked": int64(0),
		"secrets at end": 0, "reads": int64(1), "refused": int64(1), "shredded": int64(1), "entries": int64(16), "total": int64(19),
		"flagged": int64(2), "authorized": "29.99", "denied over cap": int64(1), "logged": "0.15", "rules": 1, "requested": int64(1),
		"approved": int64(1), "first seq": int64(4), "last seq": int64(19), "events": int64(16),
		"anomalies": int64(2), "by detector": map[string]int64{"first_use": 1, "loop": 1}, "acked": int64(1),
		"kills": int64(1), "killed at end": []string{"bot"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sections (-want +got):\n%s", diff)
	}
	if _, err := Build(Input{Tenant: "t", Since: time.Now(), Until: time.Now().Add(-time.Hour)}); err == nil {
		t.Error("an inverted period was accepted")
	}
	// Deterministic: the same input builds the same digest.
	p2, _ := build(t)
	if p.Manifest.Digest != p2.Manifest.Digest || p.Signature.Note != p2.Signature.Note {
		t.Error("building the same pack twice gave another digest or signature")
	}
}

func TestMarkdownGolden(t *testing.T) {
	p, _ := build(t)
	var b bytes.Buffer
	if err := WriteMarkdown(&b, &p); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "evidence.golden.md")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./evidence -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("Markdown pack differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestVerify(t *testing.T) {
	p, vkey := build(t)
	if err := Verify(&p, vkey); err != nil {
		t.Fatalf("Verify on an untouched pack: %v", err)
	}
	// A modified section.
	m := p
	m.Sections.Spend.AuthorizedTotal++
	if err := Verify(&m, vkey); !errors.Is(err, ErrDigest) {
		t.Errorf("modified section: %v, want ErrDigest", err)
	}
	// A modified section with the digest recomputed to match.
	m.Manifest.Digest, _ = Digest(m.Sections)
	if err := Verify(&m, vkey); !errors.Is(err, ErrSignature) {
		t.Errorf("modified section with a fresh digest: %v, want ErrSignature", err)
	}
	// Another key.
	_, other, _ := note.GenerateKey(nil, "someone")
	if err := Verify(&p, other); !errors.Is(err, ErrSignature) {
		t.Errorf("untrusted key: %v, want ErrSignature", err)
	}
	// Every single-byte change of the signed note fails.
	for i := range len(p.Signature.Note) {
		q := p
		b := []byte(p.Signature.Note)
		b[i] ^= 0x01
		q.Signature.Note = string(b)
		if Verify(&q, vkey) == nil {
			t.Fatalf("flipping byte %d of the signed note still verified", i)
		}
	}
	// The JSON round trip keeps the pack verifiable.
	raw, _ := json.Marshal(p)
	var back Pack
	if err := json.Unmarshal(raw, &back); err != nil || Verify(&back, vkey) != nil {
		t.Errorf("pack does not verify after a JSON round trip: %v", err)
	}
}

func TestScore(t *testing.T) {
	p, _ := build(t)
	sc := Score(&p)
	if sc.Score < 0 || sc.Score > 100 || len(sc.Checks) < 6 {
		t.Fatalf("score %+v", sc)
	}
	broken := p
	broken.Sections.AuditTrail.Chain.Verified = false
	if b := Score(&broken); b.Score >= sc.Score {
		t.Errorf("a broken chain did not lower the score: %d vs %d", b.Score, sc.Score)
	}
}

// TestPacksWithoutTheAnomalySectionStillVerify: a pack made before section
// 8 existed holds no "anomaly_detection"; its digest and signature still
// check out once read back.
func TestPacksWithoutTheAnomalySectionStillVerify(t *testing.T) {
	p, vkey := build(t)
	p.Sections.Anomalies = nil
	var err error
	if p.Manifest.Digest, err = Digest(p.Sections); err != nil {
		t.Fatal(err)
	}
	s, _ := testSigner(t)
	if err := Sign(&p, s, "haldir-test"); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("anomaly_detection")) {
		t.Fatal("an old-format pack carries the anomaly section")
	}
	var back Pack
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := Verify(&back, vkey); err != nil {
		t.Errorf("an old-format pack no longer verifies: %v", err)
	}
}
