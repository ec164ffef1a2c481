package evidence

// Check is one item of the posture score.
type Check struct {
	ID     string `json:"id"`
	Passed bool   `json:"passed"`
	Weight int    `json:"weight"`
	Detail string `json:"detail"`
}

// Posture is the compliance posture score: the weight of passed checks out
// of 100.
type Posture struct {
	Score  int     `json:"score"`
	Checks []Check `json:"checks"`
}

// Score rates a pack's controls. Weights sum to 100.
func Score(p *Pack) Posture {
	s := &p.Sections
	checks := []Check{
		{"audit_chain_verified", s.AuditTrail.Chain.Verified, 25, "the tenant's hash chain recomputes from stored bytes"},
		{"signed_checkpoint", s.AuditTrail.TreeHead != nil, 10, "a signed Merkle checkpoint lets auditors detect truncation and forks"},
		{"least_privilege_keys", s.AccessControl.WildcardKeys <= 1, 15, "at most one active key holds a wildcard scope"},
		{"spend_caps", s.AccessControl.SessionsCreated == s.AccessControl.SessionsWithCap || s.Spend.Authorized == 0, 10,
			"every session that spends has a cap"},
		{"approval_rules", s.Approvals.Rules > 0, 15, "risky calls wait for a person"},
		{"secrets_in_vault", s.Encryption.SecretsAtEnd > 0 || s.Encryption.VersionsStored > 0, 10, "credentials are held in the vault"},
		{"outbound_alerting", s.Alerting.Webhooks.Active > 0 && (s.Alerting.Webhooks.Attempts == 0 || s.Alerting.Webhooks.Delivered*100 >= s.Alerting.Webhooks.Attempts*95), 15,
			"an active webhook receives alerts, with at least 95% delivered"},
	}
	out := Posture{Checks: checks}
	for _, c := range checks {
		if c.Passed {
			out.Score += c.Weight
		}
	}
	return out
}
