package web

import (
	"encoding/json"
	"testing"
)

func TestMoneyIsShownAsCurrency(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"0", "$0.00"},
		{"0.5", "$0.50"},
		{"12.34", "$12.34"},
		{"1000", "$1,000.00"},
		{"1234567.8", "$1,234,567.80"},
		{"999999.99", "$999,999.99"},
		{"-3.2", "-$3.20"},
		{"", "$0.00"},
	} {
		if got := usd(json.Number(c.in)); got != c.want {
			t.Errorf("usd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := usd(int64(123456)); got != "$1,234.56" {
		t.Errorf("usd(123456 cents) = %q", got)
	}
	if _, ok := cents("1e3"); ok {
		t.Error("an exponent was taken for money")
	}
}

func TestNextStaysInTheDashboard(t *testing.T) {
	for in, want := range map[string]string{
		"/dashboard/approvals?x=1": "/dashboard/approvals?x=1",
		"https://evil.example/":    "/dashboard/",
		"//evil.example/":          "/dashboard/",
		"/dashboard\\@evil":        "/dashboard/",
		"/v1/keys":                 "/dashboard/",
		"":                         "/dashboard/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
