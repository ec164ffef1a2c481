package domain

import (
	"errors"
	"fmt"
)

// Code classifies an Error. Codes are part of the wire contract: the API
// returns them verbatim in the "code" field of every error response.
type Code string

// The error codes of the /v1 contract.
const (
	CodeInvalid           Code = "invalid_request"
	CodeUnauthenticated   Code = "unauthenticated"
	CodeInsufficientScope Code = "insufficient_scope"
	CodeSessionInvalid    Code = "session_invalid"
	CodeBudgetExceeded    Code = "budget_exceeded"
	CodePolicyDenied      Code = "policy_denied"
	CodeApprovalRequired  Code = "approval_required"
	CodeNotFound          Code = "not_found"
	CodeConflict          Code = "conflict"
	CodeTooLarge          Code = "payload_too_large"
	CodeUnsupportedMedia  Code = "unsupported_media_type"
	CodeIdempotencyReused Code = "idempotency_key_reused"
	CodeRateLimited       Code = "rate_limited"
	CodeUnavailable       Code = "unavailable"
	CodeInternal          Code = "internal"
)

// Error is the one error type that crosses package boundaries with a meaning
// a client may see. Message is a sentence for a person and must never contain
// secrets or internal details; Field names the offending input, if any.
type Error struct {
	Code    Code
	Message string
	Field   string
	Reason  string
	// Extra carries additional response fields (for example "required" and
	// "granted" on insufficient_scope). Values must be JSON-encodable.
	Extra map[string]any
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (field %s)", e.Code, e.Message, e.Field)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a CodeInvalid error naming field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the Code of the first *Error in err's chain, or
// CodeInternal when there is none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// WithField returns a copy of e naming field.
func (e *Error) WithField(field string) *Error {
	c := *e
	c.Field = field
	return &c
}
