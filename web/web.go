// Package web serves the dashboard at /dashboard: server-rendered pages
// (html/template) and one small script, every asset embedded, nothing
// loaded from elsewhere.
//
// The dashboard holds no privilege of its own. A person signs in with an
// API key; the server exchanges it for a session cookie (HttpOnly,
// SameSite=Strict, Secure over TLS) that carries only a random token, and
// keeps the key sealed with the vault keyring in a SessionStore shared by
// the replicas. Every page reads, and every button acts, by sending a
// request with that key to the /v1 handler in the same process, so the
// route table authenticates and checks scopes exactly as it does for any
// client: a key without approvals:write sees no approve button, and a
// forged approval is refused by the API with 403.
//
// State-changing requests need the session's CSRF token and are refused
// when the browser says they are cross-origin (http.CrossOriginProtection).
// Every response carries a strict Content-Security-Policy (no inline
// script or style), frame-ancestors 'none' and X-Frame-Options: DENY.
package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/vault"
)

// Prefix is the path the dashboard is served under.
const Prefix = "/dashboard"

// CookieName names the session cookie.
const CookieName = "haldir_dashboard"

// DefaultTTL is how long a sign-in lasts unless Options say otherwise.
const DefaultTTL = 8 * time.Hour

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the dashboard.
type Options struct {
	// API is the /v1 handler; the dashboard reads and acts only through it.
	API http.Handler
	// Sessions keeps the sign-ins.
	Sessions SessionStore
	// Keyring seals the API keys of sessions.
	Keyring func(ctx context.Context) (*vault.Keyring, error)
	// TTL is the lifetime of a sign-in (DefaultTTL when zero).
	TTL time.Duration
	// Poll is how often live pages refresh (default 2 s).
	Poll time.Duration
	Log  *slog.Logger
	Now  func() time.Time
}

// Handler serves the dashboard. It implements http.Handler.
type Handler struct {
	api      http.Handler
	sessions SessionStore
	keyring  func(ctx context.Context) (*vault.Keyring, error)
	ttl      time.Duration
	poll     time.Duration
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*template.Template
	mux      *http.ServeMux
	handler  http.Handler
}

// New returns the dashboard handler.
func New(o Options) *Handler {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{api: o.API, sessions: o.Sessions, keyring: o.Keyring, ttl: o.TTL, poll: o.Poll, log: o.Log, now: o.Now}
	h.pages = parsePages()
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix+"/", http.StatusSeeOther) })
	m.HandleFunc("GET "+Prefix+"/login", h.loginPage)
	m.HandleFunc("POST "+Prefix+"/login", h.login)
	m.HandleFunc("POST "+Prefix+"/logout", h.signedIn(h.logout))
	m.HandleFunc("GET "+Prefix+"/{$}", h.signedIn(h.overview))
	m.HandleFunc("GET "+Prefix+"/sessions", h.signedIn(h.sessionsPage))
	m.HandleFunc("POST "+Prefix+"/sessions/{id}/revoke", h.signedIn(h.revokeSession))
	m.HandleFunc("GET "+Prefix+"/approvals", h.signedIn(h.approvalsPage))
	m.HandleFunc("GET "+Prefix+"/approvals/{id}", h.signedIn(h.approvalPage))
	m.HandleFunc("POST "+Prefix+"/approvals/{id}/approve", h.signedIn(h.decide(true)))
	m.HandleFunc("POST "+Prefix+"/approvals/{id}/deny", h.signedIn(h.decide(false)))
	m.HandleFunc("GET "+Prefix+"/audit", h.signedIn(h.auditPage))
	m.HandleFunc("GET "+Prefix+"/audit/proof/{entry}", h.signedIn(h.proofPage))
	m.HandleFunc("GET "+Prefix+"/spend", h.signedIn(h.spendPage))
	m.HandleFunc("GET "+Prefix+"/proxy", h.signedIn(h.proxyPage))
	m.HandleFunc("POST "+Prefix+"/proxy/tools/{name}/approve", h.signedIn(h.approveTool))
	m.HandleFunc("GET "+Prefix+"/webhooks", h.signedIn(h.webhooksPage))
	m.HandleFunc("GET "+Prefix+"/compliance", h.signedIn(h.compliancePage))
	m.HandleFunc("GET "+Prefix+"/compliance/evidence", h.signedIn(h.evidenceDownload))
	m.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusNotFound, "error", &page{Title: "Not found", Error: "There is no such page in the dashboard."})
	})
	h.mux = m
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusForbidden, "error", &page{Title: "Refused", Error: "This request came from another site, so it was refused."})
	}))
	h.handler = cop.Handler(m)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"/static/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.handler.ServeHTTP(w, r)
}

