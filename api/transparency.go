package api

import (
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/transparency"
)

var errNoLog = domain.Errorf(domain.CodeUnavailable, "signed checkpoints are not configured on this server")

func (s *Server) treeHead(c *call) (int, any, error) {
	if s.deps.Log == nil {
		return 0, nil, errNoLog
	}
	head, err := s.deps.Log.Head(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	sth, err := transparency.NewSignedTreeHead(head.Note, s.deps.Log.VerifierKey())
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, sth, nil
}

func (s *Server) inclusionProof(c *call) (int, any, error) {
	if s.deps.Log == nil {
		return 0, nil, errNoLog
	}
	id := c.vars("entry_id")
	e, found, err := s.deps.Store.Lookup(c.ctx, id)
	if err != nil {
		return 0, nil, err
	}
	if !found || e.Tenant != c.tenant {
		return 0, nil, domain.Errorf(domain.CodeNotFound, "no entry %q in this tenant's log", truncate(id, 64))
	}
	p, _, err := s.deps.Log.Inclusion(c.ctx, &e)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p, nil
}

func (s *Server) consistencyProof(c *call) (int, any, error) {
	if s.deps.Log == nil {
		return 0, nil, errNoLog
	}
	q := c.r.URL.Query()
	sizes := [2]int64{}
	for i, name := range []string{"first", "second"} {
		n, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil || n < 0 {
			return 0, nil, domain.Invalid(name, "%s must be a tree size (a whole number)", name)
		}
		sizes[i] = n
	}
	p, err := s.deps.Log.Consistency(c.ctx, c.tenant, sizes[0], sizes[1])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p, nil
}

// checkpointKey serves the note verifier key as text, for auditors and
// `haldir audit verify --key`.
func (s *Server) checkpointKey(c *call) error {
	if s.deps.Log == nil {
		return errNoLog
	}
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(c.w, s.deps.Log.VerifierKey())
	return nil
}

func (s *Server) jwks(c *call) error {
	if s.deps.Log == nil {
		return errNoLog
	}
	b, err := transparency.JWKS(s.deps.Log.VerifierKey())
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/jwk-set+json")
	c.w.Write(b)
	return nil
}

// exportBundle streams the tenant's offline-verifiable bundle: every event
// as stored, the newest signed checkpoint and the key that signed it.
func (s *Server) exportBundle(c *call) error {
	if s.deps.Log == nil {
		return errNoLog
	}
	head, err := s.deps.Log.Head(c.ctx, c.tenant)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/x-ndjson")
	c.w.Header().Set("Content-Disposition", "attachment; filename=\"haldir-bundle.jsonl\"")
	c.w.WriteHeader(http.StatusOK)
	evs := iter.Seq2[*events.Event, error](func(yield func(*events.Event, error) bool) {
		for after := int64(0); ; {
			page, err := s.deps.Store.ReadTenant(c.ctx, c.tenant, after, 1000)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range page {
				if !yield(&page[i], nil) {
					return
				}
				after = page[i].Seq
			}
			if len(page) < 1000 {
				return
			}
		}
	})
	err = transparency.WriteBundle(c.w, transparency.BundleHeader{Tenant: c.tenant, ExportedAt: s.now().Truncate(time.Second)}, evs, head.Note, s.deps.Log.VerifierKey())
	if err != nil && !errors.Is(err, c.ctx.Err()) {
		s.log.Error("bundle export interrupted", "request_id", c.requestID, "err", err)
	}
	return nil
}
