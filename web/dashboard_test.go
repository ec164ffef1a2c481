package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/haldir-dev/haldir/app/apptest"
)

// flatten turns the overview JSON into "section.field" → value text.
func flatten(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, e, out)
		}
	default:
		b, _ := json.Marshal(x)
		out[prefix] = strings.Trim(string(b), `"`)
	}
}

// whoName is the name the dashboard records as the approver of c's key.
func whoName(t *testing.T, c *apptest.Client) string {
	w := c.Do("GET", "/v1/whoami", nil).Expect(t, 200)
	return w.Str("name") + " (" + w.Str("prefix") + ")"
}

// TestSignInShowsTheOverviewOfTheAPI: after signing in with a key, the
// overview shows exactly the numbers GET /v1/admin/overview answers, and
// refreshes them by itself when they change.
func TestSignInShowsTheOverviewOfTheAPI(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "buyer", "spend_limit": 5000}).Expect(t, 201).Str("session_id")
	c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1234.5, "description": "servers"}).Expect(t, 200)
	c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": "search", "tool": "browser", "cost_usd": 0.25}).Expect(t, 201)

	b := newBrowser(t, browserProcess(t), "admin")
	b.signIn(s.URL, c.Key)
	b.waitFor(`document.querySelector("[data-field='sessions.active']") !== null`)

	shown := func() map[string]string {
		return eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll("[data-field]")].map(e => [e.dataset.field, e.dataset.value ?? e.textContent.trim()]))`)
	}
	got := shown()
	api := map[string]string{}
	var body map[string]any
	if err := json.Unmarshal(c.Do("GET", "/v1/admin/overview", nil).Expect(t, 200).Raw, &body); err != nil {
		t.Fatal(err)
	}
	flatten("", body, api)
	if len(got) < 15 {
		t.Fatalf("the overview shows only %d figures: %v", len(got), got)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if want, ok := api[k]; !ok || got[k] != want {
			t.Errorf("overview %s: the page shows %q, GET /v1/admin/overview says %q", k, got[k], want)
		}
	}
	if api["sessions.active"] != "1" || api["spend.this_month_usd"] != "1234.75" {
		t.Errorf("the test's premise: %v", api)
	}
	if text := eval[string](b, `document.querySelector("[data-field='spend.this_month_usd']").textContent`); text != "$1,234.75" {
		t.Errorf("spend is shown as %q, want $1,234.75", text)
	}
	// Dates are in the viewer's zone, with UTC on hover.
	if title := eval[string](b, `document.querySelector("main time").title`); !strings.HasSuffix(title, " UTC") {
		t.Errorf("a time's title is %q, want the UTC time", title)
	}
	b.screenshot("overview")

	// Live: a new session shows up without a reload.
	b.do(chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "second"}).Expect(t, 201)
	b.waitFor(`document.querySelector("[data-field='sessions.active']").textContent === "2"`)
	if !eval[bool](b, `window.notReloaded === true`) {
		t.Error("the page was reloaded to show the new figure")
	}
}

// TestApproveAndDenyFromTheBrowser: a call held for approval appears on
// the approvals page without a reload; a click approves it, after which
// the same call succeeds and the ledger holds the decision; another is
// denied with a click and stays refused.
func TestApproveAndDenyFromTheBrowser(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("acme")
	c.Do("POST", "/v1/approvals/rules", map[string]any{"type": "spend_over", "threshold": 100}).Expect(t, 201)
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "buyer", "spend_limit": 5000}).Expect(t, 201).Str("session_id")

	b := newBrowser(t, browserProcess(t), "approver")
	b.signIn(s.URL, c.Key)
	b.open(s.URL + "/dashboard/approvals")
	b.waitFor(`document.querySelector("#no-pending") !== null`)
	b.screenshot("approvals-empty")
	b.do(chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))

	pay := map[string]any{"session_id": ses, "amount": 900, "description": "GPU hours"}
	id := c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 403, "approval_required").Str("request_id")
	card := fmt.Sprintf(`[data-request-id=%q]`, id)
	b.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, card))
	if !eval[bool](b, `window.notReloaded === true`) {
		t.Error("the page reloaded to show the request")
	}
	text := eval[string](b, fmt.Sprintf(`document.querySelector(%q).innerText`, card))
	for _, want := range []string{"payments", "$900.00", "buyer", ses} {
		if !strings.Contains(text, want) {
			t.Errorf("the request's card does not show %q:\n%s", want, text)
		}
	}
	b.screenshot("approvals")
	b.do(chromedp.SetValue(chromedp.CSS(card+" input[name=note]"), "budgeted in Q4"),
		chromedp.Click(chromedp.CSS(card+" button[data-action=approve]")))
	b.waitFor(`document.querySelector("#approval-status")?.textContent === "approved"`)
	b.screenshot("approval-decided")

	// The blocked call now goes through, once.
	c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 200)
	g := c.Do("GET", "/v1/approvals/"+id, nil).Expect(t, 200)
	if g.Str("decided_by") != whoName(t, c) || g.Str("decision_note") != "budgeted in Q4" || !g.Bool("used") {
		t.Errorf("the decision on record: %s", g)
	}
	if !ledgerHas(t, c, "approved", id) {
		t.Error("the ledger holds no approval of the request")
	}

	// Deny.
	b.open(s.URL + "/dashboard/approvals")
	if text := eval[string](b, fmt.Sprintf(`document.querySelector(%q)?.innerText ?? ""`, "[data-decided='"+id+"']")); !strings.Contains(text, "approved by "+whoName(t, c)) {
		t.Errorf("the recent decisions do not show who approved %s: %q", id, text)
	}
	id2 := c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 450, "description": "more GPUs"}).Expect(t, 403, "approval_required").Str("request_id")
	card2 := fmt.Sprintf(`[data-request-id=%q]`, id2)
	b.waitFor(fmt.Sprintf(`document.querySelector(%q) !== null`, card2))
	// By keyboard alone: Tab from the top of the page to the note, type,
	// Tab to Deny, press Enter.
	reach := func(sel string) {
		t.Helper()
		for range 60 {
			if eval[bool](b, fmt.Sprintf(`document.activeElement === document.querySelector(%q)`, sel)) {
				return
			}
			b.do(chromedp.KeyEvent("\t"))
		}
		t.Fatalf("Tab never reaches %s", sel)
	}
	reach(card2 + " input[name=note]")
	b.do(chromedp.KeyEvent("over budget"))
	reach(card2 + " button[data-action=deny]")
	b.do(chromedp.KeyEvent("\r"))
	b.waitFor(`document.querySelector("#approval-status")?.textContent === "denied"`)
	if g := c.Do("GET", "/v1/approvals/"+id2, nil); g.Str("decision_note") != "over budget" {
		t.Errorf("the note typed by keyboard: %s", g)
	}
	if g := c.Do("GET", "/v1/approvals/"+id2, nil); g.Str("status") != "denied" {
		t.Errorf("after deny: %s", g)
	}
	again := c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 450, "description": "more GPUs"}).Expect(t, 403, "approval_required")
	if again.Str("request_id") == id2 {
		t.Error("the denied request was reused")
	}
	if !ledgerHas(t, c, "denied", id2) {
		t.Error("the ledger holds no denial of the request")
	}
}

// ledgerHas reports whether an approvals entry with action names request.
func ledgerHas(t *testing.T, c *apptest.Client, action, request string) bool {
	t.Helper()
	r := c.Do("GET", "/v1/audit?tool=approvals&limit=100", nil).Expect(t, 200)
	for _, e := range r.Body["entries"].([]any) {
		m := e.(map[string]any)
		raw, _ := json.Marshal(m)
		if m["action"] == action && strings.Contains(string(raw), request) {
			return true
		}
	}
	return false
}

// TestSecurityHeaders: every dashboard response forbids framing and
// inline script.
func TestSecurityHeaders(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	for _, path := range []string{"/dashboard/login", "/dashboard/", "/dashboard/static/app.js", "/dashboard/nope"} {
		r := s.Anonymous().Do("GET", path, nil, "Accept", "text/html")
		h := r.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline code: %q", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	if r := s.Anonymous().Do("GET", "/dashboard/static/app.js", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Raw), "localize") {
		t.Errorf("the script is not served: %d", r.Status)
	}
}
