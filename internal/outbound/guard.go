package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds a whole outbound call (connect, TLS, request and
// response headers and the body excerpt) when no timeout is given.
const DefaultTimeout = 10 * time.Second

// MaxTimeout is the longest total timeout Client grants.
const MaxTimeout = time.Minute

// maxURLLength bounds a URL CheckURL accepts.
const maxURLLength = 2048

// Errors returned by Guard, matched with errors.Is.
var (
	// ErrInvalidURL means the URL is malformed or uses what the guard
	// refuses (a scheme other than http and https, user information, a bad
	// port, a host that does not resolve).
	ErrInvalidURL = errors.New("outbound: invalid url")
	// ErrForbiddenAddress means the host is, or resolves to, an address
	// that is not public (loopback, private, link-local, …).
	ErrForbiddenAddress = errors.New("outbound: address not allowed")
	// ErrRedirect means a response redirected to a URL the guard refuses;
	// the error also wraps ErrInvalidURL or ErrForbiddenAddress.
	ErrRedirect = errors.New("outbound: redirect refused")
)

// Resolver looks up a host's addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard keeps outbound calls (webhooks, MCP proxy upstreams) away from
// non-public addresses. The zero Guard refuses them and resolves names with
// net.DefaultResolver.
type Guard struct {
	// AllowPrivate turns the address checks off, for local development
	// and tests (HALDIR_ALLOW_PRIVATE_NETWORKS=true). The URL's shape is
	// still checked.
	AllowPrivate bool
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver

	// trusted, when set, makes the addresses it reports true for pass as
	// public. Only this package's tests set it (export_test.go), to reach
	// a test server on loopback while every other address stays guarded.
	trusted func(netip.Addr) bool
}

func (g Guard) resolver() Resolver {
	if g.Resolver != nil {
		return g.Resolver
	}
	return net.DefaultResolver
}

// CheckURL returns nil if raw is an absolute http or https URL without
// user information, with a port in 1–65535 if any, whose host is a public
// IP address or a name that resolves only to public addresses (any
// address, with AllowPrivate). Otherwise it returns an error wrapping
// ErrInvalidURL or ErrForbiddenAddress; the error names the kind of
// address, never what a name resolved to. Passing CheckURL is not enough
// on its own: a name can resolve differently at connection time, which is
// why Client checks again.
func (g Guard) CheckURL(ctx context.Context, raw string) error {
	if len(raw) > maxURLLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidURL, maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: cannot parse", ErrInvalidURL)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme must be http or https", ErrInvalidURL)
	}
	if u.Opaque != "" || u.Host == "" {
		return fmt.Errorf("%w: not an absolute url with a host", ErrInvalidURL)
	}
	if u.User != nil {
		return fmt.Errorf("%w: user information is not allowed", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: bad port", ErrInvalidURL)
		}
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: empty host", ErrInvalidURL)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return g.checkAddr(a)
	}
	if numericHost(host) {
		// 2130706433, 0x7f.1, 127.1, 017700000001: forms that some
		// resolvers read as IPv4 addresses. No real name ends in a
		// numeric label.
		return fmt.Errorf("%w: ambiguous numeric host", ErrInvalidURL)
	}
	addrs, err := g.resolver().LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return fmt.Errorf("%w: host does not resolve", ErrInvalidURL)
	}
	for _, a := range addrs {
		if err := g.checkAddr(a); err != nil {
			return err
		}
	}
	return nil
}

// numericHost reports whether the last label of host is a number (decimal,
// octal or 0x-hex), as in an IPv4 address in a non-canonical form.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if l := strings.ToLower(last); strings.HasPrefix(l, "0x") {
		last = l[2:]
		for i := 0; i < len(last); i++ {
			if !strings.ContainsRune("0123456789abcdef", rune(last[i])) {
				return false
			}
		}
		return true
	}
	return allDigits(last)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func (g Guard) checkAddr(a netip.Addr) error {
	if g.AllowPrivate || g.trusted != nil && g.trusted(a) {
		return nil
	}
	if reason := forbiddenReason(a); reason != "" {
		return fmt.Errorf("%w: %s address", ErrForbiddenAddress, reason)
	}
	return nil
}

