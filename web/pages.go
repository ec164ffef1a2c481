package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/haldir-dev/haldir/evidence"
)

// needs renders a notice in place of a section the key may not read.
func needs(scope string) string {
	return "This key lacks the " + scope + " scope, so this section is hidden. Sign in with a key that holds it to see it."
}

// overviewData is GET /v1/admin/overview.
type overviewData struct {
	Status      string `json:"status"`
	GeneratedAt string `json:"generated_at"`
	Actions     struct {
		ThisMonth json.Number `json:"this_month"`
		Month     string      `json:"month"`
	} `json:"actions"`
	Spend struct {
		ThisMonthUSD json.Number `json:"this_month_usd"`
	} `json:"spend"`
	Sessions struct {
		Active       json.Number `json:"active"`
		Total        json.Number `json:"total"`
		ActiveAgents json.Number `json:"active_agents"`
	} `json:"sessions"`
	Audit struct {
		Entries        json.Number `json:"entries"`
		Flagged7d      json.Number `json:"flagged_7d"`
		Chain          string      `json:"chain"`
		ChainCheckedAt string      `json:"chain_checked_at"`
	} `json:"audit"`
	Keys struct {
		Active json.Number `json:"active"`
	} `json:"keys"`
	Vault struct {
		Secrets  json.Number `json:"secrets"`
		Accesses json.Number `json:"accesses_this_month"`
		Denials  json.Number `json:"denials_this_month"`
	} `json:"vault"`
	Approvals struct {
		Pending  json.Number `json:"pending"`
		Approved json.Number `json:"approved"`
		Denied   json.Number `json:"denied"`
		Expired  json.Number `json:"expired"`
	} `json:"approvals"`
	Webhooks struct {
		Registered    json.Number `json:"registered"`
		Active        json.Number `json:"active"`
		Deliveries24h json.Number `json:"deliveries_24h"`
		SuccessRate   string      `json:"success_rate_24h"`
	} `json:"webhooks"`
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Overview", Nav: "overview", Viewer: v, Live: Prefix + "/"}
	if !v.Can("admin:read") {
		p.Error = needs("admin:read")
		h.render(w, r, http.StatusOK, "overview", p)
		return
	}
	var o overviewData
	if err := v.get("/v1/admin/overview").Decode(&o); err != nil {
		p.Error = err.Error()
	} else {
		p.Data = &o
	}
	h.render(w, r, http.StatusOK, "overview", p)
}

// approval is GET /v1/approvals/{id}.
type approval struct {
	RequestID    string          `json:"request_id"`
	Status       string          `json:"status"`
	Used         bool            `json:"used"`
	SessionID    string          `json:"session_id"`
	AgentID      string          `json:"agent_id"`
	Tool         string          `json:"tool"`
	Action       string          `json:"action"`
	Amount       json.Number     `json:"amount"`
	Reason       string          `json:"reason"`
	Details      json.RawMessage `json:"details"`
	ArgsHash     string          `json:"args_hash"`
	CreatedAt    string          `json:"created_at"`
	ExpiresAt    string          `json:"expires_at"`
	DecidedBy    string          `json:"decided_by"`
	DecisionNote string          `json:"decision_note"`
	DecidedAt    string          `json:"decided_at"`
}

// DetailsText is the bound call's stored arguments, indented.
func (a *approval) DetailsText() string {
	if len(a.Details) == 0 || string(a.Details) == "null" || string(a.Details) == "{}" {
		return ""
	}
	var v any
	if json.Unmarshal(a.Details, &v) != nil {
		return ""
	}
	return jsonText(v)
}

