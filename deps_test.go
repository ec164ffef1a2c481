package haldir_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/haldir-dev/haldir/"

// sqlDrivers are the import paths that mean "speaks SQL".
var sqlDrivers = []string{"database/sql", "github.com/jackc", "modernc.org", module + "storage"}

// TestDependenciesPointInward fails when a package depends, directly or
// through anything it imports (go list -deps), on what its layer must not:
//   - domain: only the standard library;
//   - events: no HTTP, no SQL;
//   - commands: no HTTP at all (client or server), no SQL, no storage;
//   - api: no SQL driver, no storage adapter and no projection code (it
//     reads through the Reads interface, filled with projections/views
//     rows), and not the webhook sender nor the outbound dialer: api's only
//     way out of the process is the MCP upstream pool it is handed (proxy);
//   - projections/views, ratelimit, treelog: no SQL (their SQL sides live
//     under storage/).
func TestDependenciesPointInward(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string // import path prefixes
		exact     []string // import paths, without what is below them
		stdOnly   bool
	}{
		{pkg: "./domain", stdOnly: true},
		{pkg: "./events", forbidden: append([]string{"net/http", "github.com/gorilla", "github.com/spf13"}, sqlDrivers...)},
		{pkg: "./commands", forbidden: append([]string{"net/http", "net/rpc", "github.com/gorilla", "github.com/spf13", module + "proxy", module + "webhooks", module + "internal/outbound", module + "projections"}, sqlDrivers...)},
		{pkg: "./api", forbidden: append([]string{"github.com/spf13", module + "webhooks", module + "internal/outbound", module + "app", module + "cli"}, sqlDrivers...),
			exact: []string{module + "projections"}},
		{pkg: "./projections/views", forbidden: append([]string{"net/http"}, sqlDrivers...)},
		{pkg: "./ratelimit", forbidden: sqlDrivers},
		{pkg: "./treelog", forbidden: append([]string{"net/http"}, sqlDrivers...)},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", r.pkg).Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) < 2 {
				t.Fatalf("go list printed %q: the check would pass vacuously", out)
			}
			self := module + strings.TrimPrefix(r.pkg, "./")
			for _, line := range lines {
				path, std, _ := strings.Cut(line, " ")
				if path == self {
					continue
				}
				if r.stdOnly && std != "true" {
					t.Errorf("%s depends on %s, outside the standard library", r.pkg, path)
				}
				for _, f := range r.forbidden {
					if forbids(f, path) {
						t.Errorf("%s depends on %s, which its layer must not", r.pkg, path)
					}
				}
				for _, f := range r.exact {
					if path == f {
						t.Errorf("%s depends on %s, which its layer must not", r.pkg, path)
					}
				}
			}
		})
	}
}

// forbids reports whether the forbidden prefix f covers import path p:
// f itself, a package below it, or, for a module path (with a dot), any
// path it starts.
func forbids(f, p string) bool {
	if p == f || strings.HasPrefix(p, f+"/") {
		return true
	}
	return strings.Contains(f, ".") && !strings.HasPrefix(f, module) && strings.HasPrefix(p, f)
}

// TestDependencyRulesCanFail: the rules above catch what they name; a
// forbidden prefix that matches nothing would make them vacuous.
func TestDependencyRulesCanFail(t *testing.T) {
	for _, c := range []struct {
		f, p string
		want bool
	}{
		{"database/sql", "database/sql/driver", true},
		{"github.com/jackc", "github.com/jackc/pgx/v5", true},
		{"modernc.org", "modernc.org/sqlite", true},
		{module + "storage", module + "storage/sqldb", true},
		{module + "storage", module + "storagex", false},
		{"net/http", "net/http/httptrace", true},
		{"net/http", "net/httpx", false},
	} {
		if got := forbids(c.f, c.p); got != c.want {
			t.Errorf("forbids(%q, %q) = %v, want %v", c.f, c.p, got, c.want)
		}
	}
	// The api rule must see storage through projections if api imported it.
	out, err := exec.Command("go", "list", "-deps", "./projections").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "database/sql\n") {
		t.Error("projections no longer reaches database/sql: the rules' premise changed; review them")
	}
}
