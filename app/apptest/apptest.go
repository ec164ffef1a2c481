// Package apptest runs a real Haldir server for end-to-end tests: the whole
// app on 127.0.0.1:0 over a fresh SQLite directory or a fresh Postgres
// database, with an HTTP client that speaks the /v1 contract.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/vault"
)

// AdminToken is the operator token every test server accepts.
const AdminToken = "test-operator-token-0123456789"

// Server is a running Haldir.
type Server struct {
	t       testing.TB
	URL     string
	App     *app.App
	Backend string
	Config  app.Config
	stop    func()
}

// Backends names the stores end-to-end tests run against.
var Backends = []string{"sqlite", "postgres"}

// Option adjusts the server's configuration before it starts.
type Option func(*app.Config)

// Start runs a server on backend ("sqlite" or "postgres") until the test
// ends.
func Start(t testing.TB, backend string, opts ...Option) *Server {
	t.Helper()
	// Detectors run only for tenants that turn them on, so that no test
	// but the anomaly tests sees flags appear in its ledger.
	cfg := app.Config{AdminToken: AdminToken, Version: "test", EncryptionKey: vault.GenerateMasterKey(), AllowPrivateNetworks: true,
		AnomalyDefaults: &domain.AnomalySettings{}}
	cfg.SigningKey, _, _ = transparency.GenerateSigningKey("haldir-test")
	switch backend {
	case "sqlite":
		cfg.DataDir = t.TempDir()
	case "postgres":
		cfg.DatabaseURL = sqltest.NewPostgresDatabase(t)
		cfg.PGMaxConns = 12
	default:
		t.Fatalf("apptest: unknown backend %q", backend)
	}
	for _, o := range opts {
		o(&cfg)
	}
	return StartConfig(t, backend, cfg)
}

// StartConfig runs a server with an explicit configuration, for example to
// restart one on the same store.
func StartConfig(t testing.TB, backend string, cfg app.Config) *Server {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("HALDIR_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return StartLogged(t, backend, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})))
}

// StartLogged runs a server that logs to log.
func StartLogged(t testing.TB, backend string, cfg app.Config, log *slog.Logger) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("apptest: open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		a.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	s := &Server{t: t, URL: "http://" + ln.Addr().String(), App: a, Backend: backend, Config: cfg}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			a.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

// Stop shuts the server down now (it is also stopped at cleanup).
func (s *Server) Stop() { s.stop() }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Client calls the API with one key (or none).
type Client struct {
	t      testing.TB
	Base   string
	Key    string
	Tenant string
	http   *http.Client
}

var transport = &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0, IdleConnTimeout: 30 * time.Second}

// Anonymous returns a client that sends no key.
func (s *Server) Anonymous() *Client {
	return &Client{t: s.t, Base: s.URL, http: &http.Client{Transport: transport, Timeout: 60 * time.Second}}
}

// WithKey returns a client using key.
func (s *Server) WithKey(key, tenant string) *Client {
	c := s.Anonymous()
	c.Key, c.Tenant = key, tenant
	return c
}

// NewTenant creates a tenant through the operator route and returns a
// client holding its "*" key.
func (s *Server) NewTenant(name string) *Client {
	s.t.Helper()
	r := s.Anonymous().Do("POST", "/v1/tenants", map[string]any{"name": name}, "Authorization", "Bearer "+AdminToken)
	if r.Status != http.StatusCreated {
		s.t.Fatalf("apptest: create tenant: %d %s", r.Status, r.Raw)
	}
	return s.WithKey(r.Str("key"), r.Str("tenant_id"))
}

// KeyWithScopes mints a key in c's tenant holding scopes.
func (c *Client) KeyWithScopes(scopes ...string) *Client {
	c.t.Helper()
	r := c.Do("POST", "/v1/keys", map[string]any{"name": "scoped", "scopes": scopes})
	if r.Status != http.StatusCreated {
		c.t.Fatalf("apptest: create key %v: %d %s", scopes, r.Status, r.Raw)
	}
	k := *c
	k.Key = r.Str("key")
	return &k
}

// Response is a decoded API response.
type Response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// Do sends a request. body may be nil, a string or []byte (sent as is) or
// any value (sent as JSON). headers are name, value pairs.
func (c *Client) Do(method, path string, body any, headers ...string) *Response {
	c.t.Helper()
	r, err := c.Try(method, path, body, headers...)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// Try is Do for a server that may be gone: a request that gets no
// response returns the error instead of failing the test.
func (c *Client) Try(method, path string, body any, headers ...string) (*Response, error) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Key != "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("apptest: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("apptest: %s %s: reading the response: %w", method, path, err)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			c.t.Fatalf("apptest: %s %s: response is not a JSON object: %s", method, path, raw)
		}
	}
	return r, nil
}

// Str returns a string field of the body ("" when absent).
func (r *Response) Str(field string) string {
	s, _ := r.Body[field].(string)
	return s
}

// Num returns a numeric field of the body.
func (r *Response) Num(field string) float64 {
	f, _ := r.Body[field].(float64)
	return f
}

// Bool returns a boolean field of the body.
func (r *Response) Bool(field string) bool {
	b, _ := r.Body[field].(bool)
	return b
}

// Code returns the error code of an error response.
func (r *Response) Code() string { return r.Str("code") }

func (r *Response) String() string { return fmt.Sprintf("%d %s", r.Status, r.Raw) }

// Expect fails the test unless the response has status (and, for errors,
// code).
func (r *Response) Expect(t testing.TB, status int, code ...string) *Response {
	t.Helper()
	if r.Status != status || (len(code) > 0 && r.Code() != code[0]) {
		t.Fatalf("got %s; want status %d %v", r, status, code)
	}
	return r
}

// AwaitFlags waits until the anomaly detectors have passed the ledger's
// head, the flags they raised are appended, and the read models show them;
// it returns the ledger head they reflect.
func (s *Server) AwaitFlags(t testing.TB) int64 {
	t.Helper()
	ctx := context.Background()
	head, err := s.App.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.App.Projector.Position(projections.AnomalyGroupName) < head {
		if time.Now().After(deadline) {
			t.Fatal("the detectors did not reach the ledger head")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		pending, err := s.App.Queries.PendingFlags(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("raised flags were not appended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if head, err = s.App.Store.Head(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.App.Projector.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	return head
}
