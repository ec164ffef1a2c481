package vault_test

import (
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/vault"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		secrets []string
		want    string
	}{
		{"no secrets", "hello", nil, "hello"},
		{"not present", "hello", []string{"tok"}, "hello"},
		{"empty text", "", []string{"tok"}, ""},
		{"one occurrence", "token=tok-123;", []string{"tok-123"}, "token=[REDACTED];"},
		{"several occurrences", "a tok b tok", []string{"tok"}, "a [REDACTED] b [REDACTED]"},
		{"whole text", "tok", []string{"tok"}, "[REDACTED]"},
		{"empty secret ignored", "hello", []string{"", "ell", ""}, "h[REDACTED]o"},
		{"only empty secrets", "hello", []string{""}, "hello"},
		{"overlapping occurrences of one secret", "xaaay", []string{"aa"}, "x[REDACTED]y"},
		{"one secret inside another", "key=abcdef", []string{"abc", "abcdef"}, "key=[REDACTED]"},
		{"overlapping secrets, either order", "xabcdefy", []string{"xab", "abcdef"}, "[REDACTED]y"},
		{"adjacent secrets", "<s1s2>", []string{"s1", "s2"}, "<[REDACTED]>"},
		{"JSON-escaped quote and backslash", `{"p":"a\"b\\c"}`, []string{`a"b\c`}, `{"p":"[REDACTED]"}`},
		{"Go-escaped HTML characters", `{"p":"x\u003cy\u0026z"}`, []string{"x<y&z"}, `{"p":"[REDACTED]"}`},
		{"escaped newline", `"line1\nline2"`, []string{"line1\nline2"}, `"[REDACTED]"`},
		{"raw form too", "x<y&z and \"a\\\"b\"", []string{"x<y&z", `a"b`}, `[REDACTED] and "[REDACTED]"`},
		{"multibyte", "naïve ☃ snow", []string{"☃"}, "naïve [REDACTED] snow"},
		{"the marker itself is harmless", "[REDACTED] x", []string{"x"}, "[REDACTED] [REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vault.Redact(tt.text, tt.secrets); got != tt.want {
				t.Errorf("Redact(%q, %q) = %q, want %q", tt.text, tt.secrets, got, tt.want)
			}
		})
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("token tok-123 tok-12", "tok-123", "12")
	f.Add(`{"p":"a\"b"}`, `a"b`, "")
	f.Add("aaaa", "aa", "a")
	f.Fuzz(func(t *testing.T, text, s1, s2 string) {
		got := vault.Redact(text, []string{s1, s2})
		for _, s := range []string{s1, s2} {
			// A secret can only survive by being part of the marker.
			if s != "" && strings.Contains(strings.ReplaceAll(got, vault.Redacted, "\x00"), s) && !strings.Contains(s, "\x00") {
				t.Fatalf("Redact(%q, %q, %q) = %q still holds %q", text, s1, s2, got, s)
			}
		}
	})
}
