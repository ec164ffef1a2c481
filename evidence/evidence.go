// Package evidence builds the compliance evidence pack: eight sections of
// proof-of-control for one tenant and period, each anchored to a SOC 2
// trust services criterion, derived from the tenant's ledger events.
//
// Sections 1–7 are a pure function of the events, the chain verdict, the
// signed tree head and the webhook delivery figures, so a pack for a closed
// period can be rebuilt later and must come out byte for byte the same.
// Section 8 is the signature: the SHA-256 of the canonical JSON of
// sections 1–7 (encoding/json of the Sections struct, whose field order is
// fixed), signed with the server's Ed25519 checkpoint key as a signed note:
//
//	haldir.evidence/<tenant>
//	<since, RFC 3339>
//	<until, RFC 3339>
//	sha256 <hex digest>
//
// The manifest beside the sections answers "is this population complete?":
// the number of events of each type in the period and the tenant sequence
// range they span.
package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/transparency"
)

// Format names this pack layout.
const Format = "haldir-evidence/v1"

// Input is everything a pack is built from.
type Input struct {
	Tenant, TenantName string
	// Since and Until bound the period: Since <= recorded_at < Until.
	Since, Until time.Time
	// Events are all of the tenant's events, in sequence order. Events
	// before Since still count for state (keys, rules) at the period's
	// start.
	Events []events.Event
	Chain  ChainStatus
	// TreeHead is the newest signed checkpoint, if there is one.
	TreeHead *transparency.Checkpoint
	Webhooks WebhookStats
	// KEKVersion is the vault's current key-encryption key version.
	KEKVersion uint32
}

