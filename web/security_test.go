package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/web"
)

// raw sends a request with the dashboard cookie and no redirects followed.
func raw(t *testing.T, method, u, cookie string, form url.Values, headers ...string) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: web.CookieName, Value: cookie})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// sessionCookie returns the browser's dashboard cookie for base.
func sessionCookie(t *testing.T, b *browser, base string) string {
	t.Helper()
	for _, c := range b.cookies(base + "/dashboard/") {
		if c.Name == web.CookieName {
			if !c.HTTPOnly || c.SameSite != "Strict" || c.Path != "/dashboard" {
				t.Errorf("the session cookie is not HttpOnly, SameSite=Strict on /dashboard: %+v", c)
			}
			return c.Value
		}
	}
	t.Fatal("the browser holds no dashboard cookie")
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestScopesLimitTheActions: a key that may read approvals but not decide
// them sees the request and no button, and a forged POST is refused by the
// API with 403; a key with audit:read alone is told what it lacks.
func TestScopesLimitTheActions(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "ops"}).Expect(t, 201).Str("session_id")
	id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "action": "drop", "reason": "cleanup"}).Expect(t, 201).Str("request_id")
	process := browserProcess(t)

	reader := newBrowser(t, process, "auditor")
	reader.expectError(`status of 403`)
	reader.signIn(s.URL, c.KeyWithScopes("audit:read", "approvals:read").Key)
	reader.open(s.URL + "/dashboard/approvals")
	card := fmt.Sprintf(`[data-request-id=%q]`, id)
	reader.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, card))
	if n := eval[int](reader, `document.querySelectorAll("button[data-action]").length`); n != 0 {
		t.Errorf("a key without approvals:write sees %d decision buttons", n)
	}
	if !strings.Contains(eval[string](reader, `document.body.innerText`), "lacks approvals:write") {
		t.Error("the page does not say why there is no button")
	}
	reader.screenshot("approvals-read-only")
	// A forged POST, with the page's own CSRF token: the API refuses it.
	status := eval[int](reader, fmt.Sprintf(`fetch("/dashboard/approvals/%s/approve", {method: "POST",
		body: new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value})}).then(r => r.status)`, id))
	if status != http.StatusForbidden {
		t.Errorf("a forged approval with an approvals:read key answered %d, want 403", status)
	}
	if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "pending" {
		t.Fatalf("the forged approval was applied: %s", g)
	}

	auditor := newBrowser(t, process, "audit-only")
	auditor.expectError(`status of 403`)
	auditor.signIn(s.URL, c.KeyWithScopes("audit:read").Key)
	auditor.open(s.URL + "/dashboard/approvals")
	if !strings.Contains(eval[string](auditor, `document.body.innerText`), "lacks the approvals:read scope") {
		t.Error("an audit:read key is not told it lacks approvals:read")
	}
	if n := eval[int](auditor, `document.querySelectorAll("button[data-action]").length`); n != 0 {
		t.Errorf("an audit:read key sees %d decision buttons", n)
	}
	status = eval[int](auditor, fmt.Sprintf(`fetch("/dashboard/approvals/%s/approve", {method: "POST",
		body: new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value})}).then(r => r.status)`, id))
	if status != http.StatusForbidden {
		t.Errorf("a forged approval with an audit:read key answered %d, want 403", status)
	}
	if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "pending" {
		t.Fatalf("the forged approval was applied: %s", g)
	}
	// The audit trail it may read.
	auditor.open(s.URL + "/dashboard/audit")
	auditor.waitFor(`document.querySelector("table tbody tr") !== null`)
}

// TestCrossSitePostIsRefused: a page on another site that submits the
// approve form gets 403 and changes nothing, and so do requests carrying
// the cookie without the CSRF token, or with it from another origin.
func TestCrossSitePostIsRefused(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "ops"}).Expect(t, 201).Str("session_id")
	id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "action": "drop"}).Expect(t, 201).Str("request_id")
	target := s.URL + "/dashboard/approvals/" + id + "/approve"

	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>win a prize</title><form id="f" method="post" action="%s"><input name="note" value="pwned"></form>
