// Package api serves Haldir's /v1 REST contract over HTTP.
//
// Every route is declared once, in routes(), with the authentication it
// needs and the key scope it requires; one request pipeline enforces both,
// so no handler can forget a check. Handlers parse and validate input, call
// package commands for writes and package projections for reads, and return
// a status and a body; errors become the JSON envelope in exactly one place
// (errorBody). The package holds no SQL.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/evidence"
	"github.com/haldir-dev/haldir/projections/views"
	"github.com/haldir-dev/haldir/proxy"
	"github.com/haldir-dev/haldir/ratelimit"
	"github.com/haldir-dev/haldir/telemetry"
	"github.com/haldir-dev/haldir/treelog"
)

// MaxBodyBytes is the largest request body accepted (1 MiB).
const MaxBodyBytes = 1 << 20

// Deps are the services the API calls.
type Deps struct {
	Commands    *commands.Service
	Queries     Reads
	Store       events.Store
	Idempotency Reservations
	Limiter     ratelimit.Limiter
	// Ready reports whether the store answers; /readyz returns 503 when
	// it does not.
	Ready func(context.Context) error
	// Projected returns the position the read models have reached.
	Projected func() int64
	// Log publishes signed checkpoints and proofs; nil disables them.
	Log *treelog.Log
	// Upstreams are the tenants' MCP upstream connections; nil disables
	// the proxy routes.
	Upstreams *proxy.Tenants
	// Governor runs governed tool calls (POST /v1/proxy/call, /mcp).
	Governor *commands.Governor
	// Deliveries lists webhook delivery attempts (the delivery log).
	Deliveries DeliveryLog
	// AnomalyDefaults are the detector settings of tenants that set none.
	AnomalyDefaults domain.AnomalySettings
	// KEKVersion reports the vault's key-encryption key version.
	KEKVersion func() uint32
	// WebhookStats reports a tenant's webhook figures for a period.
	WebhookStats func(ctx context.Context, tenant string, since, until time.Time) (evidence.WebhookStats, error)
}

// DeliveryLog lists a tenant's webhook delivery attempts, newest first
// (webhooks.Queue).
type DeliveryLog interface {
	List(ctx context.Context, tenant string, f domain.DeliveryFilter) ([]domain.DeliveryAttempt, error)
}

// Options configure the API.
type Options struct {
	// AdminToken enables POST /v1/tenants and GET /metrics for callers
	// presenting it. Empty disables both.
	AdminToken string
	// RateLimitPerMinute is the default per-key limit; 0 means none.
	RateLimitPerMinute int
	Version            string
	Log                *slog.Logger
	Now                func() time.Time
	// Metrics are served at GET /metrics and count every request; nil
	// makes a set of the server's own (requests and uptime only).
	Metrics *telemetry.Metrics
	// Tracer, when set, traces every request (a server span, continuing
	// the caller's W3C traceparent); nil traces nothing.
	Tracer trace.TracerProvider
}

// Server is the HTTP API. It implements http.Handler.
type Server struct {
	deps    Deps
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	router  *mux.Router
	routes  []route
	auth    *authenticator
	metrics *telemetry.Metrics
	tracer  trace.Tracer // nil: tracing off
	chains  chains
	started time.Time
	// mcpHandler serves POST /mcp.
	mcpHandler http.Handler
}

// authKind says how a route authenticates its caller.
type authKind int

const (
	authKey       authKind = iota // an API key holding need
	authNone                      // public
	authOperator                  // HALDIR_ADMIN_TOKEN
	authBootstrap                 // an API key holding need, or none at all on a fresh install
)

// route is one endpoint of the contract.
type route struct {
	method, path string
	auth         authKind
	need         domain.Need
	summary      string
	handle       func(*call) (int, any, error)
	// stream handlers write the response themselves (exports).
	stream func(*call) error
	// secretResponse marks responses holding a secret shown once: an
	// idempotent replay cannot repeat them.
	secretResponse bool
	// onForbidden, when set, is told about a key-scope refusal before it
	// is answered (secret reads record every refusal in the ledger).
	onForbidden func(*call, *domain.Error) error
	// rawBody leaves the body undecoded (JSON-RPC may send an array).
	rawBody bool
	// ledgerOnly marks the hot commands on every agent's request path
	// (commands.Service.acknowledge), which decide from the ledger and
	// aggregates: they do not wait for the read models to reach the
	// tenant's earlier writes, as every other authenticated request does.
	// /mcp is one: its own tools run as REST routes, which wait.
	ledgerOnly bool
}

