package evidence

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteMarkdown renders the pack for the "show this to the auditor"
// moment. It is a view of the JSON pack; the signature covers the JSON
// sections, which the Markdown repeats.
func WriteMarkdown(w io.Writer, p *Pack) error {
	s := &p.Sections
	var b strings.Builder
	// row escapes plain strings; rawCell values are already formatted.
	row := func(k string, v any) {
		if str, ok := v.(string); ok {
			v = cell(str)
		}
		fmt.Fprintf(&b, "| %s | %v |\n", k, v)
	}
	code := func(s string) rawCell { return rawCell("`" + strings.ReplaceAll(s, "`", "'") + "`") }
	table := func() { b.WriteString("| | |\n|---|---|\n") }

	fmt.Fprintf(&b, "# Haldir compliance evidence: %s\n\n", strings.NewReplacer("\n", " ", "<", "&lt;", ">", "&gt;").Replace(s.Identity.TenantName))
	fmt.Fprintf(&b, "Tenant `%s` · period %s to %s · generated %s\n\n", s.Identity.TenantID, s.Identity.Since, s.Identity.Until, p.GeneratedAt.UTC().Format(rfc))

	b.WriteString("## 1. Identity\n\n")
	table()
	row("Tenant", code(s.Identity.TenantID))
	row("Name", md(s.Identity.TenantName))
	row("Edition", s.Identity.Edition)
	row("Period", s.Identity.Since+" – "+s.Identity.Until)

	a := s.AccessControl
	b.WriteString("\n## 2. Access control (SOC 2 CC6.1)\n\n")
	table()
	row("Active API keys at end of period", a.KeysActiveAtEnd)
	row("Of which hold a wildcard scope", a.WildcardKeys)
	row("Keys created / revoked in period", fmt.Sprintf("%d / %d", a.KeysCreated, a.KeysRevoked))
	row("Agent sessions created / revoked", fmt.Sprintf("%d / %d", a.SessionsCreated, a.SessionsRevoked))
	row("Sessions created with a spend cap", a.SessionsWithCap)
	row("Scope model", a.ScopeModel)
	row("Key storage", a.KeyStorage)
	if len(a.Keys) > 0 {
		b.WriteString("\n| Key | Name | Scopes | Created | Revoked |\n|---|---|---|---|---|\n")
		for _, k := range a.Keys {
			revoked := k.RevokedAt
			if revoked == "" {
				revoked = "—"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Prefix, md(k.Name), md(strings.Join(k.Scopes, ", ")), k.CreatedAt, revoked)
		}
	}

	e := s.Encryption
	b.WriteString("\n## 3. Encryption (SOC 2 CC6.7)\n\n")
	table()
	row("Scheme", e.Scheme)
	row("AAD binding", e.AADBinding)
	row("Key derivation", e.KeyDerivation)
	row("Key-encryption key version", e.KEKVersion)
	row("Secrets held at end of period", e.SecretsAtEnd)
	row("Versions stored / secrets deleted (crypto-shredded)", fmt.Sprintf("%d / %d", e.VersionsStored, e.CryptoShredded))
	row("Reads / refused reads", fmt.Sprintf("%d / %d", e.Reads, e.ReadsRefused))
	row("Plaintext", e.PlaintextPolicy)

	t := s.AuditTrail
	b.WriteString("\n## 4. Audit trail (SOC 2 CC7.2)\n\n")
	table()
	row("Entries in period / in total", fmt.Sprintf("%d / %d", t.EntriesPeriod, t.EntriesTotal))
	row("Flagged in period", t.Flagged)
	chain := rawCell(fmt.Sprintf("✓ verified, %d entries, head `%s`", t.Chain.Checked, shortHash(t.Chain.HeadHash)))
	if !t.Chain.Verified {
		chain = rawCell(fmt.Sprintf("✗ BROKEN at seq %d: %s", t.Chain.FirstBadSeq, md(t.Chain.Reason)))
	}
	row("Hash chain", chain)
	row("Algorithm", t.ChainAlgorithm)
	if t.TreeHead != nil {
		row("Signed tree head", rawCell(fmt.Sprintf("size %d, root `%x…`, signed %s", t.TreeHead.Size, t.TreeHead.Root[:8], t.TreeHead.Time.UTC().Format(rfc))))
	}

	sp := s.Spend
	b.WriteString("\n## 5. Spend governance (SOC 2 CC5.2)\n\n")
	table()
	row("Payments authorised", fmt.Sprintf("%d ($%s)", sp.Authorized, sp.AuthorizedTotal))
	row("Payments denied (over budget)", fmt.Sprintf("%d (%d)", sp.Denied, sp.DeniedOverCap))
	row("Cost logged by agents", "$"+sp.LoggedCost.String())
	row("Policy", sp.Policy)

	ap := s.Approvals
	b.WriteString("\n## 6. Human approvals (SOC 2 CC8.1)\n\n")
	table()
	row("Rules in force at end of period", ap.Rules)
	row("Requested / approved / denied / expired", fmt.Sprintf("%d / %d / %d / %d", ap.Requested, ap.Approved, ap.Denied, ap.Expired))
	row("Approvals used", ap.Used)
	row("Policy", ap.Policy)

	al := s.Alerting
	b.WriteString("\n## 7. Outbound alerting (SOC 2 CC7.3)\n\n")
	table()
	row("Webhooks registered / active", fmt.Sprintf("%d / %d", al.Webhooks.Registered, al.Webhooks.Active))
	row("Delivery attempts / delivered / failed", fmt.Sprintf("%d / %d / %d", al.Webhooks.Attempts, al.Webhooks.Delivered, al.Webhooks.Failed))
	row("Success rate", al.SuccessRate)
	row("Signing", al.Signing)

	an := s.Anomalies
	if an == nil {
		an = &evidenceAnomaliesNone
	}
	b.WriteString("\n## 8. Anomaly detection (SOC 2 CC7.2)\n\n")
	table()
	row("Flags raised / acknowledged", fmt.Sprintf("%d / %d", an.Flagged, an.Acknowledged))
	row("By detector", counts(an.ByDetector))
	row("By severity", counts(an.BySeverity))
	row("Kill switches pulled / lifted", fmt.Sprintf("%d / %d", an.Kills, an.Lifted))
	row("Stopped at end of period", strings.Join(an.KilledAtEnd, ", "))
	row("Policy", an.Policy)

	b.WriteString("\n## 9. Signature\n\n")
	fmt.Fprintf(&b, "Sections 1–8 of the JSON pack hash to SHA-256 `%s`, signed with %s, key `%s`:\n\n", p.Manifest.Digest, p.Signature.Algorithm, p.Signature.KeyID)
	b.WriteString("```\n" + p.Signature.Note + "```\n\n")
	b.WriteString("### Manifest\n\n")
	fmt.Fprintf(&b, "%d events in the period, tenant sequence %d–%d.\n\n| Event type | Count |\n|---|---|\n", p.Manifest.Events, p.Manifest.FirstSeq, p.Manifest.LastSeq)
	for _, typ := range p.Manifest.sortedTypes() {
		fmt.Fprintf(&b, "| `%s` | %d |\n", typ, p.Manifest.EventCounts[typ])
	}
	b.WriteString("\nTo re-check: fetch `GET /v1/compliance/evidence/manifest` for the same period and compare the digest, or run `haldir compliance verify PACK.json --key <verifier key>`.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// rawCell is a table cell already formatted (code spans) and escaped.
type rawCell string

// cell escapes what would break a Markdown table cell or be read as HTML.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// md escapes user-supplied text (names) for a table cell, including
// backticks, which would open code spans.
func md(s string) rawCell { return rawCell(cell(strings.ReplaceAll(s, "`", "'"))) }

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// counts formats a count per name, names sorted: "loop 2, spend 1".
func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// evidenceAnomaliesNone stands in for the section in packs made before it.
var evidenceAnomaliesNone = Anomalies{Criterion: "CC7.2", KilledAtEnd: []string{}, Policy: "not in this pack (made before anomaly detection)"}
