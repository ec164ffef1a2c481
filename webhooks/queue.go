package webhooks

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// DefaultLease is how long a claim hides a delivery from other workers,
// unless renewed, when NewQueue is given no lease. A Worker renews the
// lease of every delivery in flight (every third of the lease by default),
// so an attempt may last longer than the lease; what the lease bounds is
// how long the deliveries of a replica that died stay hidden before the
// survivors take them over.
const DefaultLease = 10 * time.Second

// MaxBody is the largest message body Enqueue accepts.
const MaxBody = 1 << 20

const maxErrorText = 200

// Errors returned by Queue, matched with errors.Is.
var (
	// ErrNotFound means the tenant has no such delivery.
	ErrNotFound = errors.New("webhooks: delivery not found")
	// ErrLeaseLost means the delivery is no longer held by the claim it
	// was claimed with: its lease ran out and another worker claimed it
	// (and may have recorded it), or it was disabled. Nothing is changed.
	ErrLeaseLost = errors.New("webhooks: delivery lease lost")
)

// Message is one event to deliver to one webhook.
type Message struct {
	TenantID  string
	WebhookID string
	EventID   string // the webhook-id header on every attempt
	EventType string
	Body      []byte // valid JSON, sent and signed exactly as is
	// At is when the message was enqueued and first due; zero means now.
	At time.Time
}

// Job is a claimed delivery, ready to attempt.
type Job struct {
	TenantID   string
	DeliveryID string
	WebhookID  string
	EventID    string
	EventType  string
	Body       []byte
	// Attempts counts the attempts recorded before this one.
	Attempts  int
	CreatedAt time.Time
	// LeaseUntil is when the claim's lease ends unless renewed (zero in a
	// State). It is also the claim's fencing token: Renew, Record and
	// disable change the delivery only while its lease end is still this
	// value. Every claim and renewal moves a delivery's lease end strictly
	// forward (a claim takes only a lease that ended, and ends its own a
	// lease later), so a claim that was taken over never matches again,
	// whatever the clocks of the replicas say.
	LeaseUntil time.Time
}

// State is a delivery as stored.
type State struct {
	Job
	Status         domain.DeliveryStatus
	NextAttemptAt  time.Time
	LastStatusCode int
	LastError      string
	UpdatedAt      time.Time
}

// Queue is the durable delivery queue in the webhook_deliveries and
// webhook_attempts tables. It is safe for concurrent use, by any number of
// processes sharing the database.
type Queue struct {
	db    *sqldb.DB
	lease time.Duration
}

// NewQueue returns the queue in db. A claimed delivery is hidden from
// other claims for lease (DefaultLease when ≤ 0) after its claim or its
// last Renew.
func NewQueue(db *sqldb.DB, lease time.Duration) *Queue {
	if lease <= 0 {
		lease = DefaultLease
	}
	return &Queue{db: db, lease: lease}
}

// DeliveryID returns the id of the delivery of eventID to webhookID of
// tenantID: "dlv_" and 32 hex digits of a SHA-256 over the three,
// length-prefixed. The same message always gets the same id.
func DeliveryID(tenantID, webhookID, eventID string) string {
	h := sha256.New()
	for _, s := range []string{tenantID, webhookID, eventID} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		h.Write([]byte(s))
	}
	return "dlv_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// ExecFunc runs one statement with "$n" (Postgres) or "?" (SQLite)
// placeholders; (*sql.Tx).ExecContext and projections' (*Tx).Exec fit.
type ExecFunc func(ctx context.Context, query string, args ...any) (sql.Result, error)

const enqueueSQL = `INSERT INTO webhook_deliveries (tenant_id, delivery_id, webhook_id, event_id, event_type, body,
    status, attempts, next_attempt_at, last_status_code, last_error, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, 0, '', ?, ?)
ON CONFLICT DO NOTHING`

// Enqueue stores m as a pending delivery due at m.At and returns its
// delivery id, and whether it was new: enqueueing the same (tenant,
// webhook, event) again changes nothing and returns created false.
func (q *Queue) Enqueue(ctx context.Context, m Message) (id string, created bool, err error) {
	return q.EnqueueExec(ctx, func(ctx context.Context, query string, args ...any) (sql.Result, error) {
		return q.db.Write.ExecContext(ctx, query, args...)
	}, m)
}

