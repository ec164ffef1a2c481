package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// upstreamConn is one registered upstream: its supervisor goroutine (run),
// its current session and its latest discovery.
type upstreamConn struct {
	opts   *PoolOptions
	up     Upstream
	hc     *http.Client // for http upstreams
	client *mcp.Client

	ctx    context.Context // ends when the upstream is removed
	cancel context.CancelFunc
	done   chan struct{}  // closed when run returns
	bg     sync.WaitGroup // handshakes given up on, and their cleanup

	first     chan struct{} // closed after the first connection attempt
	firstDisc Discovery     // written before first is closed
	firstErr  error         // written before first is closed

	broken      chan struct{} // a call found the session broken (cap 1)
	listChanged chan struct{} // the upstream sent tools/list_changed (cap 1)

	discoverMu sync.Mutex // serializes discoveries and OnDiscovery

	mu         sync.Mutex
	live       *liveSession       // nil when disconnected
	tools      map[string]ToolDef // bare tool name → definition
	defs       []ToolDef          // the same, sorted by Name
	discovered bool
	sessions   uint64
	lastOK     time.Time
	lastErr    string
	lastErrAt  time.Time
	calls      uint64
	failures   uint64
	toolErrors uint64
	latencies  latencyWindow
}

// liveSession is one connected session.
type liveSession struct {
	sess   *mcp.ClientSession
	cancel context.CancelFunc // ends the connection's long-lived context
	since  time.Time
}

// newUpstreamConn returns the state for up; run starts it.
func newUpstreamConn(opts *PoolOptions, up Upstream) *upstreamConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &upstreamConn{
		opts:        opts,
		up:          up,
		ctx:         ctx,
		cancel:      cancel,
		done:        make(chan struct{}),
		first:       make(chan struct{}),
		broken:      make(chan struct{}, 1),
		listChanged: make(chan struct{}, 1),
		tools:       make(map[string]ToolDef),
	}
	if up.Transport != TransportStdio {
		c.hc = upstreamHTTPClient(opts.HTTPClient, up)
	}
	c.client = mcp.NewClient(
		&mcp.Implementation{Name: opts.ClientName, Version: opts.ClientVersion},
		&mcp.ClientOptions{
			Logger:       opts.Logger,
			Capabilities: &mcp.ClientCapabilities{}, // no roots, sampling or elicitation
			ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
				// Runs on the session's reading goroutine: only signal.
				signal(c.listChanged)
			},
		})
	return c
}

// signal makes a non-blocking send on a channel of capacity 1.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// stop ends the supervisor, closes the session and waits, also for
// abandoned handshakes to be cleaned up.
func (c *upstreamConn) stop() {
	c.cancel()
	<-c.done
	c.bg.Wait()
}

// run is the supervisor: it connects, serves the session until it breaks,
// and reconnects with exponential backoff until the upstream is removed.
func (c *upstreamConn) run() {
	defer close(c.done)
	backoff := c.opts.MinBackoff
	reason := "connect"
	for {
		ls, disc, err := c.connect(reason)
		if reason == "connect" {
			c.firstDisc, c.firstErr = disc, err
			close(c.first)
		}
		reason = "reconnect"
		if err == nil {
			c.serve(ls)
			c.dropSession(ls)
			if time.Since(ls.since) > c.opts.MaxBackoff {
				backoff = c.opts.MinBackoff // it was healthy for a while
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, c.opts.MaxBackoff)
	}
}

// connect makes one connection attempt and the discovery that goes with
// it, then installs the session. It returns by ConnectTimeout: the go-sdk's
// Connect and Close can wait seconds longer on a hung upstream (to deliver
// notifications/cancelled), so both run on c.bg, and a session that
// arrives too late is closed there.
func (c *upstreamConn) connect(reason string) (*liveSession, Discovery, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
	defer cancel()
	life, endLife := context.WithCancel(c.ctx)
	type result struct {
		sess *mcp.ClientSession
		err  error
	}
	ch := make(chan result, 1)
	transport := newTransport(c.up, c.hc, c.opts, life)
	c.bg.Go(func() {
		sess, err := c.client.Connect(ctx, transport, nil)
		ch <- result{sess, err}
	})
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		c.bg.Go(func() {
			if late := <-ch; late.sess != nil {
				late.sess.Close()
			}
			endLife()
		})
		r.err = ctx.Err()
		err := c.wrapFailure(ctx, "connecting", r.err)
		c.recordError(err)
		return nil, Discovery{}, err
	}
	if r.err != nil {
		endLife()
		err := c.wrapFailure(ctx, "connecting", r.err)
		c.recordError(err)
		return nil, Discovery{}, err
	}
	ls := &liveSession{sess: r.sess, cancel: endLife, since: time.Now()}
	tools, err := c.listTools(ctx, r.sess)
	if err != nil {
		c.bg.Go(func() { c.closeSession(ls) })
		err = c.wrapFailure(ctx, "listing tools", err)
		c.recordError(err)
		return nil, Discovery{}, err
	}
	disc := c.discover(tools, reason, func() {
		c.live = ls
		c.sessions++
	})
	return ls, disc, nil
}

