package projections

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/projections/views"
)

// AnomalyGroupName names the detectors' projection group.
const AnomalyGroupName = "anomalies"

// AnomalyGroup runs the detectors, with defaults for tenants that have not
// set their own. It is its own group, so that rebuilding the core read
// models never re-runs them; a rebuild of this group raises the same flags
// again, which the ledger refuses as duplicates (their ids are derived
// from their evidence, domain.FlagID).
func AnomalyGroup(defaults domain.AnomalySettings) Group {
	return Group{Name: AnomalyGroupName, Handlers: []Handler{Detectors{Defaults: defaults}}, Async: true}
}

// Detectors watches agent activity and raises anomaly flags. A flag is
// written to anomaly_outbox in the projection's transaction; a worker
// appends it to the ledger (FlagOutbox). Every detector reads only the
// ledger's events and the settings recorded before them, so a replay
// raises exactly the same flags.
type Detectors struct {
	// Defaults apply to a tenant until it sets its own.
	Defaults domain.AnomalySettings
}

// Tables implements Handler. The outbox is not among them: it is never
// rebuilt.
func (Detectors) Tables() []string {
	return []string{"anomaly_settings", "anomaly_window", "anomaly_window_sums", "anomaly_seen"}
}

// activity is what the detectors read from one event.
type activity struct {
	agent, session, tool string
	loopKey              string       // "" when the event is not a call
	spend                domain.Money // spend it adds
	denial               bool
	active               bool // the agent did something (off-hours)
}

func activityOf(e *events.Event) (activity, error) {
	m := e.Meta()
	a := activity{agent: m.AgentID, session: m.SessionID}
	switch e.Type {
	case domain.TypeToolCallAllowed:
		p, err := decode[domain.ToolCallAllowed](e)
		if err != nil {
			return a, err
		}
		a.agent, a.session, a.tool, a.active = p.AgentID, p.SessionID, p.Tool, true
		a.loopKey = subject(p.Tool, p.ArgsHash)
	case domain.TypeAuditLogged:
		p, err := decode[domain.AuditLogged](e)
		if err != nil {
			return a, err
		}
		sum := sha256.Sum256(p.Details)
		a.agent, a.session, a.tool, a.spend, a.active = p.AgentID, p.SessionID, p.Tool, p.CostUSD, true
		a.loopKey = subject(p.Tool, p.Action, hex.EncodeToString(sum[:]))
	case domain.TypePaymentAuthorized:
		p, err := decode[domain.PaymentAuthorized](e)
		if err != nil {
			return a, err
		}
		a.agent, a.session, a.spend, a.active = p.AgentID, p.SessionID, p.Amount, true
	case domain.TypeToolCallDenied, domain.TypePaymentDenied, domain.TypeSecretAccessDenied:
		a.denial = a.session != ""
	}
	return a, nil
}

