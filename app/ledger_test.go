package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/vault"
)

// unreachable names a KurrentDB nothing listens on, with a password that
// must not appear in any error.
const unreachable = "kurrentdb://haldir:hunter2@127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10&gossipTimeout=1"

// TestEventStoreURLSelectsKurrentDB: HALDIR_EVENT_STORE_URL selects the
// KurrentDB ledger; without Postgres for the read models, with another
// scheme, or with a server that does not answer, the server refuses to
// start with an error that says why and holds no credential.
func TestEventStoreURLSelectsKurrentDB(t *testing.T) {
	ctx := context.Background()
	base := app.Config{EncryptionKey: vault.GenerateMasterKey(), SigningKey: ""}
	for name, c := range map[string]struct {
		cfg  func(app.Config) app.Config
		want string
	}{
		"embedded store": {func(c app.Config) app.Config { c.DataDir, c.EventStoreURL = t.TempDir(), unreachable; return c }, "set DATABASE_URL"},
		"another scheme": {func(c app.Config) app.Config { c.DataDir, c.EventStoreURL = t.TempDir(), "https://db:2113"; return c }, "esdb:// or kurrentdb://"},
		"unreachable": {func(c app.Config) app.Config {
			c.DatabaseURL, c.EventStoreURL = sqltest.NewPostgresDatabase(t), unreachable
			return c
		}, "open the KurrentDB ledger at kurrentdb://haldir:"},
	} {
		t.Run(name, func(t *testing.T) {
			a, err := app.Open(ctx, c.cfg(base), nil)
			if err == nil {
				a.Close()
				t.Fatal("the server started")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
