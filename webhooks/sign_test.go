package webhooks_test

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/webhooks"
)

// The Standard Webhooks specification's test vector.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignVector(t *testing.T) {
	for _, secret := range []string{vectorSecret, strings.TrimPrefix(vectorSecret, webhooks.SecretPrefix)} {
		got, err := webhooks.Sign(secret, vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
		if err != nil {
			t.Fatal(err)
		}
		if got != vectorSig {
			t.Errorf("Sign(%q) = %q, want %q", secret, got, vectorSig)
		}
	}
}

func ExampleSign() {
	sig, err := webhooks.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(sig, err)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= <nil>
}

func TestNewSecret(t *testing.T) {
	a, b := webhooks.NewSecret(), webhooks.NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	if !strings.HasPrefix(a, "whsec_") || len(a) != len("whsec_")+44 {
		t.Errorf("NewSecret() = %q, want whsec_ and 44 base64 characters", a)
	}
	if _, err := webhooks.Sign(a, "evt_1", time.Now(), []byte("{}")); err != nil {
		t.Errorf("a new secret does not sign: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, secret, id string
	}{
		{"not base64", "whsec_not base64!", "evt_1"},
		{"key too short", "whsec_" + strings.Repeat("A", 28), "evt_1"}, // 21 bytes
		{"key too long", "whsec_" + strings.Repeat("A", 88), "evt_1"},  // 66 bytes
		{"empty secret", "", "evt_1"},
		{"empty id", vectorSecret, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := webhooks.Sign(tc.secret, tc.id, time.Unix(vectorTS, 0), []byte(vectorBody))
			if err == nil {
				t.Fatalf("Sign = %q, want an error", sig)
			}
			if tc.secret != "" && strings.Contains(err.Error(), strings.TrimPrefix(tc.secret, "whsec_")) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

// signed returns the headers a sender using secrets would send.
func signed(t *testing.T, secrets []string, id string, ts int64, body string) http.Header {
	t.Helper()
	var sigs []string
	for _, s := range secrets {
		sig, err := webhooks.Sign(s, id, time.Unix(ts, 0), []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
	}
	h := http.Header{}
	h.Set(webhooks.HeaderID, id)
	h.Set(webhooks.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(webhooks.HeaderSignature, strings.Join(sigs, " "))
	return h
}

func TestVerify(t *testing.T) {
	oldSecret, newSecret, otherSecret := webhooks.NewSecret(), webhooks.NewSecret(), webhooks.NewSecret()
	now := time.Unix(vectorTS, 0)
	both := []string{newSecret, oldSecret}
	for _, tc := range []struct {
		name     string
		signWith []string // sender's active secrets
		verify   []string // receiver's secrets
		edit     func(h http.Header, body *string)
		now      time.Time
		want     error
	}{
		{name: "vector", signWith: []string{vectorSecret}, verify: []string{vectorSecret}},
		{name: "rotation: receiver knows only the old secret", signWith: both, verify: []string{oldSecret}},
		{name: "rotation: receiver knows only the new secret", signWith: both, verify: []string{newSecret}},
		{name: "rotation: receiver knows both, sender only old", signWith: []string{oldSecret}, verify: both},
		{name: "rotation: receiver knows both, sender only new", signWith: []string{newSecret}, verify: both},
		{name: "wrong secret", signWith: []string{otherSecret}, verify: both, want: webhooks.ErrSignature},
		{name: "tampered body", signWith: both, verify: both, want: webhooks.ErrSignature,
			edit: func(_ http.Header, b *string) { *b = `{"test": 2432232315}` }},
		{name: "body with trailing newline", signWith: both, verify: both, want: webhooks.ErrSignature,
			edit: func(_ http.Header, b *string) { *b += "\n" }},
		{name: "tampered id", signWith: both, verify: both, want: webhooks.ErrSignature,
			edit: func(h http.Header, _ *string) { h.Set(webhooks.HeaderID, vectorID+"x") }},
		{name: "tampered timestamp", signWith: both, verify: both, want: webhooks.ErrSignature,
			edit: func(h http.Header, _ *string) { h.Set(webhooks.HeaderTimestamp, strconv.Itoa(vectorTS+1)) }},
		{name: "old timestamp", signWith: both, verify: both, now: now.Add(5*time.Minute + time.Second), want: webhooks.ErrTimestamp},
		{name: "future timestamp", signWith: both, verify: both, now: now.Add(-5*time.Minute - time.Second), want: webhooks.ErrTimestamp},
		{name: "timestamp at the tolerance", signWith: both, verify: both, now: now.Add(5 * time.Minute)},
		{name: "non-numeric timestamp", signWith: both, verify: both, want: webhooks.ErrTimestamp,
			edit: func(h http.Header, _ *string) { h.Set(webhooks.HeaderTimestamp, "+1614265330") }},
		{name: "missing signature", signWith: both, verify: both, want: webhooks.ErrMissingHeader,
			edit: func(h http.Header, _ *string) { h.Del(webhooks.HeaderSignature) }},
		{name: "missing id", signWith: both, verify: both, want: webhooks.ErrMissingHeader,
			edit: func(h http.Header, _ *string) { h.Del(webhooks.HeaderID) }},
		{name: "missing timestamp", signWith: both, verify: both, want: webhooks.ErrMissingHeader,
			edit: func(h http.Header, _ *string) { h.Del(webhooks.HeaderTimestamp) }},
		{name: "other scheme only", signWith: both, verify: both, want: webhooks.ErrSignature,
			edit: func(h http.Header, _ *string) {
				h.Set(webhooks.HeaderSignature, strings.ReplaceAll(h.Get(webhooks.HeaderSignature), "v1,", "v1a,"))
			}},
		{name: "garbage before a valid signature", signWith: []string{oldSecret}, verify: both,
			edit: func(h http.Header, _ *string) {
				h.Set(webhooks.HeaderSignature, "v1,!!! v2,abc "+h.Get(webhooks.HeaderSignature))
			}},
		{name: "truncated signature", signWith: []string{oldSecret}, verify: both, want: webhooks.ErrSignature,
			edit: func(h http.Header, _ *string) {
				s := h.Get(webhooks.HeaderSignature)
				h.Set(webhooks.HeaderSignature, s[:len(s)-4]+"====")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := vectorBody
			h := signed(t, tc.signWith, vectorID, vectorTS, body)
			if tc.edit != nil {
				tc.edit(h, &body)
			}
			at := tc.now
			if at.IsZero() {
				at = now
			}
			err := webhooks.Verify(tc.verify, h, []byte(body), at, 0)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyEveryBitFlip flips each bit of the body, the id and the
// signature: every one must be refused.
func TestVerifyEveryBitFlip(t *testing.T) {
	secrets := []string{vectorSecret}
	now := time.Unix(vectorTS, 0)
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i/8] ^= 1 << (i % 8)
		return string(b)
	}
	for i := 0; i < 8*len(vectorBody); i++ {
		h := signed(t, secrets, vectorID, vectorTS, vectorBody)
		if err := webhooks.Verify(secrets, h, []byte(flip(vectorBody, i)), now, 0); err == nil {
			t.Fatalf("body bit %d flipped: accepted", i)
		}
	}
	for i := 0; i < 8*len(vectorID); i++ {
		h := signed(t, secrets, vectorID, vectorTS, vectorBody)
		h.Set(webhooks.HeaderID, flip(vectorID, i))
		if err := webhooks.Verify(secrets, h, []byte(vectorBody), now, 0); err == nil {
			t.Fatalf("id bit %d flipped: accepted", i)
		}
	}
	for i := 8 * len("v1,"); i < 8*len(vectorSig); i++ {
		h := signed(t, secrets, vectorID, vectorTS, vectorBody)
		h.Set(webhooks.HeaderSignature, flip(vectorSig, i))
		if err := webhooks.Verify(secrets, h, []byte(vectorBody), now, 0); err == nil {
			t.Fatalf("signature bit %d flipped: accepted", i)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(vectorID, strconv.Itoa(vectorTS), vectorSig, []byte(vectorBody))
	f.Add("", "", "", []byte(nil))
	f.Add("id", "999999999999999999999", "v1,", []byte("{}"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(webhooks.HeaderID, id)
		h.Set(webhooks.HeaderTimestamp, ts)
		h.Set(webhooks.HeaderSignature, sig)
		err := webhooks.Verify([]string{vectorSecret}, h, body, time.Unix(vectorTS, 0), 0)
		if err != nil {
			return
		}
		// Accepted: it must be the genuine signature of exactly this input.
		sec, _ := strconv.ParseInt(ts, 10, 64)
		want, serr := webhooks.Sign(vectorSecret, id, time.Unix(sec, 0), body)
		if serr != nil || !strings.Contains(" "+sig+" ", " "+want+" ") {
			t.Fatalf("accepted id=%q ts=%q sig=%q body=%q", id, ts, sig, body)
		}
	})
}