func (h *Handler) approvalsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Approvals", Nav: "approvals", Viewer: v, Live: Prefix + "/approvals"}
	if !v.Can("approvals:read") {
		p.Error = needs("approvals:read")
		h.render(w, r, http.StatusOK, "approvals", p)
		return
	}
	var list struct {
		Requests []struct {
			RequestID string `json:"request_id"`
		} `json:"requests"`
	}
	q := url.Values{}
	if a := r.URL.Query().Get("agent_id"); a != "" {
		q.Set("agent_id", a)
	}
	if err := v.get("/v1/approvals/pending?" + q.Encode()).Decode(&list); err != nil {
		p.Error = err.Error()
		h.render(w, r, http.StatusOK, "approvals", p)
		return
	}
	// The pending list names the request; its exact bound call (argument
	// hash, stored arguments) is in the request itself.
	var out []*approval
	for i, it := range list.Requests {
		if i == 50 {
			break
		}
		var a approval
		if err := v.get("/v1/approvals/" + url.PathEscape(it.RequestID)).Decode(&a); err == nil && a.Status == "pending" {
			out = append(out, &a)
		}
	}
	// Below them, the latest decisions, from the ledger (audit:read).
	type decision struct {
		RequestID, Status, DecidedBy, Note, At string
	}
	var decided []decision
	if v.Can("audit:read") {
		var pg auditPage
		if v.get("/v1/audit?tool=approvals&limit=200").Decode(&pg) == nil {
			for _, e := range pg.Entries {
				status, ok := strings.CutPrefix(e.Type, "approval.")
				if !ok || (status != "approved" && status != "denied" && status != "expired") || len(decided) == 20 {
					continue
				}
				var d struct {
					RequestID string `json:"request_id"`
					DecidedBy string `json:"decided_by"`
					Note      string `json:"note"`
				}
				if json.Unmarshal(e.Details, &d) == nil && d.RequestID != "" {
					decided = append(decided, decision{d.RequestID, status, d.DecidedBy, d.Note, e.Timestamp})
				}
			}
		}
	}
	p.Data = map[string]any{"Pending": out, "Decided": decided, "Agent": r.URL.Query().Get("agent_id"), "More": len(list.Requests) > 50}
	h.render(w, r, http.StatusOK, "approvals", p)
}

func (h *Handler) approvalPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	p := &page{Title: "Approval " + id, Nav: "approvals", Viewer: v}
	var a approval
	if err := v.get("/v1/approvals/" + url.PathEscape(id)).Decode(&a); err != nil {
		status := http.StatusOK
		if e, ok := err.(*apiError); ok && e.Status == http.StatusNotFound {
			status = http.StatusNotFound
		}
		p.Error = err.Error()
		h.render(w, r, status, "approval", p)
		return
	}
	switch res := r.URL.Query().Get("result"); res {
	case "approved", "denied":
		p.Flash = "You " + res + " this request."
	case "conflict":
		if a.DecidedBy == "" {
			p.Error = fmt.Sprintf("Your decision was not applied: this request is %s; nobody decided it in time.", a.Status)
		} else {
			p.Error = fmt.Sprintf("Your decision was not applied: this request was already %s by %s.", a.Status, a.DecidedBy)
		}
	}
	p.Data = &a
	h.render(w, r, http.StatusOK, "approval", p)
}

// decide approves or denies through the API; a request someone else
// decided first shows who won.
func (h *Handler) decide(approve bool) func(http.ResponseWriter, *http.Request, *viewer) {
	verb, result := "deny", "denied"
	if approve {
		verb, result = "approve", "approved"
	}
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		id := r.PathValue("id")
		note := strings.TrimSpace(r.PostFormValue("note"))
		if len(note) > 2048 {
			note = note[:2048]
		}
		by := v.Name + " (" + v.Prefix + ")"
		res := v.send(http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/"+verb, map[string]any{"decided_by": by, "note": note})
		switch {
		case res.OK():
			http.Redirect(w, r, Prefix+"/approvals/"+url.PathEscape(id)+"?result="+result+"&pos="+res.Header.Get("Haldir-Position"), http.StatusSeeOther)
		case res.Status == http.StatusConflict:
			http.Redirect(w, r, Prefix+"/approvals/"+url.PathEscape(id)+"?result=conflict", http.StatusSeeOther)
		default:
			h.render(w, r, res.Status, "error", &page{Title: "Refused", Nav: "approvals", Viewer: v, Error: res.Err().Error()})
		}
	}
}