// ChainStatus is the verdict of verifying the tenant's hash chain.
type ChainStatus struct {
	Verified    bool   `json:"verified"`
	Checked     int64  `json:"entries_checked"`
	HeadHash    string `json:"head_hash,omitempty"`
	FirstBadSeq int64  `json:"first_bad_seq,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// WebhookStats are the outbound alerting figures of the period.
type WebhookStats struct {
	Registered int   `json:"registered"`
	Active     int   `json:"active"`
	Attempts   int64 `json:"attempts"`
	Delivered  int64 `json:"delivered"`
	Failed     int64 `json:"failed"`
}

// Pack is an evidence pack.
type Pack struct {
	Format      string    `json:"format"`
	GeneratedAt time.Time `json:"generated_at"`
	Sections    Sections  `json:"sections"`
	Manifest    Manifest  `json:"manifest"`
	Signature   Signature `json:"signature"`
}

// Sections are the eight signed sections.
type Sections struct {
	Identity      Identity      `json:"identity"`
	AccessControl AccessControl `json:"access_control"`
	Encryption    Encryption    `json:"encryption"`
	AuditTrail    AuditTrail    `json:"audit_trail"`
	Spend         Spend         `json:"spend_governance"`
	Approvals     Approvals     `json:"human_approvals"`
	Alerting      Alerting      `json:"outbound_alerting"`
	// Anomalies is absent from packs made before it existed, which
	// therefore still verify (their digest covers what they hold).
	Anomalies *Anomalies `json:"anomaly_detection,omitempty"`
}

// Identity is section 1.
type Identity struct {
	TenantID   string `json:"tenant_id"`
	TenantName string `json:"tenant_name"`
	Edition    string `json:"edition"`
	Since      string `json:"period_since"`
	Until      string `json:"period_until"`
}

// Key is an API key as the evidence lists it.
type Key struct {
	Prefix    string   `json:"prefix"`
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Wildcard  bool     `json:"wildcard"`
	CreatedAt string   `json:"created_at"`
	RevokedAt string   `json:"revoked_at,omitempty"`
}

// AccessControl is section 2 (CC6.1).
type AccessControl struct {
	Criterion       string `json:"soc2"`
	KeysActiveAtEnd int    `json:"keys_active_at_end"`
	WildcardKeys    int    `json:"wildcard_keys_active_at_end"`
	KeysCreated     int    `json:"keys_created_in_period"`
	KeysRevoked     int    `json:"keys_revoked_in_period"`
	Keys            []Key  `json:"keys"`
	SessionsCreated int64  `json:"sessions_created_in_period"`
	SessionsRevoked int64  `json:"sessions_revoked_in_period"`
	SessionsWithCap int64  `json:"sessions_with_spend_cap"`
	ScopeModel      string `json:"scope_model"`
	KeyStorage      string `json:"key_storage"`
}

// Encryption is section 3 (CC6.7).
type Encryption struct {
	Criterion       string `json:"soc2"`
	Scheme          string `json:"scheme"`
	AADBinding      string `json:"aad_binding"`
	KeyDerivation   string `json:"key_derivation"`
	KEKVersion      uint32 `json:"kek_version"`
	SecretsAtEnd    int    `json:"secrets_at_end"`
	VersionsStored  int64  `json:"versions_stored_in_period"`
	Reads           int64  `json:"reads_in_period"`
	ReadsRefused    int64  `json:"reads_refused_in_period"`
	CryptoShredded  int64  `json:"secrets_deleted_in_period"`
	PlaintextPolicy string `json:"plaintext_policy"`
}

// AuditTrail is section 4 (CC7.2).
type AuditTrail struct {
	Criterion      string                   `json:"soc2"`
	EntriesPeriod  int64                    `json:"entries_in_period"`
	EntriesTotal   int64                    `json:"entries_total"`
	Flagged        int64                    `json:"flagged_in_period"`
	Chain          ChainStatus              `json:"hash_chain"`
	ChainAlgorithm string                   `json:"chain_algorithm"`
	TreeHead       *transparency.Checkpoint `json:"signed_tree_head,omitempty"`
}

// Spend is section 5 (CC5.2).
type Spend struct {
	Criterion       string       `json:"soc2"`
	Authorized      int64        `json:"payments_authorized"`
	AuthorizedTotal domain.Money `json:"authorized_usd"`
	Denied          int64        `json:"payments_denied"`
	DeniedOverCap   int64        `json:"denied_over_budget"`
	LoggedCost      domain.Money `json:"logged_cost_usd"`
	Policy          string       `json:"policy"`
}

// Approvals is section 6 (CC8.1).
type Approvals struct {
	Criterion string `json:"soc2"`
	Rules     int    `json:"rules_at_end"`
	Requested int64  `json:"requested"`
	Approved  int64  `json:"approved"`
	Denied    int64  `json:"denied"`
	Expired   int64  `json:"expired"`
	Used      int64  `json:"used"`
	Policy    string `json:"policy"`
}

// Alerting is section 7 (CC7.3).
type Alerting struct {
	Criterion   string       `json:"soc2"`
	Webhooks    WebhookStats `json:"webhooks"`
	SuccessRate string       `json:"delivery_success_rate"`
	Signing     string       `json:"signing"`
}

// Anomalies is section 8 (CC7.2): the flags the detectors raised in the
// period, how many were acknowledged, and the kill switches pulled.
type Anomalies struct {
	Criterion    string           `json:"soc2"`
	Flagged      int64            `json:"flagged"`
	ByDetector   map[string]int64 `json:"by_detector"`
	BySeverity   map[string]int64 `json:"by_severity"`
	Acknowledged int64            `json:"acknowledged"`
	Kills        int64            `json:"kill_switches_pulled"`
	Lifted       int64            `json:"kill_switches_lifted"`
	// KilledAtEnd are the agents ("*" for the whole tenant) stopped at
	// the period's end.
	KilledAtEnd []string `json:"killed_at_end"`
	Policy      string   `json:"policy"`
}

// Manifest describes the population the pack covers.
type Manifest struct {
	EventCounts map[string]int64 `json:"event_counts"`
	Events      int64            `json:"events_in_period"`
	FirstSeq    int64            `json:"first_seq"`
	LastSeq     int64            `json:"last_seq"`
	Digest      string           `json:"sections_sha256"`
}

// Signature is section 9.
type Signature struct {
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"key_id"`
	Note      string `json:"signed_note"`
}

const rfc = time.RFC3339

func stamp(t time.Time) string { return t.UTC().Format(rfc) }

// Build derives the sections and manifest from in. It does not sign.
func Build(in Input) (Pack, error) {
	if !in.Since.Before(in.Until) {
		return Pack{}, domain.Invalid("until", "until must be after since")
	}
	h, err := historyOf(in)
	if err != nil {
		return Pack{}, err
	}
	logged := loggedActions(h)
	p := Pack{Format: Format, Sections: Sections{
		Identity:      identity(in),
		AccessControl: accessControl(h),
		Encryption:    encryption(h, in.KEKVersion),
		AuditTrail:    auditTrail(h, logged.flagged, in.Chain, in.TreeHead),
		Spend:         spend(h, logged.cost),
		Approvals:     approvals(h),
		Alerting:      alerting(in.Webhooks),
		Anomalies:     anomalies(h),
	}}
	p.Manifest = manifest(h)
	if p.Manifest.Digest, err = Digest(p.Sections); err != nil {
		return Pack{}, err
	}
	return p, nil
}

