// Package canonical encodes JSON canonically (RFC 8785, JCS), so that equal
// values hash equally: tool definitions and call results in the MCP proxy
// and the governed-call pipeline.
package canonical

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInvalid means the input is not one valid JSON value JSON can encode.
var ErrInvalid = errors.New("canonical: invalid JSON")

// maxCanonicalDepth bounds the nesting of values JSON accepts.
const maxCanonicalDepth = 512

// JSON returns the RFC 8785 JSON Canonicalization Scheme (JCS)
// encoding of the single JSON value in data:
//
//   - no whitespace between tokens;
//   - object members sorted by their names compared as UTF-16 code units;
//   - strings written as UTF-8 with only '"', '\\' and U+0000 to U+001F
//     escaped: \b \t \n \f \r and otherwise \u00XX in lowercase hex; every
//     other character, including '<', '>', '&', U+2028 and non-ASCII, is
//     written literally;
//   - numbers parsed as IEEE 754 doubles and written as ECMAScript's
//     Number.prototype.toString does (1, 1.5, 1e+21, 1e-7; -0 becomes 0).
//
// It fails with ErrInvalid when data is not exactly one JSON value, holds
// a duplicate object member name, a number outside the double range, or
// nests deeper than 512 levels. Integers beyond 2^53 keep only double
// precision, as RFC 8785 prescribes.
func JSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	out.Grow(len(data))
	if err := canonValue(dec, &out, 0); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the top-level value", ErrInvalid)
	}
	return out.Bytes(), nil
}

// canonValue writes the canonical encoding of the next value in dec.
func canonValue(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	if depth > maxCanonicalDepth {
		return errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return canonObject(dec, out, depth)
		case '[':
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := canonValue(dec, out, depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return err
			}
			out.WriteByte(']')
			return nil
		}
		return fmt.Errorf("unexpected %v", v)
	case string:
		writeCanonString(out, v)
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("number %.40s is outside the double range", v)
		}
		writeCanonNumber(out, f)
	case bool:
		if v {
			out.WriteString("true")
		} else {
			out.WriteString("false")
		}
	case nil:
		out.WriteString("null")
	default:
		return fmt.Errorf("unexpected token %T", tok)
	}
	return nil
}

// canonObject writes an object whose '{' dec has just returned.
func canonObject(dec *json.Decoder, out *bytes.Buffer, depth int) error {
	type member struct {
		key   string
		key16 []uint16
		value []byte
	}
	var members []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("object key is %T", tok)
		}
		if seen[key] {
			return fmt.Errorf("duplicate object member %.64q", key)
		}
		seen[key] = true
		var value bytes.Buffer
		if err := canonValue(dec, &value, depth+1); err != nil {
			return err
		}
		members = append(members, member{key, utf16.Encode([]rune(key)), value.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.key16, b.key16) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		writeCanonString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

// writeCanonString writes s as a JCS string literal.
func writeCanonString(out *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	out.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			out.WriteRune(r) // invalid UTF-8 becomes U+FFFD, as encoding/json decodes it
			i += size
			continue
		}
		switch c {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		default:
			if c < 0x20 {
				out.WriteString(`\u00`)
				out.WriteByte(hex[c>>4])
				out.WriteByte(hex[c&0xf])
			} else {
				out.WriteByte(c)
			}
		}
		i++
	}
	out.WriteByte('"')
}

// writeCanonNumber writes f as ECMAScript's Number.prototype.toString does
// (the algorithm encoding/json also follows for float64), with -0 as 0.
func writeCanonNumber(out *bytes.Buffer, f float64) {
	if f == 0 {
		out.WriteByte('0')
		return
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	b := strconv.AppendFloat(nil, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as ECMAScript does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	out.Write(b)
}