// auditEntry is one entry of GET /v1/audit.
type auditEntry struct {
	EntryID    string          `json:"entry_id"`
	Seq        json.Number     `json:"seq"`
	Type       string          `json:"type"`
	SessionID  string          `json:"session_id"`
	AgentID    string          `json:"agent_id"`
	Tool       string          `json:"tool"`
	Action     string          `json:"action"`
	Cost       json.Number     `json:"cost_usd"`
	Flagged    bool            `json:"flagged"`
	FlagReason string          `json:"flag_reason"`
	Timestamp  string          `json:"timestamp"`
	Details    json.RawMessage `json:"details"`
	EntryHash  string          `json:"entry_hash"`
}

type auditPage struct {
	Entries []auditEntry `json:"entries"`
	Next    *string      `json:"next_cursor"`
}

// auditEntries pages through GET /v1/audit with q, newest first, up to
// max entries.
func auditEntries(v *viewer, q url.Values, max int) ([]auditEntry, error) {
	var out []auditEntry
	q.Set("limit", "1000")
	for len(out) < max {
		var pg auditPage
		if err := v.get("/v1/audit?" + q.Encode()).Decode(&pg); err != nil {
			return out, err
		}
		out = append(out, pg.Entries...)
		if pg.Next == nil || *pg.Next == "" {
			break
		}
		q.Set("cursor", *pg.Next)
	}
	return out, nil
}

type verifyResult struct {
	Verified    bool        `json:"verified"`
	Checked     json.Number `json:"entries_checked"`
	HeadHash    string      `json:"head_hash"`
	FirstBadSeq json.Number `json:"first_bad_seq"`
	Reason      string      `json:"reason"`
}

func (h *Handler) auditPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Audit trail", Nav: "audit", Viewer: v}
	if !v.Can("audit:read") {
		p.Error = needs("audit:read")
		h.render(w, r, http.StatusOK, "audit", p)
		return
	}
	in := r.URL.Query()
	q := url.Values{}
	for _, f := range []string{"agent_id", "tool", "cursor"} {
		if s := in.Get(f); s != "" {
			q.Set(f, s)
		}
	}
	typ := in.Get("type")
	data := map[string]any{"Agent": in.Get("agent_id"), "Tool": in.Get("tool"), "Type": typ}
	// The API filters by agent and tool; the event type is filtered here,
	// over the page the API returned.
	limit := 50
	if typ != "" {
		limit = 500
	}
	q.Set("limit", strconv.Itoa(limit))
	var pg auditPage
	if err := v.get("/v1/audit?" + q.Encode()).Decode(&pg); err != nil {
		p.Error = err.Error()
		h.render(w, r, http.StatusOK, "audit", p)
		return
	}
	entries := pg.Entries
	if typ != "" {
		entries = entries[:0:0]
		for _, e := range pg.Entries {
			if e.Type == typ {
				entries = append(entries, e)
			}
		}
	}
	data["Entries"] = entries
	if pg.Next != nil && *pg.Next != "" {
		nq := url.Values{}
		for k, vs := range q {
			if k != "limit" {
				nq[k] = vs
			}
		}
		if typ != "" {
			nq.Set("type", typ)
		}
		nq.Set("cursor", *pg.Next)
		data["Next"] = Prefix + "/audit?" + nq.Encode()
	}
	if in.Get("verify") != "" {
		var vr verifyResult
		if err := v.get("/v1/audit/verify").Decode(&vr); err != nil {
			p.Error = err.Error()
		} else {
			data["Verify"] = &vr
		}
	} else if v.Can("admin:read") {
		var o overviewData
		if v.get("/v1/admin/overview").Decode(&o) == nil {
			data["Chain"], data["ChainAt"] = o.Audit.Chain, o.Audit.ChainCheckedAt
		}
	}
	p.Data = data
	h.render(w, r, http.StatusOK, "audit", p)
}

func (h *Handler) proofPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	entry := r.PathValue("entry")
	p := &page{Title: "Inclusion proof", Nav: "audit", Viewer: v}
	var proof map[string]any
	if err := v.get("/v1/audit/inclusion-proof/" + url.PathEscape(entry)).Decode(&proof); err != nil {
		p.Error = err.Error()
	} else {
		p.Data = map[string]any{"Entry": entry, "Proof": proof, "Text": jsonText(proof)}
	}
	h.render(w, r, http.StatusOK, "proof", p)
}

