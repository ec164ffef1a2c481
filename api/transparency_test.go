package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
)

func treeHead(t *testing.T, c *apptest.Client, vkey string) transparency.Checkpoint {
	t.Helper()
	r := c.Do("GET", "/v1/audit/tree-head", nil).Expect(t, 200)
	sth, err := transparency.ParseSignedTreeHead(r.Raw)
	if err != nil {
		t.Fatalf("tree head: %v (%s)", err, r)
	}
	cp, err := transparency.VerifyTreeHead(sth, vkey)
	if err != nil {
		t.Fatalf("tree head does not verify with the published key: %v", err)
	}
	return cp
}

// TestTransparencyLog: signed tree heads, inclusion and consistency proofs
// that an auditor checks with nothing but the published key.
func TestTransparencyLog(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c, other := s.NewTenant("log"), s.NewTenant("other")
		vkey := strings.TrimSpace(string(s.Anonymous().Do("GET", "/.well-known/haldir-checkpoint-key", nil).Expect(t, 200).Raw))
		jwks := s.Anonymous().Do("GET", "/.well-known/jwks.json", nil).Expect(t, 200)
		var set struct {
			Keys []struct{ Kty, Crv, X, Kid string }
		}
		if err := json.Unmarshal(jwks.Raw, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Crv != "Ed25519" || set.Keys[0].X == "" {
			t.Errorf("jwks: %s (%v)", jwks, err)
		}
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a"}).Expect(t, 201).Str("session_id")
		var entries []string
		for i := 0; i < 5; i++ {
			entries = append(entries, c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprint(i)}).Expect(t, 201).Str("entry_id"))
		}
		first := treeHead(t, c, vkey)
		// tenant.created, key.created, session.created, 5 actions
		if first.Size != 8 || first.Tenant != c.Tenant {
			t.Fatalf("first checkpoint %+v, want size 8 for %s", first, c.Tenant)
		}
		for i, id := range entries {
			r := c.Do("GET", "/v1/audit/inclusion-proof/"+id, nil).Expect(t, 200)
			p, err := transparency.ParseInclusionProof(r.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := transparency.VerifyInclusion(p, int64(i+3), tlog.Hash(p.LeafHash), first.Size, first.Root); err != nil {
				t.Errorf("inclusion of entry %d does not verify against the signed root: %v", i, err)
			}
		}
		other.Do("GET", "/v1/audit/inclusion-proof/"+entries[0], nil).Expect(t, 404, "not_found")
		for i := 0; i < 3; i++ {
			c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": "more"}).Expect(t, 201)
		}
		second := treeHead(t, c, vkey)
		if second.Size != 11 {
			t.Fatalf("second checkpoint size %d, want 11", second.Size)
		}
		r := c.Do("GET", fmt.Sprintf("/v1/audit/consistency-proof?first=%d&second=%d", first.Size, second.Size), nil).Expect(t, 200)
		cp, err := transparency.ParseConsistencyProof(r.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := transparency.VerifyConsistency(cp, first.Size, first.Root, second.Size, second.Root); err != nil {
			t.Errorf("consistency proof does not verify: %v", err)
		}
		if err := transparency.CheckConsistency(first, second, cp.Path()); err != nil {
			t.Errorf("CheckConsistency: %v", err)
		}
		c.Do("GET", "/v1/audit/consistency-proof?first=5&second=999", nil).Expect(t, 400, "invalid_request")
		c.Do("GET", "/v1/audit/consistency-proof?first=x&second=2", nil).Expect(t, 400, "invalid_request")
		// The other tenant's log is its own.
		if o := treeHead(t, other, vkey); o.Tenant != other.Tenant || o.Size != 2 {
			t.Errorf("other tenant's checkpoint %+v", o)
		}
	})
}

