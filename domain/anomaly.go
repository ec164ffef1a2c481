package domain

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Anomaly detection. Detectors are a projection over the ledger
// (projections.Detectors): deterministic, so a replay raises exactly the
// flags the first pass raised. A flag is an event, anomaly.flagged, whose
// id is derived from its detector and evidence (FlagID), so the same flag
// cannot be appended twice, by two replicas or by a replay.
const (
	TypeAnomalyFlagged         = "anomaly.flagged"
	TypeAnomalyAcknowledged    = "anomaly.acknowledged"
	TypeAnomalySettingsChanged = "anomaly.settings_changed"
	// AnomalySettingsStream holds a tenant's detector settings.
	AnomalySettingsStream = "anomaly-settings"
)

// AnomalyStream is the stream of one flag: flagged, then acknowledged.
func AnomalyStream(flagID string) string { return "anomaly/" + flagID }

// The detectors.
const (
	DetectorLoop       = "loop"      // one tool with one argument hash, repeated
	DetectorFirstUse   = "first_use" // an agent's first use of a tool
	DetectorDenials    = "denials"   // a burst of refusals in one session
	DetectorSpend      = "spend"     // an agent's spend in a sliding window
	DetectorOffHours   = "off_hours" // activity outside the tenant's hours
	SeverityLow        = "low"
	SeverityMedium     = "medium"
	SeverityHigh       = "high"
	MaxAnomalyEvidence = 50
)