// history is what a pack counts: the tenant's events recorded before the
// period's end, in sequence order. All of them make up the state at the
// period's end (keys, secrets, rules); those recorded at or after since are
// the period's own.
type history struct {
	events []events.Event
	since  time.Time
}

// historyOf returns the events of in recorded before in.Until. It stops at
// the first event recorded at or after it, and refuses an event of another
// tenant before that.
func historyOf(in Input) (history, error) {
	h := history{events: in.Events, since: in.Since}
	for i := range in.Events {
		e := &in.Events[i]
		if e.Tenant != in.Tenant {
			return history{}, fmt.Errorf("evidence: event %s belongs to another tenant", e.ID)
		}
		if !e.RecordedAt.Before(in.Until) {
			h.events = in.Events[:i]
			break
		}
	}
	return h, nil
}

// all yields every event of h.
func (h history) all() iter.Seq[*events.Event] {
	return func(yield func(*events.Event) bool) {
		for i := range h.events {
			if !yield(&h.events[i]) {
				return
			}
		}
	}
}

// inPeriod reports whether e, one of h's events, was recorded in the period.
func (h history) inPeriod(e *events.Event) bool { return !e.RecordedAt.Before(h.since) }

// period yields the events of h recorded in the period.
func (h history) period() iter.Seq[*events.Event] {
	return func(yield func(*events.Event) bool) {
		for e := range h.all() {
			if h.inPeriod(e) && !yield(e) {
				return
			}
		}
	}
}

// logged sums the period's audit.logged events whose payload decodes.
type logged struct {
	cost    domain.Money // the cost the agents reported
	flagged int64        // how many the agents flagged
}

// loggedActions sums the period's audit.logged events. They are most of a
// history and two sections count them, so their payloads are decoded here,
// once.
func loggedActions(h history) logged {
	var l logged
	for e := range h.period() {
		if e.Type != domain.TypeAuditLogged {
			continue
		}
		var al domain.AuditLogged
		if json.Unmarshal(e.Payload, &al) == nil {
			l.cost += al.CostUSD
			if al.Flagged {
				l.flagged++
			}
		}
	}
	return l
}

// identity is section 1.
func identity(in Input) Identity {
	return Identity{TenantID: in.Tenant, TenantName: in.TenantName, Edition: "self-hosted", Since: stamp(in.Since), Until: stamp(in.Until)}
}

// accessControl is section 2: the API keys at the period's end and the
// sessions of the period.
func accessControl(h history) AccessControl {
	s := AccessControl{Criterion: "CC6.1",
		ScopeModel: "every route requires <resource>:<read|write>; a key cannot mint a broader key; session scopes are hierarchical and a sibling never grants",
		KeyStorage: "only the SHA-256 of each key is stored; keys are compared in constant time"}
	s.Keys, s.KeysCreated, s.KeysRevoked = apiKeys(h)
	for _, k := range s.Keys {
		if k.RevokedAt == "" {
			s.KeysActiveAtEnd++
			if k.Wildcard {
				s.WildcardKeys++
			}
		}
	}
	for e := range h.period() {
		switch e.Type {
		case domain.TypeSessionCreated:
			s.SessionsCreated++
			var sc domain.SessionCreated
			if json.Unmarshal(e.Payload, &sc) == nil && sc.SpendLimit > 0 {
				s.SessionsWithCap++
			}
		case domain.TypeSessionRevoked:
			s.SessionsRevoked++
		}
	}
	return s
}

// apiKeys returns the API keys as they stand at the period's end, in order
// of creation, and how many were created and revoked in the period.
func apiKeys(h history) (keys []Key, created, revoked int) {
	byPrefix := map[string]*Key{}
	var order []string
	for e := range h.all() {
		switch e.Type {
		case domain.TypeKeyCreated:
			var kc domain.KeyCreated
			if json.Unmarshal(e.Payload, &kc) != nil {
				continue
			}
			k := &Key{Prefix: kc.Prefix, Name: kc.Name, Scopes: kc.Scopes, CreatedAt: stamp(e.RecordedAt)}
			for _, sc := range kc.Scopes {
				k.Wildcard = k.Wildcard || sc == "*" || strings.HasSuffix(sc, ":*")
			}
			byPrefix[kc.Prefix] = k
			order = append(order, kc.Prefix)
			if h.inPeriod(e) {
				created++
			}
		case domain.TypeKeyRevoked:
			var kr domain.KeyRevoked
			if json.Unmarshal(e.Payload, &kr) != nil || byPrefix[kr.Prefix] == nil {
				continue
			}
			byPrefix[kr.Prefix].RevokedAt = stamp(e.RecordedAt)
			if h.inPeriod(e) {
				revoked++
			}
		}
	}
	for _, prefix := range order {
		keys = append(keys, *byPrefix[prefix])
	}
	return keys, created, revoked
}

