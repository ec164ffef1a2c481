package check

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfile is the repository's Dockerfile as instructions: continuation
// lines joined, comments dropped.
type dockerfile []string

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out dockerfile
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

// stages splits the instructions at each FROM.
func (d dockerfile) stages() [][]string {
	var out [][]string
	for _, ins := range d {
		if strings.HasPrefix(ins, "FROM ") {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], ins)
		}
	}
	return out
}

// TestDockerfile checks the promises the Dockerfile's header makes, as text:
// two stages, a distroless static non-root base, uid 65532, the binary as
// entrypoint with the healthcheck compose also uses.
func TestDockerfile(t *testing.T) {
	st := readDockerfile(t).stages()
	if len(st) != 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(st))
	}
	final := strings.Join(st[1], "\n")
	for _, want := range []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/haldir"]`,
		`CMD ["/haldir", "ready", "--base-url", "http://127.0.0.1:8000"]`,
		"COPY --from=build /out/haldir /haldir",
	} {
		if !strings.Contains(final, want) {
			t.Errorf("the runtime stage lacks %q", want)
		}
	}
	if strings.Contains(final, "RUN ") {
		t.Error("the runtime stage runs a command: there is no shell in distroless")
	}
	build := strings.Join(st[0], "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X github.com/haldir-dev/haldir/cli.Version="} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage lacks %q", want)
		}
	}
}

// goBuild returns the Dockerfile's `go build` as arguments and its ENV
// settings, with the build arguments replaced: the host's platform, and
// version as VERSION.
func goBuild(t *testing.T, version, out string) (args, env []string) {
	t.Helper()
	vars := map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "VERSION": version}
	for _, ins := range readDockerfile(t).stages()[0] {
		if s, ok := strings.CutPrefix(ins, "ENV "); ok {
			env = append(env, strings.Fields(s)...)
		}
		s, ok := strings.CutPrefix(ins, "RUN ")
		if !ok || !strings.Contains(s, "go build") {
			continue
		}
		words, err := shellWords(os.Expand(s, func(k string) string { return vars[k] }))
		if err != nil {
			t.Fatalf("the Dockerfile's go build: %v", err)
		}
		for i, w := range words {
			if w == "go" && i+1 < len(words) && words[i+1] == "build" {
				for _, pre := range words[:i] {
					if strings.Contains(pre, "=") && !strings.HasPrefix(pre, "--") {
						env = append(env, pre) // GOOS=… GOARCH=…
					}
				}
				args = words[i+1:]
			}
		}
	}
	if args == nil {
		t.Fatal("no go build in the Dockerfile's build stage")
	}
	for i, a := range args {
		if a == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	return args, env
}

// shellWords splits a command line as sh does for plain words and double
// or single quotes, which is all the Dockerfile uses.
func shellWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

var built struct {
	once sync.Once
	path string
	err  error
}

const buildVersion = "deploy-check"

// haldirBinary builds cmd/haldir with the Dockerfile's own go build command
// and settings, from a copy of the build context .dockerignore leaves, once
// per run, and returns its path; "" under -short unless need is set.
func haldirBinary(t *testing.T, need bool) string {
	t.Helper()
	if testing.Short() && !need {
		return ""
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "haldir-deploy-check-")
		if err != nil {
			built.err = err
			return
		}
		ctxDir := filepath.Join(dir, "context")
		n, err := copyBuildContext(repoRoot, ctxDir)
		if err != nil {
			built.err = err
			return
		}
		t.Logf("build context: %d files left in by .dockerignore", n)
		out := filepath.Join(dir, "haldir")
		args, env := goBuild(t, buildVersion, out)
		cmd := exec.Command("go", args...)
		cmd.Dir = ctxDir
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
			return
		}
		t.Logf("built %s as the Dockerfile does (go %s; %s) in %v", out, strings.Join(args, " "), strings.Join(env, " "), time.Since(start).Round(time.Second))
		built.path = out
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// copyBuildContext copies into dst what `docker build` sends as the build
// context of src: every file .dockerignore does not exclude, matched by
// Docker's own pattern matcher. It returns the number of files.
func copyBuildContext(src, dst string) (int, error) {
	f, err := os.Open(filepath.Join(src, ".dockerignore"))
	if err != nil {
		return 0, err
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return 0, err
	}
	n := 0
	parents := map[string]patternmatcher.MatchInfo{}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		excluded, info, err := pm.MatchesUsingParentResults(rel, parents[filepath.ToSlash(filepath.Dir(rel))])
		if err != nil {
			return err
		}
		if d.IsDir() {
			if excluded && !pm.Exclusions() {
				return filepath.SkipDir
			}
			parents[rel] = info
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if excluded || !d.Type().IsRegular() {
			return nil
		}
		n++
		return copyFile(path, filepath.Join(dst, rel))
	})
	return n, err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestDockerfileBuild runs the Dockerfile's build here and checks what it
// makes: statically linked (no interpreter, no shared libraries, which the
// distroless static base could not provide), built without cgo and with
// -trimpath, with the version ldflag landing, and with the healthcheck
// command answering for a real server.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building the binary")
	}
	bin := haldirBinary(t, true)

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader: it would not start on distroless static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	f.Close()

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	// (-trimpath leaves -ldflags out of the build info; the version below shows them.)
	t.Logf("go version -m: %s, CGO_ENABLED=%s, -trimpath=%s", info.GoVersion, settings["CGO_ENABLED"], settings["-trimpath"])

	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "haldir "+buildVersion {
		t.Errorf("haldir version: %q, %v; want %q (the -X ldflag misses cli.Version)", out, err, "haldir "+buildVersion)
	}

	// The command of compose's migrate service and the chart's Job, here on
	// an embedded store: a second run finds nothing to apply.
	data := t.TempDir()
	for i, want := range []string{"applied ", "schema is up to date"} {
		cmd := exec.Command(bin, "migrate", "up", "--data-dir", data)
		cmd.Env = []string{"HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("haldir migrate up, run %d: %v\n%s\nwant %q", i+1, err, out, want)
		}
	}

	// The healthcheck compose and the Dockerfile use: exit 3 with nothing
	// listening, 0 once a server answers /readyz.
	addr := freeAddr(t)
	ready := func() int {
		cmd := exec.Command(bin, "ready", "--base-url", "http://"+addr)
		cmd.Env = []string{"HOME=" + t.TempDir()}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	if code := ready(); code != 3 {
		t.Errorf("haldir ready with no server: exit %d, want 3", code)
	}
	var logs bytes.Buffer
	srv := exec.Command(bin, "serve", "--addr", addr, "--data-dir", t.TempDir(), "--log-level", "warn")
	srv.Env = []string{"HOME=" + t.TempDir()}
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for ready() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("haldir ready never exited 0 against a running server:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
