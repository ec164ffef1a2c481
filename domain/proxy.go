package domain

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
)

// Proxy event types.
const (
	TypeUpstreamRegistered = "proxy.upstream_registered"
	TypeToolPinned         = "proxy.tool_pinned"
	TypeToolQuarantined    = "proxy.tool_quarantined"
	TypeToolApproved       = "proxy.tool_approved"
	TypePolicyAdded        = "proxy.policy_added"
	TypeToolCallAllowed    = "proxy.call_allowed"
	TypeToolCallCompleted  = "proxy.call_completed"
	TypeToolCallDenied     = "proxy.call_denied"
)

// Proxy streams.
const PoliciesStream = "proxy-policies"

// UpstreamStream returns the stream of an upstream's registration.
func UpstreamStream(name string) string { return "upstream/" + name }

// ToolStream returns the stream of a tool's pin.
func ToolStream(name string) string { return "tool/" + name }

// CallStream returns the stream of one governed call.
func CallStream(id string) string { return "call/" + id }

// UpstreamConfigName is the vault name that seals an upstream's
// environment and headers.
func UpstreamConfigName(upstream string) string { return "upstream." + upstream }

// ToolScope is the session scope needed to call a proxied tool: "tool"
// grants every tool, "tool:<upstream>" every tool of one upstream.
func ToolScope(upstream, tool string) string { return "tool:" + upstream + ":" + tool }

// UpstreamRegistered records an MCP server the tenant's agents reach
// through the proxy. SealedConfig holds its environment and headers,
// sealed like a vault secret, since they often carry credentials.
type UpstreamRegistered struct {
	Name         string   `json:"name"`
	Transport    string   `json:"transport"`
	URL          string   `json:"url,omitempty"`
	Command      []string `json:"command,omitempty"`
	KeyID        string   `json:"key_id,omitempty"`
	SealedConfig []byte   `json:"sealed_config,omitempty"`
}

// ToolPinned pins a tool's definition hash.
type ToolPinned struct {
	Tool string `json:"tool"`
	Hash string `json:"hash"`
	// Definition is the pinned definition (description and input
	// schema), when it is at most MaxToolDefinitionLen bytes, so that a
	// later change can be shown as a diff.
	Definition json.RawMessage `json:"definition,omitempty"`
}

// MaxToolDefinitionLen bounds a tool definition kept in the ledger.
const MaxToolDefinitionLen = 16 << 10

// ToolQuarantined records a pinned tool whose definition changed; it is
// not callable until an admin approves the new definition.
type ToolQuarantined struct {
	Tool       string `json:"tool"`
	PinnedHash string `json:"pinned_hash"`
	NewHash    string `json:"new_hash"`
	// PinnedDefinition and NewDefinition are the two definitions, where
	// known (see ToolPinned.Definition).
	PinnedDefinition json.RawMessage `json:"pinned_definition,omitempty"`
	NewDefinition    json.RawMessage `json:"new_definition,omitempty"`
}

// ToolApproved records an admin's approval of a tool definition.
type ToolApproved struct {
	Tool       string `json:"tool"`
	Hash       string `json:"hash"`
	ApprovedBy string `json:"approved_by"`
}

// Policy types.
const (
	PolicyAllowList  = "allow_list"
	PolicyDenyList   = "deny_list"
	PolicyBlockTool  = "block_tool"
	PolicySpendLimit = "spend_limit"
	PolicyRateLimit  = "rate_limit"
	PolicyTimeWindow = "time_window"
)

// Policy governs proxied tool calls.
type Policy struct {
	PolicyID     string   `json:"policy_id"`
	Type         string   `json:"type"`
	Tools        []string `json:"tools,omitempty"`
	Tool         string   `json:"tool,omitempty"`
	Max          Money    `json:"max,omitempty"`
	MaxPerMinute int      `json:"max_per_minute,omitempty"`
	StartHour    int      `json:"start_hour,omitempty"`
	EndHour      int      `json:"end_hour,omitempty"`
	Timezone     string   `json:"timezone,omitempty"`
}