// forbiddenReason names the kind of non-public address a is, or returns ""
// for a public one. IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4)
// are judged as the IPv4 address.
func forbiddenReason(a netip.Addr) string {
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	if !a.IsValid() {
		return "invalid"
	}
	if a.Is6() {
		for _, e := range embedding6to4 {
			if e.prefix.Contains(a) {
				b := a.As16()
				v4 := netip.AddrFrom4([4]byte(b[e.offset : e.offset+4]))
				if r := forbiddenReason(v4); r != "" {
					return r + " (embedded in IPv6)"
				}
			}
		}
	}
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast(): // 169.254.0.0/16 (cloud metadata), fe80::/10
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	case a.IsPrivate(): // 10/8, 172.16/12, 192.168/16, fc00::/7
		return "private"
	}
	for _, r := range reservedRanges {
		if r.prefix.Contains(a) {
			return r.reason
		}
	}
	return ""
}

// embedding6to4 lists IPv6 ranges that carry an IPv4 address, and where.
// Read-only.
var embedding6to4 = []struct {
	prefix netip.Prefix
	offset int
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12}, // NAT64 (RFC 6052)
	{netip.MustParsePrefix("2002::/16"), 2},     // 6to4 (RFC 3056)
}

// reservedRanges lists special-purpose ranges (IANA registries) that are
// not covered by netip's predicates and must not be reached. Read-only.
var reservedRanges = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"}, // includes 192.0.0.192, a cloud metadata address
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes 255.255.255.255
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// control runs after the socket is created and before it connects, with
// the numeric address actually being dialled: the check that a name which
// resolved to a public address at CheckURL time but to a private one now
// (DNS rebinding) cannot pass.
func (g Guard) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s", ErrForbiddenAddress, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address", ErrForbiddenAddress)
	}
	return g.checkAddr(ap.Addr())
}

// DialContext connects like net.Dialer.DialContext over TCP, resolving
// names with the guard's Resolver and refusing, at the socket, any address
// the guard forbids (the error wraps ErrForbiddenAddress). The addresses
// of a name are tried in order until one connects.
func (g Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return g.dialer(0).DialContext(ctx, network, address)
}

type guardedDialer struct {
	g Guard
	d net.Dialer
}

func (g Guard) dialer(timeout time.Duration) *guardedDialer {
	return &guardedDialer{g: g, d: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.control}}
}

func (gd *guardedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("%w: network %s", ErrForbiddenAddress, network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lookup := "ip"
		if network == "tcp4" {
			lookup = "ip4"
		} else if network == "tcp6" {
			lookup = "ip6"
		}
		addrs, err = gd.g.resolver().LookupNetIP(ctx, lookup, host)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("%w: host does not resolve", ErrInvalidURL)
		}
	}
	var first error
	for _, a := range addrs {
		c, err := gd.d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// Client returns an HTTP client for untrusted URLs: every connection goes
// through DialContext (so forbidden addresses are refused at the socket),
// no proxy is taken from the environment, redirects are not followed (see
// CheckRedirect), and each request, body included, is bounded by timeout
// (DefaultTimeout when ≤ 0, at most MaxTimeout).
func (g Guard) Client(timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.dialer(timeout).DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 32 << 10,
	}
	return &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: g.CheckRedirect}
}

// CheckRedirect is the redirect policy of every outbound client (set it
// as http.Client.CheckRedirect): a redirect is never followed. When the
// guard accepts the target (CheckURL), the 3xx response is returned as
// is, for the caller to treat as a failure; when it refuses the target
// (loopback, private, metadata, …), the call fails here, before anything
// is sent there, with an error wrapping ErrRedirect and CheckURL's error,
// so that the refusal is reported as one. Redirects are not followed even
// to acceptable targets because the request would go, with its body and
// headers (a signed webhook, an MCP message with injected credentials),
// to a URL nobody registered.
func (g Guard) CheckRedirect(req *http.Request, _ []*http.Request) error {
	if err := g.CheckURL(req.Context(), req.URL.String()); err != nil {
		return &redirectError{err: err}
	}
	return http.ErrUseLastResponse
}

// redirectError is a refused redirect; it wraps ErrRedirect and the
// guard's reason. Like CheckURL's errors it names the kind of address,
// never what the target resolved to (http.Client's *url.Error around it
// does name the Location).
type redirectError struct{ err error }

func (e *redirectError) Error() string {
	return ErrRedirect.Error() + ": " + strings.TrimPrefix(e.err.Error(), "outbound: ")
}

func (e *redirectError) Unwrap() []error { return []error{ErrRedirect, e.err} }
