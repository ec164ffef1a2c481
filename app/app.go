// Package app assembles a running Haldir: the database, the ledger, the
// projections, the command service and the HTTP API. It is the composition
// root; every other package receives its dependencies from here.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/haldir-dev/haldir/api"
	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/kurrentstore"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/evidence"
	"github.com/haldir-dev/haldir/internal/outbound"
	"github.com/haldir-dev/haldir/migrations"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/proxy"
	"github.com/haldir-dev/haldir/ratelimit"
	"github.com/haldir-dev/haldir/storage/checkpoints"
	"github.com/haldir-dev/haldir/storage/idempotency"
	"github.com/haldir-dev/haldir/storage/keystore"
	"github.com/haldir-dev/haldir/storage/limits"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/telemetry"
	"github.com/haldir-dev/haldir/telemetry/otlp"
	"github.com/haldir-dev/haldir/treelog"
	"github.com/haldir-dev/haldir/vault"
	"github.com/haldir-dev/haldir/webhooks"
)

// Config is Haldir's configuration, read once (by package cli) and passed
// down as plain values.
type Config struct {
	// Addr is the listen address, default ":8000".
	Addr string
	// DataDir holds the embedded SQLite store, default "./haldir-data".
	DataDir string
	// DatabaseURL selects Postgres when set.
	DatabaseURL string
	// EventStoreURL, an esdb:// or kurrentdb:// connection string, puts
	// the ledger on KurrentDB (events/kurrentstore); the read models stay
	// in Postgres, so DatabaseURL is then required.
	EventStoreURL string
	// PGMaxConns bounds the Postgres pool (default 16).
	PGMaxConns int
	// AdminToken enables operator routes; empty disables them.
	AdminToken string
	// RateLimitPerMinute is the default per-key limit; 0 is off.
	RateLimitPerMinute int
	// EncryptionKey is HALDIR_ENCRYPTION_KEY, the vault's master key. The
	// embedded store generates one into DataDir when it is empty.
	EncryptionKey string
	// SigningKey is HALDIR_SIGNING_KEY, the Ed25519 signed-note key of the
	// checkpoints. The embedded store generates one into DataDir.
	SigningKey string
	// AllowPrivateNetworks lets webhook and upstream URLs reach private,
	// loopback and link-local addresses (local development and tests).
	AllowPrivateNetworks bool
	// WebhookRetry is the delivery retry schedule; zero uses the default
	// (30 s base, 6 h cap, 12 attempts).
	WebhookRetry webhooks.Backoff
	// AnomalyDefaults are the detector settings of tenants that have set
	// none; nil means domain.DefaultAnomalySettings, and a zero value
	// turns the detectors off until a tenant turns them on.
	AnomalyDefaults *domain.AnomalySettings
	// ReadYourWritesTimeout bounds how long a write waits for the read
	// models to show it, and a read naming a position waits for them to
	// reach it (default 5 s).
	ReadYourWritesTimeout time.Duration
	// ReadYourWrites is how replicas on Postgres give read-your-writes to
	// the agents' hot writes (sessions, audit, payments, governed calls):
	// ReadYourWritesStrict (the default) or ReadYourWritesPosition. The
	// embedded store, one process, always answers them once durable: a
	// later request of the tenant waits for the read models there.
	ReadYourWrites string
	// Tracing exports OpenTelemetry traces over OTLP/HTTP when enabled
	// (package cli turns it on from the OTEL_* environment).
	Tracing telemetry.TracingConfig
	Version string
}

// Read-your-writes modes (Config.ReadYourWrites).
const (
	// ReadYourWritesStrict: a hot write answers once the shared read
	// models show it, so every replica serves it at once.
	ReadYourWritesStrict = "strict"
	// ReadYourWritesPosition: a hot write answers once durable; the
	// replica that took it shows it to the tenant's next request, and any
	// replica to a request echoing its Haldir-Position (the SDKs and the
	// Go client do).
	ReadYourWritesPosition = "position"
)