// subject names what a detector counts, from length-prefixed parts: any
// agent id or tool name, bounded in length and safe in any column.
func subject(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Apply implements Handler.
func (d Detectors) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	if strings.HasPrefix(e.Tenant, "_") {
		return nil
	}
	cached := Batch(tx, "anomaly-settings", func() map[string]domain.AnomalySettings { return map[string]domain.AnomalySettings{} })
	if e.Type == domain.TypeAnomalySettingsChanged {
		delete(cached, e.Tenant)
		_, err := tx.Exec(ctx, `INSERT INTO {anomaly_settings} (tenant_id, settings) VALUES (?, ?)
ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings`, e.Tenant, string(e.Payload))
		return err
	}
	s, ok := cached[e.Tenant]
	if !ok {
		var err error
		if s, err = d.settings(ctx, tx, e.Tenant); err != nil {
			return err
		}
		cached[e.Tenant] = s
	}
	if s.Off() {
		return nil
	}
	act, err := activityOf(e)
	if err != nil || !act.active && !act.denial || act.agent == "" && !act.denial {
		return err // nothing a detector counts
	}
	var flags []domain.AnomalyFlagged
	raise := func(f domain.AnomalyFlagged, err error) error {
		if err == nil && f.Detector != "" {
			flags = append(flags, f)
		}
		return err
	}
	if act.loopKey != "" && s.LoopCalls > 0 {
		err = raise(d.count(ctx, tx, e, domain.DetectorLoop, subject(act.agent, act.loopKey), s.LoopCalls, time.Duration(s.LoopWindow), func(n int) domain.AnomalyFlagged {
			return domain.AnomalyFlagged{Severity: domain.SeverityHigh, Tool: act.tool, Reason: domain.FlagReason(domain.DetectorLoop, n, time.Duration(s.LoopWindow), act.tool)}
		}))
	}
	if err == nil && act.tool != "" && s.FirstUse {
		err = raise(d.first(ctx, tx, e, domain.DetectorFirstUse, subject(act.agent, act.tool), domain.AnomalyFlagged{
			Severity: domain.SeverityLow, Tool: act.tool, Reason: domain.FlagReason(domain.DetectorFirstUse, 0, 0, act.tool)}))
	}
	if err == nil && act.denial && s.Denials > 0 {
		err = raise(d.count(ctx, tx, e, domain.DetectorDenials, act.session, s.Denials, time.Duration(s.DenialWindow), func(n int) domain.AnomalyFlagged {
			return domain.AnomalyFlagged{Severity: domain.SeverityHigh, Reason: domain.FlagReason(domain.DetectorDenials, n, time.Duration(s.DenialWindow), act.session)}
		}))
	}
	if err == nil && act.spend > 0 && s.Spend > 0 {
		err = raise(d.spend(ctx, tx, e, act, s))
	}
	if err == nil && act.active && s.Hours && s.OffHours(e.RecordedAt) {
		day := s.LocalDay(e.RecordedAt)
		err = raise(d.first(ctx, tx, e, domain.DetectorOffHours, subject(act.agent, day), domain.AnomalyFlagged{
			Severity: domain.SeverityMedium, Tool: act.tool, Reason: domain.FlagReason(domain.DetectorOffHours, 0, 0, fmt.Sprintf("%s, %02d:00-%02d:00 %s", day, s.StartHour, s.EndHour, s.TimeZone))}))
	}
	if err != nil {
		return err
	}
	for _, f := range flags {
		f.AgentID, f.SessionID = act.agent, act.session
		f.FlagID = domain.FlagID(e.Tenant, f.Detector, f.Evidence)
		if err := outbox(ctx, tx, e.Tenant, f); err != nil {
			return err
		}
	}
	return nil
}

// count adds e to the detector's window for subject and raises a flag when
// the window first holds more than limit events: the event that crosses
// the line raises it, with the window's events as evidence; the ones after
// it, in the same burst, do not.
func (Detectors) count(ctx context.Context, tx *Tx, e *events.Event, detector, subject string, limit int, window time.Duration,
	flag func(n int) domain.AnomalyFlagged) (domain.AnomalyFlagged, error) {
	n, _, err := addToWindow(ctx, tx, e, detector, subject, 0, window)
	if err != nil || n != int64(limit)+1 {
		return domain.AnomalyFlagged{}, err
	}
	f := flag(int(n))
	f.Detector = detector
	f.Evidence, err = windowEvidence(ctx, tx, e.Tenant, detector, subject)
	return f, err
}

// spend adds e's spend to the agent's window and raises a flag when the
// window's total first exceeds the threshold.
func (Detectors) spend(ctx context.Context, tx *Tx, e *events.Event, act activity, s domain.AnomalySettings) (domain.AnomalyFlagged, error) {
	window := time.Duration(s.SpendWindow)
	_, total, err := addToWindow(ctx, tx, e, domain.DetectorSpend, act.agent, act.spend, window)
	if err != nil || total <= s.Spend || total-act.spend > s.Spend {
		return domain.AnomalyFlagged{}, err
	}
	evidence, err := windowEvidence(ctx, tx, e.Tenant, domain.DetectorSpend, act.agent)
	return domain.AnomalyFlagged{Detector: domain.DetectorSpend, Severity: domain.SeverityHigh, Evidence: evidence,
		Reason: fmt.Sprintf("spend of %s within %s exceeds %s", total, window, s.Spend)}, err
}

