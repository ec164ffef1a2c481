package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium returns the browser to drive. Locally a missing browser skips
// the test; under CI=true it fails it, so CI cannot pass without running
// these tests.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install -y chromium); the dashboard's browser tests must run in CI")
	}
	t.Skip("chromium is not installed; the dashboard's browser tests skip locally")
	return ""
}

// browserProcess starts one headless Chromium for the test; each
// newBrowser is a separate profile (its own cookies) in it.
func browserProcess(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// browser is one person's browser: its own cookie jar, and a record of
// every console error, uncaught exception and error log entry (CSP
// violations among them), which fails the test at its end.
type browser struct {
	t     *testing.T
	ctx   context.Context
	name  string
	mu    sync.Mutex
	probs []string
	allow []*regexp.Regexp
}

func newBrowser(t *testing.T, process context.Context, name string) *browser {
	t.Helper()
	ctx, cancel := chromedp.NewContext(process, chromedp.WithNewBrowserContext())
	b := &browser{t: t, ctx: ctx, name: name}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		t.Fatalf("opening a browser profile: %v", err)
	}
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	logs := chromedp.Events(ctx, cdplog.EntryAdded)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.problem("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			b.problem("exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range logs {
			if err != nil {
				return
			}
			if ev.Entry != nil && ev.Entry.Level == cdplog.EntryLevelError {
				b.problem("log (" + string(ev.Entry.Source) + "): " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		}
	}()
	t.Cleanup(func() {
		// A round trip first: the browser sends events before it answers.
		_, _ = chromedp.Run(ctx, chromedp.Evaluate[int](`1`))
		cancel()
		wg.Wait()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.probs {
			t.Errorf("%s's browser: %s", b.name, p)
		}
	})
	return b
}

func (b *browser) problem(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, re := range b.allow {
		if re.MatchString(p) {
			return
		}
	}
	b.probs = append(b.probs, p)
}

// expectError tolerates one kind of error log, which the test provokes on
// purpose (a refused request logs "status of 403").
func (b *browser) expectError(pattern string) {
	b.mu.Lock()
	b.allow = append(b.allow, regexp.MustCompile(pattern))
	b.mu.Unlock()
}

// do runs actions, failing the test after 30 s.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s's browser: %v", b.name, err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s's browser: evaluating %s: %v", b.name, expr, err)
	}
	return v
}

// waitFor polls, up to 30 s, until the expression is truthy. It keeps
// polling across navigations (a form's submission replaces the page).
func (b *browser) waitFor(expr string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { try { return !!(`+expr+`); } catch (e) { return false; } })()`))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
	b.t.Fatalf("%s's browser: still not %s after 30 s (last error %v)\npage text:\n%s", b.name, expr, last, text)
}

// open navigates to url and waits for the page's main heading.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("main h1")))
}

// signIn signs in with key on the server at base.
func (b *browser) signIn(base, key string) {
	b.t.Helper()
	b.open(base + "/dashboard/login")
	b.do(chromedp.SetValue(chromedp.CSS("#key"), key), chromedp.Click(chromedp.CSS("#signin")))
	b.waitFor(`document.querySelector("#signout") !== null`)
}

// cookies returns the browser's cookies for url, HttpOnly ones included.
func (b *browser) cookies(url string) []*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	cs, err := chromedp.Run(ctx, chromedp.Action[[]*network.Cookie](func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		return r.Cookies, err
	}))
	if err != nil {
		b.t.Fatal(err)
	}
	return cs
}

// screenshot takes the page at desktop and phone width, checking that it
// fits the phone, as <name>-desktop.png and -phone.png: into
// docs/screenshots when HALDIR_SCREENSHOTS is set (to refresh the README's
// pictures), else into the test's temporary directory, so that running the
// suite leaves the checkout as it was.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := b.t.TempDir()
	if os.Getenv("HALDIR_SCREENSHOTS") != "" {
		dir = filepath.Join("..", "docs", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for _, size := range []struct {
		suffix string
		w, h   int64
		mobile bool
	}{{"desktop", 1280, 860, false}, {"phone", 390, 844, true}} {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
		if size.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
		}
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		// Reloaded at that width, as a phone would load it (the script
		// lays some things out on load).
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(size.w, size.h, opts...), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
			cancel()
			b.t.Fatal(err)
		}
		// The layout must fit: nothing wider than the viewport but the
		// tables, which scroll inside their own box.
		if size.mobile {
			if over := eval[int](b, `document.documentElement.scrollWidth`) - int(size.w); over > 0 {
				b.t.Errorf("%s at phone width is %d px wider than the screen", name, over)
			}
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s.png", name, size.suffix)), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.do(chromedp.EmulateViewport(1280, 860, chromedp.EmulateScale(1)), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("main h1")))
}
