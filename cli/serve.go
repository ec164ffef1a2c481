package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/telemetry"
)

// config builds the server configuration from flags, environment and file.
func (e *env) config() app.Config {
	v := e.v
	return app.Config{
		Addr:                 v.GetString("addr"),
		DataDir:              v.GetString("data-dir"),
		DatabaseURL:          v.GetString("database-url"),
		EventStoreURL:        v.GetString("event-store-url"),
		PGMaxConns:           v.GetInt("pg-max-conns"),
		AdminToken:           v.GetString("admin-token"),
		RateLimitPerMinute:   v.GetInt("rate-limit"),
		EncryptionKey:        v.GetString("encryption-key"),
		SigningKey:           v.GetString("signing-key"),
		AllowPrivateNetworks: v.GetBool("allow-private-networks"),
		Tracing:              telemetry.TracingFromEnv(os.Getenv),
		AnomalyDefaults:      anomalyDefaults(v.GetBool("anomaly-defaults")),
		ReadYourWrites:       v.GetString("read-your-writes"),
		Version:              Version,
	}
}

func (e *env) logger() *slog.Logger {
	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(e.v.GetString("log-level"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if e.v.GetString("log-format") == "text" {
		return slog.New(slog.NewTextHandler(e.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(e.stderr, opts))
}

func newServe(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Haldir server",
		Long: `Run the Haldir API. With no database configured it uses an embedded SQLite
store in --data-dir; DATABASE_URL selects PostgreSQL. Pending migrations are
applied at start. SIGTERM or Ctrl-C shuts down gracefully.`,
		Example: `  haldir serve
  haldir serve --addr :9000 --data-dir /var/lib/haldir
  DATABASE_URL=postgres://haldir:…@db/haldir haldir serve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return e.serve(ctx)
		},
	}
	f := cmd.Flags()
	f.String("addr", ":8000", "listen address (env HALDIR_ADDR)")
	f.String("admin-token", "", "operator token enabling POST /v1/tenants and /metrics (env HALDIR_ADMIN_TOKEN)")
	f.Int("rate-limit", 0, "default per-key limit in requests a minute; 0 is off (env HALDIR_RATE_LIMIT)")
	f.Int("pg-max-conns", 16, "Postgres pool size (env HALDIR_PG_MAX_CONNS)")
	f.String("log-level", "info", "debug, info, warn or error (env HALDIR_LOG_LEVEL)")
	f.String("log-format", "json", "json or text (env HALDIR_LOG_FORMAT)")
	f.Bool("allow-private-networks", false, "let webhooks and MCP upstreams reach loopback, private and link-local addresses (env HALDIR_ALLOW_PRIVATE_NETWORKS)")
	f.String("event-store-url", "", "put the ledger on KurrentDB (esdb:// or kurrentdb://); the read models stay in Postgres, so --database-url is required (env HALDIR_EVENT_STORE_URL)")
	f.Bool("anomaly-defaults", false, "run the anomaly detectors with the built-in settings for tenants that set none (by default they run only where a tenant turned them on; env HALDIR_ANOMALY_DEFAULTS)")
	f.String("read-your-writes", app.ReadYourWritesStrict, "on Postgres: 'strict' (a write is in the shared read models before it answers, so every replica shows it at once) or 'position' (the agents' hot writes answer once durable; other replicas show them to a request echoing Haldir-Position, as the SDKs do) (env HALDIR_READ_YOUR_WRITES)")
	f.String("debug-addr", "", "serve Go pprof profiles on this address, e.g. 127.0.0.1:6060; keep it private (env HALDIR_DEBUG_ADDR)")
	return cmd
}

func (e *env) serve(ctx context.Context) error {
	cfg := e.config()
	log := e.logger()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fail(ExitUsage, "cannot listen on %s: %v", cfg.Addr, err)
	}
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return fail(ExitCheckFailed, "cannot open the store: %v", err)
	}
	defer a.Close()
	if addr := e.v.GetString("debug-addr"); addr != "" {
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			log.Info("pprof listening", "addr", addr)
			if err := srv.ListenAndServe(); err != nil {
				log.Warn("pprof listener stopped", "err", err)
			}
		}()
	}
	log.Info("haldir listening", "addr", ln.Addr().String(), "store", cfg.Backend(), "version", Version)
	if !e.json {
		fmt.Fprintf(e.stdout, "haldir %s listening on %s (store: %s)\n", Version, ln.Addr(), cfg.Backend())
	}
	if err := a.Serve(ctx, ln); err != nil {
		return fail(ExitCheckFailed, "server stopped: %v", err)
	}
	log.Info("haldir stopped")
	return nil
}

// anomalyDefaults is the detectors' default settings: the built-in ones,
// or, when off, none (a tenant turns them on with PUT
// /v1/anomalies/settings).
func anomalyDefaults(on bool) *domain.AnomalySettings {
	if on {
		return nil
	}
	return &domain.AnomalySettings{}
}
