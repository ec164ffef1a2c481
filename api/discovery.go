package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/haldir-dev/haldir/domain"
)

// The discovery documents (/llms.txt, /.well-known/ai-plugin.json, /docs)
// are generated from the route table, as /openapi.json is, so none of them
// can list a route the server does not serve or miss one it does.

const apiDescription = "Governance for AI agents: scoped sessions, spend caps, secrets, approvals and a tamper-evident audit ledger."

// docsStylesheet is the one asset of /docs, compiled into the binary: the
// page loads nothing from anywhere else.
//
//go:embed docs/haldir.css
var docsStylesheet []byte

// docsCSP forbids scripts, frames and every origin but the server's own
// stylesheet.
const docsCSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// baseURL is the origin the caller reached the server at.
func baseURL(r *http.Request) *url.URL {
	base := &url.URL{Scheme: "http", Host: r.Host}
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		base.Scheme = "https"
	}
	return base
}

func urlFor(base *url.URL, path string) string {
	u := *base
	u.Path = path
	return u.String()
}

// routeAccess says in words who may call rt.
func routeAccess(rt *route) string {
	switch rt.auth {
	case authNone:
		return "public"
	case authOperator:
		return "operator token"
	}
	if rt.need == (domain.Need{}) {
		return "any API key"
	}
	return "key scope " + rt.need.String()
}

// llmsTxt serves /llms.txt (the llmstxt.org format): what Haldir is, how to
// authenticate, and one line per served route.
func (s *Server) llmsTxt(c *call) error {
	base := baseURL(c.r)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Haldir API\n\n> %s\n\n", apiDescription)
	b.WriteString("Authenticate with `Authorization: Bearer hld_…` or `X-API-Key: hld_…`; each route needs the key scope named below " +
		"(`<resource>:<read|write>`, `write` implies `read`). Errors are JSON `{\"error\", \"code\", \"request_id\"}`. " +
		"Every POST honours `Idempotency-Key`. Money is decimal USD; times are RFC 3339 UTC. " +
		"Agents call governed upstream MCP tools through `POST /mcp` or `POST /v1/proxy/call` with a session id.\n\n")
	b.WriteString("## Documents\n\n")
	fmt.Fprintf(&b, "- [OpenAPI 3.1](%s): the machine-readable contract, generated from the same route table as this file\n", urlFor(base, "/openapi.json"))
	fmt.Fprintf(&b, "- [API docs](%s): the same contract for people\n", urlFor(base, "/docs"))
	fmt.Fprintf(&b, "- [MCP server card](%s): the MCP endpoint and its tools\n\n", urlFor(base, "/.well-known/mcp/server-card.json"))
	b.WriteString("## Endpoints\n\n")
	for i := range s.routes {
		rt := &s.routes[i]
		fmt.Fprintf(&b, "- %s %s: %s (%s)\n", rt.method, rt.path, rt.summary, routeAccess(rt))
	}
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	_, err := c.w.Write(b.Bytes())
	return err
}

// aiPlugin serves /.well-known/ai-plugin.json, the plugin manifest that
// points at /openapi.json. x-endpoints repeats the route table so that a
// registry reading only the manifest sees what is served.
func (s *Server) aiPlugin(c *call) (int, any, error) {
	base := baseURL(c.r)
	endpoints := make([]map[string]string, 0, len(s.routes))
	for i := range s.routes {
		rt := &s.routes[i]
		endpoints = append(endpoints, map[string]string{"method": rt.method, "path": rt.path, "summary": rt.summary, "access": routeAccess(rt)})
	}
	return http.StatusOK, map[string]any{
		"schema_version":        "v1",
		"name_for_human":        "Haldir",
		"name_for_model":        "haldir",
		"description_for_human": apiDescription,
		"description_for_model": "Haldir governs what an AI agent may do. Create a scoped session for the agent (POST /v1/sessions), check a scope before acting, " +
			"authorize spend against the session's cap, read secrets through the vault, request human approval, and call upstream tools through the governed proxy; " +
			"every action is recorded in a tamper-evident audit ledger. Use the session id on every call. A 403 with code policy_denied, budget_exceeded or " +
			"approval_required is a decision: do not retry it unchanged.",
		"auth":           map[string]any{"type": "user_http", "authorization_type": "bearer"},
		"api":            map[string]any{"type": "openapi", "url": urlFor(base, "/openapi.json")},
		"legal_info_url": urlFor(base, "/docs"),
		"x-endpoints":    endpoints,
	}, nil
}

// docsPage is what the /docs template renders: the OpenAPI document, read
// back from its JSON form so the page shows exactly what /openapi.json says.
type docsPage struct {
	Title, Version, Description string
	Groups                      []docsGroup
}