// AnomalyFlagged is the payload of anomaly.flagged.
type AnomalyFlagged struct {
	FlagID    string `json:"flag_id"`
	Detector  string `json:"detector"`
	Severity  string `json:"severity"`
	AgentID   string `json:"agent_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Tool      string `json:"tool,omitempty"`
	Reason    string `json:"reason"`
	// Evidence are the ids of the events that raised it, oldest first.
	Evidence []string `json:"evidence"`
}

// AnomalyAcknowledged is the payload of anomaly.acknowledged.
type AnomalyAcknowledged struct {
	FlagID string `json:"flag_id"`
	By     string `json:"by"`
	Note   string `json:"note,omitempty"`
}

// FlagID derives a flag's id from its tenant, detector and evidence.
func FlagID(tenant, detector string, evidence []string) string {
	h := sha256.New()
	for _, s := range append([]string{tenant, detector}, evidence...) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return NewIDFromBytes("anm", h.Sum(nil)[:15])
}

// AnomalySettings are a tenant's detector settings. The zero value of a
// threshold disables its detector.
type AnomalySettings struct {
	// LoopCalls flags the same tool with the same argument hash called
	// more than LoopCalls times by one agent within LoopWindow.
	LoopCalls  int      `json:"loop_calls"`
	LoopWindow Duration `json:"loop_window_seconds"`
	// FirstUse flags an agent's first call of a tool.
	FirstUse bool `json:"first_use"`
	// Denials flags more than Denials refusals in one session within
	// DenialWindow.
	Denials      int      `json:"denials"`
	DenialWindow Duration `json:"denial_window_seconds"`
	// Spend flags an agent whose spend within SpendWindow exceeds Spend.
	Spend       Money    `json:"spend_usd"`
	SpendWindow Duration `json:"spend_window_seconds"`
	// Hours, when set, flags an agent's first activity of a day outside
	// [StartHour, EndHour) in TimeZone.
	Hours     bool   `json:"off_hours"`
	StartHour int    `json:"start_hour"`
	EndHour   int    `json:"end_hour"`
	TimeZone  string `json:"timezone"`
	// Responses opt detectors into an automatic response to their flags:
	// ResponseFlag (the default: flag only) or ResponseKill (pull the
	// agent's kill switch).
	Responses map[string]string `json:"responses,omitempty"`
}

// Off reports whether every detector is turned off.
func (s AnomalySettings) Off() bool {
	return s.LoopCalls <= 0 && !s.FirstUse && s.Denials <= 0 && s.Spend <= 0 && !s.Hours
}

// Automatic responses to a flag.
const (
	ResponseFlag = "flag"
	ResponseKill = "kill"
)

// Detectors lists every detector.
var Detectors = []string{DetectorLoop, DetectorFirstUse, DetectorDenials, DetectorSpend, DetectorOffHours}

// Response returns the automatic response to a flag of detector.
func (s AnomalySettings) Response(detector string) string {
	if r := s.Responses[detector]; r != "" {
		return r
	}
	return ResponseFlag
}

// Duration is a time.Duration carried in JSON as whole seconds.
type Duration time.Duration

// DefaultAnomalySettings apply until a tenant sets its own. First use and
// off hours are off: on a new install every tool is a first use, and
// working hours differ per tenant.
var DefaultAnomalySettings = AnomalySettings{
	LoopCalls: 20, LoopWindow: Duration(time.Minute),
	Denials: 5, DenialWindow: Duration(time.Minute),
	Spend: 100 * Dollar, SpendWindow: Duration(time.Hour),
	StartHour: 8, EndHour: 20, TimeZone: "UTC",
}

// MaxAnomalyWindow bounds every detector window.
const MaxAnomalyWindow = 24 * time.Hour

// Check validates s.
func (s AnomalySettings) Check() error {
	for _, c := range []struct {
		field  string
		n      int
		window Duration
	}{{"loop_calls", s.LoopCalls, s.LoopWindow}, {"denials", s.Denials, s.DenialWindow}} {
		if c.n < 0 || c.n > 10000 {
			return Invalid(c.field, "%s must be between 0 (off) and 10000", c.field)
		}
		if c.n > 0 && (c.window <= 0 || time.Duration(c.window) > MaxAnomalyWindow) {
			return Invalid(c.field, "its window must be between 1 s and 24 h")
		}
	}
	if s.Spend < 0 || s.Spend > MaxPayment {
		return Invalid("spend_usd", "spend_usd must be between 0 (off) and %s", MaxPayment)
	}
	if s.Spend > 0 && (s.SpendWindow <= 0 || time.Duration(s.SpendWindow) > MaxAnomalyWindow) {
		return Invalid("spend_window_seconds", "spend_window_seconds must be between 1 and 86400")
	}
	for d, r := range s.Responses {
		if !slices.Contains(Detectors, d) {
			return Invalid("responses", "responses names an unknown detector %q", d)
		}
		if r != ResponseFlag && r != ResponseKill {
			return Invalid("responses", "a response is %q or %q, not %q", ResponseFlag, ResponseKill, r)
		}
	}
	if s.Hours {
		if s.StartHour < 0 || s.StartHour > 23 || s.EndHour < 0 || s.EndHour > 24 || s.StartHour == s.EndHour {
			return Invalid("start_hour", "start_hour (0-23) and end_hour (0-24) must differ")
		}
		if _, err := time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "" {
			return Invalid("timezone", "timezone must be an IANA name such as Europe/Paris")
		}
	}
	return nil
}

// OffHours reports whether at falls outside the settings' working hours
// (a window may cross midnight).
func (s AnomalySettings) OffHours(at time.Time) bool {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	h := at.In(loc).Hour()
	if s.StartHour < s.EndHour {
		return h < s.StartHour || h >= s.EndHour
	}
	return h < s.StartHour && h >= s.EndHour
}

// LocalDay names the day at falls on in the settings' time zone.
func (s AnomalySettings) LocalDay(at time.Time) string {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	return at.In(loc).Format(time.DateOnly)
}

// FlagReason is a flag's human-readable reason.
func FlagReason(detector string, n int, window time.Duration, subject string) string {
	switch detector {
	case DetectorLoop:
		return fmt.Sprintf("%s called with the same arguments %d times within %s", subject, n, window)
	case DetectorFirstUse:
		return "first use of " + subject
	case DetectorDenials:
		return fmt.Sprintf("%d refusals within %s in session %s", n, window, subject)
	case DetectorOffHours:
		return "activity outside working hours (" + subject + ")"
	}
	return subject
}

// MarshalJSON writes whole seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprint(int64(time.Duration(d) / time.Second))), nil
}

// UnmarshalJSON reads whole seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n int64
	if _, err := fmt.Sscan(string(b), &n); err != nil || fmt.Sprint(n) != string(b) {
		return fmt.Errorf("a duration is a whole number of seconds, not %s", b)
	}
	*d = Duration(time.Duration(n) * time.Second)
	return nil
}