// call is one request on its way through the pipeline.
type call struct {
	ctx       context.Context
	w         http.ResponseWriter
	r         *http.Request
	route     *route
	requestID string
	body      []byte
	obj       *object
	// Set by authentication.
	tenant string
	key    *views.KeyView
	actor  commands.Actor
	// written collects what the request's commands appended.
	written *commands.Written
}

func (c *call) vars(name string) string { return mux.Vars(c.r)[name] }

// New returns the API server.
func New(deps Deps, opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{deps: deps, opts: opts, log: opts.Log, now: func() time.Time { return opts.Now().UTC() }, started: time.Now()}
	s.auth = newAuthenticator(deps.Queries, s.now)
	s.chains.m = map[string]chainVerdict{}
	s.metrics = opts.Metrics
	if s.metrics == nil {
		s.metrics = telemetry.NewMetrics(telemetry.Sources{Started: s.started})
	}
	if opts.Tracer != nil {
		s.tracer = opts.Tracer.Tracer("github.com/haldir-dev/haldir/api")
	}
	s.router = mux.NewRouter()
	s.router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, domain.Errorf(domain.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.router.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := requestID(r)
		w.Header().Set("X-Request-ID", id)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path),
			"code": string(domain.CodeInvalid), "request_id": id})
	})
	s.routes = s.routeTable()
	s.mcpHandler = s.mcpServer().HTTPHandler()
	for i := range s.routes {
		rt := &s.routes[i]
		s.router.HandleFunc(rt.path, s.handler(rt)).Methods(rt.method)
	}
	return s
}

// TrustCaches tells the server whether it hears of every change made by
// other processes (Invalidate): true on a single process (SQLite), and on
// Postgres while the replica's notification listener is connected. While
// false, nothing that decides is served from a per-process cache.
func (s *Server) TrustCaches(trusted bool) { s.auth.trust(trusted) }

// Invalidate drops what a projection reported stale (a payload of
// projections.InvalidateChannel): "key:<prefix>" for a revoked key.
func (s *Server) Invalidate(what string) {
	if prefix, ok := strings.CutPrefix(what, "key:"); ok {
		s.auth.forget(prefix)
	}
}

// Observe keeps the server's caches in step with the ledger; the core
// projection calls it for every event it passes (projections.Group.Observe),
// so a revocation reaches this replica's cache when its projector reaches
// the revocation, at the latest.
func (s *Server) Observe(e *events.Event) {
	if e.Type == domain.TypeKeyRevoked {
		s.auth.forget(strings.TrimPrefix(e.Stream, domain.KeyStream("")))
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// fail answers a request that matched no route.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	id := requestID(r)
	w.Header().Set("X-Request-ID", id)
	status, body := errorBody(s.log, id, err)
	writeJSON(w, status, body)
}

// requestID returns the caller's X-Request-ID when it is safe to echo, or a
// new one.
func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-ID"); v != "" && len(v) <= 128 {
		ok := true
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:", c) >= 0) {
				ok = false
				break
			}
		}
		if ok {
			return v
		}
	}
	var b [12]byte
	rand.Read(b[:])
	return "req_" + hex.EncodeToString(b[:])
}

// statusWriter records the status a streaming handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers push data as it is produced.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) handler(rt *route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		ctx := r.Context()
		var span trace.Span
		if s.tracer != nil {
			// The route template names the span; the raw path and the query
			// (which may hold a session id) are not recorded.
			ctx = telemetry.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
			ctx, span = s.tracer.Start(ctx, rt.method+" "+rt.path, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", rt.method), attribute.String("http.route", rt.path)))
			r = r.WithContext(ctx)
		}
		ctx, written := commands.WithWritten(ctx)
		c := &call{ctx: ctx, w: sw, r: r, route: rt, requestID: requestID(r), written: written}
		sw.Header().Set("X-Request-ID", c.requestID)
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.log.Error("handler panicked", "request_id", c.requestID, "panic", fmt.Sprint(p))
					if sw.status == 0 {
						status, body := errorBody(s.log, c.requestID, errors.New("panic"))
						writeJSON(sw, status, body)
					}
				}
			}()
			s.serve(c)
		}()
		d := time.Since(start)
		s.metrics.Request(rt.method, rt.path, sw.status, d)
		if span != nil {
			span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
			if sw.status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(sw.status))
			}
			span.End()
		}
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelError
		}
		var prefix string
		if c.key != nil {
			prefix = c.key.Prefix
		}
		s.log.LogAttrs(c.ctx, level, "request", slog.String("request_id", c.requestID), slog.String("method", r.Method),
			slog.String("route", rt.path), slog.Int("status", sw.status), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.String("tenant", c.tenant), slog.String("key", prefix))
	}
}

