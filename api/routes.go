package api

import (
	"net/http"

	"github.com/haldir-dev/haldir/domain"
)

// routeTable declares every endpoint: its authentication, the key scope it
// requires and its handler. OpenAPI is generated from this table, so the
// document lists exactly what is served.
func (s *Server) routeTable() []route {
	need := func(r domain.Resource, a domain.Access) domain.Need { return domain.Need{Resource: r, Access: a} }
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return []route{
		{method: get, path: "/healthz", auth: authNone, summary: "Liveness", handle: s.healthz},
		{method: get, path: "/health", auth: authNone, summary: "Liveness (the self-hosting guide's path; an alias of /healthz)", handle: s.healthz},
		{method: get, path: "/readyz", auth: authNone, summary: "Readiness: the store answers", handle: s.readyz},
		{method: get, path: "/v1/status", auth: authNone, summary: "Component status", handle: s.status},
		{method: get, path: "/metrics", auth: authOperator, summary: "Prometheus metrics (operator token)", stream: s.prometheus},
		{method: get, path: "/openapi.json", auth: authNone, summary: "This OpenAPI document", handle: s.openapi},
		{method: get, path: "/llms.txt", auth: authNone, summary: "The API described for LLMs (llmstxt.org)", stream: s.llmsTxt},
		{method: get, path: "/.well-known/ai-plugin.json", auth: authNone, summary: "The AI plugin manifest, pointing at this OpenAPI document", handle: s.aiPlugin},
		{method: get, path: "/docs", auth: authNone, summary: "Human-readable API docs, rendered from this OpenAPI document", stream: s.docs},
		{method: get, path: "/docs/haldir.css", auth: authNone, summary: "The API docs' stylesheet", stream: s.docsCSS},

		{method: get, path: "/v1/whoami", summary: "The calling key's tenant, prefix and scopes (any valid key)", handle: s.whoami},
		{method: post, path: "/v1/tenants", auth: authOperator, summary: "Create a tenant and its first key (operator token)", handle: s.createTenant, secretResponse: true},
		{method: post, path: "/v1/keys", auth: authBootstrap, need: need(domain.Admin, domain.Write), summary: "Create an API key", handle: s.createKey, secretResponse: true},
		{method: get, path: "/v1/keys", need: need(domain.Admin, domain.Read), summary: "List API keys", handle: s.listKeys},
		{method: del, path: "/v1/keys/{prefix}", need: need(domain.Admin, domain.Write), summary: "Revoke an API key", handle: s.revokeKey},

		{method: post, path: "/v1/sessions", need: need(domain.Sessions, domain.Write), summary: "Create an agent session", handle: s.createSession, ledgerOnly: true},
		{method: get, path: "/v1/sessions/{id}", need: need(domain.Sessions, domain.Read), summary: "Get a session", handle: s.getSession},
		{method: del, path: "/v1/sessions/{id}", need: need(domain.Sessions, domain.Write), summary: "Revoke a session", handle: s.revokeSession},
		{method: post, path: "/v1/sessions/{id}/check", need: need(domain.Sessions, domain.Read), summary: "Check a session scope", handle: s.checkSession},

		{method: post, path: "/v1/secrets", need: need(domain.Vault, domain.Write), summary: "Store a secret (a new version)", handle: s.storeSecret},
		{method: get, path: "/v1/secrets", need: need(domain.Vault, domain.Read), summary: "List secret names", handle: s.listSecrets},
		{method: get, path: "/v1/secrets/{name}", need: need(domain.Vault, domain.Read), summary: "Read a secret with a session holding its scope", handle: s.getSecret,
			onForbidden: s.recordSecretRefusal},
		{method: del, path: "/v1/secrets/{name}", need: need(domain.Vault, domain.Write), summary: "Delete a secret (crypto-shred)", handle: s.deleteSecret},

		{method: post, path: "/v1/approvals/rules", need: need(domain.Approvals, domain.Write), summary: "Add an approval rule", handle: s.addApprovalRule},
		{method: get, path: "/v1/approvals/rules", need: need(domain.Approvals, domain.Read), summary: "List approval rules", handle: s.listApprovalRules},
		{method: post, path: "/v1/approvals/request", need: need(domain.Approvals, domain.Write), summary: "Request approval for a call", handle: s.requestApproval},
		{method: get, path: "/v1/approvals/pending", need: need(domain.Approvals, domain.Read), summary: "List pending requests", handle: s.pendingApprovals},
		{method: get, path: "/v1/approvals/{id}", need: need(domain.Approvals, domain.Read), summary: "Get a request (?wait=30s long-polls for a decision)", handle: s.getApproval},
		{method: post, path: "/v1/approvals/{id}/approve", need: need(domain.Approvals, domain.Write), summary: "Approve a request", handle: s.decideApproval(true)},
		{method: post, path: "/v1/approvals/{id}/deny", need: need(domain.Approvals, domain.Write), summary: "Deny a request", handle: s.decideApproval(false)},

		{method: post, path: "/v1/webhooks", need: need(domain.Webhooks, domain.Write), summary: "Register a webhook (its signing secret is shown once)", handle: s.registerWebhook, secretResponse: true},
		{method: get, path: "/v1/webhooks", need: need(domain.Webhooks, domain.Read), summary: "List webhooks", handle: s.listWebhooks},
		{method: get, path: "/v1/webhooks/deliveries", need: need(domain.Webhooks, domain.Read), summary: "Delivery attempts, newest first", handle: s.webhookDeliveries},
		{method: post, path: "/v1/webhooks/{id}/rotate-secret", need: need(domain.Webhooks, domain.Write), summary: "Rotate a webhook's signing secret with a grace period", handle: s.rotateWebhookSecret, secretResponse: true},

		{method: post, path: "/v1/proxy/upstreams", need: need(domain.Proxy, domain.Write), summary: "Register an upstream MCP server (a stdio command needs admin:write)", handle: s.registerUpstream},
		{method: get, path: "/v1/proxy/upstreams", need: need(domain.Proxy, domain.Read), summary: "Upstream health and stats", handle: s.listUpstreams},
		{method: get, path: "/v1/proxy/tools", need: need(domain.Proxy, domain.Read), summary: "Proxied tools, with quarantine status", handle: s.listProxyTools},
		{method: post, path: "/v1/proxy/tools/{name}/approve", need: need(domain.Admin, domain.Write), summary: "Approve a quarantined tool's new definition", handle: s.approveProxyTool},
		{method: post, path: "/v1/proxy/call", need: need(domain.Proxy, domain.Write), summary: "Call a tool through the governed proxy", handle: s.proxyCall, ledgerOnly: true},
		{method: post, path: "/v1/proxy/policies", need: need(domain.Proxy, domain.Write), summary: "Add a proxy policy", handle: s.addPolicy},
		{method: get, path: "/v1/proxy/policies", need: need(domain.Proxy, domain.Read), summary: "List proxy policies", handle: s.listPolicies},
		{method: post, path: "/mcp", summary: "MCP over Streamable HTTP: Haldir's tools and governed upstream tools (tool-level scopes apply)", stream: s.mcp, rawBody: true, ledgerOnly: true},
		{method: get, path: "/.well-known/mcp/server-card.json", auth: authNone, summary: "MCP server card", handle: s.serverCard},

		{method: post, path: "/v1/agents/{agent_id}/kill", need: need(domain.Sessions, domain.Write), summary: "Stop an agent: revoke its sessions and refuse it everything until unkill", handle: s.killAgent},
		{method: post, path: "/v1/agents/{agent_id}/unkill", need: need(domain.Sessions, domain.Write), summary: "Lift an agent's kill switch", handle: s.unkillAgent},
		{method: post, path: "/v1/kill", need: need(domain.Admin, domain.Write), summary: "Stop every agent of the tenant until unkill", handle: s.killTenant},
		{method: post, path: "/v1/unkill", need: need(domain.Admin, domain.Write), summary: "Lift the tenant's kill switch", handle: s.unkillTenant},
		{method: get, path: "/v1/kills", need: need(domain.Sessions, domain.Read), summary: "Kill switches in force", handle: s.listKills},
		{method: post, path: "/v1/admin/kill", auth: authOperator, summary: "Stop every tool call, payment and secret read on the install (operator token)", handle: s.killTenant},
		{method: post, path: "/v1/admin/unkill", auth: authOperator, summary: "Lift the install-wide kill switch (operator token)", handle: s.unkillTenant},

		{method: get, path: "/v1/anomalies", need: need(domain.Audit, domain.Read), summary: "Anomaly flags, newest first (?open=true: unacknowledged)", handle: s.listAnomalies},
		{method: post, path: "/v1/anomalies/{id}/ack", need: need(domain.Audit, domain.Write), summary: "Acknowledge an anomaly flag", handle: s.ackAnomaly},
		{method: get, path: "/v1/anomalies/settings", need: need(domain.Admin, domain.Read), summary: "The tenant's anomaly detector settings", handle: s.anomalySettings},
		{method: put, path: "/v1/anomalies/settings", need: need(domain.Admin, domain.Write), summary: "Change anomaly detector settings (absent fields keep their value)", handle: s.putAnomalySettings},

		{method: post, path: "/v1/payments/authorize", need: need(domain.Payments, domain.Write), summary: "Authorize spend against a session cap", handle: s.authorizePayment, ledgerOnly: true},

		{method: post, path: "/v1/audit", need: need(domain.Audit, domain.Write), summary: "Log an agent action", handle: s.logAction, ledgerOnly: true},
		{method: get, path: "/v1/audit", need: need(domain.Audit, domain.Read), summary: "Query the audit trail (the ledger)", handle: s.queryAudit},
		{method: get, path: "/v1/audit/spend", need: need(domain.Audit, domain.Read), summary: "Spend summary", handle: s.spend},
		{method: get, path: "/v1/audit/verify", need: need(domain.Audit, domain.Read), summary: "Verify the tenant's hash chain", handle: s.verify},
		{method: get, path: "/v1/audit/export", need: need(domain.Audit, domain.Read), summary: "Export the audit trail as JSONL or CSV", stream: s.export},

		{method: get, path: "/v1/audit/tree-head", need: need(domain.Audit, domain.Read), summary: "The newest signed checkpoint of the tenant's Merkle tree", handle: s.treeHead},
		{method: get, path: "/v1/audit/inclusion-proof/{entry_id}", need: need(domain.Audit, domain.Read), summary: "Prove an entry is in the signed log", handle: s.inclusionProof},
		{method: get, path: "/v1/audit/consistency-proof", need: need(domain.Audit, domain.Read), summary: "Prove the log at ?second extends the log at ?first", handle: s.consistencyProof},
		{method: get, path: "/.well-known/haldir-checkpoint-key", auth: authNone, summary: "The checkpoint verifier key (signed-note format)", stream: s.checkpointKey},
		{method: get, path: "/.well-known/jwks.json", auth: authNone, summary: "The checkpoint key as a JWKS", stream: s.jwks},

		{method: get, path: "/v1/compliance/evidence", need: need(domain.Admin, domain.Read), summary: "The signed compliance evidence pack (?since&until&format=json|markdown)", stream: s.complianceEvidence},
		{method: get, path: "/v1/compliance/evidence/manifest", need: need(domain.Admin, domain.Read), summary: "The evidence pack's manifest and signature, to re-check a pack", handle: s.complianceManifest},
		{method: get, path: "/v1/compliance/score", need: need(domain.Admin, domain.Read), summary: "Compliance posture score", handle: s.complianceScore},

		{method: get, path: "/v1/usage", need: need(domain.Admin, domain.Read), summary: "Monthly usage", handle: s.usage},
		{method: get, path: "/v1/metrics", need: need(domain.Admin, domain.Read), summary: "This tenant's counts", handle: s.tenantMetrics},
		{method: get, path: "/v1/admin/overview", need: need(domain.Admin, domain.Read), summary: "Tenant overview", handle: s.overview},
	}
}
