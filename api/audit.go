package api

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections/views"
)

// Audit limits.
const (
	maxToolLen    = 128
	maxActionLen  = 256
	maxDetailsLen = 64 << 10
)

func (s *Server) logAction(c *call) (int, any, error) {
	sessionID := c.obj.str("session_id", true, 64)
	act := domain.Action{
		Action:  c.obj.str("action", true, maxActionLen),
		Tool:    c.obj.str("tool", false, maxToolLen),
		Details: c.obj.details("details", maxDetailsLen),
	}
	act.Cost, _ = c.obj.money("cost_usd", false, 0, domain.MaxPayment)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	res, err := s.deps.Commands.LogAction(c.ctx, c.actor, sessionID, act)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"logged": true, "entry_id": res.EntryID, "flagged": res.Entry.Flagged, "flag_reason": res.Entry.FlagReason}, nil
}

// auditFilter reads the filters shared by the audit query, spend and export.
func auditFilter(c *call) (views.AuditFilter, error) {
	q := c.r.URL.Query()
	var f views.AuditFilter
	var err error
	if f.SessionID, err = queryString(q, "session_id", 64); err != nil {
		return f, err
	}
	if f.AgentID, err = queryString(q, "agent_id", domain.MaxAgentIDLen); err != nil {
		return f, err
	}
	if f.Tool, err = queryString(q, "tool", maxToolLen); err != nil {
		return f, err
	}
	if f.Flagged, err = queryBool(q, "flagged"); err != nil {
		return f, err
	}
	if f.Since, err = queryTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(q, "until"); err != nil {
		return f, err
	}
	return f, nil
}

func entryJSON(r *views.AuditRow) map[string]any {
	return map[string]any{
		"entry_id": r.EntryID, "seq": r.Seq, "type": r.Type, "session_id": r.SessionID, "agent_id": r.AgentID,
		"tool": r.Tool, "action": r.Action, "cost_usd": r.Cost, "flagged": r.Flagged, "flag_reason": r.FlagReason,
		"timestamp": formatTime(r.RecordedAt), "details": r.Details, "prev_hash": r.PrevHash, "entry_hash": r.EntryHash,
	}
}

func (s *Server) queryAudit(c *call) (int, any, error) {
	f, err := auditFilter(c)
	if err != nil {
		return 0, nil, err
	}
	q := c.r.URL.Query()
	if f.Limit, err = queryInt(q, "limit", 1, 1000, 100); err != nil {
		return 0, nil, err
	}
	if cur := q.Get("cursor"); cur != "" {
		n, err := strconv.ParseInt(cur, 10, 64)
		if err != nil || n < 1 {
			return 0, nil, domain.Invalid("cursor", "cursor must be the next_cursor of a previous page")
		}
		f.Before = n
	}
	rows, more, err := s.deps.Queries.Audit(c.ctx, c.tenant, f)
	if err != nil {
		return 0, nil, err
	}
	entries := make([]map[string]any, len(rows))
	for i := range rows {
		entries[i] = entryJSON(&rows[i])
	}
	var next any
	if more {
		next = strconv.FormatInt(rows[len(rows)-1].Seq, 10)
	}
	return http.StatusOK, map[string]any{"count": len(entries), "entries": entries, "next_cursor": next}, nil
}

func (s *Server) spend(c *call) (int, any, error) {
	f, err := auditFilter(c)
	if err != nil {
		return 0, nil, err
	}
	sum, err := s.deps.Queries.Spend(c.ctx, c.tenant, f)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"total_usd": sum.Total, "action_count": sum.ActionCount, "by_tool": sum.ByTool}, nil
}

func (s *Server) verify(c *call) (int, any, error) {
	v, err := s.verifyChain(c.ctx, c.tenant, true)
	if err != nil {
		return 0, nil, err
	}
	if !v.Verified {
		return http.StatusOK, map[string]any{"verified": false, "entries_checked": v.Checked, "first_bad_seq": v.FirstBadSeq, "reason": v.Reason}, nil
	}
	return http.StatusOK, map[string]any{"verified": true, "entries_checked": v.Checked, "head_hash": v.HeadHash}, nil
}

// hashingWriter hashes everything written through it.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
}

func (h *hashingWriter) Write(b []byte) (int, error) {
	h.h.Write(b)
	return h.w.Write(b)
}

// export streams the audit trail, oldest first, ending with a manifest: the
// count, the sequence range, the tenant's chain head and the SHA-256 of
// every byte before the manifest.
func (s *Server) export(c *call) error {
	f, err := auditFilter(c)
	if err != nil {
		return err
	}
	format := c.r.URL.Query().Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format == "bundle" {
		return s.exportBundle(c)
	}
	if format != "jsonl" && format != "csv" {
		return domain.Invalid("format", "format must be jsonl, csv or bundle")
	}
	headSeq, headHash, err := s.deps.Store.TenantHead(c.ctx, c.tenant)
	if err != nil {
		return err
	}
	if format == "csv" {
		c.w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		c.w.Header().Set("Content-Type", "application/x-ndjson")
	}
	c.w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"haldir-audit.%s\"", format))
	c.w.WriteHeader(http.StatusOK)
	hw := &hashingWriter{w: c.w, h: sha256.New()}
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(hw)
		cw.Write([]string{"entry_id", "seq", "type", "session_id", "agent_id", "tool", "action", "cost_usd", "flagged", "flag_reason", "timestamp", "details", "prev_hash", "entry_hash"})
	}
	enc := json.NewEncoder(hw)
	var count, first, last int64
	err = s.deps.Queries.AuditAscending(c.ctx, c.tenant, f, func(r *views.AuditRow) error {
		if count == 0 {
			first = r.Seq
		}
		count++
		last = r.Seq
		if cw != nil {
			return cw.Write([]string{r.EntryID, strconv.FormatInt(r.Seq, 10), r.Type, r.SessionID, r.AgentID, r.Tool, r.Action,
				r.Cost.String(), strconv.FormatBool(r.Flagged), r.FlagReason, formatTime(r.RecordedAt), string(r.Details), r.PrevHash, r.EntryHash})
		}
		return enc.Encode(entryJSON(r))
	})
	if cw != nil {
		cw.Flush()
	}
	if err != nil {
		// Headers are sent: end the stream without a manifest, so the
		// export cannot be mistaken for a complete one.
		s.log.Error("export interrupted", "request_id", c.requestID, "err", err)
		return nil
	}
	manifest := map[string]any{"count": count, "first_seq": first, "last_seq": last, "tenant_head_seq": headSeq,
		"head_hash": hex.EncodeToString(headHash[:]), "sha256": hex.EncodeToString(hw.h.Sum(nil))}
	if cw != nil {
		b, _ := json.Marshal(manifest)
		fmt.Fprintf(c.w, "#manifest %s\n", b)
		return nil
	}
	return json.NewEncoder(c.w).Encode(map[string]any{"manifest": manifest})
}
