package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/internal/canonical"
)

// ToolDef is one tool as the proxy exposes it: the upstream's definition
// under its namespaced name. Only the fields below are passed on to agents,
// and DefinitionHash covers all of them except the names.
type ToolDef struct {
	// Name is the namespaced name "<upstream>.<tool>" (see Join).
	Name string `json:"name"`
	// Description is the upstream's description, verbatim.
	Description string `json:"description"`
	// InputSchema is the upstream's input schema in canonical JSON (see
	// canonical.JSON); {"type":"object"} when the upstream sent none.
	InputSchema json.RawMessage `json:"input_schema"`
	// Upstream is the name of the upstream serving the tool.
	Upstream string `json:"upstream"`
	// DefinitionHash pins Description and InputSchema (see DefinitionHash).
	DefinitionHash string `json:"definition_hash"`
}

// Tool returns the bare upstream tool name of d: the part of d.Name after
// "<upstream>.".
func (d ToolDef) Tool() string {
	_, tool, err := Split(d.Name)
	if err != nil {
		return ""
	}
	return tool
}

// defaultInputSchema is sent for a tool whose upstream gave no schema.
const defaultInputSchema = `{"type":"object"}`

// DefinitionHash returns the lowercase hex SHA-256 of the canonical
// definition of t:
//
//	SHA-256( CanonicalJSON( {"description": D, "inputSchema": S} ) )
//
// where D is t.Description ("" when absent) and S is t.InputSchema as JSON
// ({"type":"object"} when nil). For example, a tool with description
// "Echoes" and schema {"type": "object"} hashes the 56 bytes
// {"description":"Echoes","inputSchema":{"type":"object"}}. The tool's name,
// title, annotations and output schema are not covered; ToolDef does not
// expose them. It fails with ErrInvalid when the schema does not encode to
// canonical JSON.
func DefinitionHash(t *mcp.Tool) (string, error) {
	schema, err := canonicalSchema(t.InputSchema)
	if err != nil {
		return "", err
	}
	return definitionHash(t.Description, schema)
}

// definitionHash hashes a description and a canonical schema.
func definitionHash(description string, canonicalSchema json.RawMessage) (string, error) {
	doc, err := json.Marshal(struct {
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"inputSchema"`
	}{description, canonicalSchema})
	if err != nil {
		return "", fmt.Errorf("%w: tool definition: %v", ErrInvalid, err)
	}
	canon, err := canonicalJSON(doc)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// canonicalSchema returns the canonical JSON of a tool's input schema as a
// go-sdk client decoded it (usually a map[string]any).
func canonicalSchema(schema any) (json.RawMessage, error) {
	if schema == nil {
		return json.RawMessage(defaultInputSchema), nil
	}
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, fmt.Errorf("%w: input schema: %v", ErrInvalid, err)
	}
	if string(raw) == "null" {
		return json.RawMessage(defaultInputSchema), nil
	}
	return canonicalJSON(raw)
}

// newToolDef converts an upstream tool to a ToolDef under upstream.
func newToolDef(upstream string, t *mcp.Tool) (ToolDef, error) {
	schema, err := canonicalSchema(t.InputSchema)
	if err != nil {
		return ToolDef{}, err
	}
	hash, err := definitionHash(t.Description, schema)
	if err != nil {
		return ToolDef{}, err
	}
	return ToolDef{
		Name:           Join(upstream, t.Name),
		Description:    t.Description,
		InputSchema:    schema,
		Upstream:       upstream,
		DefinitionHash: hash,
	}, nil
}

// ResultHash returns the lowercase hex SHA-256 of CanonicalJSON of the
// result's MCP wire encoding (as json.Marshal of *mcp.CallToolResult
// writes it), for the audit record. A nil result hashes as JSON null. It
// fails with ErrInvalid when the result does not encode to canonical JSON.
func ResultHash(result *mcp.CallToolResult) (string, error) {
	raw := []byte("null")
	if result != nil {
		var err error
		if raw, err = json.Marshal(result); err != nil {
			return "", fmt.Errorf("%w: result: %v", ErrInvalid, err)
		}
	}
	canon, err := canonicalJSON(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// Diff compares pinned definition hashes (namespaced name → DefinitionHash)
// with a discovery and returns, each sorted: the names discovered but not
// pinned, the names pinned and discovered with a different hash, and the
// names pinned but not discovered. A name discovered twice counts once,
// with its first definition.
func Diff(pinned map[string]string, discovered []ToolDef) (added, changed, removed []string) {
	seen := make(map[string]bool, len(discovered))
	for _, d := range discovered {
		if seen[d.Name] {
			continue
		}
		seen[d.Name] = true
		h, ok := pinned[d.Name]
		switch {
		case !ok:
			added = append(added, d.Name)
		case h != d.DefinitionHash:
			changed = append(changed, d.Name)
		}
	}
	for name := range pinned {
		if !seen[name] {
			removed = append(removed, name)
		}
	}
	slices.Sort(added)
	slices.Sort(changed)
	slices.Sort(removed)
	return added, changed, removed
}

// Pins returns the pin map of defs (Name → DefinitionHash), the form Diff
// takes; for a name listed twice the first definition wins.
func Pins(defs []ToolDef) map[string]string {
	pins := make(map[string]string, len(defs))
	for _, d := range defs {
		if _, ok := pins[d.Name]; !ok {
			pins[d.Name] = d.DefinitionHash
		}
	}
	return pins
}

// canonicalJSON is canonical.JSON with this package's ErrInvalid.
func canonicalJSON(data []byte) ([]byte, error) {
	out, err := canonical.JSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return out, nil
}
