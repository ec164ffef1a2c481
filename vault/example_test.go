package vault_test

import (
	"errors"
	"fmt"

	"github.com/haldir-dev/haldir/vault"
)

func Example() {
	// At startup: the master key from HALDIR_ENCRYPTION_KEY, checked
	// against the fingerprint stored with the data, and the current KEK
	// version from storage.
	master, err := vault.ParseMasterKey(vault.GenerateMasterKey())
	if err != nil {
		panic(err)
	}
	storedFingerprint := master.Fingerprint() // normally loaded from storage
	if err := master.CheckFingerprint(storedFingerprint); err != nil {
		panic(err)
	}
	keyring, err := vault.NewKeyring(master, 1)
	if err != nil {
		panic(err)
	}

	// Writing a secret: the sealed value goes to the ledger, the wrapped
	// data key to the deletable key table.
	ref := vault.Ref{Tenant: "ten_abc", Name: "STRIPE_KEY", Version: 1}
	sealed, wrapped, err := keyring.Seal(ref, []byte("sk_live_123"))
	if err != nil {
		panic(err)
	}
	ledgerBytes, keyTableBytes := sealed.Bytes(), wrapped.Bytes()

	// Reading it back from storage.
	s, err := vault.ParseSealed(ledgerBytes)
	if err != nil {
		panic(err)
	}
	w, err := vault.ParseWrappedKey(keyTableBytes)
	if err != nil {
		panic(err)
	}
	value, err := keyring.Open(ref, s, w)
	fmt.Println(string(value), err)

	// The same bytes under another secret's name do not open.
	_, err = keyring.Open(vault.Ref{Tenant: "ten_abc", Name: "OTHER", Version: 1}, s, w)
	fmt.Println(errors.Is(err, vault.ErrWrongRef))
	// Output:
	// sk_live_123 <nil>
	// true
}

func ExampleKeyring_Rewrap() {
	master, _ := vault.ParseMasterKey(vault.GenerateMasterKey())
	v1, _ := vault.NewKeyring(master, 1)
	ref := vault.Ref{Tenant: "ten_abc", Name: "DB_PASSWORD", Version: 1}
	sealed, wrapped, _ := v1.Seal(ref, []byte("hunter2"))

	// Rotation: a new KEK version; existing data keys are rewrapped, the
	// sealed values in the ledger are not touched.
	v2, _ := v1.Rotate()
	rewrapped, err := v2.Rewrap(ref, wrapped)
	if err != nil {
		panic(err)
	}
	value, err := v2.Open(ref, sealed, rewrapped)
	fmt.Println(wrapped.KEKVersion(), rewrapped.KEKVersion(), string(value), err)
	// Output: 1 2 hunter2 <nil>
}

func ExampleResolveJSON() {
	args := []byte(`{"url":"https://api.example.test","headers":{"Authorization":"Bearer {{secret:API_TOKEN}}"}}`)
	lookup := func(name string) (string, error) {
		if name == "API_TOKEN" {
			return "tok-123", nil
		}
		return "", errors.New("no such secret")
	}
	resolved, used, err := vault.ResolveJSON(args, lookup)
	fmt.Println(string(resolved), used, err)

	// Whatever the upstream returns is redacted before the model sees it.
	response := `{"echo":"Bearer tok-123"}`
	fmt.Println(vault.Redact(response, []string{"tok-123"}))
	// Output:
	// {"headers":{"Authorization":"Bearer tok-123"},"url":"https://api.example.test"} [API_TOKEN] <nil>
	// {"echo":"Bearer [REDACTED]"}
}

func ExampleRedact() {
	fmt.Println(vault.Redact(`login failed: user=ana pw=hunter2 (pw "hunter2" rejected)`, []string{"hunter2", ""}))
	// Output: login failed: user=ana pw=[REDACTED] (pw "[REDACTED]" rejected)
}
