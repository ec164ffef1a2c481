package domain

import (
	"slices"
	"strings"
)

// Resource is what an API key scope grants access to.
type Resource string

// The resources of API key scopes.
const (
	Sessions  Resource = "sessions"
	Vault     Resource = "vault"
	Audit     Resource = "audit"
	Payments  Resource = "payments"
	Webhooks  Resource = "webhooks"
	Proxy     Resource = "proxy"
	Approvals Resource = "approvals"
	Admin     Resource = "admin"
)

// Resources lists every resource, in documentation order.
var Resources = []Resource{Sessions, Vault, Audit, Payments, Webhooks, Proxy, Approvals, Admin}

// Access is the level a key scope grants. Write implies Read.
type Access string

// Access levels.
const (
	Read  Access = "read"
	Write Access = "write"
)

// Need names the key scope an operation requires, for example
// Need{Sessions, Write} is "sessions:write".
type Need struct {
	Resource Resource
	Access   Access
}

func (n Need) String() string { return string(n.Resource) + ":" + string(n.Access) }

// KeyScopes are the scopes granted to an API key: "*", or
// "<resource>:<read|write|*>".
type KeyScopes []string

// DefaultKeyScopes are granted to a key created without a scopes field, the
// reference product's default.
var DefaultKeyScopes = KeyScopes{"*"}

// ParseKeyScopes validates, de-duplicates and sorts key scopes. An empty
// list is refused: a caller that names no scope must not be handed every
// scope, so the default (DefaultKeyScopes) is the caller's to apply, and
// only when no list was given at all.
func ParseKeyScopes(list []string) (KeyScopes, error) {
	if len(list) == 0 {
		return nil, Invalid("scopes", "scopes must name at least one key scope; omit the field for the default [\"*\"]")
	}
	out := make(KeyScopes, 0, len(list))
	for _, s := range list {
		if !validKeyScope(s) {
			return nil, Invalid("scopes", "%q is not a key scope; use \"*\" or \"<resource>:<read|write|*>\" with resource one of %s", truncate(s, 40), resourceList())
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out, nil
}

func validKeyScope(s string) bool {
	if s == "*" {
		return true
	}
	res, acc, ok := strings.Cut(s, ":")
	if !ok || !slices.Contains(Resources, Resource(res)) {
		return false
	}
	return acc == "read" || acc == "write" || acc == "*"
}

func resourceList() string {
	names := make([]string, len(Resources))
	for i, r := range Resources {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// Allows reports whether the scopes grant n.
func (k KeyScopes) Allows(n Need) bool {
	for _, s := range k {
		if s == "*" {
			return true
		}
		res, acc, _ := strings.Cut(s, ":")
		if Resource(res) != n.Resource {
			continue
		}
		if acc == "*" || acc == string(n.Access) || (acc == "write" && n.Access == Read) {
			return true
		}
	}
	return false
}

// Covers reports whether k grants everything other grants, so that a key
// can never mint a key more powerful than itself.
func (k KeyScopes) Covers(other KeyScopes) bool {
	for _, s := range other {
		if s == "*" {
			if !slices.Contains(k, "*") {
				return false
			}
			continue
		}
		res, acc, _ := strings.Cut(s, ":")
		accesses := []Access{Access(acc)}
		if acc == "*" || acc == "write" {
			accesses = []Access{Read, Write}
		}
		for _, a := range accesses {
			if !k.Allows(Need{Resource(res), a}) {
				return false
			}
		}
	}
	return true
}

// Session scope limits.
const (
	MaxSessionScopes   = 64
	MaxSessionScopeLen = 128
)

// ValidSessionScope reports whether s may be granted to a session: 1–128
// characters of letters, digits and ":._-/*".
func ValidSessionScope(s string) bool {
	if s == "" || len(s) > MaxSessionScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":._-/*", c) >= 0) {
			return false
		}
	}
	return true
}

// Grants reports whether the granted session scopes grant want: exactly, by
// "*", or by a parent scope ("write" grants "write:files"). A sibling never
// grants: "write:files" does not grant "write:database".
func Grants(granted []string, want string) bool {
	for _, g := range granted {
		if g == "*" || g == want || (strings.HasPrefix(want, g) && len(want) > len(g) && want[len(g)] == ':') {
			return true
		}
	}
	return false
}

// SpendScope parses a "spend:N" session scope into its cap. ok is false for
// any other scope; a malformed amount is an error.
func SpendScope(s string) (limit Money, ok bool, err error) {
	amount, found := strings.CutPrefix(s, "spend:")
	if !found {
		return 0, false, nil
	}
	m, valid := ParseMoney(amount)
	if !valid || m < 0 {
		return 0, true, Invalid("scopes", "%q does not give a spend cap in dollars (for example \"spend:50\")", truncate(s, 40))
	}
	return m, true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
