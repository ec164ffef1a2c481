// Package treelog publishes each tenant's ledger as a transparency log:
// Ed25519-signed checkpoints of the tenant's RFC 6962 Merkle tree, stored
// append-only, with inclusion and consistency proofs against them (the
// formats are package transparency's).
//
// An auditor who keeps any checkpoint can later demand proof that the log
// only grew from it, and can check any entry's inclusion without an export.
package treelog

import (
	"context"
	"errors"
	"fmt"
	"github.com/haldir-dev/haldir/internal/keyfile"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/transparency"
)

// Checkpoints stores signed checkpoint notes, at most one per tenant and
// tree size (storage/checkpoints keeps them in the database).
type Checkpoints interface {
	// At returns the note stored for exactly size.
	At(ctx context.Context, tenant string, size int64) ([]byte, bool, error)
	// Latest returns the note of the largest stored size.
	Latest(ctx context.Context, tenant string) ([]byte, bool, error)
	// Add stores note for size unless one is stored already; racing adders
	// of one size store one note.
	Add(ctx context.Context, tenant string, size int64, signedAt time.Time, note []byte) error
	// Grown lists the tenants whose tree holds more entries than their
	// newest checkpoint.
	Grown(ctx context.Context) ([]string, error)
}

// Sizes reports how many of a tenant's events the projected tree holds.
type Sizes interface {
	TreeSize(ctx context.Context, tenant string) (int64, error)
}

// Log signs and serves checkpoints. It is safe for concurrent use.
type Log struct {
	store  Checkpoints
	hashes transparency.HashStore
	sizes  Sizes
	signer note.Signer
	vkey   string
	now    func() time.Time
}

// New returns a Log signing with the note signer key skey.
func New(store Checkpoints, hashes transparency.HashStore, sizes Sizes, skey string) (*Log, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("treelog: signing key: %w", err)
	}
	vkey, err := transparency.VerifierKey(skey)
	if err != nil {
		return nil, fmt.Errorf("treelog: signing key: %w", err)
	}
	return &Log{store: store, hashes: hashes, sizes: sizes, signer: signer, vkey: vkey, now: time.Now}, nil
}

// VerifierKey returns the public note verifier key auditors trust.
func (l *Log) VerifierKey() string { return l.vkey }

// Hashes returns the hash store proofs are computed from.
func (l *Log) Hashes() transparency.HashStore { return l.hashes }

// Stored is a published checkpoint.
type Stored struct {
	Note       []byte
	Checkpoint transparency.Checkpoint
}

// Head returns the tenant's newest checkpoint, signing and storing a new
// one first when the tree has grown past the last published size.
func (l *Log) Head(ctx context.Context, tenant string) (Stored, error) {
	size, err := l.sizes.TreeSize(ctx, tenant)
	if err != nil {
		return Stored{}, err
	}
	last, found, err := l.latest(ctx, tenant)
	if err != nil {
		return Stored{}, err
	}
	if found && last.Checkpoint.Size >= size {
		return last, nil
	}
	return l.publish(ctx, tenant, size)
}

// At returns the published checkpoint of exactly size, if there is one.
func (l *Log) At(ctx context.Context, tenant string, size int64) (Stored, bool, error) {
	b, found, err := l.store.At(ctx, tenant, size)
	if err != nil || !found {
		return Stored{}, false, err
	}
	return l.open(b)
}

func (l *Log) latest(ctx context.Context, tenant string) (Stored, bool, error) {
	b, found, err := l.store.Latest(ctx, tenant)
	if err != nil || !found {
		return Stored{}, false, err
	}
	return l.open(b)
}

func (l *Log) open(b []byte) (Stored, bool, error) {
	c, err := transparency.OpenCheckpoint(b, l.vkey)
	if err != nil {
		return Stored{}, false, fmt.Errorf("treelog: a stored checkpoint does not verify with this server's key: %w", err)
	}
	return Stored{Note: b, Checkpoint: c}, true, nil
}

