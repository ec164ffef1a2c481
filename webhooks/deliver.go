package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/haldir-dev/haldir/internal/outbound"
)

// UserAgent is the User-Agent of every delivery.
const UserAgent = "Haldir-Webhooks/1"

const (
	maxResponseRead = 1 << 10 // bytes of a response body ever read
	maxExcerpt      = 256     // characters of it kept
	maxRetryAfter   = 24 * time.Hour
)

// Delivery is one signed POST to make.
type Delivery struct {
	// ID is the webhook-id header: the same on every retry of a message,
	// so receivers can deduplicate.
	ID      string
	URL     string
	Secrets []string // each active secret signs; see Sign
	Body    []byte   // sent and signed exactly as is
	// Timestamp is the webhook-timestamp; the zero time means now.
	Timestamp time.Time
}

// Result is the outcome of one delivery attempt.
type Result struct {
	// Start is when the attempt began.
	Start time.Time
	// StatusCode is the response status, 0 when there was no response.
	StatusCode int
	// Error is a short description of a failure, "" on success. It holds
	// neither secrets, nor the URL, nor anything from the response body.
	Error string
	// Excerpt is a printable-ASCII excerpt of at most the first 1 KiB of
	// the response body, truncated to 256 characters, for operator logs.
	// It must not be shown to the webhook's owner (see DESIGN: never
	// reflect a response body).
	Excerpt  string
	Duration time.Duration
	// RetryAfter is the response's Retry-After (seconds or HTTP-date),
	// 0 when absent or invalid, at most 24 hours.
	RetryAfter time.Duration
	// Gone reports a 410 Gone answer: the receiver asks for no more
	// deliveries.
	Gone bool
}

// OK reports whether the attempt succeeded: a 2xx answer.
func (r Result) OK() bool { return r.Error == "" && r.StatusCode >= 200 && r.StatusCode < 300 }

// Deliver POSTs d.Body to d.URL with client, signed with every secret of
// d, with content-type application/json and user-agent UserAgent, and
// reports the outcome; a nil client means
// outbound.Guard{}.Client(outbound.DefaultTimeout). It reads at most 1 KiB
// of the response. Only a 2xx answer is a success; a redirect is not
// followed (use a Guard's Client) and counts as a failure, reported as a
// refused redirect when its target is one the guard refuses. Deliver never
// returns an error: failures are in Result.Error.
func Deliver(ctx context.Context, client *http.Client, d Delivery) Result {
	r := Result{Start: time.Now()}
	finish := func(r Result) Result {
		r.Duration = time.Since(r.Start)
		return r
	}
	if client == nil {
		client = outbound.Guard{}.Client(outbound.DefaultTimeout)
		defer client.CloseIdleConnections()
	}
	ts := d.Timestamp
	if ts.IsZero() {
		ts = r.Start
	}
	sig, err := signatureHeader(d.Secrets, d.ID, ts, d.Body)
	if err != nil {
		r.Error = "cannot sign: " + strings.TrimPrefix(err.Error(), "webhooks: ")
		return finish(r)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		r.Error = "invalid url"
		return finish(r)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("user-agent", UserAgent)
	req.Header.Set(HeaderID, d.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := client.Do(req)
	if err != nil {
		r.Error = describe(err)
		return finish(r)
	}
	defer resp.Body.Close()
	r.StatusCode = resp.StatusCode
	r.Gone = resp.StatusCode == http.StatusGone
	r.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	// A read error is ignored: a 2xx whose body broke off still means the
	// receiver has the message.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseRead))
	r.Excerpt = excerpt(head)
	if !r.OK() {
		// http.StatusText, not resp.Status: the reason phrase is the
		// receiver's text.
		r.Error = strings.TrimSpace("HTTP " + strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode))
	}
	return finish(r)
}

// describe turns a client error into a short text naming its kind. It
// never includes the URL (which may carry a token) or a response.
func describe(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	var netErr net.Error
	switch {
	case errors.Is(err, outbound.ErrRedirect) && errors.Is(err, outbound.ErrForbiddenAddress):
		return "redirect to an address not allowed"
	case errors.Is(err, outbound.ErrRedirect):
		return "redirect to an invalid url"
	case errors.Is(err, outbound.ErrForbiddenAddress):
		return "address not allowed"
	case errors.Is(err, outbound.ErrInvalidURL):
		return "host does not resolve"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &dnsErr):
		return "host does not resolve"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return "tls certificate not trusted"
	case errors.As(err, &recErr):
		return "tls handshake failed"
	}
	return "request failed"
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an
// HTTP-date, as a duration from now; 0 when absent, invalid or past; at
// most 24 hours.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if allDigits(v) {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil || s > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}

// excerpt keeps the printable ASCII of b, whitespace runs folded to one
// space, truncated to maxExcerpt characters.
func excerpt(b []byte) string {
	var s strings.Builder
	space := false
	for _, c := range b {
		if s.Len() >= maxExcerpt {
			break
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			space = s.Len() > 0
		case c > ' ' && c < 0x7f:
			if space {
				s.WriteByte(' ')
				space = false
			}
			s.WriteByte(c)
		default:
			if space {
				s.WriteByte(' ')
				space = false
			}
			s.WriteByte('?')
		}
	}
	return truncate(s.String(), maxExcerpt)
}
