package outbound_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/internal/outbound"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// staticResolver resolves names from a table, as DNS would.
type staticResolver map[string][]netip.Addr

func (r staticResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

// testResolver stands in for DNS in the guard tests.
var testResolver = staticResolver{
	"public.example":     addrs("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
	"loopback.example":   addrs("127.0.0.1"),
	"loopback.example.":  addrs("127.0.0.1"),
	"metadata.example":   addrs("169.254.169.254"),
	"mixed.example":      addrs("93.184.215.14", "10.1.2.3"),
	"mapped.example":     addrs("::ffff:192.168.0.1"),
	"private6.example":   addrs("fd00::1"),
	"cgnat.example":      addrs("100.100.100.100"),
	"nothing.example":    nil,
	"hook.tenant.test":   addrs("203.0.114.7"),
	"hooks.example.com.": addrs("198.51.99.1"),
}

func TestCheckURLRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		want      error
	}{
		// Shape.
		{"empty", "", outbound.ErrInvalidURL},
		{"relative", "/hook", outbound.ErrInvalidURL},
		{"ftp", "ftp://public.example/hook", outbound.ErrInvalidURL},
		{"file", "file:///etc/passwd", outbound.ErrInvalidURL},
		{"gopher", "gopher://public.example:70/", outbound.ErrInvalidURL},
		{"javascript", "javascript:alert(1)", outbound.ErrInvalidURL},
		{"opaque http", "http:public.example", outbound.ErrInvalidURL},
		{"no host", "http:///hook", outbound.ErrInvalidURL},
		{"userinfo", "https://user:pass@public.example/hook", outbound.ErrInvalidURL},
		{"user only", "https://user@public.example/hook", outbound.ErrInvalidURL},
		{"port 0", "https://public.example:0/hook", outbound.ErrInvalidURL},
		{"port too big", "https://public.example:65536/hook", outbound.ErrInvalidURL},
		{"port not a number", "https://public.example:http/hook", outbound.ErrInvalidURL},
		{"too long", "https://public.example/" + strings.Repeat("a", 2100), outbound.ErrInvalidURL},
		{"does not resolve", "https://nowhere.example/hook", outbound.ErrInvalidURL},
		{"resolves to nothing", "https://nothing.example/hook", outbound.ErrInvalidURL},
		// Non-canonical IPv4 literals some resolvers accept.
		{"decimal ipv4", "http://2130706433/", outbound.ErrInvalidURL},
		{"hex ipv4", "http://0x7f000001/", outbound.ErrInvalidURL},
		{"hex dotted ipv4", "http://0x7f.1/", outbound.ErrInvalidURL},
		{"short ipv4", "http://127.1/", outbound.ErrInvalidURL},
		{"octal ipv4", "http://0177.0.0.1/", outbound.ErrInvalidURL},
		{"octal whole ipv4", "http://017700000001/", outbound.ErrInvalidURL},
		// IPv4 literals.
		{"loopback", "http://127.0.0.1/", outbound.ErrForbiddenAddress},
		{"loopback other", "http://127.8.9.10:8080/", outbound.ErrForbiddenAddress},
		{"rfc1918 10", "http://10.0.0.1/", outbound.ErrForbiddenAddress},
		{"rfc1918 172.16", "http://172.16.0.1/", outbound.ErrForbiddenAddress},
		{"rfc1918 172.31", "http://172.31.255.255/", outbound.ErrForbiddenAddress},
		{"rfc1918 192.168", "http://192.168.1.1/", outbound.ErrForbiddenAddress},
		{"metadata", "http://169.254.169.254/latest/meta-data/", outbound.ErrForbiddenAddress},
		{"link-local", "http://169.254.1.1/", outbound.ErrForbiddenAddress},
		{"cgnat low", "http://100.64.0.1/", outbound.ErrForbiddenAddress},
		{"cgnat high", "http://100.127.255.254/", outbound.ErrForbiddenAddress},
		{"unspecified", "http://0.0.0.0/", outbound.ErrForbiddenAddress},
		{"this network", "http://0.1.2.3/", outbound.ErrForbiddenAddress},
		{"multicast", "http://224.0.0.1/", outbound.ErrForbiddenAddress},
		{"broadcast", "http://255.255.255.255/", outbound.ErrForbiddenAddress},
		{"reserved", "http://240.0.0.1/", outbound.ErrForbiddenAddress},
		{"oracle metadata", "http://192.0.0.192/", outbound.ErrForbiddenAddress},
		{"benchmarking", "http://198.18.0.1/", outbound.ErrForbiddenAddress},
		// IPv6 literals.
		{"ipv6 loopback", "http://[::1]/", outbound.ErrForbiddenAddress},
		{"ipv6 unspecified", "http://[::]/", outbound.ErrForbiddenAddress},
		{"ipv6 link-local", "http://[fe80::1]/", outbound.ErrForbiddenAddress},
		{"ipv6 link-local with zone", "http://[fe80::1%25eth0]/", outbound.ErrForbiddenAddress},
		{"ipv6 unique-local fc", "http://[fc00::1]/", outbound.ErrForbiddenAddress},
		{"ipv6 unique-local fd", "http://[fd12:3456:789a::1]/", outbound.ErrForbiddenAddress},
		{"ipv6 site-local", "http://[fec0::1]/", outbound.ErrForbiddenAddress},
		{"ipv6 multicast", "http://[ff02::1]/", outbound.ErrForbiddenAddress},
		{"ipv6 documentation", "http://[2001:db8::1]/", outbound.ErrForbiddenAddress},
		{"mapped loopback", "http://[::ffff:127.0.0.1]/", outbound.ErrForbiddenAddress},
		{"mapped loopback hex", "http://[::ffff:7f00:1]/", outbound.ErrForbiddenAddress},
		{"mapped metadata", "http://[::ffff:169.254.169.254]/", outbound.ErrForbiddenAddress},
		{"mapped rfc1918", "http://[::ffff:10.0.0.1]/", outbound.ErrForbiddenAddress},
		{"mapped cgnat", "http://[::ffff:100.64.0.1]/", outbound.ErrForbiddenAddress},
		{"mapped unspecified", "http://[::ffff:0.0.0.0]/", outbound.ErrForbiddenAddress},
		{"ipv4-compatible loopback", "http://[::127.0.0.1]/", outbound.ErrForbiddenAddress},
		{"nat64 loopback", "http://[64:ff9b::127.0.0.1]/", outbound.ErrForbiddenAddress},
		{"nat64 metadata", "http://[64:ff9b::a9fe:a9fe]/", outbound.ErrForbiddenAddress},
		{"6to4 loopback", "http://[2002:7f00:1::1]/", outbound.ErrForbiddenAddress},
		{"6to4 rfc1918", "http://[2002:c0a8:101::1]/", outbound.ErrForbiddenAddress},
		{"teredo", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", outbound.ErrForbiddenAddress},
		// Names that resolve to forbidden addresses.
		{"localhost", "http://localhost:8080/hook", outbound.ErrForbiddenAddress},
		{"name with trailing dot to loopback", "http://loopback.example.:8080/hook", outbound.ErrForbiddenAddress},
		{"name to loopback", "https://loopback.example/hook", outbound.ErrForbiddenAddress},
		{"name to metadata", "https://metadata.example/hook", outbound.ErrForbiddenAddress},
		{"name to public and private", "https://mixed.example/hook", outbound.ErrForbiddenAddress},
		{"name to mapped private", "https://mapped.example/hook", outbound.ErrForbiddenAddress},
		{"name to unique-local", "https://private6.example/hook", outbound.ErrForbiddenAddress},
		{"name to cgnat", "https://cgnat.example/hook", outbound.ErrForbiddenAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := outbound.Guard{Resolver: testResolver}
			if strings.Contains(tc.url, "localhost") {
				g.Resolver = nil // the system resolver, through /etc/hosts
			}
			err := g.CheckURL(context.Background(), tc.url)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckURL(%q) = %v, want %v", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), "10.1.2.3") || strings.Contains(err.Error(), "169.254.169.254") && !strings.Contains(tc.url, "169.254.169.254") {
				t.Errorf("error %q reveals what the name resolved to", err)
			}
		})
	}
}

