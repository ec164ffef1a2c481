// Command bench measures Haldir's HTTP throughput and latency the way the
// product readme reports them: keep-alive connections, 32 concurrent
// clients, one endpoint at a time, and only correct answers counted (a 429,
// a 4xx or a 5xx is a failure, never a success).
//
// By default it builds and starts `haldir serve` in a separate process on a
// fresh embedded store (or on Postgres with -database-url), so the server
// and the load generator share the machine but not a heap:
//
//	go run ./bench                         # embedded SQLite
//	go run ./bench -database-url postgres://…
//	go run ./bench -replicas 3 -database-url postgres://…   # 1, then 3 replicas
//	go run ./bench -url http://host:8000 -key hld_…   # an already running server
//
// Each table has a ratio column: the endpoint's rate over GET /healthz's in
// the same run, the figure to compare across machines. With -runs N every
// endpoint is measured N times, each on a fresh server, and a last table
// gives the medians (the machine is noisy: compare medians). With
// -replicas N the same endpoints are measured on one replica, then on N
// replicas of the same database with the clients spread round-robin over
// them.
//
// With -sustain D it then drives a mix of writes (audit entries, payments,
// new sessions) for D on a fresh server and reports, from the server's
// Prometheus gauges, how far in time every projection group trails the
// ledger head, and how long they take to catch up once the load stops:
//
//	go run ./bench -runs 3 -sustain 60s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/vault"
)

type options struct {
	url, key, databaseURL, only string
	adminToken                  string
	duration, warmup, sustain   time.Duration
	concurrency, replicas, runs int
	jsonOut                     bool
	// extraEnv are NAME=value settings for the servers started.
	extraEnv []string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "benchmark a running server instead of starting one")
	flag.StringVar(&o.key, "key", "", "API key for -url (default: bootstrap a fresh install)")
	flag.StringVar(&o.databaseURL, "database-url", "", "start the server on this Postgres database instead of SQLite")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measurement time per endpoint")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up time per endpoint")
	flag.IntVar(&o.concurrency, "concurrency", 32, "concurrent keep-alive clients")
	flag.StringVar(&o.only, "only", "", "run only endpoints whose name contains this")
	flag.BoolVar(&o.jsonOut, "json", false, "print results as JSON")
	flag.IntVar(&o.replicas, "replicas", 1, "with -database-url: measure 1 replica, then this many on the same database")
	flag.IntVar(&o.runs, "runs", 1, "measure every endpoint this many times, each on a fresh server, and print the medians (0: none, with -sustain)")
	flag.DurationVar(&o.sustain, "sustain", 0, "then drive mixed writes for this long and report the projections' lag behind the ledger")
	flag.StringVar(&o.adminToken, "admin-token", "", "with -url and -sustain: the server's operator token, to read its gauges")
	var env multiFlag
	flag.Var(&env, "server-env", "NAME=value for the servers started (repeatable), e.g. HALDIR_READ_YOUR_WRITES=position")
	flag.Parse()
	o.extraEnv = env
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.replicas > 1 && (o.databaseURL == "" || o.url != "") {
		return errors.New("-replicas needs -database-url (replicas share one Postgres database)")
	}
	if o.url != "" {
		var all [][]result
		for run := 0; run < o.runs; run++ {
			rs, err := measureAndPrint(o, []string{o.url}, o.key, "")
			if err != nil {
				return err
			}
			all = append(all, rs)
		}
		printMedians(o, all, 1, "")
		if o.sustain > 0 {
			return sustain(o, o.url, o.key, o.adminToken)
		}
		return nil
	}
	env, err := serverEnv(o.databaseURL)
	if err != nil {
		return err
	}
	env = append(env, o.extraEnv...)
	admin := vault.GenerateMasterKey() // any unguessable string
	env = append(env, "HALDIR_ADMIN_TOKEN="+admin)
	bin, dir, err := buildServer()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	counts := []int{1}
	if o.replicas > 1 {
		counts = append(counts, o.replicas)
	}
	fresh := 0 // numbers the data directories and Postgres resets
	start := func(n int) ([]*server, []string, error) {
		if o.databaseURL != "" {
			// The first run needs an empty database; the bench empties
			// what it wrote before each later one.
			check := requireEmpty
			if fresh > 0 {
				check = resetDatabase
			}
			if err := check(o.databaseURL); err != nil {
				return nil, nil, err
			}
		}
		var servers []*server
		var bases []string
		for i := 0; i < n; i++ {
			srv, err := startServer(bin, filepath.Join(dir, fmt.Sprintf("data-%d-%d", fresh, i)), env)
			if err != nil {
				return nil, nil, err
			}
			servers = append(servers, srv)
			bases = append(bases, srv.url)
		}
		fresh++
		return servers, bases, nil
	}
	stopAll := func(servers []*server) {
		for _, srv := range servers {
			srv.stop()
		}
	}
	for _, n := range counts {
		label := ""
		if len(counts) > 1 {
			label = fmt.Sprintf("%d replica(s) on one Postgres", n)
		}
		var all [][]result
		for run := 0; run < o.runs; run++ {
			servers, bases, err := start(n)
			if err != nil {
				return err
			}
			rs, err := measureAndPrint(o, bases, o.key, label)
			stopAll(servers)
			if err != nil {
				return err
			}
			all = append(all, rs)
		}
		printMedians(o, all, n, label)
	}
	if o.sustain > 0 {
		servers, bases, err := start(1)
		if err != nil {
			return err
		}
		defer stopAll(servers)
		return sustain(o, bases[0], "", admin)
	}
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// bootstrap creates the first key of a fresh install.
func bootstrap(c *client, base string) (string, error) {
	var r struct{ Key string }
	if st, err := c.call("POST", base+"/v1/keys", "", `{"name":"bench"}`, &r); err != nil || st != 201 {
		return "", fmt.Errorf("bootstrap a key (is the server's store fresh? pass -key otherwise): status %d, %v", st, err)
	}
	return r.Key, nil
}

