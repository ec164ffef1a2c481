package api

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/gorilla/mux"

	"github.com/haldir-dev/haldir/domain"
)

var pathParam = regexp.MustCompile(`\{(\w+)\}`)

// openAPIDocument describes the routes this server serves, generated from
// the route table so the two cannot drift apart.
func (s *Server) openAPIDocument() map[string]any {
	paths := map[string]any{}
	for _, rt := range s.routes {
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": operationID(rt.method, rt.path),
			"responses": map[string]any{
				"default": map[string]any{"description": "Error", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}},
			},
		}
		ok := "200"
		if rt.method == http.MethodPost && strings.HasPrefix(rt.path, "/v1/") {
			ok = "201"
			if strings.HasSuffix(rt.path, "/check") || strings.HasSuffix(rt.path, "/authorize") {
				ok = "200"
			}
		}
		op["responses"].(map[string]any)[ok] = map[string]any{"description": "Success"}
		switch rt.auth {
		case authNone:
			op["security"] = []any{}
		case authOperator:
			op["security"] = []any{map[string]any{"operatorToken": []any{}}}
		default:
			op["security"] = []any{map[string]any{"bearerKey": []any{}}, map[string]any{"apiKeyHeader": []any{}}}
			if rt.need != (domain.Need{}) {
				op["x-required-scope"] = rt.need.String()
			}
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.method == http.MethodPost {
			op["parameters"] = append(params, map[string]any{"name": "Idempotency-Key", "in": "header", "required": false, "schema": map[string]any{"type": "string", "maxLength": 255}})
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		}
		item[strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":       "Haldir API",
			"version":     s.opts.Version,
			"description": "Governance for AI agents: scoped sessions, spend caps, secrets, approvals and a tamper-evident audit ledger.",
		},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearerKey":     map[string]any{"type": "http", "scheme": "bearer", "description": "An API key, hld_…"},
				"apiKeyHeader":  map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
				"operatorToken": map[string]any{"type": "http", "scheme": "bearer", "description": "HALDIR_ADMIN_TOKEN"},
			},
			"schemas": map[string]any{
				"Error": map[string]any{
					"type":     "object",
					"required": []string{"error", "code", "request_id"},
					"properties": map[string]any{
						"error":      map[string]any{"type": "string"},
						"code":       map[string]any{"type": "string"},
						"request_id": map[string]any{"type": "string"},
						"field":      map[string]any{"type": "string"},
					},
				},
			},
		},
	}
}

func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '.' || r == '-' }) {
		part = strings.Trim(part, "{}")
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func (s *Server) openapi(c *call) (int, any, error) {
	return http.StatusOK, s.openAPIDocument(), nil
}

// ServedRoutes walks the router (not the route table) and returns every
// "METHOD path" it serves, so a test can hold the OpenAPI document to it.
func (s *Server) ServedRoutes() []string {
	var out []string
	s.router.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := r.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := r.GetMethods()
		for _, m := range methods {
			out = append(out, m+" "+path)
		}
		return nil
	})
	return out
}