// Secret config values never print.
func (c Config) String() string {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		return "(set)"
	}
	return fmt.Sprintf("Config{Addr:%q DataDir:%q DatabaseURL:%s PGMaxConns:%d AdminToken:%s RateLimitPerMinute:%d EncryptionKey:%s SigningKey:%s}",
		c.Addr, c.DataDir, redact(c.DatabaseURL), c.PGMaxConns, redact(c.AdminToken), c.RateLimitPerMinute, redact(c.EncryptionKey), redact(c.SigningKey))
}

// Backend names the store in use, for messages.
func (c Config) Backend() string {
	if c.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite (" + c.DataDir + ")"
}

// OpenDB opens the configured database and applies pending migrations.
func OpenDB(ctx context.Context, cfg Config) (*sqldb.DB, error) {
	var db *sqldb.DB
	var err error
	if cfg.DatabaseURL != "" {
		db, err = sqldb.OpenPostgres(ctx, cfg.DatabaseURL, cfg.PGMaxConns)
	} else {
		db, err = sqldb.OpenSQLite(cfg.DataDir)
	}
	if err != nil {
		return nil, err
	}
	if _, err := migrations.Up(ctx, db, nil); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// App is a running Haldir.
type App struct {
	Config Config
	// anomalyDefaults are Config.AnomalyDefaults resolved.
	anomalyDefaults domain.AnomalySettings
	Log             *slog.Logger
	DB              *sqldb.DB
	Store           Ledger
	Projector       *projections.Projector
	Commands        *commands.Service
	Queries         *projections.Queries
	// Sessions is the in-memory session read model Queries answers from
	// first; nil on Postgres (see projections.SessionCache).
	Sessions    *projections.SessionCache
	API         *api.Server
	Keys        *keystore.Store
	Checkpoints *treelog.Log
	Deliveries  *webhooks.Queue
	Guard       outbound.Guard
	// Upstreams are the tenants' MCP upstream connections in this process.
	Upstreams *proxy.Tenants
	// Metrics are the process's Prometheus metrics (GET /metrics).
	Metrics *telemetry.Metrics
	// Tracing is the trace pipeline; nil when tracing is off.
	Tracing *otlp.Tracing

	stop chan struct{}
	done chan struct{}
	// delivered is closed when the webhook worker has stopped.
	delivered chan struct{}
	// projected is closed when the projector's Run returns.
	projected chan struct{}
	// listening is closed when the notification listener has stopped.
	listening chan struct{}
}

// Open opens the store, starts the projections and builds the API.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if cfg.ReadYourWrites != "" && cfg.ReadYourWrites != ReadYourWritesStrict && cfg.ReadYourWrites != ReadYourWritesPosition {
		return nil, fmt.Errorf("HALDIR_READ_YOUR_WRITES must be %q or %q, not %q", ReadYourWritesStrict, ReadYourWritesPosition, cfg.ReadYourWrites)
	}
	db, err := OpenDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a := &App{Config: cfg, Log: log, DB: db, stop: make(chan struct{}), done: make(chan struct{}), projected: make(chan struct{}), delivered: make(chan struct{}), listening: make(chan struct{})}
	if a.Store, err = openLedger(ctx, cfg, db, log); err != nil {
		db.Close()
		return nil, err
	}
	a.Deliveries = webhooks.NewQueue(db.State(), 0)
	a.Guard = outbound.Guard{AllowPrivate: cfg.AllowPrivateNetworks}
	// The core projection keeps the API's caches in step with the ledger.
	var observer atomic.Pointer[api.Server]
	if db.Dialect == sqldb.SQLite {
		a.Sessions = projections.NewSessionCache(0) // one process sees every event first
	}
	core := projections.CoreGroup
	core.Observe = func(e *events.Event) {
		if a.Sessions != nil {
			a.Sessions.Observe(e)
		}
		if s := observer.Load(); s != nil {
			s.Observe(e)
		}
	}
	a.anomalyDefaults = domain.DefaultAnomalySettings
	if cfg.AnomalyDefaults != nil {
		a.anomalyDefaults = *cfg.AnomalyDefaults
	}
	if a.Projector, err = projections.NewProjector(ctx, db.State(), a.Store, log, core, projections.OutboxGroup(a.Deliveries), projections.AnomalyGroup(a.anomalyDefaults)); err != nil {
		a.Store.Close()
		db.Close()
		return nil, err
	}
	go func() {
		defer close(a.projected)
		if err := a.Projector.Run(context.Background()); err != nil {
			log.Error("projections stopped", "err", err)
		}
	}()
	<-a.Projector.Running()
	a.Queries = projections.NewQueries(db.State())
	if a.Sessions != nil {
		a.Queries.CacheSessions(a.Sessions)
	}
	a.Keys = keystore.New(db.State())
	v, err := openVault(ctx, cfg, a.Keys, log)
	if err != nil {
		a.Projector.Close()
		a.Store.Close()
		db.Close()
		return nil, err
	}
	if a.Checkpoints, err = openLog(cfg, db, a.Queries, log); err != nil {
		a.Projector.Close()
		a.Store.Close()
		db.Close()
		return nil, err
	}
	a.Commands = commands.New(a.Store, a.Projector, log, commands.Options{Vault: v, Reads: a.Queries, Guard: a.Guard, SettleTimeout: cfg.ReadYourWritesTimeout,
		AcknowledgeDurable: db.Dialect == sqldb.SQLite || cfg.ReadYourWrites == ReadYourWritesPosition})
	var limiter ratelimit.Limiter = ratelimit.NewMemory()
	if db.Dialect == sqldb.Postgres {
		limiter = limits.New(db) // replicas share counters
	}
	idem := idempotency.New(db)
	cfg.Tracing.Version = cfg.Version
	if a.Tracing, err = otlp.Start(ctx, cfg.Tracing); err != nil {
		a.Projector.Close()
		a.Store.Close()
		db.Close()
		return nil, err
	}
	a.Upstreams = proxy.NewTenants(proxy.TenantsOptions{
		HTTPClient: upstreamClient(a.Guard, a.Tracing != nil), ClientName: "haldir-proxy", ClientVersion: cfg.Version, Logger: log.With("component", "proxy"),
		Registrations: a.Queries.Upstreams, Configure: a.Commands.UpstreamSettings,
		Observe: func(ctx context.Context, tenant, tool, hash string, definition json.RawMessage) error {
			_, err := a.Commands.ObserveTool(ctx, tenant, tool, hash, definition)
			return err
		},
	})
	governor := a.Commands.NewGovernor(a.Upstreams, a.Queries, windows{limiter}, 0)
	a.Metrics = telemetry.NewMetrics(telemetry.Sources{
		LedgerHead:    a.Store.Head,
		Groups:        []string{projections.CoreGroup.Name, "outbox", projections.AnomalyGroupName},
		GroupPosition: a.Projector.Position,
		Upstreams:     a.Upstreams.Health,
		Started:       time.Now(),
	})
	if sql, ok := a.Store.(*sqlstore.Store); ok {
		sql.OnCommit(func(st sqlstore.CommitStats) { a.Metrics.LedgerCommit(st.Events, st.Duration, st.Err != nil) })
	}
	governor.Observe(func(d commands.Decision) { a.Metrics.GovernedCall(d.Verdict, string(d.Code), d.Upstream) })
	governor.Trace(a.Tracing.Provider())
	a.API = api.New(api.Deps{
		Commands:        a.Commands,
		Queries:         a.Queries,
		Store:           a.Store,
		Idempotency:     idem,
		Limiter:         limiter,
		Ready:           a.Store.Ready,
		Projected:       func() int64 { return a.Projector.Position(projections.CoreGroup.Name) },
		AnomalyDefaults: a.anomalyDefaults,
		Log:             a.Checkpoints,
		Deliveries:      a.Deliveries,
		Upstreams:       a.Upstreams,
		Governor:        governor,
		WebhookStats: func(ctx context.Context, tenant string, since, until time.Time) (evidence.WebhookStats, error) {
			s, err := a.Queries.WebhookStats(ctx, tenant, since, until)
			return evidence.WebhookStats{Registered: s.Registered, Active: s.Active, Attempts: s.Attempts, Delivered: s.Delivered, Failed: s.Failed}, err
		},
		KEKVersion: func() uint32 {
			if r, err := v.Keyring(context.Background(), false); err == nil {
				return r.Current()
			}
			return 0
		},
	}, api.Options{AdminToken: cfg.AdminToken, RateLimitPerMinute: cfg.RateLimitPerMinute, Version: cfg.Version, Log: log, Metrics: a.Metrics, Tracer: a.Tracing.Provider()})
	observer.Store(a.API)
	go a.housekeeping(idem, limiter)
	a.listen()
	a.deliver(log)
	return a, nil
}

