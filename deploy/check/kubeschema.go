// Package check validates Haldir's deployment files where Docker and a
// cluster cannot run: the Helm chart is linted and rendered with Helm's own
// library and every rendered manifest is checked by kubeconform against JSON
// schemas made from Kubernetes' OpenAPI document; docker-compose.yml is
// loaded and validated by compose-go against the compose specification.
//
// It is a module of its own so that the server's module never depends on
// Helm or Kubernetes. deploy/check.sh runs it.
package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/yannh/kubeconform/pkg/validator"
)

// KubernetesModule is the Go module whose api/openapi-spec/swagger.json is
// the source of the schemas: the OpenAPI document the API server of that
// release serves, the same file kubeconform's published schemas are made
// from. Its minor matches the k8s.io libraries Helm is built with.
const KubernetesModule = "k8s.io/kubernetes@v1.36.3"

// KubernetesModuleSum is the module's go.sum hash: the document used is
// this one whatever GOSUMDB or GOFLAGS say.
const KubernetesModuleSum = "h1:qDQdoMiluAE2Eab6Fa52YV+WjiGz9mZFFoagEA6cI+o="

// KubernetesOpenAPI returns Kubernetes' OpenAPI v2 document. `go mod
// download` fetches the module through the Go module proxy once, into the
// module cache; its hash must be KubernetesModuleSum.
func KubernetesOpenAPI(ctx context.Context) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", KubernetesModule)
	// Outside any module, so the download leaves this module's go.sum alone.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("check: go mod download %s: %v: %s%s", KubernetesModule, err, stderr.Bytes(), out)
	}
	var m struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("check: go mod download %s: %v", KubernetesModule, err)
	}
	if m.Error != "" || m.Dir == "" {
		return nil, fmt.Errorf("check: go mod download %s: %s", KubernetesModule, m.Error)
	}
	if m.Sum != KubernetesModuleSum {
		return nil, fmt.Errorf("check: %s has hash %s, want %s", KubernetesModule, m.Sum, KubernetesModuleSum)
	}
	return os.ReadFile(filepath.Join(m.Dir, "api", "openapi-spec", "swagger.json"))
}

// SchemaLocation is the kubeconform schema location template for the files
// WriteSchemas writes into dir: deployment-apps-v1.json, service-v1.json.
func SchemaLocation(dir string) string {
	return filepath.Join(dir, "{{ .ResourceKind }}{{ .KindSuffix }}.json")
}

// WriteSchemas writes one strict JSON schema (draft 4) per kind that the
// OpenAPI document defines, named as SchemaLocation says, and returns how
// many it wrote. The rules are meant to be those of the strict schemas
// kubeconform publishes (made from the same kind of document), as far as
// this check needs them:
//   - every object that lists properties allows no others
//     (additionalProperties false), so a misspelt field fails;
//   - int-or-string becomes a string or an integer, and a resource.Quantity
//     a string or a number (the API server accepts "500m" and 2);
//   - kind and apiVersion must be the ones the file is for;
//   - required fields and all types stay as the document gives them.
//
// Each file carries the definitions it refers to, so no reference leaves it.
func WriteSchemas(openapi []byte, dir string) (int, error) {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(openapi, &doc); err != nil {
		return 0, fmt.Errorf("check: the OpenAPI document: %v", err)
	}
	if len(doc.Definitions) == 0 {
		return 0, errors.New("check: the OpenAPI document has no definitions")
	}
	converted := make(map[string]map[string]any, len(doc.Definitions))
	for name, def := range doc.Definitions {
		converted[name] = convertDefinition(name, def)
	}
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	written := map[string]string{}
	for _, name := range names {
		gvks, _ := doc.Definitions[name]["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			if kind == "" || version == "" {
				continue
			}
			apiVersion := version
			if group != "" {
				apiVersion = group + "/" + version
			}
			file := schemaFile(kind, apiVersion)
			if _, ok := written[file]; ok {
				// Kinds such as WatchEvent are declared by several
				// definitions; the first in name order wins.
				continue
			}
			schema, err := standalone(name, converted, kind, apiVersion)
			if err != nil {
				return 0, err
			}
			b, err := json.Marshal(schema)
			if err != nil {
				return 0, err
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				return 0, err
			}
			written[file] = name
		}
	}
	return len(written), nil
}