// encryption is section 3: the secrets at the period's end and the
// period's secret operations.
func encryption(h history, kekVersion uint32) Encryption {
	s := Encryption{Criterion: "CC6.7", Scheme: "AES-256-GCM envelope encryption: one random data key per secret version, wrapped by a versioned key-encryption key",
		AADBinding:      "tenant, secret name and version, length-prefixed, on both the value and the wrapped data key",
		KeyDerivation:   "HKDF-SHA256 from HALDIR_ENCRYPTION_KEY per KEK version",
		KEKVersion:      kekVersion,
		PlaintextPolicy: "plaintext never enters the ledger, logs, errors or exports; deleting a secret destroys its data keys (crypto-shredding)"}
	secrets := map[string]bool{}
	for e := range h.all() {
		switch e.Type {
		case domain.TypeSecretStored:
			var sec domain.SecretStored
			if json.Unmarshal(e.Payload, &sec) == nil {
				secrets[sec.Name] = true
			}
		case domain.TypeSecretDeleted:
			var sec domain.SecretDeleted
			if json.Unmarshal(e.Payload, &sec) == nil {
				delete(secrets, sec.Name)
			}
		}
	}
	s.SecretsAtEnd = len(secrets)
	for e := range h.period() {
		switch e.Type {
		case domain.TypeSecretStored:
			s.VersionsStored++
		case domain.TypeSecretAccessed:
			s.Reads++
		case domain.TypeSecretAccessDenied:
			s.ReadsRefused++
		case domain.TypeSecretDeleted:
			s.CryptoShredded++
		}
	}
	return s
}

// auditTrail is section 4: the entries of the chain, the period's flagged
// ones (refused secret reads, denied payments and the flaggedLogs actions
// the agents flagged), and the chain's verdict and signed head as given.
func auditTrail(h history, flaggedLogs int64, chain ChainStatus, head *transparency.Checkpoint) AuditTrail {
	s := AuditTrail{Criterion: "CC7.2", Chain: chain, TreeHead: head, Flagged: flaggedLogs,
		ChainAlgorithm: "per-tenant SHA-256 chain over length-prefixed canonical event fields; RFC 6962 Merkle tree with Ed25519-signed checkpoints"}
	s.EntriesTotal = int64(len(h.events))
	for e := range h.period() {
		s.EntriesPeriod++
		switch e.Type {
		case domain.TypeSecretAccessDenied, domain.TypePaymentDenied:
			s.Flagged++
		}
	}
	return s
}

// spend is section 5: the period's payments, and loggedCost, the cost the
// agents reported.
func spend(h history, loggedCost domain.Money) Spend {
	s := Spend{Criterion: "CC5.2", LoggedCost: loggedCost,
		Policy: "spend is decided on the session's stream with optimistic concurrency; a session without a cap cannot spend"}
	for e := range h.period() {
		switch e.Type {
		case domain.TypePaymentAuthorized:
			var pa domain.PaymentAuthorized
			if json.Unmarshal(e.Payload, &pa) == nil {
				s.Authorized++
				s.AuthorizedTotal += pa.Amount
			}
		case domain.TypePaymentDenied:
			s.Denied++
			var pd domain.PaymentDenied
			if json.Unmarshal(e.Payload, &pd) == nil && pd.Code == domain.CodeBudgetExceeded {
				s.DeniedOverCap++
			}
		}
	}
	return s
}

// approvals is section 6: the rules at the period's end and the period's
// approval requests and their outcomes.
func approvals(h history) Approvals {
	s := Approvals{Criterion: "CC8.1", Policy: "approvals are bound to the exact call, single-use and expiring; silence is never consent"}
	for e := range h.all() {
		if e.Type == domain.TypeApprovalRuleAdded {
			s.Rules++
		}
	}
	for e := range h.period() {
		switch e.Type {
		case domain.TypeApprovalRequested:
			s.Requested++
		case domain.TypeApprovalApproved:
			s.Approved++
		case domain.TypeApprovalDenied:
			s.Denied++
		case domain.TypeApprovalExpired:
			s.Expired++
		case domain.TypeApprovalConsumed:
			s.Used++
		}
	}
	return s
}