func TestCheckURLAllows(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"public ipv4", "https://93.184.215.14/hook"},
		{"public ipv6", "https://[2606:4700:4700::1111]:8443/hook"},
		{"mapped public", "http://[::ffff:8.8.8.8]/"},
		{"nat64 public", "http://[64:ff9b::808:808]/"},
		{"next to cgnat", "http://100.128.0.1/"},
		{"next to 172.16/12", "http://172.32.0.1/"},
		{"name to public", "https://public.example/hooks?token=x"},
		{"name with trailing dot", "https://hooks.example.com./in"},
		{"http with port", "http://hook.tenant.test:8080/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := outbound.Guard{Resolver: testResolver}
			if err := g.CheckURL(context.Background(), tc.url); err != nil {
				t.Errorf("CheckURL(%q) = %v, want nil", tc.url, err)
			}
		})
	}
}

func TestCheckURLAllowPrivate(t *testing.T) {
	g := outbound.Guard{AllowPrivate: true, Resolver: testResolver}
	for _, tc := range []struct {
		name, url string
		want      error
	}{
		{"loopback", "http://127.0.0.1:8080/hook", nil},
		{"metadata", "http://169.254.169.254/", nil},
		{"ipv6 loopback", "http://[::1]/", nil},
		{"name to loopback", "http://loopback.example/", nil},
		{"still no ftp", "ftp://127.0.0.1/", outbound.ErrInvalidURL},
		{"still no userinfo", "http://a:b@127.0.0.1/", outbound.ErrInvalidURL},
		{"still must resolve", "http://nowhere.example/", outbound.ErrInvalidURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := g.CheckURL(context.Background(), tc.url); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("CheckURL(%q) = %v, want %v", tc.url, err, tc.want)
			}
		})
	}
}

