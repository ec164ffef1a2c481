package api

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/events"
)

// chainTTL is how long a chain verdict is reused by the overview.
const chainTTL = 30 * time.Second

// chainVerdict is the outcome of verifying one tenant's chain.
type chainVerdict struct {
	Verified    bool
	Checked     int64
	HeadHash    string
	FirstBadSeq int64
	Reason      string
	at          time.Time
}

// chains remembers each tenant's latest verdict.
type chains struct {
	mu sync.Mutex
	m  map[string]chainVerdict
}

// verifyChain verifies the tenant's chain, records a break in the ledger
// (so webhooks and evidence hear of it; the command records each break
// once, across replicas), and remembers the verdict for the overview. With
// fresh false a verdict younger than chainTTL is reused.
func (s *Server) verifyChain(ctx context.Context, tenant string, fresh bool) (chainVerdict, error) {
	s.chains.mu.Lock()
	prev, known := s.chains.m[tenant]
	s.chains.mu.Unlock()
	if known && !fresh && time.Since(prev.at) < chainTTL {
		return prev, nil
	}
	v := chainVerdict{at: time.Now()}
	r, err := events.VerifyTenant(ctx, s.deps.Store, tenant, nil)
	var ve *events.VerifyError
	switch {
	case errors.As(err, &ve):
		v.FirstBadSeq, v.Reason, v.Checked = ve.Seq, ve.Reason, ve.Seq-1
	case err != nil:
		return v, err
	default:
		v.Verified, v.Checked = true, r.Checked
		h := r.Heads[tenant]
		v.HeadHash = hex.EncodeToString(h.Hash[:])
	}
	if !v.Verified {
		a := commands.Actor{Tenant: tenant, KeyPrefix: "system", Route: "chain verification"}
		if _, err := s.deps.Commands.RecordVerificationFailure(ctx, a, v.FirstBadSeq, v.Reason); err != nil {
			s.log.Error("could not record a chain verification failure", "tenant", tenant, "err", err)
		}
	}
	s.chains.mu.Lock()
	s.chains.m[tenant] = v
	s.chains.mu.Unlock()
	return v, nil
}