// alerting is section 7: the webhook figures as given.
func alerting(w WebhookStats) Alerting {
	s := Alerting{Criterion: "CC7.3", Webhooks: w, Signing: "Standard Webhooks HMAC-SHA256 signatures"}
	if w.Attempts > 0 {
		s.SuccessRate = fmt.Sprintf("%.2f%%", 100*float64(w.Delivered)/float64(w.Attempts))
	} else {
		s.SuccessRate = "n/a (no deliveries in the period)"
	}
	return s
}

// anomalies is section 8: flags and kill switches from the ledger.
func anomalies(h history) *Anomalies {
	s := &Anomalies{Criterion: "CC7.2", ByDetector: map[string]int64{}, BySeverity: map[string]int64{}, KilledAtEnd: []string{},
		Policy: "detectors are projections of the ledger: each flag is a chained event naming its evidence, raised once; a kill switch stops an agent on every replica at once"}
	var kills domain.Kills
	for e := range h.all() {
		if e.Type == domain.TypeAgentKilled || e.Type == domain.TypeAgentUnkilled {
			if err := kills.Apply(e.Type, e.Payload, e.Version); err != nil {
				continue
			}
		}
	}
	for agent := range kills.Killed {
		if agent == "" {
			agent = "*"
		}
		s.KilledAtEnd = append(s.KilledAtEnd, agent)
	}
	sort.Strings(s.KilledAtEnd)
	for e := range h.period() {
		switch e.Type {
		case domain.TypeAnomalyFlagged:
			var f domain.AnomalyFlagged
			if json.Unmarshal(e.Payload, &f) == nil {
				s.Flagged++
				s.ByDetector[f.Detector]++
				s.BySeverity[f.Severity]++
			}
		case domain.TypeAnomalyAcknowledged:
			s.Acknowledged++
		case domain.TypeAgentKilled:
			s.Kills++
		case domain.TypeAgentUnkilled:
			s.Lifted++
		}
	}
	return s
}

// manifest counts the period's events by type and the sequence range they
// span. Its digest is set by Build once the sections are complete.
func manifest(h history) Manifest {
	m := Manifest{EventCounts: map[string]int64{}}
	for e := range h.period() {
		m.EventCounts[e.Type]++
		m.Events++
		if m.FirstSeq == 0 {
			m.FirstSeq = e.Seq
		}
		m.LastSeq = e.Seq
	}
	return m
}

// Digest returns the hex SHA-256 of the canonical JSON of sections.
func Digest(s Sections) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("evidence: encode sections: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// statement is the text the signature covers.
func statement(p *Pack) string {
	return fmt.Sprintf("haldir.evidence/%s\n%s\n%s\nsha256 %s\n", p.Sections.Identity.TenantID, p.Sections.Identity.Since, p.Sections.Identity.Until, p.Manifest.Digest)
}

// Sign signs the pack's digest, filling section 8.
func Sign(p *Pack, signer note.Signer, keyID string) error {
	msg, err := note.Sign(&note.Note{Text: statement(p)}, signer)
	if err != nil {
		return fmt.Errorf("evidence: sign: %w", err)
	}
	p.Signature = Signature{Algorithm: "Ed25519 signed note (golang.org/x/mod/sumdb/note)", KeyID: keyID, Note: string(msg)}
	return nil
}

// Errors of Verify.
var (
	ErrDigest    = errors.New("evidence: the sections do not match the signed digest (the pack was modified)")
	ErrSignature = errors.New("evidence: the signature does not verify with the trusted key")
)

// Verify checks a pack someone holds: the digest of its sections, and the
// signature over that digest with the trusted verifier key vkey.
func Verify(p *Pack, vkey string) error {
	digest, err := Digest(p.Sections)
	if err != nil {
		return err
	}
	if digest != p.Manifest.Digest {
		return ErrDigest
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fmt.Errorf("evidence: verifier key: %w", err)
	}
	n, err := note.Open([]byte(p.Signature.Note), note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if n.Text != statement(p) {
		return fmt.Errorf("%w: it signs another pack", ErrSignature)
	}
	return nil
}

// sortedTypes returns the manifest's event types in name order.
func (m Manifest) sortedTypes() []string {
	out := make([]string, 0, len(m.EventCounts))
	for t := range m.EventCounts {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
