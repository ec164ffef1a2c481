package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/haldir-dev/haldir/domain"
)

// The transports an Upstream may use.
const (
	// TransportStreamable is MCP Streamable HTTP (protocol 2025-03-26 and later).
	TransportStreamable = "streamable"
	// TransportSSE is the legacy HTTP+SSE transport (protocol 2024-11-05).
	TransportSSE = "sse"
	// TransportStdio runs a local child process and speaks MCP over its
	// stdin and stdout.
	TransportStdio = "stdio"
)

// Upstream describes one MCP server the Pool connects to. Exactly one of
// URL (for streamable and sse) and Command (for stdio) is set.
type Upstream struct {
	// Name is the namespace of the upstream's tools: 1 to 64 characters
	// of [a-z0-9_-].
	Name string
	// URL is the http or https endpoint of a streamable or sse upstream.
	URL string
	// Transport is TransportStreamable, TransportSSE or TransportStdio.
	// Empty means TransportStdio when Command is set and
	// TransportStreamable otherwise.
	Transport string
	// Command is the argv of a stdio upstream; Command[0] is looked up in
	// the Haldir process's PATH as exec.Command does.
	Command []string
	// Env is the environment of a stdio upstream's child process, on top
	// of PATH and HOME (see PoolOptions.StdioPath). Nothing else of
	// Haldir's own environment reaches the child.
	Env map[string]string
	// Headers are set on every HTTP request to an http upstream's own
	// host (never on a redirect or message endpoint elsewhere), for example
	// an Authorization header holding an injected secret.
	Headers map[string]string
}

// reservedHeader reports whether the canonical header name ck is set by the
// MCP transports themselves, so that Upstream.Headers may not override it:
// hop-by-hop and framing headers, Accept, Content-Type, Last-Event-ID and
// every header starting with "Mcp-".
func reservedHeader(ck string) bool {
	switch ck {
	case "Accept", "Connection", "Content-Length", "Content-Type", "Host",
		"Last-Event-Id", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return strings.HasPrefix(ck, "Mcp-")
}

// ValidateName returns nil when name is a valid upstream name: 1 to 64
// characters, each a lowercase ASCII letter, a digit, '_' or '-'. Otherwise
// it returns an error wrapping ErrInvalid.
func ValidateName(name string) error {
	if !domain.ValidUpstreamName(name) {
		return fmt.Errorf("%w: upstream name must be 1 to %d characters of [a-z0-9_-]", ErrInvalid, domain.MaxUpstreamNameLen)
	}
	return nil
}

// Validate returns nil when u is complete and consistent (see Upstream), or
// an error wrapping ErrInvalid that names the first problem. The error
// never quotes header or environment values.
func (u Upstream) Validate() error {
	_, err := u.normalized()
	return err
}

// normalized returns u with its Transport defaulted, or the Validate error.
func (u Upstream) normalized() (Upstream, error) {
	if err := ValidateName(u.Name); err != nil {
		return u, err
	}
	if u.Transport == "" {
		u.Transport = TransportStreamable
		if len(u.Command) > 0 {
			u.Transport = TransportStdio
		}
	}
	fail := func(format string, args ...any) (Upstream, error) {
		return u, fmt.Errorf("%w: upstream %q: %s", ErrInvalid, u.Name, fmt.Sprintf(format, args...))
	}
	switch u.Transport {
	case TransportStreamable, TransportSSE:
		if len(u.Command) > 0 || len(u.Env) > 0 {
			return fail("command and env are for stdio upstreams only")
		}
		pu, err := url.Parse(u.URL)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fail("url must be an absolute http or https URL")
		}
		if pu.Fragment != "" {
			return fail("url must not have a fragment")
		}
		for k, v := range u.Headers {
			if !validHeaderName(k) {
				return fail("header name %q is not a valid HTTP token", k)
			}
			if reservedHeader(http.CanonicalHeaderKey(k)) {
				return fail("header %q is set by the MCP transport", k)
			}
			if strings.ContainsAny(v, "\r\n\x00") {
				return fail("header %q has a value with CR, LF or NUL", k)
			}
		}
	case TransportStdio:
		if u.URL != "" || len(u.Headers) > 0 {
			return fail("url and headers are for http upstreams only")
		}
		if len(u.Command) == 0 || u.Command[0] == "" {
			return fail("command must name a program")
		}
		for _, a := range u.Command {
			if strings.ContainsRune(a, 0) {
				return fail("command has an argument with NUL")
			}
		}
		for k, v := range u.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return fail("env name %q is empty or holds '=' or NUL", k)
			}
			if strings.ContainsRune(v, 0) {
				return fail("env %q has a value with NUL", k)
			}
		}
	default:
		return fail("transport must be %q, %q or %q", TransportStreamable, TransportSSE, TransportStdio)
	}
	return u, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
