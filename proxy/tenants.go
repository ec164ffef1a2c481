package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/domain"
)

// TenantsOptions configure Tenants. Registrations, Configure and Observe are
// required.
type TenantsOptions struct {
	// HTTPClient makes every HTTP connection to an upstream (its transport
	// must check each connection's address: the outbound guard).
	HTTPClient *http.Client
	// ClientName and ClientVersion identify Haldir to upstreams.
	ClientName, ClientVersion string
	Logger                    *slog.Logger
	Now                       func() time.Time
	// Registrations returns the tenant's registered upstreams (the
	// projection of the ledger, so registrations made by any replica).
	Registrations func(ctx context.Context, tenant string) ([]domain.UpstreamRegistered, error)
	// Configure returns the environment and headers of a registration,
	// opened from their sealed form with {{secret:NAME}} filled in. A
	// *domain.Error's message is shown in the upstream's status.
	Configure func(ctx context.Context, tenant string, reg domain.UpstreamRegistered) (env, headers map[string]string, err error)
	// Observe records a discovered tool definition (pinning it, or
	// quarantining a changed one) before the tool becomes callable.
	// definition is the text the hash covers: {"description", "input_schema"}.
	Observe func(ctx context.Context, tenant, tool, definitionHash string, definition json.RawMessage) error
}

// RetryBroken is how long an upstream whose registration could not be
// configured (a secret its headers name is missing, say) waits before the
// next attempt, so that calls do not retry it (and record a refused secret
// read) every time.
const RetryBroken = 30 * time.Second

// Tenants holds each tenant's upstream connections in this process: a Pool
// per tenant, filled from the tenant's registrations. It is safe for
// concurrent use.
type Tenants struct {
	opts  TenantsOptions
	mu    sync.Mutex
	pools map[string]*tenantPool
}

// tenantPool is one tenant's upstream connections.
type tenantPool struct {
	pool  *Pool
	mu    sync.Mutex
	added map[string]bool
	// broken holds registrations that could not be configured, retried
	// after RetryBroken.
	broken map[string]Status
}

// NewTenants returns an empty Tenants.
func NewTenants(opts TenantsOptions) *Tenants {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Tenants{opts: opts, pools: map[string]*tenantPool{}}
}

// Close disconnects every upstream and stops stdio children.
func (t *Tenants) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	for _, tp := range t.pools {
		err = errors.Join(err, tp.pool.Close())
	}
	t.pools = map[string]*tenantPool{}
	return err
}

// poolFor returns the tenant's pool, creating it.
func (t *Tenants) poolFor(tenant string) *tenantPool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := t.pools[tenant]
	if tp == nil {
		tp = &tenantPool{added: map[string]bool{}, broken: map[string]Status{}}
		tp.pool = NewPool(PoolOptions{
			HTTPClient: t.opts.HTTPClient, ClientName: t.opts.ClientName, ClientVersion: t.opts.ClientVersion, Logger: t.opts.Logger,
			OnDiscovery: func(d Discovery) { t.observe(tenant, d) },
		})
		t.pools[tenant] = tp
	}
	return tp
}