// listen keeps this replica told of what the others change. On Postgres a
// listener connection wakes the ledger's consumers at each append by
// another replica and forwards the projections' cache invalidations; the
// API trusts its caches only while that connection is up. On SQLite there
// is one process, and its caches see every change.
func (a *App) listen() {
	if a.DB.Dialect != sqldb.Postgres {
		a.API.TrustCaches(true)
		close(a.listening)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-a.stop
		cancel()
	}()
	go func() {
		defer close(a.listening)
		a.DB.Listen(ctx, sqldb.Listener{
			Channels: []string{sqlstore.LedgerChannel, projections.InvalidateChannel},
			Notify: func(channel, payload string) {
				switch channel {
				case sqlstore.LedgerChannel:
					a.wake()
				case projections.InvalidateChannel:
					a.API.Invalidate(payload)
				}
			},
			Connected: func(up bool) {
				if !up {
					a.Log.Warn("lost the Postgres notification listener; reading keys uncached until it is back")
				}
				a.API.TrustCaches(up)
				a.wake() // catch up on what was missed
			},
		})
	}()
}

// housekeeping expires idempotency keys and rate windows.
func (a *App) housekeeping(idem *idempotency.Store, limiter ratelimit.Limiter) {
	defer close(a.done)
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	expiry := time.NewTicker(2 * time.Second)
	defer expiry.Stop()
	checkpoints := time.NewTicker(time.Minute)
	defer checkpoints.Stop()
	flags := time.NewTicker(time.Second)
	defer flags.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-a.Projector.Advanced(projections.AnomalyGroupName):
			a.appendFlags()
		case <-flags.C:
			a.appendFlags()
		case <-expiry.C:
			a.expireApprovals()
		case <-checkpoints.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := a.Checkpoints.PublishAll(ctx); err != nil {
				a.Log.Warn("publishing checkpoints failed", "err", err)
			}
			cancel()
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if n, err := idem.Expire(ctx, time.Now()); err != nil {
				a.Log.Warn("expiring idempotency keys failed", "err", err)
			} else if n > 0 {
				a.Log.Debug("expired idempotency keys", "count", n)
			}
			if n, err := a.Keys.SweepOrphans(ctx, time.Now().Add(-time.Hour)); err != nil {
				a.Log.Warn("sweeping orphaned data keys failed", "err", err)
			} else if n > 0 {
				a.Log.Info("destroyed data keys that no secret names", "count", n)
			}
			if l, ok := limiter.(*limits.SQL); ok {
				if err := l.Expire(ctx, time.Now().Add(-2*time.Hour)); err != nil {
					a.Log.Warn("expiring rate windows failed", "err", err)
				}
			}
			cancel()
		}
	}
}

