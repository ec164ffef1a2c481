package vault_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/vault"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"simple", "STRIPE_KEY", true},
		{"all classes", "a-Z.0_9", true},
		{"one character", "x", true},
		{"128 characters", strings.Repeat("a", 128), true},
		{"empty", "", false},
		{"129 characters", strings.Repeat("a", 129), false},
		{"space", "a b", false},
		{"slash", "a/b", false},
		{"colon", "a:b", false},
		{"brace", "a}", false},
		{"non-ASCII letter", "clé", false},
		{"NUL", "a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vault.ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// fakeSecrets is a lookup over a fixed map that counts its calls.
type fakeSecrets struct {
	values map[string]string
	calls  map[string]int
}

var errNoSuchSecret = errors.New("no such secret")

func newFakeSecrets() *fakeSecrets {
	return &fakeSecrets{
		values: map[string]string{
			"TOKEN":                  "tok-123",
			"A":                      "alpha",
			"B":                      "beta",
			"NESTED":                 "{{secret:TOKEN}}",
			"SPECIAL":                `p"w\<&>` + "\n",
			strings.Repeat("n", 128): "long",
		},
		calls: map[string]int{},
	}
}

func (f *fakeSecrets) lookup(name string) (string, error) {
	f.calls[name]++
	v, ok := f.values[name]
	if !ok {
		return "", fmt.Errorf("%w: %s", errNoSuchSecret, name)
	}
	return v, nil
}

func TestResolve(t *testing.T) {
	long := strings.Repeat("n", 128)
	tests := []struct {
		name      string
		in        any
		want      any
		wantNames []string
		wantErr   error
	}{
		{"no placeholder", map[string]any{"a": []any{"x", 1.5, true, nil}}, map[string]any{"a": []any{"x", 1.5, true, nil}}, nil, nil},
		{"whole string", "{{secret:TOKEN}}", "tok-123", []string{"TOKEN"}, nil},
		{"inside a string", "Bearer {{secret:TOKEN}}", "Bearer tok-123", []string{"TOKEN"}, nil},
		{"adjacent", "{{secret:A}}{{secret:B}}", "alphabeta", []string{"A", "B"}, nil},
		{"repeated", "{{secret:A}}:{{secret:A}}", "alpha:alpha", []string{"A"}, nil},
		{"extra braces around", "{{{secret:A}}}", "{alpha}", []string{"A"}, nil},
		{"longest name", "{{secret:" + long + "}}", "long", []string{long}, nil},
		{"special characters in value", "{{secret:SPECIAL}}", "p\"w\\<&>\n", []string{"SPECIAL"}, nil},
		{"value is not rescanned", "{{secret:NESTED}}", "{{secret:TOKEN}}", []string{"NESTED"}, nil},
		{
			"nested anywhere",
			map[string]any{"headers": map[string]any{"Authorization": "Bearer {{secret:TOKEN}}"}, "list": []any{[]any{"{{secret:B}}"}, json.Number("12345678901234567890")}},
			map[string]any{"headers": map[string]any{"Authorization": "Bearer tok-123"}, "list": []any{[]any{"beta"}, json.Number("12345678901234567890")}},
			[]string{"B", "TOKEN"}, nil,
		},
		{"object keys are not resolved", map[string]any{"{{secret:A}}": "v"}, map[string]any{"{{secret:A}}": "v"}, nil, nil},
		{"spaced braces left alone", "{{ secret:A }}", "{{ secret:A }}", nil, nil},
		{"upper case left alone", "{{SECRET:A}}", "{{SECRET:A}}", nil, nil},
		{"single braces left alone", "{secret:A}", "{secret:A}", nil, nil},
		{"other prefix left alone", "{{secrets:A}}", "{{secrets:A}}", nil, nil},
		{"typed nils stay null", []any{map[string]any(nil), []any(nil)}, []any{map[string]any(nil), []any(nil)}, nil, nil},
		{"Go integers pass through", []any{1, int64(2), uint8(3)}, []any{1, int64(2), uint8(3)}, nil, nil},
		{"empty name", "{{secret:}}", nil, nil, vault.ErrMalformedPlaceholder},
		{"space in name", "{{secret:A B}}", nil, nil, vault.ErrMalformedPlaceholder},
		{"slash in name", "{{secret:a/b}}", nil, nil, vault.ErrMalformedPlaceholder},
		{"unterminated", "x {{secret:A", nil, nil, vault.ErrMalformedPlaceholder},
		{"one closing brace", "{{secret:A}", nil, nil, vault.ErrMalformedPlaceholder},
		{"name too long", "{{secret:" + long + "n}}", nil, nil, vault.ErrMalformedPlaceholder},
		{"malformed after a good one", []any{"{{secret:A}}", "{{secret:!}}"}, nil, nil, vault.ErrMalformedPlaceholder},
		{"unknown secret", map[string]any{"k": "{{secret:MISSING}}"}, nil, nil, errNoSuchSecret},
		{"unsupported type", map[string]string{"k": "{{secret:A}}"}, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := newFakeSecrets()
			got, names, err := vault.Resolve(tt.in, secrets.lookup)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Resolve succeeded with %v", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "vault: ") || names != nil || got != nil {
					t.Errorf("Resolve = %v, %v, %q", got, names, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve value (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantNames, names); diff != "" {
				t.Errorf("Resolve names (-want +got):\n%s", diff)
			}
			for name, n := range secrets.calls {
				if n != 1 {
					t.Errorf("looked up %s %d times, want once", name, n)
				}
			}
		})
	}
}

func TestResolveDoesNotModifyInput(t *testing.T) {
	in := map[string]any{"a": "{{secret:A}}", "l": []any{"{{secret:B}}"}}
	if _, _, err := vault.Resolve(in, newFakeSecrets().lookup); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": "{{secret:A}}", "l": []any{"{{secret:B}}"}}
	if diff := cmp.Diff(want, in); diff != "" {
		t.Errorf("input changed (-want +got):\n%s", diff)
	}
}

func TestResolveJSON(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      string
		wantNames []string
		wantErr   bool
	}{
		{"no placeholder keeps bytes", `{ "z": 1,  "a": [1e3, "x"] }`, `{ "z": 1,  "a": [1e3, "x"] }`, nil, false},
		{"blank", "  \n", "  \n", nil, false},
		{"empty", "", "", nil, false},
		{"top-level string", `"Bearer {{secret:TOKEN}}"`, `"Bearer tok-123"`, []string{"TOKEN"}, false},
		{
			"object",
			`{"url": "https://x.test/?a=1&b=2", "n": 12345678901234567890, "auth": "{{secret:TOKEN}}", "f": 0.1}`,
			`{"auth":"tok-123","f":0.1,"n":12345678901234567890,"url":"https://x.test/?a=1&b=2"}`,
			[]string{"TOKEN"}, false,
		},
		{"value needing escapes", `{"p":"{{secret:SPECIAL}}"}`, `{"p":"p\"w\\<&>\n"}`, []string{"SPECIAL"}, false},
		{"escaped placeholder in the source", `"\u007b{secret:A}}"`, `"alpha"`, []string{"A"}, false},
		{"invalid JSON", `{"a":`, "", nil, true},
		{"trailing data", `{} {}`, "", nil, true},
		{"malformed placeholder", `["{{secret:}}"]`, "", nil, true},
		{"unknown secret", `["{{secret:MISSING}}"]`, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, names, err := vault.ResolveJSON([]byte(tt.in), newFakeSecrets().lookup)
			if tt.wantErr {
				if err == nil || !strings.HasPrefix(err.Error(), "vault: ") {
					t.Fatalf("ResolveJSON = %s, %v", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("ResolveJSON = %s, want %s", got, tt.want)
			}
			if len(names) != 0 || len(tt.wantNames) != 0 {
				if diff := cmp.Diff(tt.wantNames, names); diff != "" {
					t.Errorf("names (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func FuzzResolveJSON(f *testing.F) {
	for _, seed := range []string{
		`{"a":"Bearer {{secret:TOKEN}}","b":[1,"{{secret:A}}{{secret:B}}"]}`,
		`"{{secret:"`, `["{{secret:x}", 1e999]`, `{"{{secret:A}}":null}`, ``, `"\u007b{secret:NESTED}}"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, names, err := vault.ResolveJSON(raw, func(name string) (string, error) {
			if name == "MISSING" {
				return "", errNoSuchSecret
			}
			return "<" + name + ">", nil
		})
		if err != nil {
			return
		}
		if len(names) == 0 {
			if string(got) != string(raw) {
				t.Fatalf("no placeholder, yet output %q differs from input %q", got, raw)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON output %q", got)
		}
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("names %q not sorted and distinct", names)
		}
		for _, name := range names {
			if !vault.ValidName(name) {
				t.Fatalf("invalid name %q reported", name)
			}
		}
	})
}