type docsGroup struct {
	Name string
	Ops  []docsOp
}

type docsOp struct {
	Method, Path, Summary, ID, Access string
	Params                            []string
	Body                              bool
}

type openAPIOperation struct {
	Summary     string                `json:"summary"`
	OperationID string                `json:"operationId"`
	Scope       string                `json:"x-required-scope"`
	Security    []map[string][]string `json:"security"`
	Parameters  []struct {
		Name     string `json:"name"`
		In       string `json:"in"`
		Required bool   `json:"required"`
	} `json:"parameters"`
	RequestBody json.RawMessage `json:"requestBody"`
}

// docsFromOpenAPI builds the page from the OpenAPI document's JSON.
func docsFromOpenAPI(raw []byte) (*docsPage, error) {
	var doc struct {
		Info struct {
			Title, Version, Description string
		} `json:"info"`
		Paths map[string]map[string]openAPIOperation `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	p := &docsPage{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description}
	groups := map[string][]docsOp{}
	for path, item := range doc.Paths {
		for method, op := range item {
			d := docsOp{Method: strings.ToUpper(method), Path: path, Summary: op.Summary, ID: op.OperationID, Body: len(op.RequestBody) > 0}
			switch {
			case op.Security != nil && len(op.Security) == 0:
				d.Access = "public"
			case len(op.Security) > 0 && op.Security[0]["operatorToken"] != nil:
				d.Access = "operator token"
			case op.Scope != "":
				d.Access = "key scope " + op.Scope
			default:
				d.Access = "any API key"
			}
			for _, prm := range op.Parameters {
				s := prm.Name + " (" + prm.In
				if prm.Required {
					s += ", required"
				}
				d.Params = append(d.Params, s+")")
			}
			g := docsGroupOf(path)
			groups[g] = append(groups[g], d)
		}
	}
	for name, ops := range groups {
		sort.Slice(ops, func(i, j int) bool {
			if ops[i].Path != ops[j].Path {
				return ops[i].Path < ops[j].Path
			}
			return ops[i].Method < ops[j].Method
		})
		p.Groups = append(p.Groups, docsGroup{Name: name, Ops: ops})
	}
	sort.Slice(p.Groups, func(i, j int) bool { return p.Groups[i].Name < p.Groups[j].Name })
	return p, nil
}

// docsGroupOf names the section a path appears under: /v1/<resource>, or
// "service" for the unversioned routes.
func docsGroupOf(path string) string {
	if rest, ok := strings.CutPrefix(path, "/v1/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		return name
	}
	return "service"
}

var docsTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} {{.Version}}</title>
<link rel="stylesheet" href="/docs/haldir.css">
</head>
<body>
<header>
<h1>{{.Title}} <small>{{.Version}}</small></h1>
<p>{{.Description}}</p>
<p>Rendered from <a href="/openapi.json">/openapi.json</a>. For LLMs: <a href="/llms.txt">/llms.txt</a>.
Authenticate with <code>Authorization: Bearer hld_…</code> or <code>X-API-Key</code>; every POST honours <code>Idempotency-Key</code>.</p>
<nav><ul>{{range .Groups}}<li><a href="#group-{{.Name}}">{{.Name}}</a></li>{{end}}</ul></nav>
</header>
<main>
{{range .Groups}}<section id="group-{{.Name}}">
<h2>{{.Name}}</h2>
{{range .Ops}}<article class="op" id="{{.ID}}" data-route="{{.Method}} {{.Path}}">
<h3><span class="method method-{{.Method}}">{{.Method}}</span> <code>{{.Path}}</code></h3>
<p>{{.Summary}}</p>
<dl><dt>Access</dt><dd>{{.Access}}</dd>{{if .Params}}<dt>Parameters</dt><dd>{{range $i, $p := .Params}}{{if $i}}, {{end}}<code>{{$p}}</code>{{end}}</dd>{{end}}{{if .Body}}<dt>Body</dt><dd>a JSON object</dd>{{end}}</dl>
</article>
{{end}}</section>
{{end}}</main>
</body>
</html>
`))

// docs serves /docs: the OpenAPI document as a page, with no script and
// no asset from another origin.
func (s *Server) docs(c *call) error {
	raw, err := json.Marshal(s.openAPIDocument())
	if err != nil {
		return err
	}
	page, err := docsFromOpenAPI(raw)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := docsTemplate.Execute(&b, page); err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", docsCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	c.w.WriteHeader(http.StatusOK)
	_, err = c.w.Write(b.Bytes())
	return err
}

func (s *Server) docsCSS(c *call) error {
	h := c.w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=3600")
	c.w.WriteHeader(http.StatusOK)
	_, err := c.w.Write(docsStylesheet)
	return err
}