// Serve serves the API on ln until ctx is cancelled, then shuts down
// gracefully, letting in-flight requests finish for up to 20 seconds.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(), // the API, and the dashboard under /dashboard
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("app: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the projections and closes the store and database.
func (a *App) Close() error {
	close(a.stop)
	<-a.done
	<-a.delivered
	<-a.listening
	err := a.Upstreams.Close()
	err = errors.Join(err, a.Projector.Close())
	select {
	case <-a.projected: // Run has returned: nothing logs or writes after Close
	case <-time.After(30 * time.Second):
		err = errors.Join(err, errors.New("app: the projector did not stop within 30 s"))
	}
	err = errors.Join(err, a.Store.Close())
	tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = errors.Join(err, a.Tracing.Shutdown(tctx)) // exports what is left
	return errors.Join(err, a.DB.Close())
}

// openVault loads the master key and the keyring. A wrong key is refused
// here, at start, with a clear message, never at the first read.
func openVault(ctx context.Context, cfg Config, keys *keystore.Store, log *slog.Logger) (*commands.Vault, error) {
	dataDir := cfg.DataDir
	if cfg.DatabaseURL != "" {
		dataDir = ""
	}
	master, generated, err := keystore.LoadMasterKey(cfg.EncryptionKey, dataDir)
	if err != nil {
		return nil, err
	}
	if generated {
		log.Warn("generated a new vault encryption key; back it up, secrets cannot be read without it",
			"file", filepath.Join(dataDir, keystore.MasterKeyFile))
	}
	ring, err := keys.LoadKeyring(ctx, master)
	if err != nil {
		return nil, err
	}
	var current atomic.Pointer[vault.Keyring]
	current.Store(ring)
	return &commands.Vault{
		Keys: keys,
		Keyring: func(ctx context.Context, reload bool) (*vault.Keyring, error) {
			if reload {
				r, err := keys.LoadKeyring(ctx, master)
				if err != nil {
					return nil, err
				}
				current.Store(r)
			}
			return current.Load(), nil
		},
	}, nil
}

// expireApprovals records the expiry of pending approval requests past
// their TTL, so that "expired" is an event (and a webhook), not only a
// status computed at read time. Every replica runs it; the appends carry
// expected versions, so racing replicas record each expiry once.
func (a *App) expireApprovals() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	due, err := a.Queries.OverdueApprovals(ctx, time.Now(), 500)
	if err != nil {
		a.Log.Warn("listing expired approvals failed", "err", err)
		return
	}
	for _, d := range due {
		if err := a.Commands.ExpireApproval(ctx, d.Tenant, d.Binding); err != nil {
			a.Log.Warn("recording an approval expiry failed", "tenant", d.Tenant, "err", err)
		}
	}
}

