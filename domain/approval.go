package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"time"
)

// Approval event types.
const (
	TypeApprovalRuleAdded = "approval.rule_added"
	TypeApprovalRequested = "approval.requested"
	TypeApprovalApproved  = "approval.approved"
	TypeApprovalDenied    = "approval.denied"
	TypeApprovalExpired   = "approval.expired"
	TypeApprovalConsumed  = "approval.consumed"
)

// Approval statuses as the API shows them.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalDenied   = "denied"
	ApprovalExpired  = "expired"
	ApprovalConsumed = "consumed"
)

// Approval limits.
const (
	DefaultApprovalTTL = time.Hour
	MaxApprovalTTL     = 7 * 24 * time.Hour
	MaxRuleTools       = 100
)

// ApprovalRulesStream is the tenant's stream of approval rules.
const ApprovalRulesStream = "approval-rules"

// Rule types.
const (
	RuleSpendOver = "spend_over"
	RuleToolMatch = "tool_match"
	RuleAlways    = "always"
)

// ApprovalRule says which calls need a person's approval.
type ApprovalRule struct {
	RuleID string `json:"rule_id"`
	Type   string `json:"type"`
	// Threshold is the amount above which spend_over applies.
	Threshold Money `json:"threshold,omitempty"`
	// Tools are names or path.Match glob patterns ("stripe.*") for
	// tool_match.
	Tools []string `json:"tools,omitempty"`
}

// ValidateRule checks a rule's fields.
func ValidateRule(r ApprovalRule) error {
	switch r.Type {
	case RuleSpendOver:
		if r.Threshold < 0 {
			return Invalid("threshold", "threshold must not be negative")
		}
	case RuleToolMatch:
		if len(r.Tools) == 0 || len(r.Tools) > MaxRuleTools {
			return Invalid("tools", "tool_match needs 1-%d tool names or patterns", MaxRuleTools)
		}
		for _, t := range r.Tools {
			if t == "" || len(t) > 256 {
				return Invalid("tools", "a tool name or pattern is 1-256 characters")
			}
			if _, err := path.Match(t, ""); err != nil {
				return Invalid("tools", "%q is not a valid glob pattern", truncate(t, 60))
			}
		}
	case RuleAlways:
	default:
		return Invalid("type", "type must be spend_over, tool_match or always")
	}
	return nil
}

// Call is a governed call that approval rules are evaluated against.
type Call struct {
	SessionID string
	AgentID   string
	// Tool is the namespaced tool ("payments" for a payment).
	Tool   string
	Action string
	// ArgsHash is the hex SHA-256 of the call's canonical arguments.
	ArgsHash string
	Amount   Money
}

// Matches reports whether rule r applies to call c.
func (r ApprovalRule) Matches(c Call) bool {
	switch r.Type {
	case RuleAlways:
		return true
	case RuleSpendOver:
		return c.Amount > r.Threshold
	case RuleToolMatch:
		for _, t := range r.Tools {
			if ok, _ := path.Match(t, c.Tool); ok || t == c.Tool {
				return true
			}
		}
	}
	return false
}

// FirstMatch returns the first rule that applies to c.
func FirstMatch(rules []ApprovalRule, c Call) (ApprovalRule, bool) {
	for _, r := range rules {
		if r.Matches(c) {
			return r, true
		}
	}
	return ApprovalRule{}, false
}