// TestClientRefusesAtDial bypasses CheckURL: the connection itself must be
// refused, for a literal address and for a name that rebinds to loopback
// after CheckURL passed it.
func TestClientRefusesAtDial(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port := u.Port()

	rebind := &rebindingResolver{first: addrs("93.184.215.14"), then: addrs("127.0.0.1")}
	for _, tc := range []struct {
		name  string
		guard outbound.Guard
		url   string
	}{
		{"loopback literal", outbound.Guard{}, srv.URL},
		{"localhost", outbound.Guard{}, "http://localhost:" + port + "/"},
		{"mapped loopback literal", outbound.Guard{}, "http://[::ffff:127.0.0.1]:" + port + "/"},
		{"dns rebinding", outbound.Guard{Resolver: rebind}, "http://rebind.example:" + port + "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "dns rebinding" {
				if err := tc.guard.CheckURL(context.Background(), tc.url); err != nil {
					t.Fatalf("CheckURL saw the public address first, got %v", err)
				}
			}
			resp, err := tc.guard.Client(2*time.Second).Post(tc.url, "application/json", strings.NewReader("{}"))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("POST %s succeeded with status %d", tc.url, resp.StatusCode)
			}
			if !errors.Is(err, outbound.ErrForbiddenAddress) {
				t.Errorf("POST error = %v, want ErrForbiddenAddress", err)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server got %d requests", n)
	}
	// The same server is reachable when private networks are allowed.
	resp, err := outbound.Guard{AllowPrivate: true}.Client(2 * time.Second).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// rebindingResolver answers first for the first lookup and then for every
// later one, as a DNS rebinding attacker's server does.
type rebindingResolver struct {
	mu          sync.Mutex
	n           int
	first, then []netip.Addr
}

func (r *rebindingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.n == 1 {
		return r.first, nil
	}
	return r.then, nil
}

func TestClient(t *testing.T) {
	var otherHits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/other", http.StatusFound)
	})
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	g := outbound.Guard{AllowPrivate: true}

	t.Run("no redirects", func(t *testing.T) {
		resp, err := g.Client(2 * time.Second).Get(srv.URL + "/redirect")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || otherHits.Load() != 0 {
			t.Errorf("status %d, redirect target hit %d times; want 302 and 0", resp.StatusCode, otherHits.Load())
		}
	})
	t.Run("no proxy from the environment", func(t *testing.T) {
		t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
		t.Setenv("HTTP_PROXY", "http://proxy.invalid:3128")
		tr, ok := g.Client(time.Second).Transport.(*http.Transport)
		if !ok || tr.Proxy != nil {
			t.Errorf("transport %T has a proxy function", g.Client(time.Second).Transport)
		}
	})
	t.Run("timeout bounds the call", func(t *testing.T) {
		start := time.Now()
		resp, err := g.Client(200 * time.Millisecond).Get(srv.URL + "/hang")
		if err == nil {
			resp.Body.Close()
			t.Fatal("a hanging server answered")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("call took %v with a 200ms timeout", d)
		}
	})
	t.Run("timeout is capped", func(t *testing.T) {
		if got := g.Client(time.Hour).Timeout; got != outbound.MaxTimeout {
			t.Errorf("Client(1h).Timeout = %v, want %v", got, outbound.MaxTimeout)
		}
		if got := g.Client(0).Timeout; got != outbound.DefaultTimeout {
			t.Errorf("Client(0).Timeout = %v, want %v", got, outbound.DefaultTimeout)
		}
	})
}