// ValidatePolicy checks a policy's fields for its type.
func ValidatePolicy(p Policy) error {
	switch p.Type {
	case PolicyAllowList, PolicyDenyList:
		if len(p.Tools) == 0 || len(p.Tools) > 500 {
			return Invalid("tools", "%s needs 1-500 tool names or patterns", p.Type)
		}
		for _, t := range p.Tools {
			if t == "" || len(t) > 256 {
				return Invalid("tools", "a tool name or pattern is 1-256 characters")
			}
			if _, err := path.Match(t, ""); err != nil {
				return Invalid("tools", "%q is not a valid glob pattern", truncate(t, 60))
			}
		}
	case PolicyBlockTool:
		if p.Tool == "" || len(p.Tool) > 256 {
			return Invalid("tool", "block_tool needs a tool")
		}
	case PolicySpendLimit:
		if p.Max < 0 {
			return Invalid("max", "max must not be negative")
		}
	case PolicyRateLimit:
		if p.MaxPerMinute < 1 || p.MaxPerMinute > 1_000_000 {
			return Invalid("max_per_minute", "max_per_minute must be between 1 and 1,000,000")
		}
	case PolicyTimeWindow:
		if p.StartHour < 0 || p.StartHour > 23 {
			return Invalid("start_hour", "start_hour must be 0-23")
		}
		if p.EndHour < 0 || p.EndHour > 24 {
			return Invalid("end_hour", "end_hour must be 0-24")
		}
		if p.StartHour == p.EndHour {
			return Invalid("end_hour", "end_hour must differ from start_hour")
		}
		if p.Timezone != "" {
			if _, err := time.LoadLocation(p.Timezone); err != nil {
				return Invalid("timezone", "%q is not an IANA time zone", truncate(p.Timezone, 60))
			}
		}
	default:
		return Invalid("type", "type must be allow_list, deny_list, block_tool, spend_limit, rate_limit or time_window")
	}
	return nil
}

// ToolMatches reports whether pattern names tool: the full namespaced
// name, the bare tool name, or a glob over either.
func ToolMatches(pattern, tool string) bool {
	if pattern == tool {
		return true
	}
	bare := tool
	if i := strings.IndexByte(tool, '.'); i >= 0 {
		bare = tool[i+1:]
	}
	if pattern == bare {
		return true
	}
	if ok, _ := path.Match(pattern, tool); ok {
		return true
	}
	ok, _ := path.Match(pattern, bare)
	return ok
}

// InWindow reports whether now falls in [start, end) hours in loc; a
// window whose start is after its end crosses midnight.
func InWindow(start, end int, loc *time.Location, now time.Time) bool {
	h := now.In(loc).Hour()
	if start < end {
		return h >= start && h < end
	}
	return h >= start || h < end
}

// Denial is a policy's refusal of a call.
type Denial struct {
	PolicyID string
	Type     string
	Code     Code
	Reason   string
}

// EvaluateStatic applies every policy that needs no counter (all but
// rate limits) to a call of tool with cost at now, in order; the first
// deny wins. Once any allow list exists, a tool no allow list names is
// denied.
func EvaluateStatic(policies []Policy, tool string, cost Money, now time.Time) *Denial {
	allowed := false
	for _, p := range policies {
		if p.Type == PolicyAllowList {
			for _, t := range p.Tools {
				if ToolMatches(t, tool) {
					allowed = true
				}
			}
		}
	}
	for _, p := range policies {
		deny := func(reason string, args ...any) *Denial {
			return &Denial{PolicyID: p.PolicyID, Type: p.Type, Code: CodePolicyDenied, Reason: fmt.Sprintf(reason, args...)}
		}
		switch p.Type {
		case PolicyDenyList:
			for _, t := range p.Tools {
				if ToolMatches(t, tool) {
					return deny("%s is on a deny list", tool)
				}
			}
		case PolicyBlockTool:
			if ToolMatches(p.Tool, tool) {
				return deny("%s is blocked", tool)
			}
		case PolicySpendLimit:
			if cost > p.Max {
				return deny("the call costs %s, more than the %s a call may spend", cost, p.Max)
			}
		case PolicyTimeWindow:
			loc := time.UTC
			if p.Timezone != "" {
				if l, err := time.LoadLocation(p.Timezone); err == nil {
					loc = l
				}
			}
			if !InWindow(p.StartHour, p.EndHour, loc, now) {
				return deny("calls are allowed only between %02d:00 and %02d:00 (%s)", p.StartHour, p.EndHour, loc)
			}
		case PolicyAllowList:
			if !allowed {
				return deny("%s is on no allow list, and allow lists deny everything else", tool)
			}
		}
	}
	return nil
}