// Binding identifies the exact call an approval covers: tenant, session,
// tool, argument hash and amount. Its hex form names the approval stream.
func (c Call) Binding(tenant string) string {
	h := sha256.New()
	for _, f := range []string{"haldir/approval/v1", tenant, c.SessionID, c.Tool, c.ArgsHash, strconv.FormatInt(int64(c.Amount), 10)} {
		fmt.Fprintf(h, "%d:%s", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ApprovalStream returns the stream of the approvals of one binding.
func ApprovalStream(binding string) string { return "approval/" + binding[:32] }

// ArgsHash returns the hex SHA-256 of arguments in canonical form (object
// keys sorted): the same arguments always hash the same.
func ArgsHash(arguments json.RawMessage) string {
	var v any
	canonical := []byte("null")
	if len(arguments) > 0 && json.Unmarshal(arguments, &v) == nil {
		canonical, _ = json.Marshal(v) // maps encode with sorted keys
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// ApprovalRequested opens a request for a person's decision.
type ApprovalRequested struct {
	RequestID string          `json:"request_id"`
	Binding   string          `json:"binding"`
	SessionID string          `json:"session_id"`
	AgentID   string          `json:"agent_id"`
	Tool      string          `json:"tool"`
	Action    string          `json:"action"`
	ArgsHash  string          `json:"args_hash"`
	Amount    Money           `json:"amount"`
	Reason    string          `json:"reason,omitempty"`
	Details   json.RawMessage `json:"details,omitempty"`
	RuleID    string          `json:"rule_id,omitempty"`
	ExpiresAt time.Time       `json:"expires_at"`
	TTL       int64           `json:"ttl"`
}

// ApprovalDecided records an approval or a denial.
type ApprovalDecided struct {
	RequestID string `json:"request_id"`
	DecidedBy string `json:"decided_by"`
	Note      string `json:"note,omitempty"`
	// UseBy is when an approval lapses unused (approvals only).
	UseBy time.Time `json:"use_by,omitzero"`
}

// ApprovalClosed records an expiry or the single use of an approval.
type ApprovalClosed struct {
	RequestID string `json:"request_id"`
}

// Approval is the aggregate of one binding's stream: the latest request
// for that exact call and where it stands.
type Approval struct {
	Request   ApprovalRequested
	Status    string
	CreatedAt time.Time
	DecidedAt time.Time
	DecidedBy string
	Note      string
	UseBy     time.Time
	// Session is the request's session, when known. It is not folded from
	// the approval stream: whoever loads the approval to read or decide it
	// sets it from the session's own record. Nil means not known, and then
	// only the request's own times apply.
	Session *Session
	Version int64
}

// Apply folds one event of an approval stream into a.
func (a *Approval) Apply(typ string, payload []byte, at time.Time, version int64) error {
	switch typ {
	case TypeApprovalRequested:
		var e ApprovalRequested
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		*a = Approval{Request: e, Status: ApprovalPending, CreatedAt: at}
	case TypeApprovalApproved, TypeApprovalDenied:
		var e ApprovalDecided
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		a.Status, a.DecidedAt, a.DecidedBy, a.Note, a.UseBy = ApprovalDenied, at, e.DecidedBy, e.Note, e.UseBy
		if typ == TypeApprovalApproved {
			a.Status = ApprovalApproved
		}
	case TypeApprovalExpired:
		a.Status = ApprovalExpired
	case TypeApprovalConsumed:
		a.Status = ApprovalConsumed
	}
	a.Version = version
	return nil
}

// StatusAt returns the status at now: a pending request past its expiry,
// or an approval past its use-by time, is expired even before the event
// that records it. Silence is never consent. A request lives no longer
// than its session: once the session is revoked or has expired
// (Session.Valid), a pending request or an unused approval is expired
// too, since the call it covers can never run.
func (a *Approval) StatusAt(now time.Time) string {
	switch {
	case a.Status == ApprovalPending && !now.Before(a.Request.ExpiresAt):
		return ApprovalExpired
	case a.Status == ApprovalApproved && !now.Before(a.UseBy):
		return ApprovalExpired
	case a.Open() && a.Session != nil && !a.Session.Valid(now):
		return ApprovalExpired
	}
	return a.Status
}

// Open reports whether the recorded status still allows a decision or a
// use: pending, or approved and not yet used.
func (a *Approval) Open() bool {
	return a.Status == ApprovalPending || a.Status == ApprovalApproved
}