// observe records newly seen and changed tools before the discovered
// definitions become callable.
func (t *Tenants) observe(tenant string, d Discovery) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tool := range d.Tools {
		definition, _ := json.Marshal(struct {
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"input_schema"`
		}{tool.Description, tool.InputSchema})
		if err := t.opts.Observe(ctx, tenant, tool.Name, tool.DefinitionHash, definition); err != nil {
			t.opts.Logger.Error("could not record a discovered tool", "tenant", tenant, "tool", tool.Name, "err", err)
		}
	}
}

// Sync connects the tenant's registered upstreams not yet in this
// process's pool (registered here or by another replica).
func (t *Tenants) Sync(ctx context.Context, tenant string) error {
	_, err := t.sync(ctx, tenant)
	return err
}

func (t *Tenants) sync(ctx context.Context, tenant string) (*tenantPool, error) {
	tp := t.poolFor(tenant)
	regs, err := t.opts.Registrations(ctx, tenant)
	if err != nil {
		return tp, err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, reg := range regs {
		if tp.added[reg.Name] {
			continue
		}
		if b, ok := tp.broken[reg.Name]; ok && t.opts.Now().Sub(b.LastErrorAt) < RetryBroken {
			continue
		}
		env, headers, err := t.opts.Configure(ctx, tenant, reg)
		if err != nil {
			t.opts.Logger.Error("cannot configure upstream", "tenant", tenant, "upstream", reg.Name, "err", err)
			reason := "its configuration could not be opened"
			var de *domain.Error
			if errors.As(err, &de) {
				reason = de.Message
			}
			tp.broken[reg.Name] = Status{Name: reg.Name, Transport: reg.Transport, URL: reg.URL, LastError: reason, LastErrorAt: t.opts.Now()}
			continue
		}
		delete(tp.broken, reg.Name)
		up := Upstream{Name: reg.Name, Transport: reg.Transport, URL: reg.URL, Command: reg.Command, Env: env, Headers: headers}
		// A first connection that fails still registers the upstream,
		// which keeps reconnecting.
		if _, err := tp.pool.Add(ctx, up); err != nil && !errors.Is(err, ErrUnavailable) {
			t.opts.Logger.Error("cannot add upstream", "tenant", tenant, "upstream", reg.Name, "err", err)
			continue
		}
		tp.added[reg.Name] = true
	}
	return tp, nil
}

// Status returns the health of one of the tenant's upstreams and the
// tools it offers, after connecting the tenant's registrations.
func (t *Tenants) Status(ctx context.Context, tenant, name string) (Status, []string, error) {
	tp, err := t.sync(ctx, tenant)
	if err != nil {
		return Status{}, nil, err
	}
	st, err := tp.pool.Status(name)
	if err != nil {
		tp.mu.Lock()
		b, ok := tp.broken[name]
		tp.mu.Unlock()
		if !ok {
			return Status{}, nil, err
		}
		st = b
	}
	var tools []string
	for _, def := range tp.pool.Tools() {
		if def.Upstream == name {
			tools = append(tools, def.Name)
		}
	}
	return st, tools, nil
}

// Statuses returns the health and stats of the tenant's upstreams, those
// that could not be configured included, sorted by name.
func (t *Tenants) Statuses(ctx context.Context, tenant string) ([]Status, error) {
	tp, err := t.sync(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := tp.pool.Statuses()
	tp.mu.Lock()
	for _, st := range tp.broken {
		out = append(out, st)
	}
	tp.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tools lists the tenant's upstream tools, sorted by name.
func (t *Tenants) Tools(ctx context.Context, tenant string) ([]ToolDef, error) {
	tp, err := t.sync(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := tp.pool.Tools()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tool returns one of the tenant's upstream tools. Registrations are read
// again only for a name this process does not know (registered since,
// perhaps by another replica), not on every call.
func (t *Tenants) Tool(ctx context.Context, tenant, name string) (ToolDef, bool, error) {
	tp := t.poolFor(tenant)
	if def, ok := tp.pool.Tool(name); ok {
		return def, true, nil
	}
	tp, err := t.sync(ctx, tenant)
	if err != nil {
		return ToolDef{}, false, err
	}
	def, ok := tp.pool.Tool(name)
	return def, ok, nil
}

// DefinitionHash returns the definition hash of one of the tenant's
// tools (see Tool).
func (t *Tenants) DefinitionHash(ctx context.Context, tenant, name string) (string, bool, error) {
	def, ok, err := t.Tool(ctx, tenant, name)
	return def.DefinitionHash, ok, err
}

// Call forwards a call to one of the tenant's tools and returns the
// upstream's CallToolResult as JSON. The error of a failed call describes
// it without the upstream's own words, which could be anything, so its
// text may be recorded and shown.
func (t *Tenants) Call(ctx context.Context, tenant, name string, arguments json.RawMessage, timeout time.Duration) (json.RawMessage, time.Duration, error) {
	result, stats, err := t.poolFor(tenant).pool.Call(ctx, name, arguments, timeout)
	if err != nil {
		return nil, stats.Latency, errors.New(describe(err))
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, stats.Latency, errors.New("the upstream's result could not be encoded")
	}
	return raw, stats.Latency, nil
}

// describe names what went wrong with a call, in words of our own.
func describe(err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrUnavailable):
		return "upstream unavailable"
	case errors.Is(err, ErrNotFound):
		return "unknown tool"
	case errors.Is(err, ErrUpstream):
		return "the upstream answered with an error"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "call failed"
}

// Health counts the upstreams this process holds, over every tenant:
// connected ones, and those disconnected or unconfigurable. It makes no
// I/O, for metrics.
func (t *Tenants) Health() (connected, down int) {
	t.mu.Lock()
	pools := make([]*tenantPool, 0, len(t.pools))
	for _, tp := range t.pools {
		pools = append(pools, tp)
	}
	t.mu.Unlock()
	for _, tp := range pools {
		for _, st := range tp.pool.Statuses() {
			if st.Connected {
				connected++
			} else {
				down++
			}
		}
		tp.mu.Lock()
		down += len(tp.broken)
		tp.mu.Unlock()
	}
	return connected, down
}
