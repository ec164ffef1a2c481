package app

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/haldir-dev/haldir/storage/keystore"
	"github.com/haldir-dev/haldir/vault"
	"github.com/haldir-dev/haldir/web"
	"github.com/haldir-dev/haldir/web/sqlsessions"
)

// Handler is what Serve serves: the dashboard under /dashboard, and the API
// for everything else. The dashboard is handed the API handler itself and
// acts only through it, with the signed-in person's key.
func (a *App) Handler() http.Handler {
	dataDir := a.Config.DataDir
	if a.Config.DatabaseURL != "" {
		dataDir = ""
	}
	// The sessions' API keys are sealed with the vault's keyring (the
	// master key of HALDIR_ENCRYPTION_KEY, already loaded once at Open).
	// A failed load is retried at the next sign-in rather than remembered.
	var mu sync.Mutex
	var ring *vault.Keyring
	keyring := func(ctx context.Context) (*vault.Keyring, error) {
		mu.Lock()
		defer mu.Unlock()
		if ring != nil {
			return ring, nil
		}
		master, _, err := keystore.LoadMasterKey(a.Config.EncryptionKey, dataDir)
		if err != nil {
			return nil, err
		}
		r, err := a.Keys.LoadKeyring(ctx, master)
		if err != nil {
			return nil, err
		}
		ring = r
		return r, nil
	}
	dash := web.New(web.Options{
		API:      a.API,
		Sessions: sqlsessions.New(a.DB.State()),
		Keyring:  keyring,
		Log:      a.Log.With("component", "dashboard"),
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == web.Prefix || strings.HasPrefix(r.URL.Path, web.Prefix+"/") {
			dash.ServeHTTP(w, r)
			return
		}
		a.API.ServeHTTP(w, r)
	})
}
