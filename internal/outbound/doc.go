// Package outbound keeps Haldir's calls to URLs that tenants give it
// (webhook endpoints, MCP proxy upstreams) away from addresses they must
// not reach: server-side request forgery.
//
// A Guard refuses, unless AllowPrivate is set (HALDIR_ALLOW_PRIVATE_NETWORKS,
// for local development), every address that is not public: loopback,
// private (RFC 1918, unique-local IPv6), link-local (169.254.0.0/16, which
// holds the cloud metadata address 169.254.169.254, and fe80::/10), other
// metadata and special-purpose ranges (192.0.0.0/24, CGNAT, documentation,
// multicast, reserved, …), and IPv4 addresses of those kinds embedded in
// IPv6 (mapped, NAT64, 6to4). Whatever AllowPrivate says, a URL must be an
// absolute http or https URL without user information.
//
// The check is made twice. CheckURL judges a URL when it is registered
// (and before each webhook delivery), but a name can resolve differently
// the next time. So the guard's dialer checks again, on every connection,
// the numeric address the socket is about to connect to: a name that
// resolved to a public address at registration and to a private one later
// (DNS rebinding) is refused at the socket.
//
// Every outbound HTTP client, Client's or one whose transport dials with
// Guard.DialContext, uses CheckRedirect as its redirect policy: redirects
// are never followed, and one to a target the guard refuses fails at the
// redirect, before anything is sent there, with ErrRedirect. Client also
// takes no proxy from the environment, which would bypass the dial check.
package outbound
