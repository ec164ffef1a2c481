package canonical

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "RFC 8785 section 3.2.2 sample",
			in: `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			want: `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{
			name: "RFC 8785 section 3.2.3 sorting by UTF-16 code units",
			in: `{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One",` +
				`"\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			want: "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\"," +
				"\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"דּ\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		{name: "nested objects sorted at every level", in: `{"b":{"z":1,"a":[{"y":2,"x":1}]},"a":0}`, want: `{"a":0,"b":{"a":[{"x":1,"y":2}],"z":1}}`},
		{name: "no HTML escaping", in: `"<a href='x'>&amp;</a>"`, want: `"<a href='x'>&amp;</a>"`},
		{name: "line separators stay literal", in: `"\u2028\u2029"`, want: "\"\u2028\u2029\""},
		{name: "control characters", in: `"\u0000\u0008\u0009\u000a\u000c\u000d\u001f\u007f"`, want: `"\u0000\b\t\n\f\r\u001f` + "\x7f\""},
		{name: "negative zero", in: `-0.0`, want: `0`},
		{name: "integers", in: `[1, -1, 100, 1.0, 9007199254740993]`, want: `[1,-1,100,1,9007199254740992]`},
		{name: "empty containers", in: ` { "a" : [ ] , "b" : { } } `, want: `{"a":[],"b":{}}`},
		{name: "literals", in: `[true,false,null]`, want: `[true,false,null]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCanonicalJSONErrors(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{name: "empty", in: ``},
		{name: "truncated", in: `{"a":`},
		{name: "two values", in: `{} {}`},
		{name: "trailing garbage", in: `[1]x`},
		{name: "duplicate member", in: `{"a":1,"b":2,"a":3}`},
		{name: "duplicate member nested", in: `[{"x":{"k":1,"k":1}}]`},
		{name: "number beyond double range", in: `1e400`},
		{name: "NaN is not JSON", in: `NaN`},
		{name: "too deep", in: strings.Repeat("[", maxCanonicalDepth+2) + strings.Repeat("]", maxCanonicalDepth+2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := JSON([]byte(tt.in)); !errors.Is(err, ErrInvalid) {
				t.Errorf("JSON = %q, %v; want an ErrInvalid error", got, err)
			}
		})
	}
}

// TestCanonicalNumbers checks number serialization against the ECMAScript
// test values of RFC 8785 Appendix B, each checked against Node.js.
func TestCanonicalNumbers(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var b bytes.Buffer
			writeCanonNumber(&b, math.Float64frombits(tt.bits))
			if b.String() != tt.want {
				t.Errorf("%#x: got %s, want %s", tt.bits, b.String(), tt.want)
			}
			// And through the parser, from Go's shortest encoding.
			in, _ := json.Marshal(math.Float64frombits(tt.bits))
			got, err := JSON(in)
			if err != nil || string(got) != tt.want {
				t.Errorf("JSON(%s) = %s, %v; want %s", in, got, err, tt.want)
			}
		})
	}
}

// FuzzJSON checks that canonical output is valid JSON with the
// same meaning as the input, and a fixed point.
func FuzzJSON(f *testing.F) {
	for _, seed := range []string{`{"b":1,"a":[true,null,"x\u0001"]}`, `1e21`, `"\ud83d\ude00"`, `{"a":{"a":{}}}`, `-0`, `[0.1,1e-7]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := JSON(data)
		if err != nil {
			return
		}
		again, err := JSON(out)
		if err != nil || !bytes.Equal(out, again) {
			t.Fatalf("not a fixed point: %q → %q → %q, %v", data, out, again, err)
		}
		var in, got any
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("JSON accepted %q, which encoding/json rejects: %v", data, err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q is not JSON: %v", out, err)
		}
		if !cmp.Equal(in, got) {
			t.Fatalf("meaning changed: %q → %q", data, out)
		}
	})
}

// ExampleJSON shows the canonical bytes of a tool definition.
func ExampleJSON() {
	doc := `{"inputSchema": {"type": "object"}, "description": "Echoes"}`
	canon, _ := JSON([]byte(doc))
	fmt.Printf("%s (%d bytes)\n", canon, len(canon))
	// Output:
	// {"description":"Echoes","inputSchema":{"type":"object"}} (56 bytes)
}