// sessionView is GET /v1/sessions/{id}.
type sessionView struct {
	SessionID string      `json:"session_id"`
	AgentID   string      `json:"agent_id"`
	Scopes    []string    `json:"scopes"`
	Limit     json.Number `json:"spend_limit"`
	Spent     json.Number `json:"spent"`
	Remaining json.Number `json:"remaining_budget"`
	Valid     bool        `json:"is_valid"`
	CreatedAt string      `json:"created_at"`
	ExpiresAt string      `json:"expires_at"`
}

func (h *Handler) sessionsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Sessions", Nav: "sessions", Viewer: v}
	if !v.Can("sessions:read") || !v.Can("audit:read") {
		p.Error = needs("sessions:read and audit:read")
		h.render(w, r, http.StatusOK, "sessions", p)
		return
	}
	in := r.URL.Query()
	q := url.Values{}
	if a := in.Get("agent_id"); a != "" {
		q.Set("agent_id", a)
	}
	state := in.Get("state")
	// The API has no session list: the sessions are the session.created
	// events of the ledger, newest first, each read back for its state.
	entries, err := auditEntries(v, q, 5000)
	if err != nil {
		p.Error = err.Error()
	}
	var out []sessionView
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Type != "session.created" || e.SessionID == "" || seen[e.SessionID] || len(out) == 100 {
			continue
		}
		seen[e.SessionID] = true
		var s sessionView
		if v.get("/v1/sessions/"+url.PathEscape(e.SessionID)).Decode(&s) != nil {
			continue
		}
		if (state == "active" && !s.Valid) || (state == "ended" && s.Valid) {
			continue
		}
		out = append(out, s)
	}
	if in.Get("revoked") != "" {
		p.Flash = "Session " + in.Get("revoked") + " was revoked."
	}
	p.Data = map[string]any{"Sessions": out, "Agent": in.Get("agent_id"), "State": state}
	h.render(w, r, http.StatusOK, "sessions", p)
}

func (h *Handler) revokeSession(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	res := v.send(http.MethodDelete, "/v1/sessions/"+url.PathEscape(id), nil)
	if !res.OK() {
		h.render(w, r, res.Status, "error", &page{Title: "Refused", Nav: "sessions", Viewer: v, Error: res.Err().Error()})
		return
	}
	http.Redirect(w, r, Prefix+"/sessions?revoked="+url.QueryEscape(id)+"&pos="+res.Header.Get("Haldir-Position"), http.StatusSeeOther)
}

// bar is one bar of an inline SVG chart.
type bar struct {
	Label  string
	Short  string // the label under the bar; Label is in its title
	Zero   bool
	Amount string
	X, Y   int
	W, H   int
	TextY  int
}

// chart lays out bars for label → cents, largest first when byValue.
type chart struct {
	Bars          []bar
	Width, Height int
	Empty         bool
}

func barChart(labels []string, values map[string]int64) chart {
	const height, gap, barW, top = 160, 12, 56, 10
	c := chart{Height: height + 40, Width: max(len(labels)*(barW+gap)+gap, 200)}
	var peak int64
	for _, l := range labels {
		peak = max(peak, values[l])
	}
	if peak == 0 {
		c.Empty = true
		return c
	}
	for i, l := range labels {
		hgt := int(values[l] * (height - top) / peak)
		if values[l] > 0 && hgt < 2 {
			hgt = 2
		}
		x := gap + i*(barW+gap)
		short := l
		if r := []rune(l); len(r) > 9 {
			short = string(r[:8]) + "…"
		}
		c.Bars = append(c.Bars, bar{Label: l, Short: short, Amount: formatCents(values[l]), Zero: values[l] == 0, X: x, Y: height - hgt, W: barW, H: hgt, TextY: height + 16})
	}
	return c
}

