package vault_test

import (
	"bytes"
	"errors"
	"regexp"
	"testing"

	"github.com/haldir-dev/haldir/vault"
)

func TestParseStored(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, k, ref1, "v")
	sb, wb := s.Bytes(), w.Bytes()
	with := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	tests := []struct {
		name    string
		parse   func([]byte) error
		in      []byte
		wantErr bool
	}{
		{"sealed", parseSealed, sb, false},
		{"sealed, shortest", parseSealed, append([]byte{1}, make([]byte, 32)...), false},
		{"sealed, longest", parseSealed, append([]byte{1}, make([]byte, 32+vault.MaxValueSize)...), false},
		{"sealed, nil", parseSealed, nil, true},
		{"sealed, format only", parseSealed, []byte{1}, true},
		{"sealed, one byte short", parseSealed, append([]byte{1}, make([]byte, 31)...), true},
		{"sealed, one byte too long", parseSealed, append([]byte{1}, make([]byte, 33+vault.MaxValueSize)...), true},
		{"sealed, format 0", parseSealed, with(sb, 0, 0), true},
		{"sealed, format 2", parseSealed, with(sb, 0, 2), true},
		{"wrapped", parseWrapped, wb, false},
		{"wrapped, nil", parseWrapped, nil, true},
		{"wrapped, truncated", parseWrapped, wb[:72], true},
		{"wrapped, extended", parseWrapped, append(bytes.Clone(wb), 0), true},
		{"wrapped, format 2", parseWrapped, with(wb, 0, 2), true},
		{"wrapped, a sealed value", parseWrapped, sb, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse(tt.in)
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, vault.ErrMalformed, "")
		})
	}
}

func parseSealed(b []byte) error {
	_, err := vault.ParseSealed(b)
	return err
}

func parseWrapped(b []byte) error {
	_, err := vault.ParseWrappedKey(b)
	return err
}

// The fuzz targets below feed stored-bytes parsers untrusted input. Their
// seeds run in every go test; fuzz them with
//
//	go test -run XXX -fuzz FuzzOpen -fuzztime 10s ./vault/

func FuzzParseSealed(f *testing.F) {
	k := mustKeyring(f, keyA, 1)
	s, _ := mustSeal(f, k, ref1, "seed value")
	f.Add(s.Bytes())
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := vault.ParseSealed(b)
		if err != nil {
			if !errors.Is(err, vault.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Fatal("Bytes() does not return the parsed bytes")
		}
	})
}

func FuzzParseWrappedKey(f *testing.F) {
	k := mustKeyring(f, keyA, 1)
	_, w := mustSeal(f, k, ref1, "seed value")
	f.Add(w.Bytes())
	f.Add([]byte{})
	f.Add(make([]byte, 73))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := vault.ParseWrappedKey(b)
		if err != nil {
			if !errors.Is(err, vault.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(w.Bytes(), b) {
			t.Fatal("Bytes() does not return the parsed bytes")
		}
		_ = w.KEKVersion()
	})
}

// FuzzOpen opens arbitrary stored bytes: it must never panic, must fail
// with one of the package's errors, and may succeed only on the genuine
// (known answer) bytes. The genuine bytes are fixed because every fuzz
// worker reruns this setup.
func FuzzOpen(f *testing.F) {
	k := mustKeyring(f, keyA, 2)
	genuineS, genuineW := knownSealed, knownWrapped
	f.Add(genuineS, genuineW)
	f.Add(genuineS[:40], genuineW)
	f.Add([]byte{1}, []byte{1, 0, 0, 0, 3})
	sentinels := []error{vault.ErrMalformed, vault.ErrTampered, vault.ErrWrongRef, vault.ErrWrongKey, vault.ErrUnknownKEKVersion}
	f.Fuzz(func(t *testing.T, sb, wb []byte) {
		s, errS := vault.ParseSealed(sb)
		w, errW := vault.ParseWrappedKey(wb)
		if errS != nil || errW != nil {
			return
		}
		got, err := k.Open(knownRef, s, w)
		if err == nil {
			if !bytes.Equal(sb, genuineS) || !bytes.Equal(wb, genuineW) || string(got) != knownValue {
				t.Fatalf("opened forged bytes to %q", got)
			}
			return
		}
		for _, target := range sentinels {
			if errors.Is(err, target) {
				return
			}
		}
		t.Fatalf("unexpected error %v", err)
	})
}

var (
	digits               = regexp.MustCompile(`[0-9]+`)
	parseMasterKeyErrors = map[string]bool{
		"vault: invalid master key: empty; generate one with GenerateMasterKey (N random bytes, baseNurl)": true,
		"vault: invalid master key: decodes to N bytes, want N":                                            true,
		"vault: invalid master key: all bytes are zero":                                                    true,
		"vault: invalid master key: not baseNurl or baseN of N bytes":                                      true,
	}
)

func FuzzParseMasterKey(f *testing.F) {
	f.Add(keyA)
	f.Add(vault.GenerateMasterKey())
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := vault.ParseMasterKey(s)
		if err != nil {
			if !errors.Is(err, vault.ErrInvalidMasterKey) {
				t.Fatalf("error %v does not wrap ErrInvalidMasterKey", err)
			}
			// The text may vary with the decoded length only, so it cannot
			// echo the input.
			if msg := digits.ReplaceAllString(err.Error(), "N"); !parseMasterKeyErrors[msg] {
				t.Fatalf("unexpected error text %q", err)
			}
			return
		}
		if err := m.CheckFingerprint(m.Fingerprint()); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzCheckFingerprint(f *testing.F) {
	m := mustMaster(f, keyA)
	f.Add(m.Fingerprint())
	f.Add(mustMaster(f, keyB).Fingerprint())
	f.Add("kcv1_")
	f.Fuzz(func(t *testing.T, fp string) {
		err := m.CheckFingerprint(fp)
		switch {
		case fp == m.Fingerprint():
			if err != nil {
				t.Fatal(err)
			}
		case err == nil:
			t.Fatalf("accepted %q", fp)
		case !errors.Is(err, vault.ErrWrongKey) && !errors.Is(err, vault.ErrMalformed):
			t.Fatalf("unexpected error %v", err)
		}
	})
}