// measureAndPrint measures every endpoint with the clients spread over
// bases, and prints the table (or JSON).
func measureAndPrint(o options, bases []string, key, label string) ([]result, error) {
	c := newClient(o.concurrency)
	if key == "" {
		var err error
		if key, err = bootstrap(c, bases[0]); err != nil {
			return nil, err
		}
	}
	base := func(w int) string { return bases[w%len(bases)] }
	// One session per client for reads, payments and audit, each with a
	// cap large enough never to run out; plus one shared session.
	sessions := make([]string, o.concurrency)
	for i := range sessions {
		var r struct {
			SessionID string `json:"session_id"`
		}
		body := fmt.Sprintf(`{"agent_id":"bench-%d","scopes":["read","write"],"spend_limit":1000000,"ttl":86400}`, i)
		if st, err := c.call("POST", bases[0]+"/v1/sessions", key, body, &r); err != nil || st != 201 {
			return nil, fmt.Errorf("create session: status %d, %v", st, err)
		}
		sessions[i] = r.SessionID
	}
	endpoints := []endpoint{
		{name: "GET /healthz", method: "GET", path: func(int, int) string { return "/healthz" }, want: 200},
		{name: "GET /v1/status", method: "GET", path: func(int, int) string { return "/v1/status" }, want: 200},
		{name: "GET /v1/sessions/:id", method: "GET", auth: true, want: 200,
			path: func(w, _ int) string { return "/v1/sessions/" + sessions[w] }},
		{name: "POST /v1/sessions", method: "POST", auth: true, want: 201, path: func(int, int) string { return "/v1/sessions" },
			body: func(w, i int) string {
				return fmt.Sprintf(`{"agent_id":"bench-new-%d-%d","scopes":["read"],"ttl":600}`, w, i)
			}},
		{name: "POST /v1/audit", method: "POST", auth: true, want: 201, path: func(int, int) string { return "/v1/audit" },
			body: func(w, i int) string {
				return fmt.Sprintf(`{"session_id":%q,"tool":"search","action":"query-%d","details":{"q":"haldir"}}`, sessions[w], i)
			}},
		{name: "POST /v1/payments/authorize", method: "POST", auth: true, want: 200, path: func(int, int) string { return "/v1/payments/authorize" },
			body: func(w, i int) string {
				return fmt.Sprintf(`{"session_id":%q,"amount":0.01,"description":"bench"}`, sessions[w])
			}},
		{name: "POST /v1/payments/authorize (1 shared session)", method: "POST", auth: true, want: 200, path: func(int, int) string { return "/v1/payments/authorize" },
			body: func(w, i int) string { return fmt.Sprintf(`{"session_id":%q,"amount":0.01}`, sessions[0]) }},
	}
	var results []result
	for _, ep := range endpoints {
		if o.only != "" && !strings.Contains(ep.name, o.only) {
			continue
		}
		ep.run(c, base, key, o.concurrency, o.warmup, nil)
		r := ep.run(c, base, key, o.concurrency, o.duration, &result{})
		results = append(results, *r)
		if !o.jsonOut {
			fmt.Fprintf(os.Stderr, "%-48s %8.0f rps  (%d ok, %d failed)\n", r.Name, r.RPS, r.OK, r.Failed)
		}
	}
	var healthz float64
	for _, r := range results {
		if r.Name == "GET /healthz" {
			healthz = r.RPS
		}
	}
	for i := range results {
		if healthz > 0 {
			results[i].Ratio = results[i].RPS / healthz
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return results, enc.Encode(map[string]any{"replicas": len(bases), "concurrency": o.concurrency, "duration_s": o.duration.Seconds(), "cpus": runtime.NumCPU(), "results": results})
	}
	printTable(label, results, healthz > 0)
	fmt.Printf("\n%d clients, keep-alive, %s per endpoint, %d CPUs, %d replica(s); ratio = RPS / GET /healthz RPS in this run; only correct responses counted.\n",
		o.concurrency, o.duration, runtime.NumCPU(), len(bases))
	return results, nil
}

func printTable(label string, results []result, ratios bool) {
	if label != "" {
		fmt.Printf("\n%s\n", label)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "Endpoint\tRPS\tratio\tp50\tp95\tp99\tfailed\t\n")
	for _, r := range results {
		ratio := "–"
		if ratios {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", r.Name, r.RPS, ratio, ms(r.P50), ms(r.P95), ms(r.P99), r.Failed)
	}
	tw.Flush()
}

// printMedians prints, for more than one run, each endpoint's median RPS,
// ratio and latencies over the runs (each figure's own median), and the
// failures summed.
func printMedians(o options, runs [][]result, replicas int, label string) {
	if len(runs) < 2 || o.jsonOut {
		return
	}
	median := func(xs []float64) float64 {
		sort.Float64s(xs)
		return xs[len(xs)/2]
	}
	var out []result
	ratios := true
	for i, first := range runs[0] {
		m := result{Name: first.Name}
		var rps, ratio, p50, p95, p99 []float64
		for _, run := range runs {
			if i >= len(run) {
				continue
			}
			r := run[i]
			rps, ratio = append(rps, r.RPS), append(ratio, r.Ratio)
			p50, p95, p99 = append(p50, float64(r.P50)), append(p95, float64(r.P95)), append(p99, float64(r.P99))
			m.Failed += r.Failed
		}
		m.RPS, m.Ratio = median(rps), median(ratio)
		m.P50, m.P95, m.P99 = time.Duration(median(p50)), time.Duration(median(p95)), time.Duration(median(p99))
		ratios = ratios && m.Ratio > 0
		out = append(out, m)
	}
	fmt.Printf("\nMedian of %d runs%s\n", len(runs), map[bool]string{true: " (" + label + ")", false: ""}[label != ""])
	printTable("", out, ratios)
	fmt.Printf("\n%d clients, %s per endpoint per run, %d CPUs, %d replica(s); each column's median over the runs (ratio: the median of the runs' ratios).\n",
		o.concurrency, o.duration, runtime.NumCPU(), replicas)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

type endpoint struct {
	name, method string
	auth         bool
	want         int
	path         func(worker, i int) string
	body         func(worker, i int) string
}

type result struct {
	Name          string        `json:"endpoint"`
	OK            int64         `json:"ok"`
	Failed        int64         `json:"failed"`
	RPS           float64       `json:"rps"`
	P50, P95, P99 time.Duration `json:"-"`
	P50ms         float64       `json:"p50_ms"`
	P95ms         float64       `json:"p95_ms"`
	P99ms         float64       `json:"p99_ms"`
	FirstFailure  string        `json:"first_failure,omitempty"`
	// Ratio is RPS over GET /healthz's RPS in the same run.
	Ratio float64 `json:"ratio"`
}

// run drives the endpoint from n clients for d; with res nil it only warms
// up.
func (ep endpoint) run(c *client, base func(worker int) string, key string, n int, d time.Duration, res *result) *result {
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	lat := make([][]time.Duration, n)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := ""
			if ep.auth {
				k = key
			}
			for i := 0; time.Now().Before(deadline); i++ {
				body := ""
				if ep.body != nil {
					body = ep.body(w, i)
				}
				t0 := time.Now()
				st, err := c.call(ep.method, base(w)+ep.path(w, i), k, body, nil)
				el := time.Since(t0)
				if err != nil || st != ep.want {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d, %v", st, err))
					continue
				}
				ok.Add(1)
				lat[w] = append(lat[w], el)
			}
		}()
	}
	wg.Wait()
	if res == nil {
		return nil
	}
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	*res = result{Name: ep.name, OK: ok.Load(), Failed: failed.Load(), RPS: float64(ok.Load()) / elapsed.Seconds(),
		P50: pct(0.50), P95: pct(0.95), P99: pct(0.99)}
	res.P50ms, res.P95ms, res.P99ms = float64(res.P50.Microseconds())/1000, float64(res.P95.Microseconds())/1000, float64(res.P99.Microseconds())/1000
	if f, _ := firstFailure.Load().(string); f != "" {
		res.FirstFailure = f
	}
	return res
}

type client struct{ http *http.Client }

func newClient(n int) *client {
	t := &http.Transport{MaxIdleConns: n * 2, MaxIdleConnsPerHost: n * 2, IdleConnTimeout: time.Minute, DisableCompression: true}
	return &client{http: &http.Client{Transport: t, Timeout: 30 * time.Second}}
}

// call sends one request and reads the whole response (so the connection is
// reused); it decodes the body into out when out is non-nil.
func (c *client) call(method, url, key, body string, out any) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

type server struct {
	url     string
	cmd     *exec.Cmd
	logs    *bytes.Buffer
	stopped bool
}

// buildServer builds haldir into a temporary directory.
func buildServer() (bin, dir string, err error) {
	if dir, err = os.MkdirTemp("", "haldir-bench-"); err != nil {
		return "", "", err
	}
	bin = filepath.Join(dir, "haldir")
	build := exec.Command("go", "build", "-o", bin, "./cmd/haldir")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("build haldir (run bench from the repository root): %w", err)
	}
	return bin, dir, nil
}

// serverEnv is the environment of the servers: on Postgres every replica
// needs the same vault and signing keys, generated here unless set.
func serverEnv(databaseURL string) ([]string, error) {
	env := os.Environ()
	if databaseURL == "" {
		return env, nil
	}
	env = append(env, "DATABASE_URL="+databaseURL)
	if os.Getenv("HALDIR_ENCRYPTION_KEY") == "" {
		env = append(env, "HALDIR_ENCRYPTION_KEY="+vault.GenerateMasterKey())
	}
	if os.Getenv("HALDIR_SIGNING_KEY") == "" {
		k, _, err := transparency.GenerateSigningKey("haldir-bench")
		if err != nil {
			return nil, err
		}
		env = append(env, "HALDIR_SIGNING_KEY="+k)
	}
	return env, nil
}

// startServer serves dataDir (ignored on Postgres) on a free port.
func startServer(bin, dataDir string, env []string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{url: "http://" + addr, logs: &bytes.Buffer{}}
	s.cmd = exec.Command(bin, "serve", "--addr", addr, "--data-dir", dataDir, "--log-level", "warn")
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = io.Discard, s.logs
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			s.stop()
			return nil, errors.New("the server did not become ready: " + s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *server) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
	}
}
