package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// maxNameLen is the longest valid secret name.
const maxNameLen = 128

// placeholderOpen starts every placeholder; placeholderClose ends it.
const (
	placeholderOpen  = "{{secret:"
	placeholderClose = "}}"
)

// ValidName reports whether name is a valid secret name: 1 to 128 bytes,
// each an ASCII letter, digit, '_', '.' or '-'.
func ValidName(name string) bool {
	return len(name) >= 1 && len(name) <= maxNameLen && nameLen(name) == len(name)
}

// nameLen returns the length of the longest prefix of s made of name
// characters.
func nameLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return i
		}
	}
	return len(s)
}

// Resolve returns a copy of v, a value as decoded by encoding/json (nil,
// bool, float64, json.Number, string, []any, map[string]any; Go integer
// and float types are accepted too), in which every {{secret:NAME}}
// placeholder inside a string value is replaced by lookup(NAME), and the
// sorted names it looked up (nil if none). v itself is never modified.
//
// The rules:
//   - Placeholders may sit anywhere in a string ("Bearer {{secret:TOKEN}}")
//     and a string may hold several. Object keys are not resolved.
//   - Exactly the lowercase text "{{secret:" starts a placeholder; it must
//     be followed by a valid name (see ValidName) and "}}", otherwise
//     Resolve fails with ErrMalformedPlaceholder rather than send the
//     literal text upstream. Other text, "{{ secret:x }}" included, is
//     left alone.
//   - Replacement values are not scanned again.
//   - lookup, which must not be nil, is called once per distinct name; its
//     first error aborts Resolve and is wrapped in the returned error, so
//     lookup is the place to refuse secrets the caller may not use. Its
//     error text must not contain secret values.
//   - Any other type in v is an error: it might hide a placeholder.
func Resolve(v any, lookup func(name string) (string, error)) (any, []string, error) {
	r := resolver{lookup: lookup, values: map[string]string{}}
	out, err := r.value(v)
	if err != nil {
		return nil, nil, err
	}
	var names []string // nil when there is no placeholder
	for name := range r.values {
		names = append(names, name)
	}
	slices.Sort(names)
	return out, names, nil
}

// ResolveJSON is Resolve for encoded JSON, such as an MCP tool call's raw
// arguments: it decodes raw (keeping numbers exact), resolves it and
// encodes the result without HTML escaping. When raw holds no placeholder
// it returns raw itself, byte for byte; blank raw is returned unchanged.
// Invalid JSON, or more than one JSON value, is an error. Objects whose
// placeholders were resolved come back with their keys sorted.
func ResolveJSON(raw []byte, lookup func(name string) (string, error)) ([]byte, []string, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return raw, nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, fmt.Errorf("vault: resolving placeholders: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("vault: resolving placeholders: invalid JSON: data after the top-level value")
	}
	out, names, err := Resolve(v, lookup)
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		return raw, nil, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, nil, fmt.Errorf("vault: resolving placeholders: encoding JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), names, nil
}

// resolver carries one Resolve call's lookup and its results so far.
type resolver struct {
	lookup func(name string) (string, error)
	values map[string]string // name -> value, filled on first lookup
}

func (r *resolver) value(v any) (any, error) {
	switch v := v.(type) {
	case string:
		return r.string(v)
	case map[string]any:
		if v == nil {
			return v, nil // stays JSON null
		}
		out := make(map[string]any, len(v))
		for key, elem := range v {
			resolved, err := r.value(elem)
			if err != nil {
				return nil, err
			}
			out[key] = resolved
		}
		return out, nil
	case []any:
		if v == nil {
			return v, nil // stays JSON null
		}
		out := make([]any, len(v))
		for i, elem := range v {
			resolved, err := r.value(elem)
			if err != nil {
				return nil, err
			}
			out[i] = resolved
		}
		return out, nil
	case nil, bool, json.Number, float64, float32,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v, nil
	default:
		return nil, fmt.Errorf("vault: resolving placeholders: unsupported type %T; pass a value decoded by encoding/json", v)
	}
}

// string replaces the placeholders in s.
func (r *resolver) string(s string) (string, error) {
	i := strings.Index(s, placeholderOpen)
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	for i >= 0 {
		b.WriteString(s[:i])
		rest := s[i+len(placeholderOpen):]
		n := nameLen(rest)
		if n == 0 || n > maxNameLen || !strings.HasPrefix(rest[n:], placeholderClose) {
			return "", fmt.Errorf("%w: %q is not {{secret:NAME}} with NAME 1 to %d characters of A-Z a-z 0-9 _ . -",
				ErrMalformedPlaceholder, excerpt(s[i:]), maxNameLen)
		}
		value, err := r.get(rest[:n])
		if err != nil {
			return "", err
		}
		b.WriteString(value)
		s = rest[n+len(placeholderClose):]
		i = strings.Index(s, placeholderOpen)
	}
	b.WriteString(s)
	return b.String(), nil
}

// get returns the value of the named secret, looking it up once.
func (r *resolver) get(name string) (string, error) {
	if v, ok := r.values[name]; ok {
		return v, nil
	}
	v, err := r.lookup(name)
	if err != nil {
		return "", fmt.Errorf("vault: resolving secret %q: %w", name, err)
	}
	r.values[name] = v
	return v, nil
}

// excerpt shortens caller text quoted in an error.
func excerpt(s string) string {
	const max = 48
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}