// serve runs the pipeline for one request.
func (s *Server) serve(c *call) {
	if err := s.prepare(c); err != nil {
		s.respond(c, 0, nil, err)
		return
	}
	if c.route.stream != nil {
		if err := c.route.stream(c); err != nil {
			s.respond(c, 0, nil, err)
		}
		return
	}
	if c.r.Method == http.MethodPost && c.r.Header.Get("Idempotency-Key") != "" {
		s.idempotent(c)
		return
	}
	status, body, err := c.route.handle(c)
	s.respond(c, status, body, err)
}

// prepare reads the body and authenticates and authorises the caller.
func (s *Server) prepare(c *call) error {
	if c.r.Method == http.MethodPost || c.r.Method == http.MethodPut || c.r.Method == http.MethodPatch {
		body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxBodyBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return domain.Errorf(domain.CodeTooLarge, "request body is larger than %d bytes", MaxBodyBytes)
			}
			return domain.Invalid("", "could not read the request body")
		}
		c.body = body
	}
	// A named position is awaited first, so that the key check, too, sees
	// everything up to it (a revocation made on another replica).
	if err := s.awaitPosition(c); err != nil {
		return err
	}
	if err := s.authenticate(c); err != nil {
		return err
	}
	// Read-your-writes without a header: the read models include what
	// this replica has appended for the tenant before the request is
	// served (usually true already; see commands.Service.AwaitTenant).
	// Past the bound the request is served anyway: the writes it may not
	// show answered Haldir-Read-Your-Writes: pending.
	if c.tenant != "" && !c.route.ledgerOnly {
		if err := s.deps.Commands.AwaitTenant(c.ctx, c.tenant); err != nil && !errors.Is(err, commands.ErrNotProjected) {
			return err
		}
	}
	if ct := c.r.Header.Get("Content-Type"); ct != "" && len(c.body) > 0 {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return domain.Errorf(domain.CodeUnsupportedMedia, "send the body as application/json, not %q", truncate(ct, 60))
		}
	}
	if c.key != nil && c.route.need != (domain.Need{}) && !c.key.Scopes.Allows(c.route.need) {
		refusal := &domain.Error{Code: domain.CodeInsufficientScope,
			Message: fmt.Sprintf("this key lacks the %s scope that %s %s requires", c.route.need, c.route.method, c.route.path),
			Extra:   map[string]any{"required": c.route.need.String(), "granted": []string(c.key.Scopes)}}
		if c.route.onForbidden != nil {
			c.actor = commands.Actor{Tenant: c.tenant, KeyPrefix: c.key.Prefix, RequestID: c.requestID, Route: c.route.method + " " + c.route.path}
			if err := c.route.onForbidden(c, refusal); err != nil {
				return err // the refusal could not be recorded: fail closed
			}
		}
		return refusal
	}
	if c.key != nil {
		if err := s.rateLimit(c); err != nil {
			return err
		}
	}
	if !c.route.rawBody && (c.body != nil || c.r.Method == http.MethodPost) {
		obj, err := parseObject(c.body)
		if err != nil {
			return err
		}
		c.obj = obj
	}
	c.actor = commands.Actor{Tenant: c.tenant, RequestID: c.requestID, Route: c.route.method + " " + c.route.path}
	if c.key != nil {
		c.actor.KeyPrefix = c.key.Prefix
	}
	return nil
}

