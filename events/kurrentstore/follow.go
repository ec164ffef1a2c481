package kurrentstore

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/haldir-dev/haldir/events"
)

// startFollower starts the catch-up subscription to the ledger stream.
func (s *Store) startFollower() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.followMu.Lock()
	s.followCancel, s.followDone = cancel, done
	s.followMu.Unlock()
	go s.follow(ctx, done)
}

// stopFollower stops it and waits until it has.
func (s *Store) stopFollower() {
	s.followMu.Lock()
	cancel, done := s.followCancel, s.followDone
	s.followCancel, s.followDone = nil, nil
	s.followMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// follow keeps the index current with what other replicas append, through
// a catch-up subscription to the ledger stream from the index's head, and
// wakes the store's waiters (Appended) as events arrive: this is how the
// projections of every replica learn of every append. A dropped
// subscription is caught up by reading and made again.
func (s *Store) follow(ctx context.Context, done chan struct{}) {
	defer close(done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		s.mu.RLock()
		next, ledger := s.idx.next, s.idx.stream
		s.mu.RUnlock()
		var from esdb.StreamPosition = esdb.Start{}
		if next > 0 {
			from = esdb.Revision(uint64(next - 1)) // delivers what follows it
		}
		var sub *esdb.Subscription
		err := s.conn.do(func(cl *esdb.Client) error {
			var err error
			sub, err = cl.SubscribeToStream(ctx, ledger, esdb.SubscribeToStreamOptions{From: from})
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("kurrentstore: cannot subscribe to the ledger; retrying", "ledger", ledger, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		started := time.Now()
		s.consume(ctx, sub, ledger)
		sub.Close()
		if ctx.Err() != nil {
			return
		}
		_ = s.sync(ctx) // whatever the drop hid; the next subscription starts after it
		if time.Since(started) < time.Second {
			// Dropped at once: do not spin on a server that keeps refusing.
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
	}
}

// consume applies the subscription's events until it drops. An event that
// is not the next position (the subscription skipped ahead, or the index
// was caught up by a read meanwhile) is left to sync, which reads the
// ledger in order.
func (s *Store) consume(ctx context.Context, sub *esdb.Subscription, ledger string) {
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			return
		case ev.EventAppeared == nil:
			continue // caught up, fell behind, checkpoint
		}
		r := ev.EventAppeared.OriginalEvent()
		pos := int64(r.EventNumber) + 1
		e, parsed, derr := decodeRecord(r)
		var ep *events.Event
		if parsed {
			ep = &e
		}
		s.mu.Lock()
		if s.idx.stream != ledger {
			s.mu.Unlock()
			return
		}
		behind := pos > s.idx.next+1
		applied := !behind && s.idx.apply(pos, ep, derr == nil)
		s.mu.Unlock()
		if behind {
			if err := s.sync(ctx); err != nil {
				return // resubscribe
			}
			continue
		}
		if applied {
			s.notify()
		}
	}
}

// adminRole is KurrentDB's administrators' role.
const adminRole = "$admins"

// protect sets the ledger's ACL when it has none (see Options.Roles).
func (s *Store) protect(ctx context.Context, cfg *esdb.Configuration) error {
	if s.opts.KeepACL {
		return nil
	}
	roles := s.opts.Roles
	if len(roles) == 0 && cfg.Username != "" {
		roles = []string{cfg.Username}
	}
	if len(roles) == 0 {
		s.log.Warn("kurrentstore: no user to grant the ledger to (Options.Roles); the ledger stream keeps the server's default ACL, which may let any client delete it",
			"ledger", s.opts.Ledger, "tls", !cfg.DisableTLS)
		return nil
	}
	has, err := s.hasACL(ctx)
	if err != nil {
		s.log.Warn("kurrentstore: cannot read the ledger's metadata; leaving its ACL alone", "ledger", s.opts.Ledger, "err", err)
		return nil
	}
	if has {
		return nil
	}
	var acl esdb.Acl
	acl.AddReadRoles(roles...)
	acl.AddWriteRoles(roles...)
	acl.AddMetaReadRoles(roles...)
	acl.AddDeleteRoles(adminRole)
	acl.AddMetaWriteRoles(adminRole)
	var md esdb.StreamMetadata
	md.SetAcl(acl)
	err = s.conn.do(func(cl *esdb.Client) error {
		_, err := cl.SetStreamMetadata(ctx, s.opts.Ledger, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, md)
		return err
	})
	switch classify(err) {
	case written:
		s.log.Info("kurrentstore: set the ledger's ACL", "ledger", s.opts.Ledger, "roles", roles)
	case conflicted:
		// Another replica set the metadata first.
	default:
		s.log.Warn("kurrentstore: could not set the ledger's ACL; it keeps the server's", "ledger", s.opts.Ledger, "err", err)
	}
	return nil
}

// hasACL reports whether the ledger's metadata names an ACL.
func (s *Store) hasACL(ctx context.Context) (bool, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var data []byte
	err := s.conn.do(func(cl *esdb.Client) error {
		rs, err := cl.ReadStream(ctx, "$$"+s.opts.Ledger, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		ev, err := rs.Recv()
		if err != nil {
			return err
		}
		data = ev.OriginalEvent().Data
		return nil
	})
	if errors.Is(err, io.EOF) || isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var md map[string]json.RawMessage
	if err := json.Unmarshal(data, &md); err != nil {
		return false, nil
	}
	_, ok := md["$acl"]
	return ok, nil
}
