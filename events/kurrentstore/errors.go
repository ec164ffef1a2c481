package kurrentstore

import (
	"errors"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haldir-dev/haldir/events"
)

// outcome is what an append's error says about whether it was written.
type outcome int

const (
	// written: the server acknowledged the append.
	written outcome = iota
	// conflicted: WrongExpectedVersion. Another writer (another replica)
	// appended to the ledger first; nothing of this append was written.
	conflicted
	// uncertain: the call failed in a way that says nothing about whether
	// the server wrote it (a timeout, a lost connection, a leader change).
	// Only reading the ledger tells.
	uncertain
	// refused: the server refused the append (permissions, a deleted
	// ledger, an invalid request); nothing was written, and sending it
	// again would be refused again.
	refused
)

func (o outcome) String() string {
	return [...]string{"written", "conflicted", "uncertain", "refused"}[o]
}

// codeOf returns the client's error code for err: the code of the
// *esdb.Error it wraps, or, for a bare gRPC error (the client returns
// some unwrapped), the code the client would have given it.
func codeOf(err error) esdb.ErrorCode {
	var ee *esdb.Error
	if errors.As(err, &ee) {
		return ee.Code()
	}
	switch status.Code(err) {
	case codes.Unauthenticated:
		return esdb.ErrorCodeUnauthenticated
	case codes.Unimplemented:
		return esdb.ErrorCodeUnsupportedFeature
	case codes.NotFound:
		return esdb.ErrorCodeResourceNotFound
	case codes.PermissionDenied:
		return esdb.ErrorCodeAccessDenied
	case codes.DeadlineExceeded:
		return esdb.ErrorCodeDeadlineExceeded
	case codes.AlreadyExists:
		return esdb.ErrorCodeResourceAlreadyExists
	case codes.Aborted:
		return esdb.ErrorAborted
	case codes.Unavailable:
		return esdb.ErrorUnavailable
	}
	return esdb.ErrorCodeUnknown
}

// classify maps an append's error to its outcome. The client reports a
// request the server rejected as malformed (for example one past the
// server's maximum append size, gRPC InvalidArgument) with the Unknown
// code, so the gRPC status is consulted too.
func classify(err error) outcome {
	if err == nil {
		return written
	}
	return classifyCode(codeOf(err), status.Code(err))
}

func classifyCode(code esdb.ErrorCode, grpc codes.Code) outcome {
	switch code {
	case esdb.ErrorCodeWrongExpectedVersion:
		return conflicted
	case esdb.ErrorCodeAccessDenied, esdb.ErrorCodeUnauthenticated, esdb.ErrorCodeStreamDeleted,
		esdb.ErrorCodeUnsupportedFeature, esdb.ErrorCodeResourceNotFound, esdb.ErrorCodeParsing,
		esdb.ErrorCodeInternalClient, esdb.ErrorCodeResourceAlreadyExists:
		return refused
	}
	switch grpc {
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return refused
	}
	// DeadlineExceeded, Unavailable, NotLeader, Aborted, ConnectionClosed,
	// InternalServer and unclassified transport errors.
	return uncertain
}

// refusal returns the error a call gets when the server refused its
// append. A ledger the store may not write to (no permission, deleted)
// matches events.ErrUnavailable: the append was not acknowledged and can
// be retried once an operator has fixed it. A malformed request matches
// events.ErrInvalid.
func refusal(err error) error {
	switch codeOf(err) {
	case esdb.ErrorCodeAccessDenied, esdb.ErrorCodeUnauthenticated:
		return fmt.Errorf("%w: kurrentdb refused the append (credentials or the ledger's ACL): %w", events.ErrUnavailable, err)
	case esdb.ErrorCodeStreamDeleted:
		return fmt.Errorf("%w: the ledger stream is deleted: %w", events.ErrUnavailable, err)
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.OutOfRange:
		return fmt.Errorf("%w: kurrentdb refused the append: %w", events.ErrInvalid, err)
	}
	return fmt.Errorf("kurrentstore: append refused: %w", err)
}

// unreachable wraps err, from a call that could not reach the server, in
// events.ErrUnavailable.
func unreachable(err error) error {
	if err == nil || errors.Is(err, events.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", events.ErrUnavailable, err)
}

// isNotFound reports whether a read failed because the stream does not
// exist (yet): an empty ledger.
func isNotFound(err error) bool { return codeOf(err) == esdb.ErrorCodeResourceNotFound }

// isClosed reports whether the client has shut itself down. The v4 client
// does so for good when node discovery fails (a server down for longer
// than its discovery attempts); the store then makes a new one.
func isClosed(err error) bool { return codeOf(err) == esdb.ErrorCodeConnectionClosed }
