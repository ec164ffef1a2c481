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
	keyring := sync.OnceValues(func() (*vault.Keyring, error) {
		master, _, err := keystore.LoadMasterKey(a.Config.EncryptionKey, dataDir)
		if err != nil {
			return nil, err
		}
		return a.Keys.LoadKeyring(context.Background(), master)
	})
	dash := web.New(web.Options{
		API:      a.API,
		Sessions: sqlsessions.New(a.DB),
		Keyring:  func(context.Context) (*vault.Keyring, error) { return keyring() },
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
