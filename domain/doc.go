// Package domain holds Haldir's governance rules as pure values and
// functions: sessions and their scopes, money, API key scopes, and the event
// payloads that record every decision.
//
// The package imports only the standard library. It performs no I/O: callers
// load state, ask domain to decide, and append what it decided to the ledger.
package domain