func (s *Server) authenticate(c *call) error {
	switch c.route.auth {
	case authNone:
		return nil
	case authOperator:
		tok := bearer(c.r)
		if s.opts.AdminToken == "" {
			return domain.Errorf(domain.CodeNotFound, "operator routes are disabled: set HALDIR_ADMIN_TOKEN to enable them")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.AdminToken)) != 1 {
			return domain.Errorf(domain.CodeUnauthenticated, "this route needs the operator token (Authorization: Bearer $HALDIR_ADMIN_TOKEN)")
		}
		c.tenant = "_operator"
		c.actor.KeyPrefix = "operator"
		return nil
	}
	key := presentedKey(c.r)
	if key == "" && c.route.auth == authBootstrap {
		return nil // the handler decides whether the install is fresh
	}
	if key == "" {
		return domain.Errorf(domain.CodeUnauthenticated, "missing API key: send Authorization: Bearer hld_… or X-API-Key")
	}
	k, err := s.auth.check(c.ctx, key)
	if err != nil {
		return err
	}
	c.key, c.tenant = k, k.TenantID
	return nil
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func presentedKey(r *http.Request) string {
	if k := bearer(r); k != "" {
		return k
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

func (s *Server) rateLimit(c *call) error {
	limit := s.opts.RateLimitPerMinute
	if c.key.RateLimit > 0 {
		limit = c.key.RateLimit
	}
	if limit <= 0 || s.deps.Limiter == nil || c.ctx.Value(innerKey{}) != nil {
		return nil // an MCP tool's route was counted as the /mcp request
	}
	now := s.now()
	res, err := s.deps.Limiter.Allow(c.ctx, "key:"+c.key.Prefix, limit, time.Minute, now)
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(res.Reset.Unix(), 10))
	if !res.Allowed {
		retry := int(res.RetryAfter(now).Seconds() + 0.999)
		h.Set("Retry-After", strconv.Itoa(max(retry, 1)))
		return domain.Errorf(domain.CodeRateLimited, "rate limit of %d requests a minute reached for key %s; retry after %d s", limit, c.key.Prefix, max(retry, 1))
	}
	return nil
}

// respond writes a handler's result or error.
func (s *Server) respond(c *call, status int, body any, err error) {
	status, b := s.render(c, status, body, err)
	s.writtenHeaders(c)
	writeRaw(c.w, status, b)
}

// PositionHeader carries ledger positions for read-your-writes. A response
// that appended events names the position of the last one; a request that
// names a position is answered only once the read models include it, on
// whichever replica it lands (or 503 with Retry-After, past the bound).
const PositionHeader = "Haldir-Position"

// ConsistencyHeader is set to "pending" on a 2xx whose events are durable
// but which answered before the read models showed them (the projection
// wait timed out): the next read may not see the write yet, unless it
// echoes PositionHeader.
const ConsistencyHeader = "Haldir-Read-Your-Writes"

// writtenHeaders sets the read-your-writes headers of c's response.
func (s *Server) writtenHeaders(c *call) {
	if pos := c.written.Position(); pos > 0 {
		c.w.Header().Set(PositionHeader, strconv.FormatInt(pos, 10))
		if c.written.Pending() {
			c.w.Header().Set(ConsistencyHeader, "pending")
		}
	}
}

// awaitPosition holds a request that names a ledger position until the
// read models include it.
func (s *Server) awaitPosition(c *call) error {
	raw := c.r.Header.Get(PositionHeader)
	if raw == "" {
		return nil
	}
	pos, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || pos < 0 {
		return domain.Invalid(PositionHeader, "%s must be a ledger position (a non-negative integer)", PositionHeader)
	}
	return s.deps.Commands.AwaitPosition(c.ctx, pos)
}

// render turns a handler's result or error into a status and JSON bytes.
func (s *Server) render(c *call, status int, body any, err error) (int, []byte) {
	if err != nil {
		var eb map[string]any
		status, eb = errorBody(s.log, c.requestID, err)
		if status == http.StatusServiceUnavailable && c.w.Header().Get("Retry-After") == "" {
			c.w.Header().Set("Retry-After", "1") // every 503 is retryable
		}
		// Some refusals carry extra fields a client of the reference
		// reads (authorized:false on a denied payment).
		if m, ok := body.(map[string]any); ok {
			for k, v := range m {
				if _, taken := eb[k]; !taken {
					eb[k] = v
				}
			}
		}
		body = eb
	} else {
		body = s.withWarnings(c, status, body)
	}
	b, merr := json.Marshal(body)
	if merr != nil {
		s.log.Error("response encoding failed", "request_id", c.requestID, "err", merr)
		return http.StatusInternalServerError, []byte(`{"error":"response encoding failed","code":"internal"}`)
	}
	return status, b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
