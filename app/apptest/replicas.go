package apptest

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/vault"
)

// Cluster is several real `haldir serve` processes on one Postgres
// database, as replicas behind a load balancer run. Each has its own
// process, pools, caches, projector and background workers; they share
// only the database.
type Cluster struct {
	t        testing.TB
	bin      string
	env      []string
	dir      string
	mu       sync.Mutex
	Replicas []*Replica
	// DatabaseURL is the Postgres database the replicas share; empty for
	// an embedded store (StartEmbedded).
	DatabaseURL string
	// DataDir is the embedded store's data directory (StartEmbedded).
	DataDir string
}

// Replica is one running process of a Cluster.
type Replica struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	// Log is the file the process writes its logs to.
	Log string
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// binary builds cmd/haldir once per test binary.
func binary(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "haldir-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "haldir")
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", built, "./cmd/haldir")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/haldir: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// StartCluster starts n replicas on a fresh Postgres database, the first
// alone (it applies the migrations), the others after it is ready. They
// are killed when the test ends. extraEnv are NAME=value settings for
// every replica.
func StartCluster(t testing.TB, n int, extraEnv ...string) *Cluster {
	t.Helper()
	signing, _, err := transparency.GenerateSigningKey("haldir-test")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: binary(t), dir: t.TempDir()}
	c.DatabaseURL = sqltest.NewPostgresDatabase(t)
	c.env = append(os.Environ(),
		"DATABASE_URL="+c.DatabaseURL,
		"HALDIR_ENCRYPTION_KEY="+vault.GenerateMasterKey(),
		"HALDIR_SIGNING_KEY="+signing,
		"HALDIR_ADMIN_TOKEN="+AdminToken,
		"HALDIR_ALLOW_PRIVATE_NETWORKS=true",
		"HALDIR_PG_MAX_CONNS=8",
		"HALDIR_LOG_LEVEL=warn",
		"HALDIR_ANOMALY_DEFAULTS=false",
	)
	c.env = append(c.env, extraEnv...)
	t.Cleanup(c.stop)
	for i := 0; i < n; i++ {
		c.Replicas = append(c.Replicas, c.start(i))
	}
	return c
}

// StartEmbedded starts one `haldir serve` process on a fresh embedded
// SQLite store, as a Cluster of one (for kill -9 tests of the default
// install).
func StartEmbedded(t testing.TB, extraEnv ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: binary(t), dir: t.TempDir()}
	c.DataDir = filepath.Join(c.dir, "data")
	c.env = append(os.Environ(),
		"HALDIR_ADMIN_TOKEN="+AdminToken,
		"HALDIR_ALLOW_PRIVATE_NETWORKS=true",
		"HALDIR_LOG_LEVEL=warn",
		"HALDIR_ANOMALY_DEFAULTS=false",
	)
	c.env = append(c.env, extraEnv...)
	t.Cleanup(c.stop)
	c.Replicas = append(c.Replicas, c.start(0))
	return c
}

// Command returns the haldir binary run with args on the cluster's store
// (its environment, and --data-dir for an embedded store).
func (c *Cluster) Command(args ...string) *exec.Cmd {
	if c.DataDir != "" {
		args = append(args, "--data-dir", c.DataDir)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	return cmd
}

var listening = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// start runs replica i and waits until it is ready.
func (c *Cluster) start(i int) *Replica {
	c.t.Helper()
	r := &Replica{done: make(chan struct{}), Log: filepath.Join(c.dir, fmt.Sprintf("replica-%d.log", i))}
	logf, err := os.Create(r.Log)
	if err != nil {
		c.t.Fatal(err)
	}
	r.cmd = c.Command("serve", "--addr", "127.0.0.1:0", "--log-format", "text")
	r.cmd.Stderr = logf
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		logf.Close()
		close(r.done)
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		r.URL = "http://" + a
	case <-r.done:
		c.t.Fatalf("replica %d exited before listening; its log:\n%s", i, readFile(r.Log))
	case <-time.After(60 * time.Second):
		c.t.Fatalf("replica %d did not listen within 60 s; its log:\n%s", i, readFile(r.Log))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d not ready within 30 s; its log:\n%s", i, readFile(r.Log))
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	return r
}

// Kill sends SIGKILL to replica i (kill -9) and waits for it to exit.
func (c *Cluster) Kill(i int) {
	r := c.Replicas[i]
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// Restart starts replica i again on the same database.
func (c *Cluster) Restart(i int) {
	c.Replicas[i] = c.start(i)
}

func (c *Cluster) stop() {
	for _, r := range c.Replicas {
		if r.cmd.Process != nil {
			r.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for i, r := range c.Replicas {
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			r.cmd.Process.Signal(syscall.SIGKILL)
			<-r.done
		}
		if c.t.Failed() {
			c.t.Logf("replica %d log:\n%s", i, tail(readFile(r.Log), 4000))
		}
	}
}

// Client returns a client of replica i using key.
func (c *Cluster) Client(i int, key, tenant string) *Client {
	cl := &Client{t: c.t, Base: c.Replicas[i].URL, http: &http.Client{Transport: transport, Timeout: 60 * time.Second}}
	cl.Key, cl.Tenant = key, tenant
	return cl
}

// Clients returns one client per replica, all using key.
func (c *Cluster) Clients(key, tenant string) []*Client {
	out := make([]*Client, len(c.Replicas))
	for i := range c.Replicas {
		out[i] = c.Client(i, key, tenant)
	}
	return out
}

// NewTenant creates a tenant through replica 0 and returns one client per
// replica holding its "*" key.
func (c *Cluster) NewTenant(name string) []*Client {
	c.t.Helper()
	r := c.Client(0, "", "").Do("POST", "/v1/tenants", map[string]any{"name": name}, "Authorization", "Bearer "+AdminToken)
	if r.Status != http.StatusCreated {
		c.t.Fatalf("apptest: create tenant: %s", r)
	}
	return c.Clients(r.Str("key"), r.Str("tenant_id"))
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
