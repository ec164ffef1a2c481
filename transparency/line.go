package transparency

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// errEscaped sends a line with a JSON escape to the encoding/json path.
var errEscaped = errors.New("transparency: line has escapes")

// parseEventLine decodes a canonical event line. It accepts exactly the
// lines that json.Unmarshal into an eventLine followed by json.Marshal
// reproduces byte for byte, and rejects every other line; it is a fast path
// for the common case of lines without escapes, and hands lines with a
// backslash in a string to the encoding/json path (FuzzEventLine checks that
// both agree).
func parseEventLine(b []byte) (eventLine, error) {
	el, err := scanEventLine(b)
	if err == errEscaped {
		return slowEventLine(b)
	}
	return el, err
}

var errNotCanonical = errors.New("line is not in canonical form (a byte was changed, or the line was re-encoded)")

// scanEventLine is parseEventLine's fast path.
func scanEventLine(b []byte) (eventLine, error) {
	s := lineScanner{b: b}
	el := eventLine{Kind: "event"}
	s.lit(`{"kind":"event","seq":`)
	el.Seq = s.int()
	s.lit(`,"id":`)
	el.ID = s.str()
	s.lit(`,"tenant":`)
	el.Tenant = s.str()
	s.lit(`,"stream":`)
	el.Stream = s.str()
	s.lit(`,"version":`)
	el.Version = s.int()
	s.lit(`,"type":`)
	el.Type = s.str()
	s.lit(`,"recorded_at":`)
	el.RecordedAt = s.int()
	s.lit(`,"position":`)
	el.Position = s.int()
	s.lit(`,"payload":`)
	el.Payload = s.str()
	s.lit(`,"metadata":`)
	el.Metadata = s.str()
	s.lit(`,"prev_hash":`)
	el.PrevHash = s.hash()
	s.lit(`,"hash":`)
	el.Hash = s.hash()
	s.lit(`}`)
	if s.err == nil && len(s.b) != 0 {
		s.err = errNotCanonical
	}
	if s.err != nil {
		return eventLine{}, s.err
	}
	return el, nil
}

// lineScanner reads a canonical JSON line; the first error sticks.
type lineScanner struct {
	b   []byte
	err error
}

func (s *lineScanner) lit(l string) {
	if s.err == nil {
		if !bytes.HasPrefix(s.b, []byte(l)) {
			s.err = errNotCanonical
			return
		}
		s.b = s.b[len(l):]
	}
}

// int reads an integer as encoding/json writes an int64.
func (s *lineScanner) int() int64 {
	if s.err != nil {
		return 0
	}
	i := 0
	if i < len(s.b) && s.b[i] == '-' {
		i++
	}
	for i < len(s.b) && '0' <= s.b[i] && s.b[i] <= '9' {
		i++
	}
	v, err := strconv.ParseInt(string(s.b[:i]), 10, 64)
	if err != nil || strconv.FormatInt(v, 10) != string(s.b[:i]) {
		s.err = errNotCanonical
		return 0
	}
	s.b = s.b[i:]
	return v
}

// str reads a JSON string that encoding/json would write without escapes:
// valid UTF-8 with no control characters, no <, > or &, no U+2028 or
// U+2029. A backslash means the line needs the encoding/json path.
func (s *lineScanner) str() string {
	if s.err != nil {
		return ""
	}
	if len(s.b) == 0 || s.b[0] != '"' {
		s.err = errNotCanonical
		return ""
	}
	end := -1
	ascii := true
	for i := 1; i < len(s.b); i++ {
		c := s.b[i]
		if c == '"' {
			end = i
			break
		}
		switch {
		case c == '\\':
			s.err = errEscaped
			return ""
		case c < 0x20, c == '<', c == '>', c == '&':
			s.err = errNotCanonical
			return ""
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if end < 0 {
		s.err = errNotCanonical
		return ""
	}
	v := s.b[1:end]
	if !ascii && (!utf8.Valid(v) || bytes.Contains(v, []byte("\u2028")) || bytes.Contains(v, []byte("\u2029"))) {
		s.err = errNotCanonical
		return ""
	}
	s.b = s.b[end+1:]
	return string(v)
}

// hash reads a quoted hash in lowercase hex.
func (s *lineScanner) hash() Hash {
	if s.err != nil {
		return Hash{}
	}
	var h Hash
	if len(s.b) < 2+2*len(h) || s.b[0] != '"' || s.b[1+2*len(h)] != '"' {
		s.err = errNotCanonical
		return Hash{}
	}
	src := s.b[1 : 1+2*len(h)]
	if _, err := hex.Decode(h[:], src); err != nil || bytes.ContainsAny(src, "ABCDEF") {
		s.err = errNotCanonical
		return Hash{}
	}
	s.b = s.b[2+2*len(h):]
	return h
}

// slowEventLine is the encoding/json path for any event line, which
// parseEventLine must agree with.
func slowEventLine(b []byte) (eventLine, error) {
	var el eventLine
	if err := json.Unmarshal(b, &el); err != nil {
		return eventLine{}, jsonError(err)
	}
	if el.Kind != "event" {
		return eventLine{}, errNotCanonical
	}
	if err := canonical(b, el); err != nil {
		return eventLine{}, err
	}
	return el, nil
}