// publish signs the tree head of size and stores it. Racing publishers of
// the same size store one checkpoint; the loser returns the winner's.
func (l *Log) publish(ctx context.Context, tenant string, size int64) (Stored, error) {
	c, err := transparency.TreeHead(ctx, l.hashes, tenant, size)
	if err != nil {
		return Stored{}, err
	}
	c.Time = l.now().UTC().Truncate(time.Second)
	msg, err := transparency.SignCheckpoint(l.signer, c)
	if err != nil {
		return Stored{}, err
	}
	if err := l.store.Add(ctx, tenant, size, c.Time, msg); err != nil {
		return Stored{}, err
	}
	s, found, err := l.At(ctx, tenant, size)
	if err != nil {
		return Stored{}, err
	}
	if !found {
		return Stored{}, fmt.Errorf("treelog: checkpoint of size %d vanished", size)
	}
	return s, nil
}

// PublishAll signs a checkpoint for every tenant whose tree grew since its
// last one. Run it periodically; every replica may.
func (l *Log) PublishAll(ctx context.Context) (int, error) {
	grown, err := l.store.Grown(ctx)
	if err != nil {
		return 0, err
	}
	var tenants []string
	for _, t := range grown {
		if !strings.HasPrefix(t, "_") { // internal streams publish no log
			tenants = append(tenants, t)
		}
	}
	for _, t := range tenants {
		if _, err := l.Head(ctx, t); err != nil {
			return 0, err
		}
	}
	return len(tenants), nil
}

// Inclusion proves that e is in the tenant's log at the newest checkpoint.
func (l *Log) Inclusion(ctx context.Context, e *events.Event) (*transparency.InclusionProof, Stored, error) {
	head, err := l.Head(ctx, e.Tenant)
	if err != nil {
		return nil, head, err
	}
	if e.Seq > head.Checkpoint.Size {
		return nil, head, domain.Errorf(domain.CodeConflict, "the entry is not in the log yet; retry in a moment")
	}
	p, err := transparency.ProveInclusion(ctx, l.hashes, e, head.Checkpoint.Size)
	return p, head, err
}

// Consistency proves that the tenant's log at second extends the log at
// first. Both sizes must be at most the newest checkpoint's.
func (l *Log) Consistency(ctx context.Context, tenant string, first, second int64) (*transparency.ConsistencyProof, error) {
	head, err := l.Head(ctx, tenant)
	if err != nil {
		return nil, err
	}
	switch {
	case first < 1:
		return nil, domain.Invalid("first", "first must be at least 1")
	case second < first:
		return nil, domain.Invalid("second", "second must be at least first")
	case second > head.Checkpoint.Size:
		return nil, domain.Invalid("second", "second is beyond the log's size %d", head.Checkpoint.Size)
	}
	return transparency.ProveConsistency(ctx, l.hashes, tenant, first, second)
}

// SigningKeyFile is where the embedded store keeps a generated signing key.
const SigningKeyFile = "signing.key"

// LoadSigningKey returns the note signer key from configured
// (HALDIR_SIGNING_KEY). When it is empty and dataDir is set (the embedded
// store), the key is read from, or generated into, dataDir with mode 0600;
// with Postgres a key is required, so that every replica signs as one log.
func LoadSigningKey(configured, dataDir string) (skey string, generated bool, err error) {
	if configured != "" {
		if _, err := note.NewSigner(configured); err != nil {
			return "", false, fmt.Errorf("HALDIR_SIGNING_KEY is not a signed-note private key (generate one with 'haldir init'): %w", err)
		}
		return configured, false, nil
	}
	if dataDir == "" {
		return "", false, errors.New("HALDIR_SIGNING_KEY is required with Postgres, so that every replica signs checkpoints as one log: generate one with 'haldir init'")
	}
	path := filepath.Join(dataDir, SigningKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		k := strings.TrimSpace(string(b))
		if _, err := note.NewSigner(k); err != nil {
			return "", false, fmt.Errorf("%s does not hold a valid signing key: %w", path, err)
		}
		return k, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	skey, _, err = transparency.GenerateSigningKey("haldir")
	if err != nil {
		return "", false, err
	}
	created, err := keyfile.Create(path, skey+"\n")
	if err != nil {
		return "", false, err
	}
	if !created { // another process made it first
		return LoadSigningKey(configured, dataDir)
	}
	return skey, true, nil
}

// Signer returns the note signer, for other documents this server signs
// with the same key (evidence packs).
func (l *Log) Signer() note.Signer { return l.signer }
