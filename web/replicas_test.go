package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/haldir-dev/haldir/app/apptest"
)

// TestSessionsWorkAcrossReplicas: two replicas on one Postgres database.
// A sign-in on one is a sign-in on the other (the session and its sealed
// key are in the database), a decision made through the second shows on
// the first, and signing out on the second ends the session on the first.
func TestSessionsWorkAcrossReplicas(t *testing.T) {
	one := apptest.Start(t, "postgres")
	two := apptest.StartConfig(t, "postgres", one.Config)
	c := one.NewTenant("acme")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "ops"}).Expect(t, 201).Str("session_id")
	id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "action": "drop"}).Expect(t, 201).Str("request_id")

	b := newBrowser(t, browserProcess(t), "operator")
	b.signIn(one.URL, c.Key)
	cookie := sessionCookie(t, b, one.URL)
	// Cookies are per host, not per port: the browser sends the same
	// cookie to the second replica, as it would behind one load balancer.
	b.open(two.URL + "/dashboard/approvals/" + id)
	if !eval[bool](b, `document.querySelector("#signout") !== null`) {
		t.Fatal("the second replica does not know the sign-in made on the first")
	}
	b.do(chromedp.Click(chromedp.CSS("button[data-action=approve]")))
	b.waitFor(`document.querySelector("#approval-status")?.textContent === "approved"`)
	if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "approved" {
		t.Errorf("after approving through the second replica: %s", g)
	}
	b.open(one.URL + "/dashboard/approvals/" + id)
	if got := eval[string](b, `document.querySelector("#approval-status").textContent`); got != "approved" {
		t.Errorf("the first replica shows %q", got)
	}

	b.open(two.URL + "/dashboard/")
	b.do(chromedp.Click(chromedp.CSS("#signout")))
	b.waitFor(`location.pathname === "/dashboard/login"`)
	for _, base := range []string{one.URL, two.URL} {
		st, _, hd := raw(t, "GET", base+"/dashboard/", cookie, nil)
		if st != http.StatusSeeOther || !strings.HasPrefix(hd.Get("Location"), "/dashboard/login") {
			t.Errorf("%s: the cookie signed out on the second replica still opens the overview: %d", base, st)
		}
	}
}
