// Package proxy is the MCP plumbing of Haldir's proxy: client sessions to
// upstream MCP servers, the namespaced tool catalogue with definition
// pinning, call forwarding, and Haldir's own MCP server for /mcp and
// `haldir mcp`. It makes no governance decisions: sessions, policies,
// spend, approvals, the ledger and secret injection belong to its caller,
// which plugs in through Upstream.Headers and Upstream.Env (resolved
// secrets), PoolOptions.OnDiscovery (pins and quarantine) and the
// ServerOptions callbacks (authorisation of every list and call).
//
// # Upstreams
//
// A Pool keeps one go-sdk client session per Upstream, over Streamable
// HTTP, legacy HTTP+SSE (both through the caller's, SSRF-guarded,
// *http.Client), or stdio (a child process whose environment is only PATH,
// HOME and Upstream.Env). A supervisor goroutine per upstream connects,
// lists the tools, re-lists them on tools/list_changed and every
// RefreshInterval (the health check), and reconnects with exponential
// backoff when the connection ends or a call finds it broken. Every
// handshake, listing and call has its own deadline.
//
// # Tool names
//
// Upstream tools are exposed as "<upstream>.<tool>": the upstream name
// (1 to 64 of [a-z0-9_-], so never a dot) and the upstream's own tool name
// verbatim. Split cuts at the first dot; Join is the inverse.
//
// # Definition pinning
//
// DefinitionHash is the lowercase hex SHA-256 of
//
//	canonical.JSON({"description": <description>, "inputSchema": <schema>})
//
// where canonical.JSON (package internal/canonical) is RFC 8785 (JCS): members sorted by UTF-16 code
// units, no whitespace, minimal string escaping, ECMAScript number
// formatting. Each discovery carries Added, Changed and Removed against the
// previous one, and Diff compares any discovery against stored pins.
// OnDiscovery runs before newly discovered definitions become callable, so
// the caller can quarantine a changed tool before an agent can reach it.
//
// # Haldir's MCP server
//
// The go-sdk binds a fixed tool set to each mcp.Server. Haldir's list
// depends on the API key and agent session of every request, so Server
// registers no tools: a receiving middleware on one mcp.Server answers
// tools/list and tools/call itself by calling ServerOptions.Tools and
// ServerOptions.Handle with a Request built from that very request: the
// HTTP headers (Authorization / X-API-Key, X-Haldir-Session, any other)
// and params._meta. The agent session is _meta["haldir/session"], else
// _meta["session_id"], else the X-Haldir-Session header. HTTPHandler is
// stateless Streamable HTTP with JSON answers, so any replica can serve
// any request; ServeStdio serves one session over stdin and stdout with a
// fixed header standing in for HTTP headers.
//
// # Errors
//
// Every error wraps one of ErrInvalid, ErrExists, ErrNotFound,
// ErrUnavailable, ErrTimeout, ErrUpstream or ErrClosed, or a context error.
// A tool result with IsError set is a result, not an error.
//
// # Tests
//
// Tests use real MCP peers only: go-sdk servers and clients, the reference
// @modelcontextprotocol/server-everything (stdio) and a client on the
// official TypeScript SDK. The npm packages are pinned in
// testdata/package-lock.json and installed with
//
//	npm ci --prefix proxy/testdata
//
// Without them those tests skip, except under CI=true, where they fail.
package proxy
