package kurrentstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/haldir-dev/haldir/events"
)

// TestClassify: every client error code means one thing for an append:
// nothing written (conflicted, refused) or unknown (uncertain, resolved by
// reading the ledger). A code the table does not know must land on
// uncertain, the only answer that can never acknowledge an unwritten
// event or append an event twice.
func TestClassify(t *testing.T) {
	want := map[esdb.ErrorCode]outcome{
		esdb.ErrorCodeWrongExpectedVersion:  conflicted,
		esdb.ErrorCodeAccessDenied:          refused,
		esdb.ErrorCodeUnauthenticated:       refused,
		esdb.ErrorCodeStreamDeleted:         refused,
		esdb.ErrorCodeUnsupportedFeature:    refused,
		esdb.ErrorCodeResourceNotFound:      refused,
		esdb.ErrorCodeParsing:               refused,
		esdb.ErrorCodeInternalClient:        refused,
		esdb.ErrorCodeResourceAlreadyExists: refused,
		esdb.ErrorCodeDeadlineExceeded:      uncertain,
		esdb.ErrorUnavailable:               uncertain,
		esdb.ErrorCodeNotLeader:             uncertain,
		esdb.ErrorAborted:                   uncertain,
		esdb.ErrorCodeConnectionClosed:      uncertain,
		esdb.ErrorCodeInternalServer:        uncertain,
		esdb.ErrorCodeUnknown:               uncertain,
		esdb.ErrorCode(99):                  uncertain,
	}
	for code, o := range want {
		if got := classifyCode(code, codes.Unknown); got != o {
			t.Errorf("classifyCode(%d) = %v, want %v", code, got, o)
		}
	}
	// The client gives a request the server rejects as malformed (over the
	// maximum append size) the Unknown code; the gRPC status tells.
	if got := classifyCode(esdb.ErrorCodeUnknown, codes.InvalidArgument); got != refused {
		t.Errorf("Unknown with InvalidArgument = %v, want refused", got)
	}
	if got := classify(nil); got != written {
		t.Errorf("classify(nil) = %v", got)
	}
}

// TestCodeOf: the client returns some errors as *esdb.Error and some as
// bare (or wrapped) gRPC status errors; both classify the same.
func TestCodeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want esdb.ErrorCode
		o    outcome
	}{
		{status.Error(codes.Unavailable, "connection refused"), esdb.ErrorUnavailable, uncertain},
		{fmt.Errorf("could not construct append operation. Reason: %w", status.Error(codes.DeadlineExceeded, "x")), esdb.ErrorCodeDeadlineExceeded, uncertain},
		{status.Error(codes.PermissionDenied, "x"), esdb.ErrorCodeAccessDenied, refused},
		{status.Error(codes.NotFound, "x"), esdb.ErrorCodeResourceNotFound, refused},
		{status.Error(codes.InvalidArgument, "Maximum Append Size of 1048576 Exceeded."), esdb.ErrorCodeUnknown, refused},
		{errors.New("plain"), esdb.ErrorCodeUnknown, uncertain},
	} {
		if got := codeOf(c.err); got != c.want {
			t.Errorf("codeOf(%v) = %d, want %d", c.err, got, c.want)
		}
		if got := classify(c.err); got != c.o {
			t.Errorf("classify(%v) = %v, want %v", c.err, got, c.o)
		}
	}
	if !isNotFound(status.Error(codes.NotFound, "stream")) || isNotFound(status.Error(codes.Unavailable, "")) {
		t.Error("isNotFound misclassifies")
	}
}

// TestRefusal: what a caller gets when the server refuses an append.
func TestRefusal(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{status.Error(codes.PermissionDenied, "acl"), events.ErrUnavailable},
		{status.Error(codes.Unauthenticated, "bad password"), events.ErrUnavailable},
		{status.Error(codes.InvalidArgument, "too big"), events.ErrInvalid},
	} {
		if got := refusal(c.err); !errors.Is(got, c.want) {
			t.Errorf("refusal(%v) = %v, want it to match %v", c.err, got, c.want)
		}
	}
	other := refusal(status.Error(codes.FailedPrecondition, "x"))
	if errors.Is(other, events.ErrUnavailable) || errors.Is(other, events.ErrInvalid) || errors.Is(other, events.ErrConflict) {
		t.Errorf("refusal(FailedPrecondition) = %v: matches a category it is not", other)
	}
	if err := gaveUp(conflicted, errors.New("wrong expected version"), time.Second); !errors.Is(err, events.ErrConflict) {
		t.Errorf("a group that kept losing to other replicas: %v, want ErrConflict (the caller re-decides)", err)
	}
	if err := gaveUp(uncertain, status.Error(codes.Unavailable, "down"), time.Second); !errors.Is(err, events.ErrUnavailable) {
		t.Errorf("a group the server never answered: %v, want ErrUnavailable", err)
	}
}

// unreachableURL names a port nothing listens on, with discovery cut short.
const unreachableURL = "kurrentdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=1"

// TestUnreachableServer runs the real client against a port nothing
// listens on (no server is faked): Open fails with ErrUnavailable.
func TestUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenURL(ctx, unreachableURL, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded against a port nothing listens on")
	}
	if !errors.Is(err, events.ErrUnavailable) {
		t.Errorf("Open: %v, want ErrUnavailable", err)
	}
}

// TestConnReplacesClosedClient: the v4 client shuts itself down for good
// when discovery fails; conn must hand out a fresh client afterwards, or a
// store would never recover from a server restart. This runs the real
// client against a closed port.
func TestConnReplacesClosedClient(t *testing.T) {
	cfg, err := ParseURL(unreachableURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := newConn(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	read := func() error {
		return c.do(func(cl *esdb.Client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rs, err := cl.ReadStream(ctx, "haldir-ledger", esdb.ReadStreamOptions{}, 1)
			if err != nil {
				return err
			}
			defer rs.Close()
			_, err = rs.Recv()
			return err
		})
	}
	first, _ := c.get()
	if err := read(); err == nil || isClosed(err) {
		t.Fatalf("first read: %v, want a discovery failure", err)
	}
	// The client has now closed itself; the next call sees that, and conn
	// replaces the client.
	if err := read(); !isClosed(err) {
		t.Fatalf("second read: %v, want the client's ErrorCodeConnectionClosed (has the client stopped closing itself? then conn's replacement is moot)", err)
	}
	second, _ := c.get()
	if second == first {
		t.Fatal("conn kept the closed client")
	}
	if err := read(); err == nil || isClosed(err) {
		t.Errorf("read on the replacement client: %v, want a fresh discovery failure, not ConnectionClosed", err)
	}
	c.close()
	if _, err := c.get(); !errors.Is(err, events.ErrClosed) {
		t.Errorf("get after close: %v, want ErrClosed", err)
	}
}