func (h *Handler) spendPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Spend", Nav: "spend", Viewer: v}
	if !v.Can("audit:read") {
		p.Error = needs("audit:read")
		h.render(w, r, http.StatusOK, "spend", p)
		return
	}
	var total struct {
		Total json.Number `json:"total_usd"`
		Count json.Number `json:"action_count"`
	}
	if err := v.get("/v1/audit/spend").Decode(&total); err != nil {
		p.Error = err.Error()
	}
	entries, err := auditEntries(v, url.Values{}, 10000)
	if err != nil {
		p.Error = err.Error()
	}
	byAgent, byDay := map[string]int64{}, map[string]int64{}
	now := h.now().UTC()
	var days []string
	for i := 13; i >= 0; i-- {
		days = append(days, now.AddDate(0, 0, -i).Format("01-02"))
	}
	for _, e := range entries {
		c, ok := cents(e.Cost)
		if !ok || c <= 0 {
			continue
		}
		agent := e.AgentID
		if agent == "" {
			agent = "(none)"
		}
		byAgent[agent] += c
		if st := when(e.Timestamp); st != nil && len(st.ISO) >= 10 {
			byDay[st.ISO[5:10]] += c
		}
	}
	agents := make([]string, 0, len(byAgent))
	for a := range byAgent {
		agents = append(agents, a)
	}
	sort.Slice(agents, func(i, j int) bool {
		if byAgent[agents[i]] != byAgent[agents[j]] {
			return byAgent[agents[i]] > byAgent[agents[j]]
		}
		return agents[i] < agents[j]
	})
	if len(agents) > 12 {
		agents = agents[:12]
	}
	p.Data = map[string]any{"Total": total.Total, "Count": total.Count, "Agents": barChart(agents, byAgent), "Days": barChart(days, byDay),
		"Scanned": len(entries)}
	h.render(w, r, http.StatusOK, "spend", p)
}

func (h *Handler) proxyPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "MCP proxy", Nav: "proxy", Viewer: v}
	if !v.Can("proxy:read") {
		p.Error = needs("proxy:read")
		h.render(w, r, http.StatusOK, "proxy", p)
		return
	}
	var ups struct {
		Upstreams []map[string]any `json:"upstreams"`
	}
	var tools struct {
		Tools []struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			Upstream    string `json:"upstream"`
			InputSchema any    `json:"input_schema"`
			Hash        string `json:"definition_hash"`
			Quarantined bool   `json:"quarantined"`
		} `json:"tools"`
	}
	var pols struct {
		Policies []map[string]any `json:"policies"`
	}
	if err := v.get("/v1/proxy/upstreams").Decode(&ups); err != nil {
		p.Error = err.Error()
	}
	if err := v.get("/v1/proxy/tools").Decode(&tools); err != nil && p.Error == "" {
		p.Error = err.Error()
	}
	_ = v.get("/v1/proxy/policies").Decode(&pols)
	// A quarantined tool shows the definition it replaces: the ledger's
	// quarantine entry names the pinned and the offered hash and, for pins
	// recorded with their text, both definitions, shown as a diff.
	pinned := map[string]string{}
	diffs := map[string][]diffLine{}
	for _, tl := range tools.Tools {
		if !tl.Quarantined || !v.Can("audit:read") {
			continue
		}
		var pg auditPage
		if v.get("/v1/audit?limit=50&tool="+url.QueryEscape(tl.Name)).Decode(&pg) != nil {
			continue
		}
		for _, e := range pg.Entries {
			var d struct {
				Pinned           string          `json:"pinned_hash"`
				New              string          `json:"new_hash"`
				PinnedDefinition json.RawMessage `json:"pinned_definition"`
				NewDefinition    json.RawMessage `json:"new_definition"`
			}
			if e.Type == "proxy.tool_quarantined" && json.Unmarshal(e.Details, &d) == nil && d.New == tl.Hash {
				pinned[tl.Name] = d.Pinned
				if len(d.PinnedDefinition) > 0 && len(d.NewDefinition) > 0 {
					diffs[tl.Name] = diffJSON(d.PinnedDefinition, d.NewDefinition)
				}
				break
			}
		}
	}
	if t := r.URL.Query().Get("approved"); t != "" {
		p.Flash = "The new definition of " + t + " is approved; calls to it are allowed again."
	}
	p.Data = map[string]any{"Upstreams": ups.Upstreams, "Tools": tools.Tools, "Policies": pols.Policies, "Pinned": pinned, "Diffs": diffs}
	h.render(w, r, http.StatusOK, "proxy", p)
}

