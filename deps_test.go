package haldir_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependenciesPointInward fails when a package imports what its layer
// must not: domain only the standard library and events nothing of HTTP or
// SQL, counting everything they pull in; api, commands and projections
// are checked on their own imports (api reaches SQL only through
// projections' query methods, never by writing it).
func TestDependenciesPointInward(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string // import path prefixes
		stdOnly   bool
		direct    bool // check only the package's own imports
	}{
		{pkg: "./domain", stdOnly: true, forbidden: []string{"net/http", "database/sql", "os/exec", "net"}},
		{pkg: "./events", forbidden: []string{"net/http", "database/sql", "github.com/jackc", "modernc.org", "github.com/gorilla", "github.com/spf13"}},
		{pkg: "./commands", direct: true, forbidden: []string{"net/http", "database/sql", "github.com/jackc", "modernc.org", "github.com/gorilla", "github.com/spf13", "github.com/haldir-dev/haldir/sqldb"}},
		{pkg: "./projections", direct: true, forbidden: []string{"net/http", "github.com/gorilla", "github.com/spf13"}},
		{pkg: "./api", direct: true, forbidden: []string{"database/sql", "github.com/jackc", "modernc.org", "github.com/haldir-dev/haldir/sqldb", "github.com/spf13"}},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			args := []string{"list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", r.pkg}
			if r.direct {
				args = []string{"list", "-f", `{{range .Imports}}{{.}} x{{"\n"}}{{end}}`, r.pkg}
			}
			out, err := exec.Command("go", args...).Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) < 2 {
				t.Fatalf("go list printed %q: the check would pass vacuously", out)
			}
			for _, line := range lines {
				path, std, _ := strings.Cut(line, " ")
				if r.stdOnly && std != "true" && !strings.HasPrefix(path, "github.com/haldir-dev/haldir/domain") {
					t.Errorf("%s depends on %s, outside the standard library", r.pkg, path)
				}
				for _, f := range r.forbidden {
					if path == f || strings.HasPrefix(path, f+"/") || (strings.Contains(f, ".") && strings.HasPrefix(path, f)) {
						t.Errorf("%s depends on %s, which its layer must not", r.pkg, path)
					}
				}
			}
		})
	}
}
