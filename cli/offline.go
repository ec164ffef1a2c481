package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haldir-dev/haldir/evidence"
	"github.com/haldir-dev/haldir/transparency"
)

// readKey reads a verifier key given as a file path or inline
// ("name+hash+base64"; base64 may hold '/', so a file is tried first).
func readKey(s string) (string, error) {
	if b, err := os.ReadFile(s); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if strings.Count(s, "+") >= 2 {
		return strings.TrimSpace(s), nil
	}
	return "", fmt.Errorf("%q is neither a readable file nor a verifier key (name+hash+key)", s)
}

// verifyBundle checks an offline bundle with no server: the chain, the
// Merkle root, the checkpoint signature by the trusted key, and consistency
// with an older checkpoint the auditor kept.
func (e *env) verifyBundle(path, key, old string) error {
	if key == "" {
		return fail(ExitUsage, "--bundle needs --key: the verifier key you trust (from /.well-known/haldir-checkpoint-key), inline or as a file")
	}
	vkey, err := readKey(key)
	if err != nil {
		return fail(ExitUsage, "cannot read the key: %v", err)
	}
	var oldNote []byte
	if old != "" {
		if oldNote, err = os.ReadFile(old); err != nil {
			return fail(ExitUsage, "cannot read the old checkpoint: %v", err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(ExitUsage, "cannot open the bundle: %v", err)
	}
	defer f.Close()
	rep, err := transparency.VerifyBundle(f, vkey, oldNote)
	if err != nil {
		perr := e.print(map[string]any{"verified": false, "error": err.Error()}, func(w io.Writer) {
			fmt.Fprintf(w, "✗ bundle does NOT verify: %v\n", err)
		})
		if perr != nil {
			return perr
		}
		return &exitError{code: ExitCheckFailed, err: errors.New("bundle verification failed")}
	}
	out := map[string]any{"verified": true, "tenant": rep.Tenant, "events": rep.Events, "checkpoint_size": rep.Checkpoint.Size,
		"checkpoint_root": fmt.Sprintf("%x", rep.Checkpoint.Root[:]), "signed_at": rep.Checkpoint.Time}
	if rep.Old != nil {
		out["consistent_with_size"] = rep.Old.Size
	}
	return e.print(out, func(w io.Writer) {
		fmt.Fprintf(w, "✓ bundle verified offline: tenant %s, %d events, chain recomputed, Merkle root matches the checkpoint signed %s (size %d)\n",
			rep.Tenant, rep.Events, rep.Checkpoint.Time.Format("2006-01-02 15:04:05Z"), rep.Checkpoint.Size)
		if rep.Old != nil {
			fmt.Fprintf(w, "✓ consistent with your earlier checkpoint of size %d: the log only grew\n", rep.Old.Size)
		}
		if unsigned := rep.Events - rep.Checkpoint.Size; unsigned > 0 {
			fmt.Fprintf(w, "  %d newer events are chained but not yet covered by a signed checkpoint\n", unsigned)
		}
	})
}

func newCompliance(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "compliance",
		Short:   "Compliance evidence packs",
		Example: "  haldir compliance verify evidence-q1.json --key haldir+1234abcd+AbC…",
	}
	var key string
	verify := &cobra.Command{
		Use:   "verify PACK.json",
		Short: "Check an evidence pack's digest and Ed25519 signature offline",
		Long: `Recompute the SHA-256 of the pack's sections 1-7 and check the Ed25519 signature
over it with the verifier key you trust. Needs no server. Exits 1 when the pack
was modified or is signed by another key.`,
		Example: "  haldir compliance verify evidence-q1-2026.json --key ./checkpoint-key.txt",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return fail(ExitUsage, "--key is required: the verifier key you trust")
			}
			vkey, err := readKey(key)
			if err != nil {
				return fail(ExitUsage, "cannot read the key: %v", err)
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return fail(ExitUsage, "cannot read the pack: %v", err)
			}
			var p evidence.Pack
			if err := json.Unmarshal(b, &p); err != nil {
				return fail(ExitCheckFailed, "%s is not a JSON evidence pack: %v", args[0], err)
			}
			if err := evidence.Verify(&p, vkey); err != nil {
				perr := e.print(map[string]any{"verified": false, "error": err.Error()}, func(w io.Writer) { fmt.Fprintf(w, "✗ %v\n", err) })
				if perr != nil {
					return perr
				}
				return &exitError{code: ExitCheckFailed, err: errors.New("the pack does not verify")}
			}
			return e.print(map[string]any{"verified": true, "tenant": p.Sections.Identity.TenantID, "digest": p.Manifest.Digest,
				"since": p.Sections.Identity.Since, "until": p.Sections.Identity.Until}, func(w io.Writer) {
				fmt.Fprintf(w, "✓ evidence pack for %s (%s – %s) is unmodified and signed by the trusted key\n",
					p.Sections.Identity.TenantID, p.Sections.Identity.Since, p.Sections.Identity.Until)
			})
		},
	}
	verify.Flags().StringVar(&key, "key", "", "the verifier key you trust, inline or a file")
	cmd.AddCommand(verify)
	newComplianceRemote(e, cmd)
	return cmd
}
