package check

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
)

var repoRoot = filepath.Join("..", "..")

// loadCompose loads compose (the file's bytes) as `docker compose config`
// does: from a project directory holding it and a .env, interpolated from
// that .env alone (not this process's environment), validated against the
// compose specification's JSON schema, env_file resolved.
func loadCompose(t *testing.T, compose []byte) (*types.Project, string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), compose, 0o644); err != nil {
		t.Fatal(err)
	}
	writeDotEnv(t, dir)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "docker-compose.yml")},
		cli.WithWorkingDirectory(dir), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	return p, dir, err
}

// writeDotEnv writes dir/.env with `haldir init`, the way the compose file's
// header says to, when the binary was built (see haldirBinary); else with
// placeholders of the same names.
func writeDotEnv(t *testing.T, dir string) {
	t.Helper()
	if bin := haldirBinary(t, false); bin != "" {
		cmd := exec.Command(bin, "init")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("haldir init: %v\n%s", err, out)
		}
		return
	}
	t.Log("no haldir binary built (-short): .env has placeholder keys")
	env := "HALDIR_ENCRYPTION_KEY=placeholder\nHALDIR_SIGNING_KEY=placeholder\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readCompose(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestComposeFile(t *testing.T) {
	p, dir, err := loadCompose(t, readCompose(t))
	if err != nil {
		t.Fatalf("docker-compose.yml does not load and validate: %v", err)
	}
	if p.Name != "haldir" {
		t.Errorf("project name %q, want haldir", p.Name)
	}
	if diff := cmp.Diff([]string{"haldir-1", "haldir-2", "migrate", "nginx", "postgres"}, p.ServiceNames()); diff != "" {
		t.Fatalf("services (-want +got):\n%s", diff)
	}

	// Two replicas: the services running the Haldir image's default command (serve).
	var replicas []string
	for _, s := range p.Services {
		if s.Image == "haldir:local" && len(s.Command) == 0 {
			replicas = append(replicas, s.Name)
		}
	}
	sort.Strings(replicas)
	if diff := cmp.Diff([]string{"haldir-1", "haldir-2"}, replicas); diff != "" {
		t.Errorf("Haldir replicas (-want +got):\n%s", diff)
	}

	for _, name := range []string{"haldir-1", "haldir-2", "migrate"} {
		s := p.Services[name]
		if s.Build == nil || s.Build.Context != dir {
			t.Errorf("%s: build %+v, want the repository root (the Dockerfile's context)", name, s.Build)
		}
		if !nonRoot(s.User) {
			t.Errorf("%s: user %q, want a non-root uid", name, s.User)
		}
		if !s.ReadOnly {
			t.Errorf("%s: the root filesystem is writable", name)
		}
		if !contains(s.CapDrop, "ALL") {
			t.Errorf("%s: cap_drop %v, want ALL", name, s.CapDrop)
		}
		if len(s.EnvFiles) != 1 || s.EnvFiles[0].Path != filepath.Join(dir, ".env") || !bool(s.EnvFiles[0].Required) {
			t.Errorf("%s: env_file %+v, want the required .env", name, s.EnvFiles)
		}
		for _, k := range []string{"HALDIR_ENCRYPTION_KEY", "HALDIR_SIGNING_KEY"} {
			if v := s.Environment[k]; v == nil || *v == "" {
				t.Errorf("%s: %s does not reach the container from .env", name, k)
			}
		}
		if v := s.Environment["DATABASE_URL"]; v == nil || !strings.Contains(*v, "@postgres:5432/") {
			t.Errorf("%s: DATABASE_URL %v does not name the postgres service", name, v)
		}
		if c := s.DependsOn["postgres"]; c.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: starts before postgres is healthy (%+v)", name, c)
		}
	}

	m := p.Services["migrate"]
	if diff := cmp.Diff(types.ShellCommand{"migrate", "up"}, m.Command); diff != "" {
		t.Errorf("migrate command (-want +got):\n%s", diff)
	}
	if m.Restart != "no" {
		t.Errorf("migrate restart %q: a one-shot must not restart", m.Restart)
	}

	for _, name := range replicas {
		s := p.Services[name]
		if c := s.DependsOn["migrate"]; c.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: does not wait for the migrations to complete (%+v)", name, c)
		}
		want := types.HealthCheckTest{"CMD", "/haldir", "ready", "--base-url", "http://127.0.0.1:8000"}
		if s.HealthCheck == nil || !cmp.Equal(want, s.HealthCheck.Test) {
			t.Errorf("%s: healthcheck %+v, want %v", name, s.HealthCheck, want)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < 25*time.Second {
			t.Errorf("%s: stop_grace_period %v is shorter than the 20 s drain", name, s.StopGracePeriod)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s: publishes ports %v; only the load balancer should", name, s.Ports)
		}
	}

	pg := p.Services["postgres"]
	if pg.HealthCheck == nil || len(pg.HealthCheck.Test) == 0 {
		t.Error("postgres has no healthcheck, so nothing can wait for it")
	}

	lb := p.Services["nginx"]
	for _, r := range replicas {
		if c := lb.DependsOn[r]; c.Condition != types.ServiceConditionHealthy || !c.Restart {
			t.Errorf("nginx: depends_on %s %+v, want service_healthy and restart (nginx resolves the names once)", r, c)
		}
	}
	if lb.HealthCheck == nil || len(lb.HealthCheck.Test) == 0 {
		t.Error("nginx has no healthcheck")
	}
	if len(lb.Ports) != 1 || lb.Ports[0].Published != "8000" || lb.Ports[0].Target != 8000 {
		t.Errorf("nginx ports %+v, want 8000:8000", lb.Ports)
	}
	var conf string
	for _, v := range lb.Volumes {
		if v.Target == "/etc/nginx/conf.d/default.conf" {
			conf = v.Source
			if !v.ReadOnly {
				t.Error("nginx's config is mounted writable")
			}
		}
	}
	rel, err := filepath.Rel(dir, conf)
	if conf == "" || err != nil {
		t.Fatalf("nginx mounts no config at /etc/nginx/conf.d/default.conf (%q)", conf)
	}
	upstreams := nginxUpstreams(t, filepath.Join(repoRoot, rel))
	want := []string{}
	for _, r := range replicas {
		want = append(want, r+":8000")
	}
	if diff := cmp.Diff(want, upstreams); diff != "" {
		t.Errorf("nginx upstream servers are not the replicas (-want +got):\n%s", diff)
	}
}