// viewer is the signed-in person on one request.
type viewer struct {
	h       *Handler
	r       *http.Request
	session Session
	key     string
	csrf    string
	Name    string
	Prefix  string
	Tenant  string
	Scopes  domain.KeyScopes
}

// get reads path from the API as the viewer.
func (v *viewer) get(path string) *apiResult {
	return v.h.apiCall(v.r.Context(), v.r, v.key, http.MethodGet, path, nil, v.r.URL.Query().Get("pos"))
}

// send writes through the API as the viewer.
func (v *viewer) send(method, path string, body any) *apiResult {
	return v.h.apiCall(v.r.Context(), v.r, v.key, method, path, body, "")
}

// Can reports whether the viewer's key holds resource:access
// ("approvals:write").
func (v *viewer) Can(scope string) bool {
	res, acc, _ := strings.Cut(scope, ":")
	return can(v.Scopes, domain.Resource(res), domain.Access(acc))
}

// CSRF is the token every form carries.
func (v *viewer) CSRF() string { return v.csrf }

func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
}

// signedIn loads the viewer and, on a state-changing request, checks the
// CSRF token before calling next. Without a live session a page redirects
// to the sign-in form and a live refresh gets 401.
func (h *Handler) signedIn(next func(http.ResponseWriter, *http.Request, *viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h.viewer(r)
		if err != nil {
			h.log.Error("dashboard: loading the session failed", "err", err)
			h.render(w, r, http.StatusServiceUnavailable, "error", &page{Title: "Unavailable", Error: "The dashboard could not read its sessions; try again in a moment."})
			return
		}
		if v == nil {
			h.setCookie(w, r, "", -1)
			if r.Method != http.MethodGet || r.URL.Query().Get("partial") != "" {
				h.render(w, r, http.StatusUnauthorized, "error", &page{Title: "Signed out", Error: "Your sign-in has ended; sign in again."})
				return
			}
			http.Redirect(w, r, Prefix+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			got := r.PostFormValue("csrf")
			if got == "" {
				got = r.Header.Get("X-CSRF-Token")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(v.csrf)) != 1 {
				h.render(w, r, http.StatusForbidden, "error", &page{Title: "Refused", Viewer: v, Error: "This form is missing its anti-forgery token, so it was refused. Reload the page and try again."})
				return
			}
		}
		next(w, r, v)
	}
}

// viewer returns the request's signed-in person, or nil.
func (h *Handler) viewer(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	th := hashToken(c.Value)
	s, found, err := h.sessions.Get(r.Context(), th, h.now())
	if err != nil || !found {
		return nil, err
	}
	ring, err := h.keyring(r.Context())
	if err != nil {
		return nil, err
	}
	sealed, err := vault.ParseSealed(s.Sealed)
	if err != nil {
		return nil, nil
	}
	wrapped, err := vault.ParseWrappedKey(s.Wrapped)
	if err != nil {
		return nil, nil
	}
	key, err := ring.Open(keyRef(s.Tenant, th), sealed, wrapped)
	if err != nil {
		h.log.Warn("dashboard: a session's key did not open; treating it as signed out", "err", err)
		return nil, nil
	}
	v := &viewer{h: h, r: r, session: s, key: string(key), csrf: csrfToken(c.Value), Name: s.KeyName, Prefix: s.KeyPrefix, Tenant: s.Tenant}
	// Ask the API who this is on every request: a revoked key ends its
	// sessions here, and the scopes shown are the key's current ones.
	var who struct {
		Tenant string   `json:"tenant_id"`
		Prefix string   `json:"prefix"`
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	res := v.get("/v1/whoami")
	if res.Status == http.StatusUnauthorized {
		_ = h.sessions.RevokeKey(r.Context(), s.Tenant, s.KeyPrefix, h.now())
		return nil, nil
	}
	if err := res.Decode(&who); err != nil {
		return nil, err
	}
	if who.Tenant != s.Tenant || who.Prefix != s.KeyPrefix {
		return nil, nil
	}
	v.Scopes = who.Scopes
	return v, nil
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	p := &page{Title: "Sign in", Next: safeNext(r.URL.Query().Get("next"))}
	if r.URL.Query().Get("signed_out") != "" {
		p.Flash = "You are signed out. The session was ended on the server."
	}
	h.render(w, r, http.StatusOK, "login", p)
}

// safeNext keeps a post-sign-in redirect inside the dashboard.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/"
	}
	return next
}