func (h *Handler) approveTool(w http.ResponseWriter, r *http.Request, v *viewer) {
	name := r.PathValue("name")
	res := v.send(http.MethodPost, "/v1/proxy/tools/"+url.PathEscape(name)+"/approve", map[string]any{})
	if !res.OK() {
		h.render(w, r, res.Status, "error", &page{Title: "Refused", Nav: "proxy", Viewer: v, Error: res.Err().Error()})
		return
	}
	http.Redirect(w, r, Prefix+"/proxy?approved="+url.QueryEscape(name)+"&pos="+res.Header.Get("Haldir-Position"), http.StatusSeeOther)
}

func (h *Handler) webhooksPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Webhooks", Nav: "webhooks", Viewer: v}
	if !v.Can("webhooks:read") {
		p.Error = needs("webhooks:read")
		h.render(w, r, http.StatusOK, "webhooks", p)
		return
	}
	var hooks struct {
		Webhooks []struct {
			ID        string      `json:"webhook_id"`
			URL       string      `json:"url"`
			Name      string      `json:"name"`
			Events    []string    `json:"events"`
			Active    bool        `json:"active"`
			FireCount json.Number `json:"fire_count"`
			FailCount json.Number `json:"fail_count"`
		} `json:"webhooks"`
	}
	var dels struct {
		Deliveries []struct {
			ID         string      `json:"delivery_id"`
			EventID    string      `json:"event_id"`
			WebhookID  string      `json:"webhook_id"`
			EventType  string      `json:"event_type"`
			Attempt    json.Number `json:"attempt"`
			StatusCode json.Number `json:"status_code"`
			Error      string      `json:"error"`
			Duration   json.Number `json:"duration_ms"`
			CreatedAt  string      `json:"created_at"`
		} `json:"deliveries"`
	}
	if err := v.get("/v1/webhooks").Decode(&hooks); err != nil {
		p.Error = err.Error()
	}
	if err := v.get("/v1/webhooks/deliveries?limit=50").Decode(&dels); err != nil && p.Error == "" {
		p.Error = err.Error()
	}
	p.Data = map[string]any{"Webhooks": hooks.Webhooks, "Deliveries": dels.Deliveries}
	h.render(w, r, http.StatusOK, "webhooks", p)
}

func (h *Handler) compliancePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	p := &page{Title: "Compliance", Nav: "compliance", Viewer: v}
	if !v.Can("admin:read") {
		p.Error = needs("admin:read")
		h.render(w, r, http.StatusOK, "compliance", p)
		return
	}
	res := v.get("/v1/compliance/evidence?format=json")
	var pack evidence.Pack
	if err := res.Decode(&pack); err != nil {
		p.Error = err.Error()
		h.render(w, r, http.StatusOK, "compliance", p)
		return
	}
	// The signature is checked here, against the published key, as an
	// auditor would check the downloaded pack.
	keyRes := v.get("/.well-known/haldir-checkpoint-key")
	vkey := strings.TrimSpace(string(keyRes.Body))
	data := map[string]any{"Pack": &pack, "Key": vkey}
	if !keyRes.OK() {
		data["SigErr"] = "the verifier key could not be read"
	} else if err := evidence.Verify(&pack, vkey); err != nil {
		data["SigErr"] = err.Error()
	} else {
		data["SigOK"] = true
	}
	p.Data = data
	h.render(w, r, http.StatusOK, "compliance", p)
}

func (h *Handler) evidenceDownload(w http.ResponseWriter, r *http.Request, v *viewer) {
	format := r.URL.Query().Get("format")
	if format != "markdown" {
		format = "json"
	}
	res := v.get("/v1/compliance/evidence?format=" + format)
	if !res.OK() {
		h.render(w, r, res.Status, "error", &page{Title: "Refused", Nav: "compliance", Viewer: v, Error: res.Err().Error()})
		return
	}
	name, ct := "haldir-evidence.json", "application/json"
	if format == "markdown" {
		name, ct = "haldir-evidence.md", "text/markdown; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.WriteHeader(http.StatusOK)
	w.Write(res.Body)
}
