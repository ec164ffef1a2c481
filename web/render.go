package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// page is what every template receives.
type page struct {
	Title  string
	Nav    string // the nav entry to mark current
	Viewer *viewer
	Flash  string
	Error  string
	Next   string
	// Live is the URL a live region refreshes from; empty for none.
	Live string
	Poll int // milliseconds
	Data any
}

// pageNames are the templates under templates/, each with layout.html.
var pageNames = []string{"login", "error", "overview", "sessions", "approvals", "approval", "audit", "proof", "spend", "proxy", "webhooks", "compliance"}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{"usd": usd, "when": when, "short": short, "jsonText": jsonText, "join": strings.Join}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

// render writes a page; a request with ?partial=1 gets only its live
// region, for the live refresh.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	t := h.pages[name]
	p.Poll = int(h.poll / time.Millisecond)
	var buf bytes.Buffer
	tmpl := "layout.html"
	if r.URL.Query().Get("partial") != "" && t.Lookup("live") != nil && status == http.StatusOK {
		tmpl = "live"
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		h.log.Error("dashboard: rendering", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// cents parses a decimal amount as the API writes it ("12.5", "1000")
// into cents, without floating point.
func cents(n json.Number) (int64, bool) {
	s := strings.TrimSpace(string(n))
	if s == "" {
		return 0, true
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 {
		frac = frac[:2] // the API never sends more than cents
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	c := w*100 + f
	if neg {
		c = -c
	}
	return c, true
}

// formatCents writes cents as US dollars: $1,234.50.
func formatCents(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	whole := strconv.FormatInt(c/100, 10)
	var b strings.Builder
	for i, d := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return fmt.Sprintf("%s$%s.%02d", sign, b.String(), c%100)
}

// usd formats an API amount (json.Number, or int64 cents) as currency.
func usd(v any) string {
	switch x := v.(type) {
	case json.Number:
		if c, ok := cents(x); ok {
			return formatCents(c)
		}
		return string(x)
	case int64:
		return formatCents(x)
	case nil:
		return "$0.00"
	}
	return fmt.Sprint(v)
}

// stamp is a time for a <time> element: the script shows it in the
// viewer's zone, and the title keeps UTC for hovering.
type stamp struct {
	ISO, UTC string
}

// when turns an RFC 3339 string from the API into a stamp.
func when(s string) *stamp {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return &stamp{UTC: s}
	}
	t = t.UTC()
	return &stamp{ISO: t.Format(time.RFC3339), UTC: t.Format("2006-01-02 15:04:05 UTC")}
}

// short abbreviates a long hash for display (the full value is in title).
func short(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:12] + "…"
}

// jsonText renders a JSON value indented, for <pre>.
func jsonText(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}
