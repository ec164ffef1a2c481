package domain

import (
	"testing"
	"time"
)

func TestGrants(t *testing.T) {
	tests := []struct {
		name    string
		granted []string
		want    string
		ok      bool
	}{
		{"exact", []string{"read"}, "read", true},
		{"parent grants child", []string{"write"}, "write:files", true},
		{"parent grants grandchild", []string{"write"}, "write:files:tmp", true},
		{"star grants all", []string{"*"}, "anything:at:all", true},
		{"sibling does not grant", []string{"write:files"}, "write:database", false},
		{"child does not grant parent", []string{"write:files"}, "write", false},
		{"prefix is not a parent", []string{"write"}, "writer", false},
		{"nothing granted", nil, "read", false},
		{"spend scope is not a parent of spend", []string{"spend:50"}, "spend", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Grants(tt.granted, tt.want); got != tt.ok {
				t.Errorf("Grants(%q, %q) = %v, want %v", tt.granted, tt.want, got, tt.ok)
			}
		})
	}
}

func TestKeyScopes(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		need   Need
		ok     bool
	}{
		{"star", []string{"*"}, Need{Admin, Write}, true},
		{"write implies read", []string{"sessions:write"}, Need{Sessions, Read}, true},
		{"read does not imply write", []string{"sessions:read"}, Need{Sessions, Write}, false},
		{"resource star", []string{"vault:*"}, Need{Vault, Write}, true},
		{"other resource", []string{"vault:*"}, Need{Audit, Read}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyScopes(tt.scopes)
			if err != nil {
				t.Fatal(err)
			}
			if got := k.Allows(tt.need); got != tt.ok {
				t.Errorf("%v.Allows(%v) = %v, want %v", k, tt.need, got, tt.ok)
			}
		})
	}
	for _, bad := range []string{"", "sessions", "sessions:delete", "nope:read", "**", "admin:"} {
		if _, err := ParseKeyScopes([]string{bad}); err == nil {
			t.Errorf("ParseKeyScopes(%q) accepted an invalid scope", bad)
		}
	}
	for _, empty := range [][]string{nil, {}} {
		if k, err := ParseKeyScopes(empty); err == nil {
			t.Errorf("ParseKeyScopes(%#v) = %v, want an error: no scope must not mean every scope", empty, k)
		}
	}
}

func TestKeyScopesCovers(t *testing.T) {
	tests := []struct {
		have, want []string
		ok         bool
	}{
		{[]string{"*"}, []string{"*"}, true},
		{[]string{"admin:write"}, []string{"*"}, false},
		{[]string{"admin:write", "audit:read"}, []string{"audit:read"}, true},
		{[]string{"audit:read"}, []string{"audit:write"}, false},
		{[]string{"audit:write"}, []string{"audit:*"}, true},
		{[]string{"vault:read"}, []string{"vault:*"}, false},
	}
	for _, tt := range tests {
		h, _ := ParseKeyScopes(tt.have)
		w, _ := ParseKeyScopes(tt.want)
		if got := h.Covers(w); got != tt.ok {
			t.Errorf("%v.Covers(%v) = %v, want %v", h, w, got, tt.ok)
		}
	}
}

func TestCreateSession(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	fifty := 50 * Dollar
	neg := -Dollar
	tooMuch := MaxPayment + Cent
	tests := []struct {
		name      string
		req       NewSession
		wantLimit Money
		wantErr   string // field
	}{
		{"defaults", NewSession{AgentID: "bot"}, 0, ""},
		{"spend scope sets cap", NewSession{AgentID: "bot", Scopes: []string{"read", "spend:50"}}, 50 * Dollar, ""},
		{"field beats scope", NewSession{AgentID: "bot", Scopes: []string{"spend:50"}, SpendLimit: &fifty}, 50 * Dollar, ""},
		{"missing agent", NewSession{}, 0, "agent_id"},
		{"long agent", NewSession{AgentID: string(make([]byte, 129))}, 0, "agent_id"},
		{"bad spend scope", NewSession{AgentID: "bot", Scopes: []string{"spend:lots"}}, 0, "scopes"},
		{"hex spend scope", NewSession{AgentID: "bot", Scopes: []string{"spend:0x10"}}, 0, "scopes"},
		{"hex float spend scope", NewSession{AgentID: "bot", Scopes: []string{"spend:0x1p4"}}, 0, "scopes"},
		{"underscored spend scope", NewSession{AgentID: "bot", Scopes: []string{"spend:1_0"}}, 0, "scopes"},
		{"spend scope over the maximum", NewSession{AgentID: "bot", Scopes: []string{"spend:1000001"}}, 0, "scopes"},
		{"limit over the maximum", NewSession{AgentID: "bot", SpendLimit: &tooMuch}, 0, "spend_limit"},
		{"two spend scopes", NewSession{AgentID: "bot", Scopes: []string{"spend:1", "spend:2"}}, 0, "scopes"},
		{"negative limit", NewSession{AgentID: "bot", SpendLimit: &neg}, 0, "spend_limit"},
		{"ttl too long", NewSession{AgentID: "bot", TTL: 31 * 24 * time.Hour}, 0, "ttl"},
		{"bad scope chars", NewSession{AgentID: "bot", Scopes: []string{"read write"}}, 0, "scopes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := CreateSession("ses_x", tt.req, now)
			if tt.wantErr != "" {
				de, ok := err.(*Error)
				if !ok || de.Field != tt.wantErr || de.Code != CodeInvalid {
					t.Fatalf("err = %v, want invalid_request on %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.SpendLimit != tt.wantLimit {
				t.Errorf("spend limit = %s, want %s", e.SpendLimit, tt.wantLimit)
			}
			if !e.ExpiresAt.Equal(now.Add(time.Hour)) && tt.req.TTL == 0 {
				t.Errorf("expires_at = %v, want an hour after %v", e.ExpiresAt, now)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	base := Session{ID: "ses_x", AgentID: "bot", SpendLimit: 10 * Dollar, ExpiresAt: now.Add(time.Hour), Version: 1}
	tests := []struct {
		name   string
		mutate func(*Session)
		amount Money
		code   Code // empty: authorized
	}{
		{"fits", nil, 10 * Dollar, ""},
		{"over cap", func(s *Session) { s.Spent = 9 * Dollar }, 2 * Dollar, CodeBudgetExceeded},
		{"no cap cannot spend", func(s *Session) { s.SpendLimit = 0 }, Cent, CodeBudgetExceeded},
		{"revoked", func(s *Session) { s.RevokedAt = now }, Cent, CodeSessionInvalid},
		{"expired", func(s *Session) { s.ExpiresAt = now }, Cent, CodeSessionInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			if tt.mutate != nil {
				tt.mutate(&s)
			}
			ok, denied := s.Authorize("pay_x", tt.amount, "USD", "", now)
			switch {
			case tt.code == "" && ok == nil:
				t.Fatalf("denied: %+v", denied)
			case tt.code != "" && (denied == nil || denied.Code != tt.code):
				t.Fatalf("got authorized=%v denied=%+v, want code %s", ok, denied, tt.code)
			}
		})
	}
}
