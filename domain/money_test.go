package domain

import "testing"

func TestParseMoney(t *testing.T) {
	tests := []struct {
		in   string
		want Money
		ok   bool
	}{
		{"29.99", 29_990_000, true},
		{"0.01", Cent, true},
		{"0.0015", 1_500, true},
		{"1e2", 100 * Dollar, true},
		{"-3.5", -3_500_000, true},
		{"0.0000001", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"", 0, false},
		{"abc", 0, false},
		{"1e400", 0, false},
		{"1000000001", 0, false},
		// Decimal dollars only: no Go literal syntax, no fractions.
		{"0x10", 0, false},
		{"0x1p4", 0, false},
		{"1_0", 0, false},
		{"0b101", 0, false},
		{"0o17", 0, false},
		{"010", 0, false},
		{"1/3", 0, false},
		{"+5", 0, false},
		{".5", 0, false},
		{"5.", 0, false},
		{"1e", 0, false},
		{"0", 0, true},
		{"0.5", 500_000, true},
		{"2E+1", 20 * Dollar, true},
		{"1.5e-2", 15_000, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseMoney(tt.in)
			if ok != tt.ok || got != tt.want {
				t.Errorf("ParseMoney(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestMoneyString(t *testing.T) {
	tests := []struct {
		in   Money
		want string
	}{
		{0, "0"},
		{10 * Dollar, "10"},
		{29_990_000, "29.99"},
		{1_500, "0.0015"},
		{-3_500_000, "-3.5"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Money(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, ok := ParseMoney(tt.want)
		if !ok || back != tt.in {
			t.Errorf("ParseMoney(%q) = %d, %v; want round trip to %d", tt.want, back, ok, tt.in)
		}
	}
}
