package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/transparency"
)

// Tree maintains each tenant's Merkle tree over its event hashes: the tlog
// stored hashes new leaves add, computed as events are projected, so no
// request ever rebuilds a tree. A transaction's leaves of one tenant are
// consecutive; they are collected by Apply and hashed in one pass by Flush.
type Tree struct{}

// leafRun is a tenant's consecutive new leaves in a transaction.
type leafRun struct {
	first  int64 // seq of the first leaf
	hashes []events.Hash
}

// Tables implements Handler.
func (Tree) Tables() []string { return []string{"tree_hashes", "tree_sizes"} }

func treeBatch(tx *Tx) map[string]*leafRun {
	return Batch(tx, "tree", func() map[string]*leafRun { return map[string]*leafRun{} })
}

// Apply implements Handler.
func (Tree) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	b := treeBatch(tx)
	r := b[e.Tenant]
	if r == nil {
		r = &leafRun{first: e.Seq}
		b[e.Tenant] = r
	}
	if want := r.first + int64(len(r.hashes)); e.Seq != want {
		return fmt.Errorf("tree of %s: event seq %d where %d was expected", e.Tenant, e.Seq, want)
	}
	r.hashes = append(r.hashes, e.Hash)
	return nil
}

// Flush implements Flusher.
func (Tree) Flush(ctx context.Context, tx *Tx) error {
	b := treeBatch(tx)
	for tenant, r := range b {
		read := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(indexes))
			for i, idx := range indexes {
				var h []byte
				if err := tx.QueryRow(ctx, "SELECT hash FROM {tree_hashes} WHERE tenant_id = ? AND idx = ?", tenant, idx).Scan(&h); err != nil {
					return nil, fmt.Errorf("tree hash %d of %s: %w", idx, tenant, err)
				}
				copy(out[i][:], h)
			}
			return out, nil
		})
		indexes, hashes, err := transparency.StoredHashesForLeaves(r.first-1, r.hashes, read)
		if err != nil {
			return err
		}
		stored := rows(tx, "tree_hashes", "INSERT INTO {tree_hashes} (tenant_id, idx, hash) VALUES", "", 3)
		for i := range indexes {
			stored.add(tenant, indexes[i], hashes[i][:])
		}
		if err := stored.flush(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO {tree_sizes} (tenant_id, size) VALUES (?, ?)
ON CONFLICT (tenant_id) DO UPDATE SET size = excluded.size`, tenant, r.first+int64(len(r.hashes))-1); err != nil {
			return err
		}
	}
	clear(b)
	return nil
}

// ReadHashes implements transparency.HashStore over the projected tree.
func (q *Queries) ReadHashes(ctx context.Context, tenant string, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(indexes)+1)
	args = append(args, tenant)
	for _, i := range indexes {
		args = append(args, i)
	}
	rows, err := q.db.QueryRead(ctx, "SELECT idx, hash FROM tree_hashes WHERE tenant_id = ? AND idx IN (?"+
		strings.Repeat(",?", len(indexes)-1)+")", args...)
	if err != nil {
		return nil, fmt.Errorf("projections: read tree hashes: %w", err)
	}
	defer rows.Close()
	found := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, err
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("projections: tree hash %d of %s is %d bytes", idx, tenant, len(b))
		}
		var h tlog.Hash
		copy(h[:], b)
		found[idx] = h
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		h, ok := found[idx]
		if !ok {
			return nil, fmt.Errorf("projections: tree hash %d of %s is missing", idx, tenant)
		}
		out[i] = h
	}
	return out, nil
}

// TreeSize returns the number of the tenant's events in its tree.
func (q *Queries) TreeSize(ctx context.Context, tenant string) (int64, error) {
	var n int64
	err := q.row(ctx, "SELECT size FROM tree_sizes WHERE tenant_id = ?", tenant).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}
