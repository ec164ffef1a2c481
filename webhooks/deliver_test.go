package webhooks_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/haldir-dev/haldir/internal/outbound"
	"github.com/haldir-dev/haldir/webhooks"
)

func TestDeliverSignsForEverySecret(t *testing.T) {
	oldSecret, newSecret := webhooks.NewSecret(), webhooks.NewSecret()
	body := `{"type":"session.created","data":{"session_id":"ses_1"}}`
	type seen struct {
		Method, Path, ContentType, UserAgent, ID, Body string
		Signatures                                     int
		VerifiesWithOld, VerifiesWithNew               bool
	}
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{
			Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("content-type"),
			UserAgent: r.Header.Get("user-agent"), ID: r.Header.Get("webhook-id"), Body: string(b),
			Signatures:      len(strings.Fields(r.Header.Get("webhook-signature"))),
			VerifiesWithOld: webhooks.Verify([]string{oldSecret}, r.Header, b, time.Now(), 0) == nil,
			VerifiesWithNew: webhooks.Verify([]string{newSecret}, r.Header, b, time.Now(), 0) == nil,
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	r := webhooks.Deliver(context.Background(), outbound.Guard{AllowPrivate: true}.Client(time.Second), webhooks.Delivery{
		ID: "evt_1", URL: srv.URL + "/in", Secrets: []string{newSecret, oldSecret}, Body: []byte(body),
	})
	want := seen{Method: "POST", Path: "/in", ContentType: "application/json", UserAgent: "Haldir-Webhooks/1",
		ID: "evt_1", Body: body, Signatures: 2, VerifiesWithOld: true, VerifiesWithNew: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("receiver saw (-want +got):\n%s", diff)
	}
	if !r.OK() || r.StatusCode != 204 || r.Error != "" || r.Duration <= 0 || r.Start.IsZero() {
		t.Errorf("Result = %+v, want a timed 204 success", r)
	}
}

func TestDeliverOutcomes(t *testing.T) {
	const leak = "INTERNAL-SECRET-TOKEN"
	httpDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    webhooks.Result
		// retryAtLeast checks RetryAfter against a lower bound when an
		// HTTP-date makes it inexact.
		retryAtLeast time.Duration
	}{
		{name: "200", handler: status(200, ""), want: webhooks.Result{StatusCode: 200}},
		{name: "299", handler: status(299, ""), want: webhooks.Result{StatusCode: 299}},
		{name: "redirect is a failure", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusMovedPermanently)
		}, want: webhooks.Result{StatusCode: 301, Error: "HTTP 301 Moved Permanently"}},
		{name: "400", handler: status(400, ""), want: webhooks.Result{StatusCode: 400, Error: "HTTP 400 Bad Request"}},
		{name: "410 gone", handler: status(410, ""), want: webhooks.Result{StatusCode: 410, Error: "HTTP 410 Gone", Gone: true}},
		{name: "429 retry-after seconds", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
		}, want: webhooks.Result{StatusCode: 429, Error: "HTTP 429 Too Many Requests", RetryAfter: 7 * time.Second}},
		{name: "503 retry-after date", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", httpDate)
			w.WriteHeader(503)
		}, want: webhooks.Result{StatusCode: 503, Error: "HTTP 503 Service Unavailable"}, retryAtLeast: 85 * time.Second},
		{name: "retry-after capped at a day", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "99999999999999999999")
			w.WriteHeader(503)
		}, want: webhooks.Result{StatusCode: 503, Error: "HTTP 503 Service Unavailable", RetryAfter: 24 * time.Hour}},
		{name: "bad retry-after ignored", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "soon")
			w.WriteHeader(503)
		}, want: webhooks.Result{StatusCode: 503, Error: "HTTP 503 Service Unavailable"}},
		{name: "custom reason phrase not reflected", handler: func(w http.ResponseWriter, r *http.Request) {
			// A hijacked connection lets the receiver choose the reason phrase.
			c, buf, _ := w.(http.Hijacker).Hijack()
			defer c.Close()
			buf.WriteString("HTTP/1.1 500 " + leak + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			buf.Flush()
		}, want: webhooks.Result{StatusCode: 500, Error: "HTTP 500 Internal Server Error"}},
		{name: "body excerpt sanitised and truncated", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "line one\r\n\tline\x00two \x1b[31m\xff"+leak+strings.Repeat("x", 1<<20))
		}, want: webhooks.Result{StatusCode: 500, Error: "HTTP 500 Internal Server Error",
			Excerpt: ("line one line?two ?[31m?" + leak + strings.Repeat("x", 256))[:256]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			got := webhooks.Deliver(context.Background(), outbound.Guard{AllowPrivate: true}.Client(2*time.Second),
				webhooks.Delivery{ID: "evt_1", URL: srv.URL, Secrets: []string{webhooks.NewSecret()}, Body: []byte(`{}`)})
			if strings.Contains(got.Error, leak) {
				t.Errorf("Error %q reflects the response", got.Error)
			}
			if tc.retryAtLeast > 0 {
				if got.RetryAfter < tc.retryAtLeast || got.RetryAfter > 90*time.Second {
					t.Errorf("RetryAfter = %v, want about 90s", got.RetryAfter)
				}
				got.RetryAfter = 0
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(webhooks.Result{}, "Start", "Duration")); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			if len(got.Excerpt) > 256 {
				t.Errorf("excerpt of %d bytes", len(got.Excerpt))
			}
			if got.Duration <= 0 {
				t.Errorf("Duration = %v", got.Duration)
			}
		})
	}
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func TestDeliverFailuresWithoutResponse(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a closed connection only after the body
		<-r.Context().Done()
	}))
	defer hang.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String() + "/hook?token=SECRET-IN-URL"
	closed.Close()
	secret := webhooks.NewSecret()
	for _, tc := range []struct {
		name    string
		guard   outbound.Guard
		url     string
		secrets []string
		want    string
	}{
		{"timeout", outbound.Guard{AllowPrivate: true}, hang.URL, []string{secret}, "timeout"},
		{"connection refused", outbound.Guard{AllowPrivate: true}, refused, []string{secret}, "connection refused"},
		{"forbidden address", outbound.Guard{}, hang.URL, []string{secret}, "address not allowed"},
		{"no secret", outbound.Guard{AllowPrivate: true}, hang.URL, nil, "cannot sign: no active secret"},
		{"bad secret", outbound.Guard{AllowPrivate: true}, hang.URL, []string{"whsec_short"}, "cannot sign: secret is not base64"},
		{"bad url", outbound.Guard{AllowPrivate: true}, "http://[::1", []string{secret}, "invalid url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := webhooks.Deliver(context.Background(), tc.guard.Client(300*time.Millisecond),
				webhooks.Delivery{ID: "evt_1", URL: tc.url, Secrets: tc.secrets, Body: []byte(`{}`)})
			if got.Error != tc.want || got.StatusCode != 0 || got.OK() {
				t.Errorf("Result = %+v, want Error %q and no status", got, tc.want)
			}
			if got.Duration > 5*time.Second {
				t.Errorf("Duration = %v", got.Duration)
			}
		})
	}
}

// roundTripFunc answers requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDeliverRefusedRedirect: a receiver that redirects to an address the
// guard refuses is reported as such, not as a plain 3xx.
func TestDeliverRefusedRedirect(t *testing.T) {
	var sent []string
	c := &http.Client{
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = append(sent, r.URL.String())
			h := http.Header{"Location": {"http://169.254.169.254/latest/meta-data/"}}
			return &http.Response{StatusCode: http.StatusTemporaryRedirect, Header: h, Body: http.NoBody, Request: r}, nil
		}),
		CheckRedirect: outbound.Guard{}.CheckRedirect,
	}
	got := webhooks.Deliver(context.Background(), c, webhooks.Delivery{ID: "evt_1", URL: "https://hooks.example/in",
		Secrets: []string{webhooks.NewSecret()}, Body: []byte(`{}`)})
	if got.Error != "redirect to an address not allowed" || got.OK() {
		t.Errorf("Result = %+v, want a refused redirect", got)
	}
	if len(sent) != 1 {
		t.Errorf("requests sent: %q, want only the first", sent)
	}
}
