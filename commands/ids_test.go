package commands

import (
	"testing"

	"github.com/haldir-dev/haldir/domain"
)

// walk derives the ids a governed call with every step derives: consume an
// approval, reserve, read two secrets (one twice), allow, release,
// complete; plus a pipelined two-event step on the session.
func walk(a Actor) []string {
	session := domain.SessionStream("ses_x")
	open := a.opening(domain.Call{SessionID: "ses_x", Tool: "files.delete"}.Binding(a.Tenant))
	call := a.newID("cal")
	ids := []string{
		open.eventID, open.requestID,
		a.eventID(session), // reserve
		a.eventID(domain.SecretAccessStream("tok")),
		a.eventID(domain.SecretAccessStream("tok")),
		a.eventID(domain.SecretAccessStream("other")),
		call,
		a.eventID(domain.CallStream(call)), // allowed
		a.eventID(session),                 // release
		a.eventID(domain.CallStream(call)), // completed
		a.newID("pay"), a.newID("pay"),
	}
	pipelined := a.eventIDs(session)
	return append(ids, pipelined(0), pipelined(1))
}

// TestDerivedIDsNeverCollide: under an Idempotency-Key, every id of a
// request is distinct (hand-picked indices used to give reserve, release
// and secret reads one id), a retry of the request derives the same ids,
// and another key, route or tenant derives none of them.
func TestDerivedIDsNeverCollide(t *testing.T) {
	base := Actor{Tenant: "tnt_a", Route: "POST /v1/proxy/call"}
	first := walk(base.WithIdempotencyKey("k1"))
	seen := map[string]int{}
	for i, id := range first {
		if j, dup := seen[id]; dup {
			t.Errorf("ids %d and %d of one request are both %s", j, i, id)
		}
		seen[id] = i
	}
	retry := walk(base.WithIdempotencyKey("k1"))
	for i := range first {
		if retry[i] != first[i] {
			t.Errorf("id %d: the retry derived %s, the first run %s", i, retry[i], first[i])
		}
	}
	others := map[string]Actor{
		"another key":    base.WithIdempotencyKey("k2"),
		"another route":  Actor{Tenant: "tnt_a", Route: "POST /v1/payments/authorize"}.WithIdempotencyKey("k1"),
		"another tenant": Actor{Tenant: "tnt_b", Route: base.Route}.WithIdempotencyKey("k1"),
	}
	for name, a := range others {
		for _, id := range walk(a) {
			if _, clash := seen[id]; clash {
				t.Errorf("%s derived %s, an id of the first request", name, id)
			}
		}
	}
	for _, id := range first {
		if !(domain.ValidID("apr", id) || domain.ValidID("cal", id) || domain.ValidID("pay", id) || len(id) == len("evt_")+24) {
			t.Errorf("malformed id %q", id)
		}
	}
}

// TestIDsWithoutAKeyAreFresh: without an Idempotency-Key every call gives
// a new random id.
func TestIDsWithoutAKeyAreFresh(t *testing.T) {
	a := Actor{Tenant: "tnt_a", Route: "POST /v1/sessions"}
	x, y := walk(a), walk(a)
	for i := range x {
		if x[i] == y[i] {
			t.Errorf("id %d repeated without a key: %s", i, x[i])
		}
	}
	if a.derived() || (Actor{IdempotencyKey: "set by hand"}).derived() {
		t.Error("only WithIdempotencyKey derives ids")
	}
}