// TestComposeValidationFails proves the compose specification is enforced:
// a misspelt attribute and a wrongly typed one are refused.
func TestComposeValidationFails(t *testing.T) {
	good := string(readCompose(t))
	for _, c := range []struct{ name, from, to, mention string }{
		{"an attribute compose does not have", "  read_only: true\n", "  read_only: true\n  replicas_count: 2\n", "replicas_count"},
		{"a healthcheck retries that is not a number", "    retries: 5\n", "    retries: [5]\n", "retries"},
		{"a depends_on condition compose does not have", "condition: service_completed_successfully", "condition: service_finished", "depends_on.migrate.condition"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.from) {
				t.Fatalf("the test is wrong: %q is not in docker-compose.yml", c.from)
			}
			_, _, err := loadCompose(t, []byte(strings.Replace(good, c.from, c.to, 1)))
			if err == nil || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("got %v, want an error naming %q", err, c.mention)
			}
			t.Logf("refused, as it should be: %v", err)
		})
	}
}

var upstreamServer = regexp.MustCompile(`^\s*server\s+(\S+)`)

// nginxUpstreams lists the servers of the config's upstream block.
func nginxUpstreams(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "upstream "):
			in = true
		case in && strings.TrimSpace(line) == "}":
			in = false
		case in:
			if m := upstreamServer.FindStringSubmatch(line); m != nil {
				out = append(out, m[1])
			}
		}
	}
	return out
}

func nonRoot(user string) bool {
	uid, _, _ := strings.Cut(user, ":")
	return uid != "" && uid != "0" && uid != "root"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
