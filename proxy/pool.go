package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Defaults for the zero fields of PoolOptions.
const (
	// DefaultConnectTimeout bounds a handshake plus its tools/list.
	DefaultConnectTimeout = 15 * time.Second
	// DefaultCallTimeout bounds a Call given no timeout.
	DefaultCallTimeout = 60 * time.Second
	// DefaultMinBackoff is the first wait before reconnecting.
	DefaultMinBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff caps the wait before reconnecting.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultRefreshInterval is how often connected upstreams are re-listed.
	DefaultRefreshInterval = 5 * time.Minute
	// DefaultStdioTerminateTimeout is the grace a closing stdio child gets,
	// twice (after stdin closes, after SIGTERM), before SIGKILL.
	DefaultStdioTerminateTimeout = 2 * time.Second
	// DefaultMaxTools caps the tools one upstream may list.
	DefaultMaxTools = 1000
)

// maxToolPages bounds the tools/list pages read in one discovery.
const maxToolPages = 100

// PoolOptions configures a Pool. Every zero field takes the default named
// in its comment.
type PoolOptions struct {
	// HTTPClient carries every request to streamable and sse upstreams;
	// pass an SSRF-guarded client. Its Transport, CheckRedirect and Jar are
	// used; its Timeout is ignored, since MCP streams are long-lived and
	// every request is bounded by its own deadline. Nil means a plain
	// http.Client with no guard.
	HTTPClient *http.Client
	// ClientName and ClientVersion identify the proxy to upstreams in the
	// MCP handshake ("haldir-proxy", "dev").
	ClientName, ClientVersion string
	// ConnectTimeout bounds one connection attempt (handshake plus the
	// first tools/list) and every later discovery (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// CallTimeout bounds a Call given no timeout of its own
	// (DefaultCallTimeout).
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential wait between
	// reconnection attempts (DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// RefreshInterval is how often a connected upstream's tools are listed
	// again, which doubles as its health check (DefaultRefreshInterval);
	// negative disables it.
	RefreshInterval time.Duration
	// StdioPath and StdioHome are the PATH and HOME of stdio children.
	// Empty means the Haldir process's own PATH and HOME, read once by
	// NewPool; no other variable of Haldir's environment reaches a child.
	StdioPath, StdioHome string
	// StdioStderr receives the stderr of stdio children; nil discards it.
	StdioStderr io.Writer
	// StdioTerminateTimeout is how long a closing stdio child gets after
	// its stdin closes, and again after SIGTERM, before it is killed
	// (DefaultStdioTerminateTimeout).
	StdioTerminateTimeout time.Duration
	// MaxTools caps the tools one upstream may list (DefaultMaxTools); a
	// longer list fails the discovery.
	MaxTools int
	// OnDiscovery, if set, is called after every successful discovery of
	// an upstream's tools (first connection, reconnection, Refresh, the
	// periodic refresh and the upstream's list_changed notification),
	// before the discovered definitions become callable. Calls for one
	// upstream are serialized. It must not call Add, Remove, Refresh or
	// Close on the pool.
	OnDiscovery func(Discovery)
	// Logger receives the go-sdk clients' logs; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns o with every zero field defaulted.
func (o PoolOptions) withDefaults() PoolOptions {
	if o.ClientName == "" {
		o.ClientName = "haldir-proxy"
	}
	if o.ClientVersion == "" {
		o.ClientVersion = "dev"
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.StdioPath == "" {
		o.StdioPath = os.Getenv("PATH")
	}
	if o.StdioHome == "" {
		o.StdioHome = os.Getenv("HOME")
	}
	if o.StdioTerminateTimeout <= 0 {
		o.StdioTerminateTimeout = DefaultStdioTerminateTimeout
	}
	if o.MaxTools <= 0 {
		o.MaxTools = DefaultMaxTools
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Discovery is the outcome of listing one upstream's tools.
type Discovery struct {
	// Upstream is the upstream's name.
	Upstream string
	// Reason says what triggered the discovery: "connect" (the first
	// connection), "reconnect", "refresh" (Pool.Refresh), "interval" or
	// "list_changed".
	Reason string
	// At is when the tool list was received.
	At time.Time
	// Tools is the discovered tools, sorted by Name.
	Tools []ToolDef
	// Added, Changed and Removed are the namespaced names that appeared,
	// changed DefinitionHash or disappeared since this pool's previous
	// discovery of the upstream, each sorted; on the first discovery every
	// tool is Added. Compare against stored pins with Diff instead.
	Added, Changed, Removed []string
	// Skipped holds the upstream's bare names of tools left out: an empty
	// or repeated name, or a schema that is not canonical JSON.
	Skipped []string
}

// Status is one upstream's health and call statistics.
type Status struct {
	// Name and Transport are the upstream's.
	Name, Transport string
	// URL is the endpoint of an http upstream without its userinfo; empty
	// for stdio.
	URL string
	// Connected reports whether a session is up.
	Connected bool
	// ConnectedSince is when the current session started; zero when
	// disconnected.
	ConnectedSince time.Time
	// LastOK is the last time the upstream answered: a connection, a
	// discovery or a call that got any answer.
	LastOK time.Time
	// LastError describes the most recent failure; LastErrorAt is when it
	// happened. It holds no header or environment values.
	LastError   string
	LastErrorAt time.Time
	// Reconnects counts sessions established after the first.
	Reconnects uint64
	// Tools is the number of tools in the latest discovery.
	Tools int
	// Calls counts Call attempts forwarded to the upstream; Failures those
	// that got no result (timeout, transport failure or JSON-RPC error);
	// ToolErrors those whose result had IsError set.
	Calls, Failures, ToolErrors uint64
	// LatencyP50 and LatencyP99 are nearest-rank percentiles of the last
	// 1024 calls' round trips, failures included.
	LatencyP50, LatencyP99 time.Duration
}

// CallStats describes one forwarded call.
type CallStats struct {
	// Upstream is the upstream's name and Tool the bare tool name sent.
	Upstream, Tool string
	// DefinitionHash is the hash of the tool definition the call was
	// checked against (the upstream's latest discovery).
	DefinitionHash string
	// Latency is the upstream round trip, from sending tools/call to its
	// answer or failure.
	Latency time.Duration
}

// Pool keeps one MCP client session per registered upstream, reconnecting
// with exponential backoff, and forwards tool calls to them. It is safe for
// concurrent use. Registrations live in memory only; the caller re-adds
// upstreams from its own records after a restart.
type Pool struct {
	opts PoolOptions

	mu     sync.RWMutex
	ups    map[string]*upstreamConn
	closed bool
}

// NewPool returns an empty Pool configured by opts.
func NewPool(opts PoolOptions) *Pool {
	return &Pool{opts: opts.withDefaults(), ups: make(map[string]*upstreamConn)}
}

// Add registers up and makes the first connection attempt, returning the
// first discovery of its tools. A malformed up (ErrInvalid), a name already
// registered (ErrExists) or a closed pool (ErrClosed) leaves nothing
// registered. When the first attempt fails (after at most ConnectTimeout)
// or ctx ends before it finishes, up stays registered and keeps
// reconnecting in the background, and Add returns an error wrapping
// ErrUnavailable (and ErrTimeout when the attempt timed out).
func (p *Pool) Add(ctx context.Context, up Upstream) (*Discovery, error) {
	up, err := up.normalized()
	if err != nil {
		return nil, err
	}
	up = cloneUpstream(up)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := p.ups[up.Name]; ok {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrExists, up.Name)
	}
	c := newUpstreamConn(&p.opts, up)
	p.ups[up.Name] = c
	p.mu.Unlock()

	go c.run()
	select {
	case <-c.first:
		if c.firstErr != nil {
			return nil, c.firstErr
		}
		d := c.firstDisc
		return &d, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: upstream %q: first connection: %w", ErrUnavailable, up.Name, ctx.Err())
	}
}

// Remove unregisters the named upstream, closes its session (stopping a
// stdio child) and waits for its background work to end, which the go-sdk
// bounds to a few seconds even for a hung upstream. It returns an error
// wrapping ErrNotFound when no such upstream is registered.
func (p *Pool) Remove(name string) error {
	p.mu.Lock()
	c, ok := p.ups[name]
	delete(p.ups, name)
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: upstream %q", ErrNotFound, name)
	}
	c.stop()
	return nil
}

// Close removes every upstream, as Remove does, and makes later Adds fail
// with ErrClosed. It is idempotent and returns nil.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	ups := p.ups
	p.ups = make(map[string]*upstreamConn)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range ups {
		wg.Go(c.stop)
	}
	wg.Wait()
	return nil
}

// Refresh lists the named upstream's tools again and returns the discovery,
// whose Added, Changed and Removed compare it with the previous one. It
// fails with ErrNotFound for an unknown upstream; ErrUpstream when the
// upstream answers tools/list with a JSON-RPC error; ErrUnavailable when it
// is not connected, when its list is unusable (ErrInvalid too: over
// MaxTools), or when the transport fails or ConnectTimeout passes
// (ErrTimeout too), the last two dropping the session to reconnect; or
// with the error of ctx.
func (p *Pool) Refresh(ctx context.Context, name string) (*Discovery, error) {
	c, err := p.get(name)
	if err != nil {
		return nil, err
	}
	ls := c.liveSession()
	if ls == nil {
		return nil, fmt.Errorf("%w: upstream %q is not connected", ErrUnavailable, name)
	}
	return c.refresh(ctx, ls, "refresh")
}

// Tools returns the tools of every upstream's latest discovery, sorted by
// Name. An upstream that is disconnected keeps its last discovered tools
// here; calls to them fail with ErrUnavailable until it reconnects.
func (p *Pool) Tools() []ToolDef {
	p.mu.RLock()
	ups := slices.Collect(maps.Values(p.ups))
	p.mu.RUnlock()
	var out []ToolDef
	for _, c := range ups {
		c.mu.Lock()
		out = append(out, c.defs...)
		c.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b ToolDef) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Tool returns the latest discovered definition of a namespaced tool name,
// and whether there is one.
func (p *Pool) Tool(name string) (ToolDef, bool) {
	upName, tool, err := Split(name)
	if err != nil {
		return ToolDef{}, false
	}
	c, err := p.get(upName)
	if err != nil {
		return ToolDef{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.tools[tool]
	return d, ok
}

// Status returns the named upstream's status, or an error wrapping
// ErrNotFound.
func (p *Pool) Status(name string) (Status, error) {
	c, err := p.get(name)
	if err != nil {
		return Status{}, err
	}
	return c.status(), nil
}

// Statuses returns the status of every upstream, sorted by Name.
func (p *Pool) Statuses() []Status {
	p.mu.RLock()
	ups := slices.Collect(maps.Values(p.ups))
	p.mu.RUnlock()
	out := make([]Status, 0, len(ups))
	for _, c := range ups {
		out = append(out, c.status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Call forwards tools/call for the namespaced tool name with arguments (a
// JSON object; empty or null means {}) to its upstream and waits at most
// timeout (PoolOptions.CallTimeout when ≤ 0) and until ctx ends. A result
// the upstream marks IsError is returned as a result with a nil error.
// Errors wrap ErrInvalid (bad name or arguments), ErrNotFound (unknown
// upstream, or a tool the latest discovery does not list), ErrUnavailable
// (not connected, or the transport failed: the session is dropped and
// reconnected), ErrTimeout (timeout passed; the upstream is sent
// notifications/cancelled), ErrUpstream (a JSON-RPC error answer, whose
// message comes from the upstream and must not be shown to agents
// verbatim) or the error of ctx. CallStats is filled as far as the call
// got.
func (p *Pool) Call(ctx context.Context, name string, arguments json.RawMessage, timeout time.Duration) (*mcp.CallToolResult, CallStats, error) {
	upName, tool, err := Split(name)
	if err != nil {
		return nil, CallStats{}, err
	}
	stats := CallStats{Upstream: upName, Tool: tool}
	args, err := normalizeArguments(arguments)
	if err != nil {
		return nil, stats, err
	}
	c, err := p.get(upName)
	if err != nil {
		return nil, stats, err
	}
	c.mu.Lock()
	ls := c.live
	def, known := c.tools[tool]
	c.mu.Unlock()
	if !known {
		return nil, stats, fmt.Errorf("%w: tool %q", ErrNotFound, name)
	}
	stats.DefinitionHash = def.DefinitionHash
	if ls == nil {
		return nil, stats, fmt.Errorf("%w: upstream %q is not connected", ErrUnavailable, upName)
	}
	if timeout <= 0 {
		timeout = p.opts.CallTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	res, err := ls.sess.CallTool(cctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	stats.Latency = time.Since(start)
	if err == nil && res == nil {
		err = errors.New("empty result")
	}
	switch {
	case err == nil:
		outcome := callOK
		if res.IsError {
			outcome = callToolError
		}
		c.recordCall(stats.Latency, outcome, nil)
		return res, stats, nil
	case ctx.Err() != nil:
		c.recordCall(stats.Latency, callFailed, nil)
		return nil, stats, fmt.Errorf("proxy: calling %q: %w", name, ctx.Err())
	case cctx.Err() != nil:
		err = fmt.Errorf("%w: calling %q: no answer within %v: %w", ErrTimeout, name, timeout, cctx.Err())
		c.recordCall(stats.Latency, callFailed, err)
		return nil, stats, err
	}
	if werr, ok := upstreamError(err); ok {
		c.recordCall(stats.Latency, callRPCError, nil)
		return nil, stats, fmt.Errorf("%w: calling %q: %w", ErrUpstream, name, werr)
	}
	err = fmt.Errorf("%w: calling %q: %w", ErrUnavailable, name, err)
	c.recordCall(stats.Latency, callFailed, err)
	c.markBroken(ls, err)
	return nil, stats, err
}

// get returns the named upstream or an ErrNotFound error.
func (p *Pool) get(name string) (*upstreamConn, error) {
	p.mu.RLock()
	c, ok := p.ups[name]
	p.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: upstream %q", ErrNotFound, name)
	}
	return c, nil
}

// normalizeArguments returns the arguments to send: a JSON object, with
// empty input and null meaning {}.
func normalizeArguments(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := strings.TrimSpace(string(raw))
	if trimmed == "" || trimmed == "null" {
		return json.RawMessage("{}"), nil
	}
	if trimmed[0] != '{' || !json.Valid([]byte(trimmed)) {
		return nil, fmt.Errorf("%w: arguments must be a JSON object", ErrInvalid)
	}
	return json.RawMessage(trimmed), nil
}

// localWireCode reports whether code is one of the go-sdk's own
// transport-side JSON-RPC error codes (unknown, client closing, server
// closing, rejected by transport): an error with one of them did not come
// from the upstream.
func localWireCode(code int64) bool {
	switch code {
	case -32001, -32003, -32004, -32005:
		return true
	}
	return false
}

// upstreamError returns the JSON-RPC error in err's chain when the
// upstream answered with one, as opposed to a failure of the connection.
func upstreamError(err error) (*jsonrpc.Error, bool) {
	if errors.Is(err, mcp.ErrConnectionClosed) || errors.Is(err, mcp.ErrSessionMissing) {
		return nil, false
	}
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || localWireCode(werr.Code) {
		return nil, false
	}
	return werr, true
}

// cloneUpstream returns a deep copy of u, so the caller's maps and slices
// may change after Add.
func cloneUpstream(u Upstream) Upstream {
	u.Command = slices.Clone(u.Command)
	u.Env = maps.Clone(u.Env)
	u.Headers = maps.Clone(u.Headers)
	return u
}

// redactedURL returns raw without userinfo, or "" when it does not parse.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User = nil
	return u.String()
}
