package vault

import "errors"

// The sentinel errors of the package; test for them with errors.Is. Every
// error from parsing, sealing, opening and rewrapping wraps exactly one of
// them and may add non-secret detail (which field, which KEK version).
var (
	// ErrWrongKey reports that data was encrypted under a different master
	// key than the one given, or that a Fingerprint does not match.
	ErrWrongKey = errors.New("vault: wrong master key")

	// ErrTampered reports that a stored ciphertext failed authentication
	// although key and secret match: its bytes were corrupted or modified,
	// or it was paired with a data key from another Seal call.
	ErrTampered = errors.New("vault: ciphertext is corrupted or was modified")

	// ErrWrongRef reports that a ciphertext was sealed for a different
	// tenant, secret name or secret version than the one given: it was
	// moved or copied.
	ErrWrongRef = errors.New("vault: ciphertext belongs to a different tenant, secret name or version")

	// ErrUnknownKEKVersion reports that a WrappedKey names a KEK version
	// the Keyring cannot derive (zero, or newer than its current version).
	ErrUnknownKEKVersion = errors.New("vault: unknown key-encryption key version")

	// ErrMalformed reports stored bytes that are not in a format this
	// package writes: wrong length, unknown format byte, bad fingerprint.
	ErrMalformed = errors.New("vault: malformed stored bytes")

	// ErrInvalidMasterKey reports a master key that is not 32 non-zero
	// bytes in base64url or base64.
	ErrInvalidMasterKey = errors.New("vault: invalid master key")

	// ErrInvalidRef reports a Ref with an empty or too long tenant, an
	// invalid secret name (see ValidName) or a zero version.
	ErrInvalidRef = errors.New("vault: invalid secret reference")

	// ErrTooLarge reports a secret value longer than MaxValueSize.
	ErrTooLarge = errors.New("vault: secret value too large")

	// ErrMalformedPlaceholder reports text that starts a {{secret:NAME}}
	// placeholder but does not complete a valid one.
	ErrMalformedPlaceholder = errors.New("vault: malformed secret placeholder")
)
