package sqlsessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/web"
	"github.com/haldir-dev/haldir/web/sqlsessions"
)

func TestStore(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			st := sqlsessions.New(db)
			ctx := context.Background()
			now := time.Unix(1_800_000_000, 0)
			mk := func(hash, tenant, prefix string, ttl time.Duration) web.Session {
				return web.Session{TokenHash: hash, Tenant: tenant, KeyPrefix: prefix, KeyName: "k", Sealed: []byte{1, 2}, Wrapped: []byte{3},
					CreatedAt: now, ExpiresAt: now.Add(ttl)}
			}
			for _, s := range []web.Session{mk("a", "t1", "hld_A", time.Hour), mk("b", "t1", "hld_A", time.Hour), mk("c", "t1", "hld_C", time.Hour),
				mk("d", "t2", "hld_A", time.Hour), mk("e", "t1", "hld_E", time.Minute)} {
				if err := st.Create(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Create(ctx, mk("a", "t1", "hld_X", time.Hour)); err == nil {
				t.Error("a second session with the same token hash was stored")
			}
			live := func(hash string, at time.Time) bool {
				t.Helper()
				s, found, err := st.Get(ctx, hash, at)
				if err != nil {
					t.Fatal(err)
				}
				if found && (s.Tenant == "" || string(s.Sealed) != "\x01\x02" || !s.ExpiresAt.After(at)) {
					t.Errorf("Get(%s) = %+v", hash, s)
				}
				return found
			}
			if !live("a", now) || live("zz", now) {
				t.Fatal("Get does not find what was stored, or finds what was not")
			}
			if live("e", now.Add(time.Minute)) {
				t.Error("an expired session is live")
			}
			if err := st.Revoke(ctx, "a", now); err != nil {
				t.Fatal(err)
			}
			if err := st.Revoke(ctx, "a", now.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if live("a", now) || !live("b", now) {
				t.Error("Revoke ended the wrong session")
			}
			if err := st.RevokeKey(ctx, "t1", "hld_A", now); err != nil {
				t.Fatal(err)
			}
			if live("b", now) || !live("c", now) || !live("d", now) {
				t.Error("RevokeKey ended sessions of another key or tenant, or not its own")
			}
			n, err := st.Sweep(ctx, now.Add(30*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("Sweep deleted %d sessions, want the 1 expired", n)
			}
		})
	}
}