// wrapFailure classifies a failed connection or discovery made under ctx:
// ErrUpstream for a JSON-RPC error answer, else ErrUnavailable, with
// ErrTimeout too when ctx's deadline passed.
func (c *upstreamConn) wrapFailure(ctx context.Context, what string, err error) error {
	if _, ok := upstreamError(err); ok {
		return fmt.Errorf("%w: upstream %q: %s: %w", ErrUpstream, c.up.Name, what, err)
	}
	if c.ctx.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (%w): upstream %q: %s: %w", ErrUnavailable, ErrTimeout, c.up.Name, what, err)
	}
	return fmt.Errorf("%w: upstream %q: %s: %w", ErrUnavailable, c.up.Name, what, err)
}

// serve watches a connected session until it must be dropped: the upstream
// is removed, the connection ends, a call finds it broken, or a refresh
// fails on the transport.
func (c *upstreamConn) serve(ls *liveSession) {
	ended := make(chan struct{})
	go func() {
		_ = ls.sess.Wait()
		close(ended)
	}()
	var tick <-chan time.Time
	if c.opts.RefreshInterval > 0 {
		t := time.NewTicker(c.opts.RefreshInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var reason string
		select {
		case <-c.ctx.Done():
			return
		case <-ended:
			c.recordError(fmt.Errorf("%w: upstream %q closed the connection", ErrUnavailable, c.up.Name))
			return
		case <-c.broken:
			if c.liveSession() != ls {
				return
			}
			continue // a stale signal from an earlier session
		case <-c.listChanged:
			reason = "list_changed"
		case <-tick:
			reason = "interval"
		}
		if _, err := c.refresh(c.ctx, ls, reason); err != nil && c.liveSession() != ls {
			return
		}
	}
}

// refresh lists the tools of session ls again and installs the discovery.
// A transport failure or a timeout marks the session broken; a JSON-RPC
// error answer or an over-long list leaves it in use.
func (c *upstreamConn) refresh(parent context.Context, ls *liveSession, reason string) (*Discovery, error) {
	ctx, cancel := context.WithTimeout(parent, c.opts.ConnectTimeout)
	defer cancel()
	tools, err := c.listTools(ctx, ls.sess)
	if err != nil {
		if parent.Err() != nil {
			return nil, fmt.Errorf("proxy: listing tools of %q: %w", c.up.Name, parent.Err())
		}
		wrapped := c.wrapFailure(ctx, "listing tools", err)
		if _, rpc := upstreamError(err); rpc || errors.Is(err, ErrInvalid) {
			c.recordError(wrapped)
			return nil, wrapped
		}
		c.markBroken(ls, wrapped)
		return nil, wrapped
	}
	disc := c.discover(tools, reason, func() {})
	return &disc, nil
}

// listTools reads every page of the session's tools/list.
func (c *upstreamConn) listTools(ctx context.Context, sess *mcp.ClientSession) ([]*mcp.Tool, error) {
	var all []*mcp.Tool
	params := &mcp.ListToolsParams{}
	for page := 0; ; page++ {
		if page == maxToolPages {
			return nil, fmt.Errorf("%w: more than %d pages of tools", ErrInvalid, maxToolPages)
		}
		res, err := sess.ListTools(ctx, params)
		if err != nil {
			return nil, err
		}
		all = append(all, res.Tools...)
		if len(all) > c.opts.MaxTools {
			return nil, fmt.Errorf("%w: more than %d tools", ErrInvalid, c.opts.MaxTools)
		}
		if res.NextCursor == "" {
			return all, nil
		}
		params = &mcp.ListToolsParams{Cursor: res.NextCursor}
	}
}

// discover turns listed tools into a Discovery against the previous one,
// calls OnDiscovery, and only then, under c.mu, runs install and makes the
// new tool set current. Discoveries of one upstream never overlap.
func (c *upstreamConn) discover(tools []*mcp.Tool, reason string, install func()) Discovery {
	c.discoverMu.Lock()
	defer c.discoverMu.Unlock()

	disc := Discovery{Upstream: c.up.Name, Reason: reason, At: time.Now()}
	byName := make(map[string]ToolDef, len(tools))
	for _, t := range tools {
		if t == nil {
			continue
		}
		if _, dup := byName[t.Name]; t.Name == "" || dup {
			disc.Skipped = append(disc.Skipped, t.Name)
			continue
		}
		d, err := newToolDef(c.up.Name, t)
		if err != nil {
			disc.Skipped = append(disc.Skipped, t.Name)
			continue
		}
		byName[t.Name] = d
		disc.Tools = append(disc.Tools, d)
	}
	slices.SortFunc(disc.Tools, func(a, b ToolDef) int { return strings.Compare(a.Name, b.Name) })

	c.mu.Lock()
	prev := Pins(c.defs)
	first := !c.discovered
	c.mu.Unlock()
	if first {
		prev = nil
	}
	disc.Added, disc.Changed, disc.Removed = Diff(prev, disc.Tools)

	if c.opts.OnDiscovery != nil {
		c.opts.OnDiscovery(disc)
	}

	c.mu.Lock()
	install()
	c.tools = byName
	c.defs = disc.Tools
	c.discovered = true
	c.lastOK = disc.At
	c.mu.Unlock()
	return disc
}

// liveSession returns the current session, or nil.
func (c *upstreamConn) liveSession() *liveSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// markBroken records err and, if ls is still the current session, drops it
// from use and wakes the supervisor to reconnect.
func (c *upstreamConn) markBroken(ls *liveSession, err error) {
	c.mu.Lock()
	if c.live == ls {
		c.live = nil
	}
	c.mu.Unlock()
	c.recordError(err)
	signal(c.broken)
}

// dropSession makes sure ls is no longer current and closes it.
func (c *upstreamConn) dropSession(ls *liveSession) {
	c.mu.Lock()
	if c.live == ls {
		c.live = nil
	}
	c.mu.Unlock()
	c.closeSession(ls)
}

// closeSession closes ls: the go-sdk session (stopping a stdio child), then
// its connection's long-lived context.
func (c *upstreamConn) closeSession(ls *liveSession) {
	_ = ls.sess.Close()
	ls.cancel()
}

// recordError notes a failure for Status.
func (c *upstreamConn) recordError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err.Error()
	c.lastErrAt = time.Now()
}