// login exchanges an API key for a session. The key is checked by asking
// the API who holds it; it is then sealed server-side and the browser gets
// only the cookie token.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	key := strings.TrimSpace(r.PostFormValue("key"))
	next := safeNext(r.PostFormValue("next"))
	fail := func(status int, msg string) {
		h.render(w, r, status, "login", &page{Title: "Sign in", Error: msg, Next: next})
	}
	if key == "" {
		fail(http.StatusBadRequest, "Paste an API key (it starts with hld_).")
		return
	}
	res := h.apiCall(r.Context(), r, key, http.MethodGet, "/v1/whoami", nil, "")
	var who struct {
		Tenant string `json:"tenant_id"`
		Prefix string `json:"prefix"`
		Name   string `json:"name"`
	}
	if err := res.Decode(&who); err != nil {
		if res.Status == http.StatusUnauthorized {
			fail(http.StatusUnauthorized, "That key is not valid, or it was revoked.")
			return
		}
		fail(res.Status, "The key could not be checked: "+err.Error())
		return
	}
	token := newToken()
	th := hashToken(token)
	ring, err := h.keyring(r.Context())
	if err != nil {
		h.log.Error("dashboard: keyring", "err", err)
		fail(http.StatusServiceUnavailable, "The dashboard cannot seal sessions right now; try again.")
		return
	}
	sealed, wrapped, err := ring.Seal(keyRef(who.Tenant, th), []byte(key))
	if err != nil {
		h.log.Error("dashboard: sealing a session key", "err", err)
		fail(http.StatusInternalServerError, "The sign-in could not be stored.")
		return
	}
	now := h.now()
	s := Session{TokenHash: th, Tenant: who.Tenant, KeyPrefix: who.Prefix, KeyName: who.Name,
		Sealed: sealed.Bytes(), Wrapped: wrapped.Bytes(), CreatedAt: now, ExpiresAt: now.Add(h.ttl)}
	if err := h.sessions.Create(r.Context(), s); err != nil {
		h.log.Error("dashboard: storing a session", "err", err)
		fail(http.StatusServiceUnavailable, "The sign-in could not be stored; try again.")
		return
	}
	// Sign-ins are rare: each one also clears the rows of sessions that
	// ended a day ago, so no background task is needed.
	if _, err := h.sessions.Sweep(r.Context(), now.Add(-24*time.Hour)); err != nil {
		h.log.Warn("dashboard: sweeping ended sessions", "err", err)
	}
	h.setCookie(w, r, token, int(h.ttl/time.Second))
	h.log.Info("dashboard sign-in", "tenant", who.Tenant, "key", who.Prefix, "expires_at", s.ExpiresAt.UTC().Format(time.RFC3339))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout revokes the session on the server, then clears the cookie.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := h.sessions.Revoke(r.Context(), v.session.TokenHash, h.now()); err != nil {
		h.log.Error("dashboard: revoking a session", "err", err)
		h.render(w, r, http.StatusServiceUnavailable, "error", &page{Title: "Unavailable", Viewer: v, Error: "The session could not be ended; try again."})
		return
	}
	h.setCookie(w, r, "", -1)
	h.log.Info("dashboard sign-out", "tenant", v.Tenant, "key", v.Prefix)
	http.Redirect(w, r, Prefix+"/login?signed_out=1", http.StatusSeeOther)
}