// schemaFile names a kind's file as kubeconform's template does: the kind,
// the first label of the group, the version, all lower case.
func schemaFile(kind, apiVersion string) string {
	suffix := ""
	if group, version, ok := strings.Cut(apiVersion, "/"); ok {
		suffix = "-" + strings.Split(group, ".")[0] + "-" + version
	} else {
		suffix = "-" + apiVersion
	}
	return strings.ToLower(kind + suffix + ".json")
}

// standalone returns the schema of one kind with every definition it
// reaches, directly or not, under "definitions".
func standalone(name string, defs map[string]map[string]any, kind, apiVersion string) (map[string]any, error) {
	root := deepCopy(defs[name]).(map[string]any)
	root["$schema"] = "http://json-schema.org/draft-04/schema#"
	if props, ok := root["properties"].(map[string]any); ok {
		props["kind"] = map[string]any{"type": "string", "enum": []any{kind}}
		props["apiVersion"] = map[string]any{"type": "string", "enum": []any{apiVersion}}
	}
	reached := map[string]any{}
	queue := refs(defs[name])
	for len(queue) > 0 {
		ref := queue[0]
		queue = queue[1:]
		if _, ok := reached[ref]; ok {
			continue
		}
		def, ok := defs[ref]
		if !ok {
			return nil, fmt.Errorf("check: %s refers to %s, which the document does not define", name, ref)
		}
		reached[ref] = def
		queue = append(queue, refs(def)...)
	}
	if len(reached) > 0 {
		root["definitions"] = reached
	}
	return root, nil
}

const refPrefix = "#/definitions/"

// refs lists the definitions a schema refers to.
func refs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		if r, ok := v["$ref"].(string); ok && strings.HasPrefix(r, refPrefix) {
			out = append(out, strings.TrimPrefix(r, refPrefix))
		}
		for _, x := range v {
			out = append(out, refs(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, refs(x)...)
		}
	}
	return out
}

// convertDefinition applies the rules of WriteSchemas to one definition.
func convertDefinition(name string, def map[string]any) map[string]any {
	if name == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	return convertSchema(def)
}

func convertSchema(s map[string]any) map[string]any {
	if s["format"] == "int-or-string" {
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	}
	out := make(map[string]any, len(s)+1)
	for k, v := range s {
		switch k {
		case "description", "x-kubernetes-group-version-kind":
			// Not validation; dropping them keeps the files small.
		case "properties":
			props := map[string]any{}
			for p, ps := range v.(map[string]any) {
				props[p] = convertSchema(ps.(map[string]any))
			}
			out[k] = props
		case "items":
			if m, ok := v.(map[string]any); ok {
				out[k] = convertSchema(m)
			} else {
				out[k] = v
			}
		case "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				out[k] = convertSchema(m)
			} else {
				out[k] = v
			}
		case "allOf", "anyOf", "oneOf":
			list := []any{}
			for _, x := range v.([]any) {
				list = append(list, convertSchema(x.(map[string]any)))
			}
			out[k] = list
		default:
			out[k] = v
		}
	}
	if _, ok := out["properties"]; ok {
		if _, ok := out["additionalProperties"]; !ok {
			out["additionalProperties"] = false
		}
	}
	return out
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = deepCopy(x)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = deepCopy(x)
		}
		return l
	}
	return v
}

// NewValidator returns a kubeconform validator over the schemas in dir:
// strict (unknown fields and duplicate keys fail), and a kind without a
// schema is an error, never a skip.
func NewValidator(dir string) (validator.Validator, error) {
	return validator.New([]string{SchemaLocation(dir)}, validator.Opts{
		Strict:               true,
		IgnoreMissingSchemas: false,
	})
}