// EnqueueTx is Enqueue inside tx, a transaction on the queue's database
// (such as a projection's): the delivery exists if and only if tx commits.
func (q *Queue) EnqueueTx(ctx context.Context, tx *sql.Tx, m Message) (id string, created bool, err error) {
	return q.EnqueueExec(ctx, func(ctx context.Context, query string, args ...any) (sql.Result, error) {
		return q.db.ExecTx(ctx, tx, query, args...)
	}, m)
}

// EnqueueExec is Enqueue through exec, for a transaction wrapped in
// another type. The statement never fails on a duplicate, so it never
// aborts the caller's transaction.
func (q *Queue) EnqueueExec(ctx context.Context, exec ExecFunc, m Message) (id string, created bool, err error) {
	if m.TenantID == "" || m.WebhookID == "" || m.EventID == "" || m.EventType == "" {
		return "", false, errors.New("webhooks: enqueue: tenant, webhook, event id and event type are required")
	}
	if len(m.Body) > MaxBody {
		return "", false, fmt.Errorf("webhooks: enqueue: body over %d bytes", MaxBody)
	}
	if !json.Valid(m.Body) {
		return "", false, errors.New("webhooks: enqueue: body is not valid JSON")
	}
	at := m.At
	if at.IsZero() {
		at = time.Now()
	}
	id = DeliveryID(m.TenantID, m.WebhookID, m.EventID)
	res, err := exec(ctx, q.db.Rebind(enqueueSQL), m.TenantID, id, m.WebhookID, m.EventID, m.EventType, m.Body,
		at.UnixNano(), at.UnixNano(), at.UnixNano())
	if err != nil {
		return "", false, fmt.Errorf("webhooks: enqueue: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", false, fmt.Errorf("webhooks: enqueue: %w", err)
	}
	return id, n == 1, nil
}

// Claim takes up to limit pending deliveries due at now (oldest due
// first) and hides them from other claims until now plus the lease
// (Job.LeaseUntil), which Renew extends. Two concurrent claims, in this
// process or another, never return the same delivery while its lease
// lasts: on Postgres the candidates are locked FOR UPDATE SKIP LOCKED, on
// SQLite the single writer serialises claims. A delivery whose lease ran
// out is due again: that is how the deliveries of a dead worker are taken
// over, within a lease of its last renewal.
func (q *Queue) Claim(ctx context.Context, now time.Time, limit int) ([]Job, error) {
	if limit <= 0 {
		return nil, nil
	}
	lock := ""
	if q.db.Dialect == sqldb.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	// The candidates are chosen once, in a materialised CTE: as an IN
	// subquery, Postgres may evaluate a LIMIT … SKIP LOCKED query more than
	// once and claim more than limit rows.
	query := q.db.Rebind(`WITH due AS MATERIALIZED (
    SELECT tenant_id, delivery_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= ?
    ORDER BY next_attempt_at LIMIT ?` + lock + `)
UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ?
WHERE (tenant_id, delivery_id) IN (SELECT tenant_id, delivery_id FROM due)
RETURNING tenant_id, delivery_id, webhook_id, event_id, event_type, body, attempts, created_at`)
	n, until := now.UnixNano(), now.Add(q.lease).UnixNano()
	rows, err := q.db.Write.QueryContext(ctx, query, n, limit, until, n)
	if err != nil {
		return nil, fmt.Errorf("webhooks: claim: %w", err)
	}
	defer rows.Close()
	var jobs []Job
	for rows.Next() {
		var j Job
		var created int64
		if err := rows.Scan(&j.TenantID, &j.DeliveryID, &j.WebhookID, &j.EventID, &j.EventType, &j.Body, &j.Attempts, &created); err != nil {
			return nil, fmt.Errorf("webhooks: claim: %w", err)
		}
		j.CreatedAt = time.Unix(0, created)
		j.LeaseUntil = time.Unix(0, until)
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("webhooks: claim: %w", err)
	}
	return jobs, nil
}

// Renew extends the lease of j, a delivery claimed by Claim, to now plus
// the lease (or, should the clock have gone back, just past its current
// end) and sets j.LeaseUntil to the new end. A lease that ran out may be
// renewed as long as no other claim took the delivery. It returns
// ErrLeaseLost, changing nothing, when j's claim no longer holds the
// delivery: another claim took it over, or it was recorded or disabled.
func (q *Queue) Renew(ctx context.Context, j *Job, now time.Time) error {
	until := now.Add(q.lease).UnixNano()
	held := j.LeaseUntil.UnixNano()
	if until <= held {
		until = held + 1
	}
	res, err := q.db.Write.ExecContext(ctx, q.db.Rebind(`UPDATE webhook_deliveries SET next_attempt_at = ?
WHERE tenant_id = ? AND delivery_id = ? AND attempts = ? AND status = 'pending' AND next_attempt_at = ?`),
		until, j.TenantID, j.DeliveryID, j.Attempts, held)
	if err != nil {
		return fmt.Errorf("webhooks: renew lease: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("webhooks: renew lease: %w", err)
	} else if n != 1 {
		return ErrLeaseLost
	}
	j.LeaseUntil = time.Unix(0, until)
	return nil
}

// Record stores the attempt j produced r, in one transaction: an attempt
// row (number j.Attempts+1) and the delivery's new state — delivered on a
// 2xx, disabled on 410 Gone, otherwise pending until next or, when next is
// the zero time, failed. Response bodies are not stored. It returns
// ErrLeaseLost, recording nothing, when j's claim (j.LeaseUntil, as
// renewed) no longer holds the delivery: a worker whose lease was taken
// over never records its outcome over the new owner's.
func (q *Queue) Record(ctx context.Context, j Job, r Result, next time.Time) error {
	status := domain.DeliveryPending
	switch {
	case r.OK():
		status = domain.DeliveryDelivered
	case r.Gone:
		status = domain.DeliveryDisabled
	case next.IsZero():
		status = domain.DeliveryFailed
	}
	start := r.Start
	if start.IsZero() {
		start = time.Now()
	}
	now := start.Add(r.Duration)
	if status != domain.DeliveryPending {
		next = now
	}
	errText := truncate(r.Error, maxErrorText)
	return q.inTx(ctx, "record", func(tx *sql.Tx) error {
		res, err := q.db.ExecTx(ctx, tx, q.db.Rebind(`UPDATE webhook_deliveries
SET status = ?, attempts = attempts + 1, next_attempt_at = ?, last_status_code = ?, last_error = ?, updated_at = ?
WHERE tenant_id = ? AND delivery_id = ? AND attempts = ? AND status = 'pending' AND next_attempt_at = ?`),
			string(status), next.UnixNano(), r.StatusCode, errText, now.UnixNano(), j.TenantID, j.DeliveryID, j.Attempts,
			j.LeaseUntil.UnixNano())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return ErrLeaseLost
		}
		_, err = q.db.ExecTx(ctx, tx, q.db.Rebind(`INSERT INTO webhook_attempts
(tenant_id, delivery_id, attempt, status_code, error, duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			j.TenantID, j.DeliveryID, j.Attempts+1, r.StatusCode, errText, r.Duration.Milliseconds(), start.UnixNano())
		return err
	})
}

// disable marks j's delivery disabled without an attempt, with reason as
// its last error; ErrLeaseLost as Record.
func (q *Queue) disable(ctx context.Context, j Job, reason string) error {
	now := time.Now().UnixNano()
	res, err := q.db.Write.ExecContext(ctx, q.db.Rebind(`UPDATE webhook_deliveries
SET status = 'disabled', last_error = ?, updated_at = ?
WHERE tenant_id = ? AND delivery_id = ? AND attempts = ? AND status = 'pending' AND next_attempt_at = ?`),
		truncate(reason, maxErrorText), now, j.TenantID, j.DeliveryID, j.Attempts, j.LeaseUntil.UnixNano())
	if err != nil {
		return fmt.Errorf("webhooks: disable: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("webhooks: disable: %w", err)
	} else if n != 1 {
		return ErrLeaseLost
	}
	return nil
}

// DisableWebhook marks every pending delivery of the tenant's webhook
// disabled, for a webhook that was deleted or disabled, and returns how
// many it changed. An attempt in flight then ends in ErrLeaseLost.
func (q *Queue) DisableWebhook(ctx context.Context, tenantID, webhookID string) (int64, error) {
	res, err := q.db.Write.ExecContext(ctx, q.db.Rebind(`UPDATE webhook_deliveries
SET status = 'disabled', last_error = 'webhook disabled', updated_at = ?
WHERE tenant_id = ? AND webhook_id = ? AND status = 'pending'`), time.Now().UnixNano(), tenantID, webhookID)
	if err != nil {
		return 0, fmt.Errorf("webhooks: disable webhook: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("webhooks: disable webhook: %w", err)
	}
	return n, nil
}

// Get returns the tenant's delivery, or ErrNotFound.
func (q *Queue) Get(ctx context.Context, tenantID, deliveryID string) (State, error) {
	var s State
	var status string
	var created, next, updated int64
	err := q.db.Read.QueryRowContext(ctx, q.db.Rebind(`SELECT tenant_id, delivery_id, webhook_id, event_id, event_type, body,
    attempts, created_at, status, next_attempt_at, last_status_code, last_error, updated_at
FROM webhook_deliveries WHERE tenant_id = ? AND delivery_id = ?`), tenantID, deliveryID).Scan(
		&s.TenantID, &s.DeliveryID, &s.WebhookID, &s.EventID, &s.EventType, &s.Body,
		&s.Attempts, &created, &status, &next, &s.LastStatusCode, &s.LastError, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return State{}, ErrNotFound
	}
	if err != nil {
		return State{}, fmt.Errorf("webhooks: get delivery: %w", err)
	}
	s.Status = domain.DeliveryStatus(status)
	s.CreatedAt, s.NextAttemptAt, s.UpdatedAt = time.Unix(0, created), time.Unix(0, next), time.Unix(0, updated)
	return s, nil
}

// List returns the tenant's recorded attempts matching f, newest first.
func (q *Queue) List(ctx context.Context, tenantID string, f domain.DeliveryFilter) ([]domain.DeliveryAttempt, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 1000)
	query := `SELECT a.delivery_id, d.event_id, d.webhook_id, d.event_type, a.attempt, a.status_code, a.error,
    a.duration_ms, a.created_at, d.status
FROM webhook_attempts a
JOIN webhook_deliveries d ON d.tenant_id = a.tenant_id AND d.delivery_id = a.delivery_id
WHERE a.tenant_id = ?`
	args := []any{tenantID}
	if f.EventID != "" {
		query += " AND d.event_id = ?"
		args = append(args, f.EventID)
	}
	if f.WebhookID != "" {
		query += " AND d.webhook_id = ?"
		args = append(args, f.WebhookID)
	}
	query += " ORDER BY a.created_at DESC, a.delivery_id DESC, a.attempt DESC LIMIT ?"
	args = append(args, limit)
	rows, err := q.db.Read.QueryContext(ctx, q.db.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("webhooks: list deliveries: %w", err)
	}
	defer rows.Close()
	out := []domain.DeliveryAttempt{}
	for rows.Next() {
		var a domain.DeliveryAttempt
		var ms, created int64
		var status string
		if err := rows.Scan(&a.DeliveryID, &a.EventID, &a.WebhookID, &a.EventType, &a.Attempt, &a.StatusCode, &a.Error,
			&ms, &created, &status); err != nil {
			return nil, fmt.Errorf("webhooks: list deliveries: %w", err)
		}
		a.Duration = time.Duration(ms) * time.Millisecond
		a.CreatedAt = time.Unix(0, created)
		a.Status = domain.DeliveryStatus(status)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("webhooks: list deliveries: %w", err)
	}
	return out, nil
}

func (q *Queue) inTx(ctx context.Context, what string, f func(*sql.Tx) error) error {
	tx, err := q.db.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("webhooks: %s: %w", what, err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		return fmt.Errorf("webhooks: %s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("webhooks: %s: %w", what, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
