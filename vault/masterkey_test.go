package vault_test

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/vault"
)

func TestParseMasterKey(t *testing.T) {
	// 0xfb 0xff... encodes with '-' and '_' in base64url, '+' and '/' in base64.
	raw := append([]byte{0xfb, 0xff, 0xbf}, seq(1, 29)...)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"base64url unpadded", base64.RawURLEncoding.EncodeToString(raw), false},
		{"base64url padded", base64.URLEncoding.EncodeToString(raw), false},
		{"base64 unpadded", base64.RawStdEncoding.EncodeToString(raw), false},
		{"base64 padded", base64.StdEncoding.EncodeToString(raw), false},
		{"surrounding white space", " \t" + base64.URLEncoding.EncodeToString(raw) + "\n", false},
		{"empty", "", true},
		{"only white space", " \n", true},
		{"16 bytes", base64.RawURLEncoding.EncodeToString(raw[:16]), true},
		{"31 bytes", base64.RawURLEncoding.EncodeToString(raw[:31]), true},
		{"33 bytes", base64.RawURLEncoding.EncodeToString(append(raw, 0)), true},
		{"mixed alphabets", "-+" + base64.RawURLEncoding.EncodeToString(raw)[2:], true},
		{"not base64", "this is not a key at all, it is a sentence!", true},
		{"hex", strings.Repeat("ab", 32), true},
		{"all zero bytes", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), true},
		{"non-canonical trailing bits", base64.RawURLEncoding.EncodeToString(raw)[:42] + "B", true},
		{"wrong padding", base64.RawURLEncoding.EncodeToString(raw) + "==", true},
	}
	reference := mustMaster(t, base64.RawURLEncoding.EncodeToString(raw))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := vault.ParseMasterKey(tt.in)
			if tt.wantErr {
				if !errors.Is(err, vault.ErrInvalidMasterKey) {
					t.Fatalf("ParseMasterKey: %v, want ErrInvalidMasterKey", err)
				}
				if trimmed := strings.TrimSpace(tt.in); trimmed != "" && strings.Contains(err.Error(), trimmed) {
					t.Errorf("error %q repeats the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMasterKey: %v", err)
			}
			if m.Fingerprint() != reference.Fingerprint() {
				t.Error("decoded to a different key than the base64url reference")
			}
		})
	}
}

func TestGenerateMasterKey(t *testing.T) {
	a, b := vault.GenerateMasterKey(), vault.GenerateMasterKey()
	if len(a) != 43 || a == b {
		t.Fatalf("GenerateMasterKey() = %q, %q: want two different 43-character keys", a, b)
	}
	for _, s := range []string{a, b} {
		if _, err := vault.ParseMasterKey(s); err != nil {
			t.Errorf("ParseMasterKey(GenerateMasterKey()): %v", err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a, b := mustMaster(t, keyA), mustMaster(t, keyB)
	fpA := a.Fingerprint()
	if !regexp.MustCompile(`^kcv1_[0-9a-f]{32}$`).MatchString(fpA) {
		t.Fatalf("Fingerprint() = %q, want kcv1_ and 32 hex digits", fpA)
	}
	// Pinned (and checked against an independent HKDF implementation): a
	// changed derivation would lock every deployment out.
	if want := "kcv1_eb284af129c5b41c012f75908e79292a"; fpA != want {
		t.Errorf("Fingerprint() = %q, want %q", fpA, want)
	}
	if fpA != mustMaster(t, keyA).Fingerprint() || fpA == b.Fingerprint() {
		t.Fatal("fingerprints are not a function of the key")
	}
	tests := []struct {
		name string
		fp   string
		want error
	}{
		{"own fingerprint", fpA, nil},
		{"another key's", b.Fingerprint(), vault.ErrWrongKey},
		{"empty", "", vault.ErrMalformed},
		{"upper case", strings.ToUpper(fpA), vault.ErrMalformed},
		{"upper-case hex", "kcv1_" + strings.ToUpper(fpA[5:]), vault.ErrMalformed},
		{"other prefix", "kcv2_" + fpA[5:], vault.ErrMalformed},
		{"truncated", fpA[:36], vault.ErrMalformed},
		{"trailing newline", fpA + "\n", vault.ErrMalformed},
		{"not hex", "kcv1_" + strings.Repeat("g", 32), vault.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.CheckFingerprint(tt.fp)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckFingerprint: %v", err)
				}
				return
			}
			wantErr(t, err, tt.want, "")
		})
	}
}