// openLog loads the checkpoint signing key and the transparency log.
func openLog(cfg Config, db *sqldb.DB, q *projections.Queries, log *slog.Logger) (*treelog.Log, error) {
	dataDir := cfg.DataDir
	if cfg.DatabaseURL != "" {
		dataDir = ""
	}
	skey, generated, err := treelog.LoadSigningKey(cfg.SigningKey, dataDir)
	if err != nil {
		return nil, err
	}
	if generated {
		log.Warn("generated a new checkpoint signing key; auditors trust its public half, so keep it",
			"file", filepath.Join(dataDir, treelog.SigningKeyFile))
	}
	return treelog.New(checkpoints.New(db.State()), q, q, skey)
}

// appendFlags appends the flags the detectors raised to the ledger. Every
// replica may: a flag's event id is derived from the flag, so it lands
// once.
func (a *App) appendFlags() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pending, err := a.Queries.PendingFlags(ctx, 200)
	if err != nil {
		a.Log.Warn("reading the anomaly outbox failed", "err", err)
		return
	}
	for _, p := range pending {
		if err := a.Commands.RecordFlag(ctx, p.Tenant, p.Flag); err != nil {
			a.Log.Warn("recording an anomaly flag failed", "flag", p.Flag.FlagID, "err", err)
			return
		}
		if err := a.respond(ctx, p.Tenant, p.Flag); err != nil {
			a.Log.Warn("responding to an anomaly flag failed", "flag", p.Flag.FlagID, "err", err)
			return
		}
		if err := a.Queries.FlagAppended(ctx, p.Tenant, p.Flag.FlagID); err != nil {
			a.Log.Warn("marking an anomaly flag recorded failed", "flag", p.Flag.FlagID, "err", err)
			return
		}
	}
}

// respond runs the automatic response the tenant chose for the flag's
// detector. A kill is idempotent, so a flag handled twice (by two
// replicas, or again after a crash) kills once.
func (a *App) respond(ctx context.Context, tenant string, f domain.AnomalyFlagged) error {
	set, err := a.Commands.AnomalySettings(ctx, tenant, a.anomalyDefaults)
	if err != nil || set.Response(f.Detector) != domain.ResponseKill || f.AgentID == "" {
		return err
	}
	actor := commands.Actor{Tenant: tenant, KeyPrefix: "anomaly-response", Route: "anomaly response"}.WithIdempotencyKey(f.FlagID)
	_, err = a.Commands.Kill(ctx, actor, f.AgentID, fmt.Sprintf("automatic response to anomaly %s: %s", f.FlagID, f.Reason))
	return err
}

