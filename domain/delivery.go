package domain

import "time"

// DeliveryStatus is a delivery's state.
type DeliveryStatus string

// The delivery states. Only pending deliveries are attempted.
const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed"   // retries ran out
	DeliveryDisabled  DeliveryStatus = "disabled" // 410 Gone, or the webhook is no longer active
)

// DeliveryAttempt is one recorded attempt, as GET /v1/webhooks/deliveries lists
// it.
type DeliveryAttempt struct {
	DeliveryID string
	EventID    string
	WebhookID  string
	EventType  string
	Attempt    int // 1 for the first attempt
	StatusCode int // 0 when there was no response
	Error      string
	Duration   time.Duration // whole milliseconds
	CreatedAt  time.Time
	// Status is the delivery's current state, not the attempt's.
	Status DeliveryStatus
}

// DeliveryFilter selects delivery attempts to list.
type DeliveryFilter struct {
	EventID   string // "" for any
	WebhookID string // "" for any
	Limit     int    // 1–1000; ≤ 0 means 20
}