// ToolCallAllowed records a call the proxy let through, before it is
// forwarded: if this cannot be recorded, the call is not made.
type ToolCallAllowed struct {
	CallID          string   `json:"call_id"`
	Tool            string   `json:"tool"`
	SessionID       string   `json:"session_id"`
	AgentID         string   `json:"agent_id"`
	ArgsHash        string   `json:"args_hash"`
	Cost            Money    `json:"cost_usd"`
	AuthorizationID string   `json:"authorization_id,omitempty"`
	SecretsInjected []string `json:"secrets_injected,omitempty"`
	DefinitionHash  string   `json:"definition_hash"`
}

// ToolCallCompleted records the outcome of a forwarded call.
type ToolCallCompleted struct {
	CallID     string  `json:"call_id"`
	Tool       string  `json:"tool"`
	ResultHash string  `json:"result_hash,omitempty"`
	LatencyMS  float64 `json:"latency_ms"`
	IsError    bool    `json:"is_error"`
	Error      string  `json:"error,omitempty"`
	Refunded   bool    `json:"refunded,omitempty"`
}

// ToolCallDenied records a call the proxy refused; it was never forwarded.
type ToolCallDenied struct {
	Tool      string `json:"tool"`
	SessionID string `json:"session_id,omitempty"`
	AgentID   string `json:"agent_id,omitempty"`
	ArgsHash  string `json:"args_hash"`
	Cost      Money  `json:"cost_usd"`
	Code      Code   `json:"code"`
	Reason    string `json:"reason"`
	PolicyID  string `json:"policy_id,omitempty"`
	RequestID string `json:"approval_request_id,omitempty"`
}

// PaymentReleased returns an authorised amount to a session's budget: a
// governed call that reserved spend and then failed before it was made.
const TypePaymentReleased = "payment.released"

// PaymentReleased is the payload of TypePaymentReleased.
type PaymentReleased struct {
	AuthorizationID string `json:"authorization_id"`
	SessionID       string `json:"session_id"`
	Amount          Money  `json:"amount"`
	Reason          string `json:"reason"`
}

// decodeJSON is a helper for folds.
func decodeJSON(typ string, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("domain: %s: %w", typ, err)
	}
	return nil
}

// ToolPin is a tool's pin: the definition hash first seen or last
// approved, whether the tool is quarantined, and the hash that quarantined
// it.
type ToolPin struct {
	Hash        string
	Quarantined bool
	NewHash     string
}

// Callable reports whether a tool whose definition now hashes to hash may
// be called under this pin.
func (p ToolPin) Callable(hash string) bool { return !p.Quarantined && p.Hash == hash }

// MaxUpstreamNameLen bounds an upstream's name.
const MaxUpstreamNameLen = 64

// ValidUpstreamName reports whether name is 1 to MaxUpstreamNameLen
// characters of a-z, 0-9, '_' and '-'; such names never contain the '.'
// that separates them from a tool's name.
func ValidUpstreamName(name string) bool {
	if name == "" || len(name) > MaxUpstreamNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SplitTool returns the upstream and tool parts of a namespaced tool name
// "<upstream>.<tool>": ok is false when there is no '.', the upstream part
// is not a valid upstream name, or the tool part is empty. The tool part is
// the upstream's own name, verbatim, and may contain further dots.
func SplitTool(name string) (upstream, tool string, ok bool) {
	upstream, tool, found := strings.Cut(name, ".")
	if !found || !ValidUpstreamName(upstream) || tool == "" {
		return "", "", false
	}
	return upstream, tool, true
}
