package vault

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// Redacted replaces secret values in Redact's output.
const Redacted = "[REDACTED]"

// Redact returns text with every occurrence of each non-empty secret
// replaced by "[REDACTED]", for upstream responses and log lines. Each
// secret is also matched in its JSON-escaped forms (quotes, backslashes,
// control characters and, as Go escapes them, <, > and &), since it may
// come back inside a JSON string. Overlapping or adjacent occurrences,
// of one secret or several, become a single "[REDACTED]", so no part of
// any occurrence survives. Empty secrets are ignored; a very short
// secret redacts every occurrence of its text, by design. Only these
// exact byte sequences are found: a secret that comes back otherwise
// encoded (base64, URL escaping, split across strings) is not.
func Redact(text string, secrets []string) string {
	var covered []bool // covered[i]: text[i] is part of an occurrence
	for _, secret := range secrets {
		for _, form := range secretForms(secret) {
			marked := 0 // text[:marked] is covered by earlier occurrences of form
			for i := strings.Index(text, form); i >= 0; {
				if covered == nil {
					covered = make([]bool, len(text))
				}
				for j := max(i, marked); j < i+len(form); j++ {
					covered[j] = true
				}
				marked = i + len(form)
				next := strings.Index(text[i+1:], form)
				if next < 0 {
					break
				}
				i += 1 + next
			}
		}
	}
	if covered == nil {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	for i := 0; i < len(text); {
		if !covered[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(Redacted)
		for i < len(text) && covered[i] {
			i++
		}
	}
	return b.String()
}

// secretForms returns the distinct non-empty spellings of secret that
// Redact looks for: as is, and JSON-escaped with and without HTML escaping.
func secretForms(secret string) []string {
	if secret == "" {
		return nil
	}
	forms := []string{secret}
	for _, escapeHTML := range []bool{false, true} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(escapeHTML)
		if enc.Encode(secret) != nil {
			continue
		}
		quoted := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		form := string(quoted[1 : len(quoted)-1])
		if form != "" && !slices.Contains(forms, form) {
			forms = append(forms, form)
		}
	}
	return forms
}