// deliver runs the webhook worker until Close. Every replica runs one; the
// queue's claims split the work. It wakes whenever the outbox group
// commits, so a delivery starts as soon as it is enqueued.
func (a *App) deliver(log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-a.stop:
				cancel()
				return
			case <-a.Projector.Advanced("outbox"):
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	w := &webhooks.Worker{
		Queue:     a.Deliveries,
		Endpoints: webhooks.EndpointsFunc(a.Commands.WebhookEndpoint),
		Guard:     a.Guard,
		Backoff:   a.Config.WebhookRetry,
		Interval:  time.Second,
		Wake:      wake,
		Log:       log.With("component", "webhooks"),
		OnAttempt: a.Metrics.WebhookDelivery,
		OnGone: func(ctx context.Context, tenant, webhookID string) error {
			return a.Commands.DisableWebhook(ctx, tenant, webhookID, "the endpoint answered 410 Gone")
		},
	}
	go func() {
		defer close(a.delivered)
		if err := w.Run(ctx); err != nil {
			log.Error("webhook delivery stopped", "err", err)
		}
	}()
}

// upstreamClient is the HTTP client of every MCP upstream connection: each
// connection's address is checked by the outbound guard, redirects are
// never followed (and refused when they point somewhere forbidden), and
// every phase is bounded. With tracing on, each request carries the W3C
// traceparent of the governed call it serves.
func upstreamClient(guard outbound.Guard, traced bool) *http.Client {
	tr := &http.Transport{DialContext: guard.DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 60 * time.Second}
	var rt http.RoundTripper = tr
	if traced {
		rt = telemetry.PropagatingTransport(tr)
	}
	return &http.Client{Transport: rt, CheckRedirect: guard.CheckRedirect}
}

// windows adapts a ratelimit.Limiter to what governed calls count with.
type windows struct{ ratelimit.Limiter }

func (w windows) Allow(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, time.Duration, error) {
	res, err := w.Limiter.Allow(ctx, key, limit, window, now)
	return res.Allowed, res.RetryAfter(now), err
}

// Ledger is the event store a server runs on: events/sqlstore on the
// database, or events/kurrentstore on KurrentDB.
type Ledger interface {
	events.Store
	// Head returns the ledger's last position.
	Head(ctx context.Context) (int64, error)
	// Ready reports whether the ledger can take writes.
	Ready(ctx context.Context) error
	Close() error
}

// openLedger opens the ledger cfg selects: KurrentDB when EventStoreURL is
// set (with the read models in Postgres), else the database's own.
func openLedger(ctx context.Context, cfg Config, db *sqldb.DB, log *slog.Logger) (Ledger, error) {
	if cfg.EventStoreURL == "" {
		return sqlstore.Open(ctx, db)
	}
	if !kurrentstore.IsURL(cfg.EventStoreURL) {
		return nil, fmt.Errorf("HALDIR_EVENT_STORE_URL must be an esdb:// or kurrentdb:// connection string")
	}
	if db.Dialect != sqldb.Postgres {
		return nil, fmt.Errorf("a KurrentDB ledger keeps its read models in Postgres: set DATABASE_URL too")
	}
	s, err := kurrentstore.OpenURL(ctx, cfg.EventStoreURL, kurrentstore.Options{Log: log})
	if err != nil {
		return nil, fmt.Errorf("open the KurrentDB ledger at %s: %w", kurrentstore.Redact(cfg.EventStoreURL), err)
	}
	return s, nil
}

// wake tells the ledger's tailers to look for events another replica
// appended (a Postgres notification); KurrentDB's subscription needs no
// nudge.
func (a *App) wake() {
	if w, ok := a.Store.(interface{ Wake() }); ok {
		w.Wake()
	}
}
