package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haldir-dev/haldir/storage/keystore"
	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/vault"
)

func newVault(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "vault",
		Short:   "Operate the secret vault's keys",
		Example: "  haldir vault rotate-key",
	}
	var toKeyEnv string
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Add a key-encryption key version and re-wrap every data key",
		Long: `Add a key-encryption key (KEK) version and re-wrap every secret's data key under
it, without touching the ledger: stored ciphertext keeps opening. By default
the new version derives from the current HALDIR_ENCRYPTION_KEY. With
--to-key-env NAME the new version derives from the master key in environment
variable NAME; once this command succeeds, restart every server with that
key as HALDIR_ENCRYPTION_KEY.`,
		Example: `  haldir vault rotate-key --data-dir ./haldir-data
  HALDIR_NEW_KEY=$(haldir init --print-key) haldir vault rotate-key --to-key-env HALDIR_NEW_KEY`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg := e.config()
			db, err := e.openLocal(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			dataDir := cfg.DataDir
			if cfg.DatabaseURL != "" {
				dataDir = ""
			}
			master, _, err := keystore.LoadMasterKey(cfg.EncryptionKey, dataDir)
			if err != nil {
				return fail(ExitUsage, "%v", err)
			}
			var next *vault.MasterKey
			if toKeyEnv != "" {
				k, err := vault.ParseMasterKey(os.Getenv(toKeyEnv))
				if err != nil {
					return fail(ExitUsage, "the new key in $%s is not 32 bytes of base64url: %v", toKeyEnv, err)
				}
				next = &k
			}
			p := e.progress("re-wrapping data keys")
			n, version, err := keystore.New(db.State()).Rotate(ctx, master, next, p.update)
			p.done()
			if errors.Is(err, keystore.ErrWrongMasterKey) {
				return fail(ExitAuth, "%v", err)
			}
			if err != nil {
				return fail(ExitCheckFailed, "rotation failed (data keys already re-wrapped stay valid; run it again): %v", err)
			}
			return e.print(map[string]any{"rotated": true, "kek_version": version, "data_keys_rewrapped": n, "new_master_key": next != nil}, func(w io.Writer) {
				fmt.Fprintf(w, "vault now at key version %d; %d data keys re-wrapped\n", version, n)
				if next != nil {
					fmt.Fprintf(w, "restart every server with the new key as HALDIR_ENCRYPTION_KEY\n")
				}
			})
		},
	}
	rotate.Flags().StringVar(&toKeyEnv, "to-key-env", "", "derive the new version from the master key in this environment variable")
	cmd.AddCommand(rotate)
	return cmd
}

func newInit(e *env) *cobra.Command {
	var printKey bool
	var file string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a .env with freshly generated HALDIR_ENCRYPTION_KEY and HALDIR_SIGNING_KEY",
		Long: `Write a .env file (mode 0600) holding a freshly generated HALDIR_ENCRYPTION_KEY
(the vault's master key: 32 random bytes, base64url) and HALDIR_SIGNING_KEY (the
Ed25519 key that signs audit checkpoints). A key the file already sets is never
overwritten; missing ones are appended.`,
		Example: "  haldir init\n  haldir init --print-key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if printKey {
				key := vault.GenerateMasterKey()
				return e.print(map[string]any{"key": key}, func(w io.Writer) { fmt.Fprintln(w, key) })
			}
			existing, err := os.ReadFile(file)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fail(ExitCheckFailed, "cannot read %s: %v", file, err)
			}
			has := func(name string) bool {
				for _, line := range strings.Split(string(existing), "\n") {
					if strings.HasPrefix(strings.TrimSpace(line), name+"=") {
						return true
					}
				}
				return false
			}
			var add strings.Builder
			var written, kept []string
			if has("HALDIR_ENCRYPTION_KEY") {
				kept = append(kept, "HALDIR_ENCRYPTION_KEY")
			} else {
				fmt.Fprintf(&add, "# The vault's master key. Back it up: secrets cannot be read without it.\nHALDIR_ENCRYPTION_KEY=%s\n", vault.GenerateMasterKey())
				written = append(written, "HALDIR_ENCRYPTION_KEY")
			}
			if has("HALDIR_SIGNING_KEY") {
				kept = append(kept, "HALDIR_SIGNING_KEY")
			} else {
				skey, _, err := transparency.GenerateSigningKey("haldir")
				if err != nil {
					return fail(ExitCheckFailed, "cannot generate a signing key: %v", err)
				}
				fmt.Fprintf(&add, "# Signs audit checkpoints; auditors trust its public half. Keep it.\nHALDIR_SIGNING_KEY=%s\n", skey)
				written = append(written, "HALDIR_SIGNING_KEY")
			}
			if add.Len() > 0 {
				f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
				if err != nil {
					return fail(ExitCheckFailed, "cannot write %s: %v", file, err)
				}
				prefix := ""
				if len(existing) > 0 && !strings.HasSuffix(string(existing), "\n") {
					prefix = "\n"
				}
				_, werr := f.WriteString(prefix + add.String())
				if cerr := f.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					return fail(ExitCheckFailed, "cannot write %s: %v", file, werr)
				}
			}
			return e.print(map[string]any{"file": file, "written": written, "kept": kept}, func(w io.Writer) {
				for _, k := range written {
					fmt.Fprintf(w, "wrote %s to %s (mode 0600); back it up\n", k, file)
				}
				for _, k := range kept {
					fmt.Fprintf(w, "%s already sets %s; left it unchanged\n", file, k)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&printKey, "print-key", false, "print a new encryption key instead of writing a file")
	cmd.Flags().StringVar(&file, "file", ".env", "the file to write")
	return cmd
}
