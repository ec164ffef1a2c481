package vault_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/vault"
)

// benchValue is a 64-byte secret, the size of a typical API token.
var benchValue = []byte(strings.Repeat("s", 64))

// BenchmarkSeal is the server's per-write cost: a fresh data key, sealing
// the value and wrapping the data key.
func BenchmarkSeal(b *testing.B) {
	k := mustKeyring(b, keyA, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := k.Seal(ref1, benchValue); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is the server's per-read cost: unwrapping the data key
// under the current KEK and opening the value.
func BenchmarkOpen(b *testing.B) {
	k := mustKeyring(b, keyA, 1)
	s, w := mustSeal(b, k, ref1, string(benchValue))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(ref1, s, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenOlderKEK opens a data key wrapped under a version older
// than the current one, which derives that KEK on every call.
func BenchmarkOpenOlderKEK(b *testing.B) {
	s, w := mustSeal(b, mustKeyring(b, keyA, 1), ref1, string(benchValue))
	k := mustKeyring(b, keyA, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(ref1, s, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewrap is the per-secret cost of a rotation job.
func BenchmarkRewrap(b *testing.B) {
	_, w := mustSeal(b, mustKeyring(b, keyA, 1), ref1, string(benchValue))
	k := mustKeyring(b, keyA, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Rewrap(ref1, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAEAD is the raw AES-256-GCM cost on the same 64 bytes, with a
// ready cipher and with the key schedule set up per call (as each data
// key is), for comparison with Seal and Open.
func BenchmarkAEAD(b *testing.B) {
	key := make([]byte, 32)
	rand.Read(key)
	aad := []byte("haldir/vault/v1/value tenant name version")
	newAEAD := func() cipher.AEAD {
		block, err := aes.NewCipher(key)
		if err != nil {
			b.Fatal(err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			b.Fatal(err)
		}
		return aead
	}
	aead := newAEAD()
	sealed := aead.Seal(nil, nil, benchValue, aad)
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, len(sealed))
		for b.Loop() {
			aead.Seal(buf[:0], nil, benchValue, aad)
		}
	})
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, len(benchValue))
		for b.Loop() {
			if _, err := aead.Open(buf[:0], nil, sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal with key setup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			newAEAD().Seal(nil, nil, benchValue, aad)
		}
	})
	b.Run("open with key setup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := newAEAD().Open(nil, nil, sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkResolveJSON(b *testing.B) {
	raw := []byte(`{"url":"https://api.example.test/v1/charges","headers":{"Authorization":"Bearer {{secret:STRIPE_KEY}}"},"amount":1200}`)
	lookup := func(string) (string, error) { return "sk_live_0123456789abcdef", nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := vault.ResolveJSON(raw, lookup); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedact(b *testing.B) {
	text := strings.Repeat(`{"id":"ch_123","status":"succeeded","note":"all good"},`, 64) // ~3.5 kB
	secrets := []string{"sk_live_0123456789abcdef", "hunter2"}
	b.ReportAllocs()
	for b.Loop() {
		vault.Redact(text, secrets)
	}
}