// TestAuditorVerifiesBundleOffline: an auditor takes a bundle and the
// published key, verifies everything with no server, keeps the checkpoint;
// later the operator deletes the newest event straight from the database,
// and the next bundle is caught against the checkpoint the auditor kept.
func TestAuditorVerifiesBundleOffline(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("audited")
		s.NewTenant("bystander")
		vkey := strings.TrimSpace(string(s.Anonymous().Do("GET", "/.well-known/haldir-checkpoint-key", nil).Raw))
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a", "spend_limit": 10}).Expect(t, 201).Str("session_id")
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 3}).Expect(t, 200)
		for i := 0; i < 4; i++ {
			c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprint(i), "details": map[string]any{"i": i}}).Expect(t, 201)
		}
		bundle := c.Do("GET", "/v1/audit/export?format=bundle", nil).Expect(t, 200).Raw
		// Offline: the server is not consulted from here on.
		rep, err := transparency.VerifyBundle(bytes.NewReader(bundle), vkey, nil)
		if err != nil {
			t.Fatalf("the auditor's verification failed: %v", err)
		}
		if rep.Events != 8 || rep.Checkpoint.Size != 8 || rep.Tenant != c.Tenant {
			t.Fatalf("report %+v", rep)
		}
		kept := checkpointNote(t, bundle)
		// A key the auditor does not trust is refused.
		_, otherKey, _ := transparency.GenerateSigningKey("someone-else")
		if _, err := transparency.VerifyBundle(bytes.NewReader(bundle), otherKey, nil); err == nil {
			t.Error("a bundle verified against an untrusted key")
		}

		// The log grows; a later bundle is consistent with the kept one.
		c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": "later"}).Expect(t, 201)
		later := c.Do("GET", "/v1/audit/export?format=bundle", nil).Expect(t, 200).Raw
		rep, err = transparency.VerifyBundle(bytes.NewReader(later), vkey, kept)
		if err != nil || rep.Old == nil || rep.Old.Size != 8 || rep.Checkpoint.Size != 9 {
			t.Fatalf("later bundle against the kept checkpoint: %+v, %v", rep, err)
		}
		keptLater := checkpointNote(t, later)

		// The operator deletes the newest event from the database and
		// covers the tracks: removes the checkpoint that signed it and
		// rebuilds the read models, so the server's own view is consistent.
		db := s.App.DB
		ctx := context.Background()
		if err := sqltest.Tamper(ctx, db, "DELETE FROM events WHERE tenant_id = ? AND seq = 9", c.Tenant); err != nil {
			t.Fatal(err)
		}
		if err := sqltest.Tamper(ctx, db.State(), "DELETE FROM tree_checkpoints WHERE tenant_id = ? AND size = 9", c.Tenant); err != nil {
			t.Fatal(err)
		}
		if _, err := projections.Rebuild(ctx, db.State(), s.App.Store, projections.CoreGroup, nil); err != nil {
			t.Fatal(err)
		}
		// The chain alone cannot see a missing tail, and the new bundle is
		// self-consistent...
		if v := c.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
			t.Fatalf("the chain was expected to still verify after a tail deletion: %s", v)
		}
		truncated := c.Do("GET", "/v1/audit/export?format=bundle", nil).Expect(t, 200).Raw
		if rep, err := transparency.VerifyBundle(bytes.NewReader(truncated), vkey, nil); err != nil || rep.Checkpoint.Size != 8 {
			t.Fatalf("the rolled-back bundle was expected to verify on its own: %+v, %v", rep, err)
		}
		// ...only the checkpoint the auditor kept reveals the deletion.
		_, err = transparency.VerifyBundle(bytes.NewReader(truncated), vkey, keptLater)
		if !errors.Is(err, transparency.ErrTruncated) {
			t.Fatalf("a bundle missing the newest event verified against the kept checkpoint: %v", err)
		}
		t.Logf("truncation caught: %v", err)
	})
}

// checkpointNote extracts the signed checkpoint from a bundle's last line.
func checkpointNote(t *testing.T, bundle []byte) []byte {
	t.Helper()
	lines := bytes.Split(bytes.TrimSpace(bundle), []byte("\n"))
	var last struct {
		Kind       string `json:"kind"`
		Checkpoint string `json:"checkpoint"`
	}
	if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil || last.Kind != "checkpoint" {
		t.Fatalf("bundle does not end with a checkpoint: %s", lines[len(lines)-1])
	}
	return []byte(last.Checkpoint)
}
