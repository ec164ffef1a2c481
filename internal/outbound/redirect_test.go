package outbound_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/internal/outbound"
)

// TestRedirectToForbiddenAddressRefused is the issue "SSRF through
// redirects": a URL the guard accepts answers with a redirect to a
// loopback service, a private or a metadata address. The clients of
// webhooks (Guard.Client) and of MCP upstreams (the gateway's transport on
// Guard.DialContext with Guard.CheckRedirect) must refuse at the redirect,
// with ErrRedirect, and nothing may reach the target. The accepted first
// host is a test server on 127.0.0.2 that the guard is told to trust; the
// loopback service behind it is on 127.0.0.1, and every other target is
// refused before a socket connects, so no traffic leaves 127.0.0.0/8.
func TestRedirectToForbiddenAddressRefused(t *testing.T) {
	var secretHits atomic.Int64
	secret := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { secretHits.Add(1) }))
	defer secret.Close()
	secretURL, _ := url.Parse(secret.URL)

	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no second loopback address for the accepted host (required when CI=true): %v", err)
		}
		t.Skipf("no second loopback address for the accepted host: %v", err)
	}
	var frontHits, landingHits atomic.Int64
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/landing" {
			landingHits.Add(1)
			return
		}
		frontHits.Add(1)
		code := http.StatusFound
		if r.Method == http.MethodPost {
			code = http.StatusTemporaryRedirect // the body would be sent again
		}
		http.Redirect(w, r, r.URL.Query().Get("to"), code)
	}))
	front.Listener.Close()
	front.Listener = ln
	front.Start()
	defer front.Close()
	frontAddr := netip.MustParseAddrPort(ln.Addr().String()).Addr()

	guard := outbound.Trusting(outbound.Guard{Resolver: testResolver}, frontAddr)
	clients := []struct {
		name string
		c    *http.Client
	}{
		{"webhooks client", guard.Client(2 * time.Second)},
		{"mcp upstream client", &http.Client{
			Transport:     &http.Transport{DialContext: guard.DialContext},
			CheckRedirect: guard.CheckRedirect,
		}},
	}
	targets := []struct{ name, url string }{
		{"loopback service", secret.URL + "/admin"},
		{"loopback by name", "http://loopback.example:" + secretURL.Port() + "/admin"},
		{"mapped loopback", "http://[::ffff:127.0.0.1]:" + secretURL.Port() + "/admin"},
		{"ipv6 loopback", "http://[::1]:" + secretURL.Port() + "/admin"},
		{"private", "http://10.0.0.1/"},
		{"metadata", "http://169.254.169.254/latest/meta-data/"},
		{"metadata by name", "http://metadata.example/latest/meta-data/"},
		{"relative to a forbidden host", "//127.0.0.1:" + secretURL.Port() + "/admin"},
	}
	for _, cl := range clients {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			for _, tg := range targets {
				t.Run(cl.name+"/"+method+"/"+tg.name, func(t *testing.T) {
					before := frontHits.Load()
					req, _ := http.NewRequest(method, front.URL+"/hook?to="+url.QueryEscape(tg.url), strings.NewReader(`{"a":1}`))
					resp, err := cl.c.Do(req)
					if err == nil {
						resp.Body.Close()
						t.Fatalf("got %d, want the redirect refused", resp.StatusCode)
					}
					if !errors.Is(err, outbound.ErrRedirect) {
						t.Fatalf("error %v, want ErrRedirect", err)
					}
					if !errors.Is(err, outbound.ErrForbiddenAddress) {
						t.Errorf("error %v, want ErrForbiddenAddress too", err)
					}
					if n := frontHits.Load() - before; n != 1 {
						t.Errorf("the accepted host got %d requests, want 1", n)
					}
				})
			}
		}
	}
	if n := secretHits.Load(); n != 0 {
		t.Errorf("the loopback service behind the redirects got %d requests", n)
	}

	// A redirect to a target the guard accepts is not followed either: the
	// 3xx is returned as is.
	for _, cl := range clients {
		t.Run(cl.name+"/accepted target not followed", func(t *testing.T) {
			resp, err := cl.c.Get(front.URL + "/hook?to=" + url.QueryEscape(front.URL+"/landing"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || landingHits.Load() != 0 {
				t.Errorf("status %d, target hit %d times; want 302 and 0", resp.StatusCode, landingHits.Load())
			}
		})
	}
	// With private networks allowed, the loopback target is acceptable:
	// the 3xx comes back, unfollowed.
	t.Run("allow private", func(t *testing.T) {
		resp, err := outbound.Guard{AllowPrivate: true}.Client(2 * time.Second).Get(front.URL + "/hook?to=" + url.QueryEscape(secret.URL))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || secretHits.Load() != 0 {
			t.Errorf("status %d, target hit %d times; want 302 and 0", resp.StatusCode, secretHits.Load())
		}
	})
}

func TestCheckRedirectError(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "http://metadata.example/latest/meta-data/", nil)
	err := outbound.Guard{Resolver: testResolver}.CheckRedirect(req, nil)
	if !errors.Is(err, outbound.ErrRedirect) || !errors.Is(err, outbound.ErrForbiddenAddress) {
		t.Fatalf("CheckRedirect = %v, want ErrRedirect and ErrForbiddenAddress", err)
	}
	if got, want := err.Error(), "outbound: redirect refused: address not allowed: link-local address"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	req = httptest.NewRequest(http.MethodGet, "http://public.example/", nil)
	if err := (outbound.Guard{Resolver: testResolver}).CheckRedirect(req, nil); err != http.ErrUseLastResponse {
		t.Errorf("CheckRedirect to a public host = %v, want http.ErrUseLastResponse", err)
	}
}
