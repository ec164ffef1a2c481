package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/haldir-dev/haldir/domain"
)

// SecretPrefix starts every signing secret: "whsec_" followed by the
// standard base64 encoding of the key.
const SecretPrefix = domain.WebhookSecretPrefix

// The Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is the largest difference between a message's
// webhook-timestamp and the receiver's clock that Verify accepts when it is
// given no tolerance.
const DefaultTolerance = 5 * time.Minute

const (
	secretBytes    = 32 // what NewSecret draws
	minSecretBytes = 24 // the shortest key Sign and Verify accept
	maxSecretBytes = 64 // the longest, as the specification recommends
)

// Errors returned by Verify, matched with errors.Is.
var (
	// ErrMissingHeader means webhook-id, webhook-timestamp or
	// webhook-signature is absent.
	ErrMissingHeader = errors.New("webhooks: missing webhook-id, webhook-timestamp or webhook-signature header")
	// ErrTimestamp means webhook-timestamp is malformed or too far from now.
	ErrTimestamp = errors.New("webhooks: webhook-timestamp is malformed or outside the tolerance")
	// ErrSignature means no signature matches any of the secrets.
	ErrSignature = errors.New("webhooks: no valid signature")
)

// NewSecret returns a new signing secret: SecretPrefix and the base64 of
// 32 random bytes.
func NewSecret() string { return domain.NewWebhookSecret() }

// secretKey returns the HMAC key in secret. The prefix is optional, as in
// the specification's own libraries. Errors never contain the secret.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return nil, errors.New("webhooks: secret is not base64")
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("webhooks: secret key must be %d to %d bytes, not %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return key, nil
}

// Sign returns the signature "v1,<base64 HMAC-SHA256>" of body sent as
// message id at time ts, under secret. It fails only for an empty id or a
// secret that is not "whsec_" and the base64 of a 24- to 64-byte key.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("webhooks: empty message id")
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body)), nil
}

func mac(key []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// signatureHeader returns the webhook-signature value for secrets: one
// signature per secret, separated by spaces.
func signatureHeader(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("webhooks: no active secret")
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := Sign(s, id, ts, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return strings.Join(sigs, " "), nil
}

// Verify checks a received message as a receiver would: h must carry
// webhook-id, webhook-timestamp (Unix seconds within tolerance of now;
// DefaultTolerance when tolerance ≤ 0) and a webhook-signature list holding
// at least one "v1," signature of body made with one of secrets. Signatures
// are compared in constant time. It returns nil, ErrMissingHeader,
// ErrTimestamp, ErrSignature, or an error for a malformed secret when no
// secret is usable.
func Verify(secrets []string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeader
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if !allDigits(ts) {
		return ErrTimestamp
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrTimestamp
	}
	var want [][]byte
	var keyErr error
	for _, s := range secrets {
		key, err := secretKey(s)
		if err != nil {
			keyErr = err
			continue
		}
		want = append(want, mac(key, id, ts, body))
	}
	if len(want) == 0 {
		if keyErr != nil {
			return keyErr
		}
		return errors.New("webhooks: no secret to verify with")
	}
	for _, sig := range strings.Fields(sigs) {
		b64, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue // another scheme, such as v1a
		}
		// Strict: a signature has one encoding, not four (the unused
		// low bits of the last character must be zero).
		got, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil {
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w) {
				return nil
			}
		}
	}
	return ErrSignature
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
