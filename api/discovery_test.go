package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/app/apptest"
)

// sameRoutes fails unless listed, as a set, is exactly what the router
// serves.
func sameRoutes(t *testing.T, what string, listed, served []string) {
	t.Helper()
	listed, served = slices.Clone(listed), slices.Clone(served)
	sort.Strings(listed)
	sort.Strings(served)
	if !slices.Equal(listed, served) {
		t.Errorf("%s lists %d routes, the router serves %d:\n listed %v\n served %v", what, len(listed), len(served), listed, served)
	}
	if len(listed) < 20 {
		t.Errorf("%s lists only %d routes; the comparison would be meaningless", what, len(listed))
	}
}

// TestDiscoveryDocumentsListExactlyTheServedRoutes holds /llms.txt,
// /.well-known/ai-plugin.json and /docs to a walk of the router, as
// TestOpenAPIListsExactlyTheServedRoutes holds /openapi.json.
func TestDiscoveryDocumentsListExactlyTheServedRoutes(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	served := s.App.API.ServedRoutes()
	for _, want := range []string{"GET /llms.txt", "GET /.well-known/ai-plugin.json", "GET /docs", "GET /health", "GET /healthz"} {
		if !slices.Contains(served, want) {
			t.Errorf("the router does not serve %s", want)
		}
	}
	anon := s.Anonymous()

	t.Run("llms.txt", func(t *testing.T) {
		r := anon.Do("GET", "/llms.txt", nil).Expect(t, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		text := string(r.Raw)
		if !strings.HasPrefix(text, "# Haldir API\n\n> ") {
			t.Errorf("not an llms.txt (H1 then a blockquote summary):\n%.200s", text)
		}
		var listed []string
		for _, m := range regexp.MustCompile(`(?m)^- (GET|POST|DELETE|PUT|PATCH) (\S+): `).FindAllStringSubmatch(text, -1) {
			listed = append(listed, m[1]+" "+m[2])
		}
		sameRoutes(t, "/llms.txt", listed, served)
		if !strings.Contains(text, "- POST /v1/sessions: Create an agent session (key scope sessions:write)") {
			t.Errorf("/llms.txt does not name the scope of POST /v1/sessions:\n%s", text)
		}
	})

	t.Run("ai-plugin.json", func(t *testing.T) {
		r := anon.Do("GET", "/.well-known/ai-plugin.json", nil).Expect(t, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var m struct {
			SchemaVersion string `json:"schema_version"`
			NameForModel  string `json:"name_for_model"`
			API           struct{ Type, URL string }
			Auth          struct {
				Type              string `json:"type"`
				AuthorizationType string `json:"authorization_type"`
			}
			Endpoints []struct{ Method, Path string } `json:"x-endpoints"`
		}
		if err := json.Unmarshal(r.Raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.SchemaVersion != "v1" || m.NameForModel != "haldir" || m.API.Type != "openapi" || m.Auth.AuthorizationType != "bearer" {
			t.Errorf("manifest = %s", r.Raw)
		}
		var listed []string
		for _, e := range m.Endpoints {
			listed = append(listed, e.Method+" "+e.Path)
		}
		sameRoutes(t, "ai-plugin.json x-endpoints", listed, served)
		// The manifest's api.url is this server's OpenAPI document.
		u, err := url.Parse(m.API.URL)
		if err != nil || u.Path != "/openapi.json" || "http://"+u.Host != s.URL {
			t.Fatalf("api.url = %q, want %s/openapi.json", m.API.URL, s.URL)
		}
		anon.Do("GET", u.Path, nil).Expect(t, http.StatusOK)
	})

	t.Run("docs", func(t *testing.T) {
		r := anon.Do("GET", "/docs", nil).Expect(t, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		var listed []string
		for _, m := range regexp.MustCompile(`data-route="([^"]+)"`).FindAllStringSubmatch(string(r.Raw), -1) {
			listed = append(listed, m[1])
		}
		sameRoutes(t, "/docs", listed, served)
	})
}

// TestDocsNeedNoNetwork: /docs runs no script, loads nothing from another
// origin (its CSP forbids it, and the page references none), and its one
// asset is served by the binary itself.
func TestDocsNeedNoNetwork(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	anon := s.Anonymous()
	r := anon.Do("GET", "/docs", nil).Expect(t, http.StatusOK)
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") || strings.Contains(csp, "http") {
		t.Errorf("Content-Security-Policy %q allows more than the server's own stylesheet", csp)
	}
	page := string(r.Raw)
	for _, bad := range []string{"<script", " style=", "<style", " onload=", " onclick=", "<iframe"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("/docs contains %q, which its CSP forbids", bad)
		}
	}
	refs := regexp.MustCompile(`(?:href|src)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("only %d references found in /docs; the check would be vacuous", len(refs))
	}
	var stylesheets int
	for _, m := range refs {
		ref := m[1]
		if strings.HasPrefix(ref, "#") {
			continue
		}
		u, err := url.Parse(ref)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			t.Errorf("/docs references %q, not a path on this server", ref)
			continue
		}
		got := anon.Do("GET", u.Path, nil)
		if got.Status != http.StatusOK {
			t.Errorf("/docs references %s, which answers %d", ref, got.Status)
		}
		if strings.HasSuffix(u.Path, ".css") {
			stylesheets++
			if ct := got.Header.Get("Content-Type"); ct != "text/css; charset=utf-8" || len(got.Raw) < 100 {
				t.Errorf("stylesheet %s: Content-Type %q, %d bytes", ref, ct, len(got.Raw))
			}
		}
	}
	if stylesheets != 1 {
		t.Errorf("/docs links %d stylesheets, want its one embedded asset", stylesheets)
	}
}
