// Package haldir is the governance layer for AI agents: scoped sessions
// with spend caps, a vault the model never sees, human approvals, a
// governed MCP proxy, and an event-sourced, SHA-256 chained ledger that an
// auditor can verify without trusting the server.
//
// The code is organised as in docs/DESIGN.md: domain (pure rules) ←
// commands (decisions appended to the ledger) ← api (HTTP); events (the
// ledger) and projections (read models) below them; app wires them up and
// cmd/haldir runs them. deps_test.go keeps the dependencies pointing inward.
package haldir
