package cli

import (
	"fmt"

	"github.com/haldir-dev/haldir/domain"
)

// money is a flag holding an amount of dollars, read by the same strict
// parser as every amount the server accepts (domain.ParseMoney: decimal
// only, so "0x10", "0x1p4" and "1_0" are refused, never a $16 or $10 cap).
type money struct {
	v   domain.Money
	set bool
}

func (m *money) String() string { return m.v.String() }

// Set implements pflag.Value.
func (m *money) Set(s string) error {
	v, ok := domain.ParseMoney(s)
	if !ok || v < 0 {
		return fmt.Errorf("%q is not an amount of dollars (a decimal number such as 29.99)", s)
	}
	m.v, m.set = v, true
	return nil
}

// Type implements pflag.Value.
func (m *money) Type() string { return "dollars" }
