package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"context"

	"github.com/haldir-dev/haldir/domain"
)

// Idempotency timing.
const (
	// idemWait is how long a duplicate waits for the original to finish.
	idemWait = 15 * time.Second
	// idemStale is when an unfinished reservation is presumed orphaned by
	// a process that died; a duplicate then runs the command again, and
	// the event ids derived from the key make the ledger return what the
	// first run appended, if anything.
	idemStale = 60 * time.Second
)

// Reservations keeps Idempotency-Key reservations where every replica sees
// them (storage/idempotency). A reservation is taken before the command
// runs, so concurrent duplicates find it and wait.
type Reservations interface {
	// Reserve takes key for a request with hash; when it is taken already
	// it returns reserved false and the reservation found.
	Reserve(ctx context.Context, tenant, key, hash string, now time.Time) (reserved bool, existing domain.Reservation, err error)
	// Get returns the reservation of key.
	Get(ctx context.Context, tenant, key string) (domain.Reservation, bool, error)
	// TakeOver re-takes a reservation still created at createdAt (presumed
	// orphaned); it reports whether this caller now owns it.
	TakeOver(ctx context.Context, tenant, key string, createdAt, now time.Time) (bool, error)
	// Complete records the outcome; Unreplayable stores no body.
	Complete(ctx context.Context, tenant, key string, status domain.ReservationStatus, response []byte, now time.Time) error
	// Release drops an unfinished reservation so that a retry runs anew.
	Release(ctx context.Context, tenant, key string) error
}

type storedResponse struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// idempotent runs a POST that carries an Idempotency-Key: the original
// runs once; a duplicate with the same body replays its response; a
// duplicate with another body gets 422.
func (s *Server) idempotent(c *call) {
	key := c.r.Header.Get("Idempotency-Key")
	if len(key) > 255 || !printable(key) {
		s.respond(c, 0, nil, domain.Invalid("Idempotency-Key", "Idempotency-Key must be at most 255 printable characters"))
		return
	}
	tenant := c.tenant
	if tenant == "" {
		tenant = "_bootstrap"
	}
	sum := sha256.Sum256([]byte(c.route.method + " " + c.r.URL.Path + "\n" + string(c.body)))
	hash := hex.EncodeToString(sum[:])
	c.actor = c.actor.WithIdempotencyKey(key)
	store := s.deps.Idempotency
	deadline := time.Now().Add(idemWait)
	for {
		reserved, rec, err := store.Reserve(c.ctx, tenant, key, hash, s.now())
		if err != nil {
			s.respond(c, 0, nil, err)
			return
		}
		if !reserved && rec.RequestHash != hash {
			s.respond(c, 0, nil, domain.Errorf(domain.CodeIdempotencyReused, "this Idempotency-Key was used with a different request; use a new key"))
			return
		}
		switch {
		case reserved:
			s.runOnce(c, tenant, key)
			return
		case rec.Status == domain.ReservationCompleted:
			var r storedResponse
			if err := json.Unmarshal(rec.Response, &r); err != nil {
				s.respond(c, 0, nil, err)
				return
			}
			c.w.Header().Set("Idempotent-Replayed", "true")
			writeRaw(c.w, r.Status, r.Body)
			return
		case rec.Status == domain.ReservationUnreplayable:
			s.respond(c, 0, nil, domain.Errorf(domain.CodeConflict, "this request already completed; its response held a secret that is shown only once"))
			return
		case s.now().Sub(rec.CreatedAt) > idemStale:
			ok, err := store.TakeOver(c.ctx, tenant, key, rec.CreatedAt, s.now())
			if err != nil {
				s.respond(c, 0, nil, err)
				return
			}
			if ok {
				s.runOnce(c, tenant, key)
				return
			}
		case time.Now().After(deadline):
			s.respond(c, 0, nil, domain.Errorf(domain.CodeConflict, "a request with this Idempotency-Key is still in progress; retry later"))
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// runOnce runs the handler for a reserved key and stores its response.
// Server errors release the key so the client can retry.
func (s *Server) runOnce(c *call, tenant, key string) {
	status, body, err := c.route.handle(c)
	status, b := s.render(c, status, body, err)
	ctx := c.ctx
	switch {
	case status >= http.StatusInternalServerError:
		if rerr := s.deps.Idempotency.Release(ctx, tenant, key); rerr != nil {
			s.log.Error("could not release idempotency key", "request_id", c.requestID, "err", rerr)
		}
	case c.route.secretResponse && err == nil:
		if cerr := s.deps.Idempotency.Complete(ctx, tenant, key, domain.ReservationUnreplayable, nil, s.now()); cerr != nil {
			s.log.Error("could not record idempotent response", "request_id", c.requestID, "err", cerr)
		}
	default:
		stored, _ := json.Marshal(storedResponse{Status: status, Body: b})
		if cerr := s.deps.Idempotency.Complete(ctx, tenant, key, domain.ReservationCompleted, stored, s.now()); cerr != nil {
			s.log.Error("could not record idempotent response", "request_id", c.requestID, "err", cerr)
		}
	}
	s.writtenHeaders(c)
	writeRaw(c.w, status, b)
}
