package proxy

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// newTransport returns the go-sdk transport for one connection attempt to
// u. The connection's long-lived parts (the SSE GET stream, the stdio
// child) belong to life, which the caller cancels after closing the
// session; the handshake itself is bounded by the ctx given to Connect.
func newTransport(u Upstream, hc *http.Client, opts *PoolOptions, life context.Context) mcp.Transport {
	var t mcp.Transport
	switch u.Transport {
	case TransportSSE:
		t = &mcp.SSEClientTransport{Endpoint: u.URL, HTTPClient: hc}
	case TransportStdio:
		cmd := exec.Command(u.Command[0], u.Command[1:]...)
		cmd.Env = childEnv(u.Env, opts.StdioPath, opts.StdioHome)
		cmd.Stderr = opts.StdioStderr // nil: the child's stderr goes to /dev/null
		t = &mcp.CommandTransport{Command: cmd, TerminateDuration: opts.StdioTerminateTimeout}
	default:
		t = &mcp.StreamableClientTransport{Endpoint: u.URL, HTTPClient: hc}
	}
	return &lifetimeTransport{inner: t, life: life}
}

// lifetimeTransport connects its inner transport under a long-lived context
// while still letting the handshake context abort the attempt. The go-sdk
// SSE client ties its hanging GET to the context given to Connect, so a
// plain Connect under a handshake timeout would cut the stream when the
// timeout passes.
type lifetimeTransport struct {
	inner mcp.Transport
	life  context.Context
}

// Connect implements mcp.Transport. It returns the inner connection itself,
// so the go-sdk still sees the optional interfaces it implements.
func (t *lifetimeTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	// connCtx lives as long as life: the caller cancels life once the
	// session is closed, which releases connCtx too.
	connCtx, cancel := context.WithCancel(t.life)
	stop := context.AfterFunc(ctx, cancel)
	conn, err := t.inner.Connect(connCtx)
	if !stop() {
		// ctx ended during Connect and connCtx was cancelled with it.
		if err == nil {
			conn.Close()
		}
		return nil, context.Cause(ctx)
	}
	return conn, err
}

// childEnv returns the environment of a stdio child: PATH and HOME (when
// not empty) and then env, sorted, so env may override both.
func childEnv(env map[string]string, path, home string) []string {
	m := make(map[string]string, len(env)+2)
	if path != "" {
		m["PATH"] = path
	}
	if home != "" {
		m["HOME"] = home
	}
	maps.Copy(m, env)
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// upstreamHTTPClient returns the client used for an http upstream: base's
// transport, redirect policy and jar, no overall Timeout (streams are
// long-lived; every request is bounded by its own context), and u.Headers
// set on each request to u's own origin.
func upstreamHTTPClient(base *http.Client, u Upstream) *http.Client {
	if base == nil {
		base = &http.Client{}
	}
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if len(u.Headers) > 0 {
		pu, _ := url.Parse(u.URL) // validated
		h := make(http.Header, len(u.Headers))
		for k, v := range u.Headers {
			h.Set(k, v)
		}
		rt = &headerTransport{base: rt, origin: origin(pu), headers: h}
	}
	return &http.Client{Transport: rt, CheckRedirect: base.CheckRedirect, Jar: base.Jar}
}

// headerTransport sets fixed headers on requests to one origin only, so
// that an injected credential never follows a redirect or an SSE message
// endpoint to another host.
type headerTransport struct {
	base    http.RoundTripper
	origin  string
	headers http.Header
}

// RoundTrip implements http.RoundTripper.
func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if origin(req.URL) == t.origin {
		req = req.Clone(req.Context())
		for k, v := range t.headers {
			req.Header[k] = v
		}
	}
	return t.base.RoundTrip(req)
}

// origin returns "scheme://host:port" of u in lowercase, with the scheme's
// default port made explicit.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host, port := u.Hostname(), u.Port()
	if port == "" && scheme == "http" {
		port = "80"
	} else if port == "" && scheme == "https" {
		port = "443"
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(host), port)
}