<script>document.getElementById("f").submit()</script>`, target)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site

	b := newBrowser(t, browserProcess(t), "victim")
	b.expectError(`status of 403`)
	b.signIn(s.URL, c.Key)
	cookie := sessionCookie(t, b, s.URL)
	b.do(chromedp.Navigate(evilURL))
	b.waitFor(`location.href.includes("/approve") && document.body.innerText.length > 0`)
	if text := eval[string](b, `document.body.innerText`); !strings.Contains(text, "Refused") {
		t.Errorf("the cross-site form was not refused:\n%s", text)
	}
	if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "pending" {
		t.Fatalf("the cross-site form approved the request: %s", g)
	}

	// The cookie without the token.
	if st, _, _ := raw(t, "POST", target, cookie, url.Values{"note": {"x"}}); st != http.StatusForbidden {
		t.Errorf("a POST without the CSRF token answered %d, want 403", st)
	}
	// A wrong token.
	if st, _, _ := raw(t, "POST", target, cookie, url.Values{"csrf": {"forged"}}); st != http.StatusForbidden {
		t.Errorf("a POST with a wrong CSRF token answered %d, want 403", st)
	}
	// The right token, sent from another origin.
	_, page, _ := raw(t, "GET", s.URL+"/dashboard/approvals", cookie, nil)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page carries no CSRF token")
	}
	if st, _, _ := raw(t, "POST", target, cookie, url.Values{"csrf": {m[1]}}, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"); st != http.StatusForbidden {
		t.Errorf("a cross-origin POST with the token answered %d, want 403", st)
	}
	if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "pending" {
		t.Fatalf("a refused POST approved the request: %s", g)
	}
	// And the same request from the page itself works: the checks above
	// refused for the reasons they name.
	if st, _, hd := raw(t, "POST", target, cookie, url.Values{"csrf": {m[1]}}); st != http.StatusSeeOther || !strings.Contains(hd.Get("Location"), "result=approved") {
		t.Errorf("the genuine POST answered %d %v", st, hd)
	}
}

// TestTenantsSeeOnlyTheirOwn: a tenant B sign-in shows nothing of tenant
// A on any page, and A's request ids lead nowhere.
func TestTenantsSeeOnlyTheirOwn(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	a := s.NewTenant("alpha")
	bt := s.NewTenant("beta")
	aSes := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "alpha-agent-7", "spend_limit": 100}).Expect(t, 201).Str("session_id")
	a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": aSes, "amount": 42, "description": "alpha purchase"}).Expect(t, 200)
	aReq := a.Do("POST", "/v1/approvals/request", map[string]any{"session_id": aSes, "tool": "alpha-tool.wipe", "action": "wipe"}).Expect(t, 201).Str("request_id")
	a.Do("POST", "/v1/audit", map[string]any{"session_id": aSes, "action": "alpha-action", "tool": "alpha-tool"}).Expect(t, 201)
	entry := a.Do("GET", "/v1/audit?limit=1", nil).Expect(t, 200).Body["entries"].([]any)[0].(map[string]any)["entry_id"].(string)
	bSes := bt.Do("POST", "/v1/sessions", map[string]any{"agent_id": "beta-agent"}).Expect(t, 201).Str("session_id")
	bt.Do("POST", "/v1/approvals/request", map[string]any{"session_id": bSes, "tool": "beta.tool"}).Expect(t, 201)

	b := newBrowser(t, browserProcess(t), "beta")
	b.expectError(`status of 404`)
	b.signIn(s.URL, bt.Key)
	secrets := []string{a.Tenant, aSes, aReq, entry, "alpha-agent-7", "alpha-tool", "alpha purchase", a.Key}
	for _, path := range []string{"/", "/sessions", "/approvals", "/audit", "/audit?agent_id=alpha-agent-7", "/spend", "/proxy", "/webhooks", "/compliance",
		"/approvals/" + aReq, "/audit/proof/" + entry} {
		b.open(s.URL + "/dashboard" + path)
		html := eval[string](b, `document.documentElement.outerHTML`)
		for _, sec := range secrets {
			// What B typed into the address bar is echoed back (a filter
			// field, a title): that is B's own input, not A's data.
			if strings.Contains(html, sec) && !strings.Contains(path, sec) {
				t.Errorf("tenant B's %s shows tenant A's %q", path, sec)
			}
		}
	}
	for _, path := range []string{"/approvals/" + aReq, "/audit/proof/" + entry} {
		b.open(s.URL + "/dashboard" + path)
		if !eval[bool](b, `document.querySelector("#page-error") !== null`) {
			t.Errorf("tenant B's %s shows no error for tenant A's id", path)
		}
	}
	// B's own data is there, so the pages above did render.
	b.open(s.URL + "/dashboard/sessions")
	if !strings.Contains(eval[string](b, `document.body.innerText`), "beta-agent") {
		t.Error("tenant B's sessions page does not show B's session")
	}
	if g := a.Do("GET", "/v1/approvals/"+aReq, nil); g.Str("status") != "pending" {
		t.Errorf("A's request changed: %s", g)
	}
}

// TestSignOutRevokesTheSession: signing out ends the session on the
// server, so the old cookie opens nothing; the browser never holds the
// key, and the database holds it only sealed.
func TestSignOutRevokesTheSession(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	b := newBrowser(t, browserProcess(t), "leaver")
	b.signIn(s.URL, c.Key)
	cookie := sessionCookie(t, b, s.URL)
	if strings.Contains(cookie, c.Key) || eval[string](b, `document.cookie`) != "" {
		t.Errorf("the browser can read the session cookie, or it holds the key")
	}
	if html := eval[string](b, `document.documentElement.outerHTML`); strings.Contains(html, c.Key) {
		t.Error("the page shows the API key")
	}
	if st, _, _ := raw(t, "GET", s.URL+"/dashboard/", cookie, nil); st != http.StatusOK {
		t.Fatalf("the cookie does not open the overview: %d", st)
	}
	var sealed []byte
	var n int
	if err := s.App.DB.State().Read.QueryRowContext(context.Background(), "SELECT count(*), max(sealed) FROM dashboard_sessions").Scan(&n, &sealed); err != nil {
		t.Fatal(err)
	}
	if n != 1 || bytes.Contains(sealed, []byte(c.Key)) || bytes.Contains(sealed, []byte(c.Key[4:20])) {
		t.Errorf("the session row (%d rows) holds the key in the clear", n)
	}

	b.do(chromedp.Click(chromedp.CSS("#signout")))
	b.waitFor(`location.pathname === "/dashboard/login" && document.body.innerText.includes("signed out")`)
	b.screenshot("login")
	// The old cookie, replayed: refused, because the server revoked it.
	st, _, hd := raw(t, "GET", s.URL+"/dashboard/", cookie, nil)
	if st != http.StatusSeeOther || !strings.HasPrefix(hd.Get("Location"), "/dashboard/login") {
		t.Errorf("the revoked cookie still opens the overview: %d %v", st, hd)
	}
	if st, _, _ := raw(t, "GET", s.URL+"/dashboard/approvals?partial=1", cookie, nil); st != http.StatusUnauthorized {
		t.Errorf("the revoked cookie's live refresh answered %d, want 401", st)
	}
	var revoked int
	if err := s.App.DB.State().Read.QueryRowContext(context.Background(), "SELECT count(*) FROM dashboard_sessions WHERE revoked_at IS NOT NULL").Scan(&revoked); err != nil {
		t.Fatal(err)
	}
	if revoked != 1 {
		t.Errorf("%d sessions are marked revoked, want 1", revoked)
	}
	// A revoked API key ends its dashboard sessions too.
	k := c.KeyWithScopes("audit:read")
	b.signIn(s.URL, k.Key)
	cookie = sessionCookie(t, b, s.URL)
	prefix := k.Do("GET", "/v1/whoami", nil).Expect(t, 200).Str("prefix")
	c.Do("DELETE", "/v1/keys/"+prefix, nil).Expect(t, 200)
	if st, _, _ := raw(t, "GET", s.URL+"/dashboard/audit", cookie, nil); st != http.StatusSeeOther {
		t.Errorf("a session of a revoked key answered %d, want a redirect to sign in", st)
	}
}

// TestTwoApproversRace: two people decide one request at once from two
// browsers; one wins, and the other is told who did.
func TestTwoApproversRace(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "ops"}).Expect(t, 201).Str("session_id")
	id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "action": "drop", "amount": 900}).Expect(t, 201).Str("request_id")
	key := func(name string) *apptest.Client {
		r := c.Do("POST", "/v1/keys", map[string]any{"name": name, "scopes": []string{"approvals:write"}}).Expect(t, 201)
		k := *c
		k.Key = r.Str("key")
		return &k
	}
	process := browserProcess(t)
	people := []struct {
		b    *browser
		verb string
		who  string
	}{{newBrowser(t, process, "alice"), "approve", ""}, {newBrowser(t, process, "bob"), "deny", ""}}
	for i, name := range []string{"alice", "bob"} {
		k := key(name)
		people[i].who = whoName(t, k)
		people[i].b.signIn(s.URL, k.Key)
		people[i].b.open(s.URL + "/dashboard/approvals/" + id)
		people[i].b.waitFor(`document.querySelector("button[data-action=deny]") !== null`)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range people {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(people[i].b.ctx, 30*time.Second)
			defer cancel()
			errs[i] = chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button[data-action="+people[i].verb+"]")))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s's click: %v", people[i].who, err)
		}
	}
	for _, p := range people {
		p.b.waitFor(`new URLSearchParams(location.search).has("result") && document.querySelector("#approval-status") !== null`)
	}
	final := c.Do("GET", "/v1/approvals/"+id, nil).Expect(t, 200)
	wins := 0
	for _, p := range people {
		text := eval[string](p.b, `document.querySelector("main").innerText`)
		switch {
		case strings.Contains(text, "You approved") || strings.Contains(text, "You denied"):
			wins++
			if final.Str("decided_by") != p.who {
				t.Errorf("%s was told they won, but the record says %s", p.who, final.Str("decided_by"))
			}
		case strings.Contains(text, "was not applied"):
			if !strings.Contains(text, final.Str("decided_by")) || !strings.Contains(text, "already "+final.Str("status")) {
				t.Errorf("%s lost but is not told who won (%s, %s):\n%s", p.who, final.Str("decided_by"), final.Str("status"), text)
			}
			p.b.screenshot("approval-lost-race")
		default:
			t.Errorf("%s's page says neither:\n%s", p.who, text)
		}
	}
	if wins != 1 {
		t.Errorf("%d winners, want exactly 1", wins)
	}
}

// TestAnExpiredRequestCannotBeApproved: silence is not consent. A page
// opened before the request expired still shows the button; clicking it
// after expiry is refused, and the page says why.
func TestAnExpiredRequestCannotBeApproved(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "ops"}).Expect(t, 201).Str("session_id")
	b := newBrowser(t, browserProcess(t), "late")
	b.signIn(s.URL, c.Key)
	// Signed in first, so that the page opens well within the TTL, also
	// on a loaded machine (chromium can take seconds to render).
	id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "ttl": 20}).Expect(t, 201).Str("request_id")
	b.open(s.URL + "/dashboard/approvals/" + id)
	b.waitFor(`document.querySelector("button[data-action=approve]") !== null`)
	eventually(t, "the request expired", func() bool { return c.Do("GET", "/v1/approvals/"+id, nil).Str("status") == "expired" })
	b.do(chromedp.Click(chromedp.CSS("button[data-action=approve]")))
	b.waitFor(`location.search.includes("result=conflict")`)
	if text := eval[string](b, `document.querySelector("#page-error").textContent`); !strings.Contains(text, "expired; nobody decided it in time") {
		t.Errorf("the late approver is told %q", text)
	}
	if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "expired" || g.Str("decided_by") != "" {
		t.Errorf("the expired request: %s", g)
	}
}