// callOutcome classifies a forwarded call for Status.
type callOutcome int

const (
	callOK        callOutcome = iota // a result without IsError
	callToolError                    // a result with IsError
	callRPCError                     // a JSON-RPC error answer
	callFailed                       // no answer: timeout, cancellation or transport failure
)

// recordCall notes one forwarded call; err, if set, is the failure to
// remember as LastError.
func (c *upstreamConn) recordCall(latency time.Duration, outcome callOutcome, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.latencies.add(latency)
	switch outcome {
	case callToolError:
		c.toolErrors++
	case callRPCError, callFailed:
		c.failures++
	}
	if outcome != callFailed {
		c.lastOK = time.Now()
	}
	if err != nil {
		c.lastErr = err.Error()
		c.lastErrAt = time.Now()
	}
}

// status returns a snapshot for Status.
func (c *upstreamConn) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{
		Name:        c.up.Name,
		Transport:   c.up.Transport,
		Connected:   c.live != nil,
		LastOK:      c.lastOK,
		LastError:   c.lastErr,
		LastErrorAt: c.lastErrAt,
		Tools:       len(c.defs),
		Calls:       c.calls,
		Failures:    c.failures,
		ToolErrors:  c.toolErrors,
	}
	if c.up.Transport != TransportStdio {
		s.URL = redactedURL(c.up.URL)
	}
	if c.live != nil {
		s.ConnectedSince = c.live.since
	}
	if c.sessions > 1 {
		s.Reconnects = c.sessions - 1
	}
	s.LatencyP50, s.LatencyP99 = c.latencies.percentiles()
	return s
}
