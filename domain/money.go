package domain

import (
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Money is an amount of US dollars counted in micro-dollars (millionths), so
// that balances are exact integers and never float arithmetic. Sub-cent
// amounts are allowed because per-call model costs are often fractions of a
// cent.
type Money int64

// Common amounts.
const (
	MicroDollar Money = 1
	Cent        Money = 10_000
	Dollar      Money = 1_000_000
)

// MaxMoney bounds every amount Haldir accepts (one billion dollars), far from
// int64 overflow even after summing millions of entries.
const MaxMoney = 1_000_000_000 * Dollar

// ParseMoney parses a decimal number of dollars such as "29.99", "0.0015" or
// "1e2" exactly: the syntax of a JSON number and nothing else, wherever the
// amount comes from (a JSON field, a spend:N scope, a CLI flag). It fails on
// NaN, infinities, Go literal syntax ("0x10", "0x1p4", "1_0"), fractions
// ("1/3"), more than six fractional digits and magnitudes beyond MaxMoney.
// Negative values parse; callers decide whether they are allowed.
func ParseMoney(s string) (Money, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 || !decimal(s) {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, false
	}
	r.Mul(r, big.NewRat(int64(Dollar), 1))
	if !r.IsInt() {
		return 0, false
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, false
	}
	v := n.Int64()
	if v > int64(MaxMoney) || v < -int64(MaxMoney) {
		return 0, false
	}
	return Money(v), true
}

// decimal reports whether s is a JSON number: an optional minus, digits
// with no leading zero, an optional fraction and an optional exponent.
func decimal(s string) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	n := digits()
	if n == 0 || (n > 1 && s[start] == '0') {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// MoneyFromFloat converts a float64 amount of dollars, rounding to the
// nearest micro-dollar. It exists for numbers that arrived as floats (for
// example Prometheus output); request decoding uses ParseMoney.
func MoneyFromFloat(f float64) (Money, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > float64(MaxMoney/Dollar) {
		return 0, false
	}
	return Money(math.Round(f * float64(Dollar))), true
}

// String formats m as a plain decimal with no trailing zeros: "29.99", "10",
// "0.0015", "-3.5".
func (m Money) String() string {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = uint64(-m)
	}
	whole := strconv.FormatUint(u/uint64(Dollar), 10)
	frac := u % uint64(Dollar)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(whole)
	if frac != 0 {
		f := strconv.FormatUint(frac+uint64(Dollar), 10)[1:] // zero-padded to 6 digits
		b.WriteByte('.')
		b.WriteString(strings.TrimRight(f, "0"))
	}
	return b.String()
}

// Float64 returns m in dollars as a float64, for display and metrics only.
func (m Money) Float64() float64 { return float64(m) / float64(Dollar) }

// MarshalJSON encodes m as a JSON number literal in dollars.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalJSON decodes a JSON number (or numeric string) of dollars.
func (m *Money) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, ok := ParseMoney(s)
	if !ok {
		return Invalid("", "is not an amount of dollars with at most six decimal places")
	}
	*m = v
	return nil
}
