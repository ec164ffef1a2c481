package proxy

import "errors"

// The sentinel errors below classify every error the package returns; test
// them with errors.Is. Error strings never contain header values,
// environment values or tool arguments.
var (
	// ErrInvalid reports a malformed upstream, name, tool name or argument
	// object. Nothing was registered or sent.
	ErrInvalid = errors.New("proxy: invalid")
	// ErrExists reports an upstream name that is already registered.
	ErrExists = errors.New("proxy: upstream already registered")
	// ErrNotFound reports an unknown upstream or a tool that the upstream's
	// latest discovery does not list.
	ErrNotFound = errors.New("proxy: not found")
	// ErrUnavailable reports that an upstream is not connected or that the
	// transport to it failed; the pool reconnects in the background.
	ErrUnavailable = errors.New("proxy: upstream unavailable")
	// ErrTimeout reports that a call or discovery exceeded its own timeout
	// (not the caller's context, whose error is returned as is).
	ErrTimeout = errors.New("proxy: upstream timed out")
	// ErrUpstream reports a JSON-RPC error answered by the upstream, such as
	// an unknown tool or invalid parameters; the *jsonrpc.Error is in the
	// chain for errors.As.
	ErrUpstream = errors.New("proxy: upstream returned an error")
	// ErrClosed reports a use of a Pool after Close.
	ErrClosed = errors.New("proxy: pool closed")
)
