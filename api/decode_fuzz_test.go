package api

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/haldir-dev/haldir/domain"
)

// FuzzDecode feeds arbitrary bodies through the request decoder and every
// field accessor. It must never panic, every failure must be a 400 naming a
// sentence, and whatever it accepts must honour the accessor's bounds.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"agent_id":"bot","scopes":["read","spend:50"],"ttl":3600,"spend_limit":12.5}`,
		`{"amount":1e400}`, `{"amount":-0}`, `{"amount":0.000001}`, `{"ttl":3600.0}`, `{"ttl":1e20}`,
		`{"details":{"a":[1,{"b":null}]}}`, `{"scopes":null}`, `{"agent_id":"\u0000"}`, `[]`, `null`, ``, `{`, `"x"`,
		`{"agent_id":"` + string([]byte{0xff, 0xfe}) + `"}`, `{"flag":true,"flag":"x"}`,
	} {
		f.Add([]byte(seed), "limit=5&since=2026-01-01&flagged=true")
	}
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		o, err := parseObject(body)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeInvalid {
				t.Fatalf("parseObject error %v is not invalid_request", err)
			}
			return
		}
		s := o.str("agent_id", false, 128)
		list, _ := o.strList("scopes", 64, 128)
		n, nok := o.integer("ttl", 1, 3600)
		m, mok := o.money("amount", false, domain.Cent, domain.MaxPayment)
		o.boolean("flag")
		d := o.details("details", 1<<16)
		if err := o.Err(); err != nil {
			de, ok := err.(*domain.Error)
			if !ok || de.Code != domain.CodeInvalid || de.Message == "" {
				t.Fatalf("validation error %v is not a described invalid_request", err)
			}
		} else {
			if len(s) > 128 || !printable(s) {
				t.Fatalf("accepted agent_id %q", s)
			}
			for _, v := range list {
				if len(v) > 128 || !printable(v) {
					t.Fatalf("accepted scope %q", v)
				}
			}
			if nok && (n < 1 || n > 3600) {
				t.Fatalf("accepted ttl %d", n)
			}
			if mok && (m < domain.Cent || m > domain.MaxPayment) {
				t.Fatalf("accepted amount %s", m)
			}
			if d != nil && !json.Valid(d) {
				t.Fatalf("details %q is not JSON", d)
			}
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		queryInt(q, "limit", 1, 1000, 100)
		queryBool(q, "flagged")
		queryTime(q, "since")
		queryString(q, "tool", 128)
	})
}
