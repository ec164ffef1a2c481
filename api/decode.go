package api

import (
	"bytes"
	"encoding/json"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/haldir-dev/haldir/domain"
)

// object is a decoded JSON request body. Its accessors validate one field
// each and remember the first problem, so a handler reads every field and
// then checks Err once. Unknown fields are accepted (clients of the
// reference API may send extras) but not silently: every accessor records
// the name it looked up, so the names a route's handler reads are its
// known fields, and any other top-level name is unknown (see unknown) and
// named in the response's warnings. Handlers therefore read fields through
// the accessors, never from fields alone.
type object struct {
	fields map[string]json.RawMessage
	// read holds the names looked up so far.
	read map[string]bool
	err  *domain.Error
}

// parseObject decodes body as a JSON object. An empty body is an empty
// object.
func parseObject(body []byte) (*object, error) {
	o := &object{fields: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(body)) == 0 {
		return o, nil
	}
	if !utf8.Valid(body) {
		return nil, domain.Invalid("", "request body is not valid UTF-8")
	}
	if err := json.Unmarshal(body, &o.fields); err != nil {
		if _, ok := err.(*json.UnmarshalTypeError); ok || bytes.TrimSpace(body)[0] != '{' {
			return nil, domain.Invalid("", "request body must be a JSON object")
		}
		return nil, domain.Invalid("", "request body is not valid JSON")
	}
	if o.fields == nil { // the body was "null"
		return nil, domain.Invalid("", "request body must be a JSON object")
	}
	return o, nil
}

// Err returns the first validation problem, or nil.
func (o *object) Err() error {
	if o.err == nil {
		return nil
	}
	return o.err
}

func (o *object) fail(field, format string, args ...any) {
	if o.err == nil {
		o.err = domain.Invalid(field, format, args...)
	}
}

// lookup returns a field's raw value; null counts as absent, except that a
// required field that is null is reported as null.
func (o *object) lookup(name string, required bool) (json.RawMessage, bool) {
	if o.read == nil {
		o.read = make(map[string]bool, len(o.fields))
	}
	o.read[name] = true
	raw, ok := o.fields[name]
	if ok && string(raw) == "null" {
		if required {
			o.fail(name, "%s must not be null", name)
		}
		return nil, false
	}
	if !ok && required {
		o.fail(name, "%s is required", name)
	}
	return raw, ok
}

// unknown returns the top-level names of the body that no accessor looked
// up, sorted.
func (o *object) unknown() []string {
	var out []string
	for name := range o.fields {
		if !o.read[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// printable reports whether s has no control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// str returns a string field of at most max bytes without control
// characters.
func (o *object) str(name string, required bool, max int) string {
	raw, ok := o.lookup(name, required)
	if !ok {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		o.fail(name, "%s must be a string", name)
		return ""
	}
	if required && s == "" {
		o.fail(name, "%s must not be empty", name)
	}
	if len(s) > max {
		o.fail(name, "%s is longer than %d characters", name, max)
	}
	if !printable(s) {
		o.fail(name, "%s must not contain control characters", name)
	}
	return s
}

// jsonString decodes a raw JSON string.
func jsonString(raw json.RawMessage, out *string) error { return json.Unmarshal(raw, out) }

// strList returns a list of strings; present is false when the field is
// absent or null.
func (o *object) strList(name string, maxItems, maxLen int) (list []string, present bool) {
	raw, ok := o.lookup(name, false)
	if !ok {
		return nil, false
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		o.fail(name, "%s must be a list of strings", name)
		return nil, true
	}
	if len(list) > maxItems {
		o.fail(name, "%s has more than %d items", name, maxItems)
	}
	for _, s := range list {
		if len(s) > maxLen || !printable(s) {
			o.fail(name, "%s holds an item longer than %d characters or with control characters", name, maxLen)
		}
	}
	if list == nil {
		list = []string{}
	}
	return list, true
}

// integer returns a whole number in [min, max]. A number with a zero
// fraction (3600.0) is accepted.
func (o *object) integer(name string, min, max int64) (int64, bool) {
	raw, ok := o.lookup(name, false)
	if !ok {
		return 0, false
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		o.fail(name, "%s must be a number", name)
		return 0, true
	}
	if f != math.Trunc(f) || f < float64(min) || f > float64(max) {
		o.fail(name, "%s must be a whole number between %d and %d", name, min, max)
		return 0, true
	}
	return int64(f), true
}

// money returns an amount of dollars in [min, max], exactly.
func (o *object) money(name string, required bool, min, max domain.Money) (domain.Money, bool) {
	raw, ok := o.lookup(name, required)
	if !ok {
		return 0, false
	}
	s := string(raw)
	if len(s) > 0 && s[0] == '"' {
		o.fail(name, "%s must be a number, not a string", name)
		return 0, true
	}
	m, valid := domain.ParseMoney(s)
	if !valid {
		o.fail(name, "%s must be an amount of dollars with at most six decimal places", name)
		return 0, true
	}
	if m < min || m > max {
		o.fail(name, "%s must be between %s and %s", name, min, max)
	}
	return m, true
}

// boolean returns a boolean field.
func (o *object) boolean(name string) (bool, bool) {
	raw, ok := o.lookup(name, false)
	if !ok {
		return false, false
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		o.fail(name, "%s must be true or false", name)
	}
	return b, true
}

// details returns a JSON object field as its canonical re-encoding (keys
// sorted), at most max bytes.
func (o *object) details(name string, max int) json.RawMessage {
	raw, ok := o.lookup(name, false)
	if !ok {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		o.fail(name, "%s must be a JSON object", name)
		return nil
	}
	if len(raw) > max {
		o.fail(name, "%s is larger than %d bytes", name, max)
		return nil
	}
	b, _ := json.Marshal(m) // map keys encode sorted
	return b
}

// Query parameter helpers: same rules as body fields, 400 naming the
// parameter on anything malformed.

func queryInt(q url.Values, name string, min, max, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, domain.Invalid(name, "%s must be a whole number between %d and %d", name, min, max)
	}
	return n, nil
}

func queryBool(q url.Values, name string) (*bool, error) {
	switch strings.ToLower(q.Get(name)) {
	case "":
		return nil, nil
	case "true", "1":
		t := true
		return &t, nil
	case "false", "0":
		f := false
		return &f, nil
	}
	return nil, domain.Invalid(name, "%s must be true or false", name)
}

// queryTime accepts RFC 3339, a date (YYYY-MM-DD) or Unix seconds.
func queryTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t.UTC(), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n < 1<<40 {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, domain.Invalid(name, "%s must be an RFC 3339 time, a date (YYYY-MM-DD) or Unix seconds", name)
}

func queryString(q url.Values, name string, max int) (string, error) {
	v := q.Get(name)
	if len(v) > max || !printable(v) {
		return "", domain.Invalid(name, "%s must be at most %d printable characters", name, max)
	}
	return v, nil
}
