package domain

import "time"

// ReservationStatus is where a request reserved under an Idempotency-Key
// stands.
type ReservationStatus int

// Reservation states. The values are stored; do not renumber them.
const (
	ReservationInProgress ReservationStatus = 0
	ReservationCompleted  ReservationStatus = 1
	// ReservationUnreplayable: completed, but the response held a secret
	// shown only once (a new API key), so it was not stored.
	ReservationUnreplayable ReservationStatus = 2
)

// Reservation is an Idempotency-Key reservation as stored: the request it
// was taken for (by hash), its state, and the response to replay once it
// completed.
type Reservation struct {
	RequestHash string
	Status      ReservationStatus
	Response    []byte
	CreatedAt   time.Time
}
