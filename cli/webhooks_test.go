package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/webhooks"
)

// TestWebhooksCommands: add, deliveries (after a real delivery) and rotate
// against a live server and receiver.
func TestWebhooksCommands(t *testing.T) {
	s := apptest.Start(t, "sqlite", func(cfg *app.Config) {
		cfg.WebhookRetry = webhooks.Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond, MaxAttempts: 5}
	})
	c := s.NewTenant("hooks")
	up := startUpstream(t)
	t.Setenv("HALDIR_CONFIG_FILE", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("HALDIR_BASE_URL", s.URL)
	t.Setenv("HALDIR_API_KEY", c.Key)

	var added struct{ WebhookID, Secret string }
	r := run(t, "", "webhooks", "add", up+"/hook", "--json")
	var m map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &m) != nil {
		t.Fatalf("webhooks add: %+v", r)
	}
	added.WebhookID, _ = m["webhook_id"].(string)
	added.Secret, _ = m["secret"].(string)
	if !strings.HasPrefix(added.Secret, "whsec_") {
		t.Fatalf("webhooks add printed no secret: %s", r.stdout)
	}
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "x"}).Str("session_id")
	c.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)

	var listed string
	delivered := eventually(30*time.Second, func() bool {
		r := run(t, "", "webhooks", "deliveries", "-n", "5", "--json")
		var d struct {
			Count      int              `json:"count"`
			Deliveries []map[string]any `json:"deliveries"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &d) != nil {
			t.Fatalf("webhooks deliveries: %+v", r)
		}
		listed = r.stdout
		return d.Count > 0 && d.Deliveries[0]["status_code"] == float64(204)
	})
	if !delivered {
		t.Fatalf("no successful delivery listed: %s", listed)
	}
	if r := run(t, "", "webhooks", "deliveries"); r.code != 0 || !strings.Contains(r.stdout, "session.revoked") {
		t.Errorf("human deliveries: %+v", r)
	}
	r = run(t, "", "webhooks", "rotate", added.WebhookID, "--grace", "60")
	if r.code != 0 || !strings.Contains(r.stdout, "whsec_") || strings.Contains(r.stdout, added.Secret) {
		t.Errorf("webhooks rotate: %+v", r)
	}
	if r := run(t, "", "webhooks", "rotate", "whk_nonexistent"); r.code != 1 {
		t.Errorf("rotating an unknown webhook exited %d: %s", r.code, r.stderr)
	}
}

// eventually re-checks cond on a short ticker until it holds or within has
// passed, and reports whether it held. Tests wait for conditions through it,
// never by sleeping.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C // polling interval, not a wait for the condition
	}
	return true
}