// first raises f the first time subject is seen by the detector.
func (Detectors) first(ctx context.Context, tx *Tx, e *events.Event, detector, subject string, f domain.AnomalyFlagged) (domain.AnomalyFlagged, error) {
	res, err := tx.Exec(ctx, "INSERT INTO {anomaly_seen} (tenant_id, detector, subject) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", e.Tenant, detector, subject)
	if err != nil {
		return domain.AnomalyFlagged{}, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return domain.AnomalyFlagged{}, nil
	}
	f.Detector, f.Evidence = detector, []string{e.ID}
	return f, nil
}

// addToWindow records e in the detector's sliding window for subject,
// drops what fell out of it, and returns the window's event count and
// total amount. Each step touches only the rows that expire and one
// running-sum row, so a long window costs no more than a short one.
func addToWindow(ctx context.Context, tx *Tx, e *events.Event, detector, subject string, amount domain.Money, window time.Duration) (int64, domain.Money, error) {
	at, from := e.RecordedAt.UnixNano(), e.RecordedAt.Add(-window).UnixNano()
	var gone, goneTotal int64
	if err := tx.QueryRow(ctx, "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM {anomaly_window} WHERE tenant_id = ? AND detector = ? AND subject = ? AND at <= ?",
		e.Tenant, detector, subject, from).Scan(&gone, &goneTotal); err != nil {
		return 0, 0, err
	}
	if gone > 0 {
		if _, err := tx.Exec(ctx, "DELETE FROM {anomaly_window} WHERE tenant_id = ? AND detector = ? AND subject = ? AND at <= ?", e.Tenant, detector, subject, from); err != nil {
			return 0, 0, err
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO {anomaly_window} (tenant_id, detector, subject, at, seq, event_id, amount) VALUES (?, ?, ?, ?, ?, ?, ?)",
		e.Tenant, detector, subject, at, e.Seq, e.ID, int64(amount)); err != nil {
		return 0, 0, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO {anomaly_window_sums} (tenant_id, detector, subject, n, total) VALUES (?, ?, ?, 1, ?)
ON CONFLICT (tenant_id, detector, subject) DO UPDATE SET n = {anomaly_window_sums}.n + 1 - ?, total = {anomaly_window_sums}.total + ? - ?`,
		e.Tenant, detector, subject, int64(amount), gone, int64(amount), goneTotal); err != nil {
		return 0, 0, err
	}
	var n, total int64
	err := tx.QueryRow(ctx, "SELECT n, total FROM {anomaly_window_sums} WHERE tenant_id = ? AND detector = ? AND subject = ?", e.Tenant, detector, subject).Scan(&n, &total)
	return n, domain.Money(total), err
}

// windowEvidence returns the ids of the events in the detector's window
// for subject: the newest MaxAnomalyEvidence, oldest first.
func windowEvidence(ctx context.Context, tx *Tx, tenant, detector, subject string) ([]string, error) {
	rows, err := tx.Query(ctx, "SELECT event_id FROM {anomaly_window} WHERE tenant_id = ? AND detector = ? AND subject = ? ORDER BY seq DESC LIMIT ?",
		tenant, detector, subject, domain.MaxAnomalyEvidence)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	slices.Reverse(ids)
	return ids, rows.Err()
}

// outbox queues f for the ledger. Scratch replays queue nothing; a real
// rebuild queues the same flag id again, which the key ignores.
func outbox(ctx context.Context, tx *Tx, tenant string, f domain.AnomalyFlagged) error {
	if tx.prefix != "" {
		return nil
	}
	payload, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO anomaly_outbox (tenant_id, flag_id, payload, appended) VALUES (?, ?, ?, 0) ON CONFLICT DO NOTHING", tenant, f.FlagID, payload)
	return err
}

// settings reads a tenant's settings, or the defaults.
func (d Detectors) settings(ctx context.Context, tx *Tx, tenant string) (domain.AnomalySettings, error) {
	var raw string
	err := tx.QueryRow(ctx, "SELECT settings FROM {anomaly_settings} WHERE tenant_id = ?", tenant).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return d.Defaults, nil
	}
	if err != nil {
		return domain.AnomalySettings{}, err
	}
	var s domain.AnomalySettings
	return s, json.Unmarshal([]byte(raw), &s)
}

// Anomalies projects flags and their acknowledgements, for GET
// /v1/anomalies.
type Anomalies struct{}

// Tables implements Handler.
func (Anomalies) Tables() []string { return []string{"anomalies"} }

// Apply implements Handler.
func (Anomalies) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	switch e.Type {
	case domain.TypeAnomalyFlagged:
		f, err := decode[domain.AnomalyFlagged](e)
		if err != nil {
			return err
		}
		evidence, _ := json.Marshal(f.Evidence)
		_, err = tx.Exec(ctx, `INSERT INTO {anomalies} (tenant_id, flag_id, detector, severity, agent_id, session_id, tool, reason, evidence, entry_id, flagged_at, acked_by, note)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '') ON CONFLICT DO NOTHING`,
			e.Tenant, f.FlagID, f.Detector, f.Severity, f.AgentID, f.SessionID, f.Tool, f.Reason, string(evidence), e.ID, e.RecordedAt.UnixNano())
		return err
	case domain.TypeAnomalyAcknowledged:
		a, err := decode[domain.AnomalyAcknowledged](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE {anomalies} SET acked_at = ?, acked_by = ?, note = ? WHERE tenant_id = ? AND flag_id = ? AND acked_at IS NULL",
			e.RecordedAt.UnixNano(), a.By, a.Note, e.Tenant, a.FlagID)
		return err
	}
	return nil
}

// PendingFlags returns up to limit flags the detectors raised that are not
// yet in the ledger.
func (q *Queries) PendingFlags(ctx context.Context, limit int) ([]views.PendingFlag, error) {
	rows, err := q.db.QueryRead(ctx, "SELECT tenant_id, payload FROM anomaly_outbox WHERE appended = 0 ORDER BY tenant_id, flag_id LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("projections: read the flag outbox: %w", err)
	}
	defer rows.Close()
	var out []views.PendingFlag
	for rows.Next() {
		var p views.PendingFlag
		var payload []byte
		if err := rows.Scan(&p.Tenant, &payload); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(payload, &p.Flag); err != nil {
			return nil, fmt.Errorf("projections: flag outbox: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// FlagAppended marks a queued flag as in the ledger.
func (q *Queries) FlagAppended(ctx context.Context, tenant, flagID string) error {
	_, err := q.db.Write.ExecContext(ctx, q.db.Rebind("UPDATE anomaly_outbox SET appended = 1 WHERE tenant_id = ? AND flag_id = ?"), tenant, flagID)
	return err
}

// AnomalyList returns a tenant's flags, newest first; open selects the
// unacknowledged ones only.
func (q *Queries) AnomalyList(ctx context.Context, tenant string, open bool, limit int) ([]views.Anomaly, error) {
	query := `SELECT flag_id, detector, severity, agent_id, session_id, tool, reason, evidence, entry_id, flagged_at, acked_at, acked_by, note
FROM anomalies WHERE tenant_id = ?`
	if open {
		query += " AND acked_at IS NULL"
	}
	rows, err := q.db.QueryRead(ctx, query+" ORDER BY flagged_at DESC, flag_id LIMIT ?", tenant, limit)
	if err != nil {
		return nil, fmt.Errorf("projections: read anomalies: %w", err)
	}
	defer rows.Close()
	out := []views.Anomaly{}
	for rows.Next() {
		var a views.Anomaly
		var evidence string
		var flagged int64
		var acked sql.NullInt64
		if err := rows.Scan(&a.FlagID, &a.Detector, &a.Severity, &a.AgentID, &a.SessionID, &a.Tool, &a.Reason, &evidence, &a.EntryID, &flagged, &acked, &a.AckedBy, &a.Note); err != nil {
			return nil, err
		}
		a.FlaggedAt = nanos(flagged)
		if acked.Valid {
			a.AckedAt = nanos(acked.Int64)
		}
		if err := json.Unmarshal([]byte(evidence), &a.Evidence); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
