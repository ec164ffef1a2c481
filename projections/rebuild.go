package projections

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// Scratch table prefixes.
const (
	rebuildPrefix  = "rebuild_"
	checkPrefix    = "check_"
	replayPageSize = 5000
)

// Progress reports replay progress: events applied and the target position.
type Progress func(done, total int64)

// Rebuild replays the whole ledger into fresh copies of the group's tables
// and swaps them in, with the checkpoint, in one transaction. The live
// projector may keep running: the final transaction holds the checkpoint
// lock, catches the copies up to the ledger head, and moves the checkpoint
// so the live consumer skips what the rebuild applied. It returns the
// position the rebuilt tables reflect.
func Rebuild(ctx context.Context, db *sqldb.DB, store events.Store, g Group, progress Progress) (int64, error) {
	copies, err := newScratch(ctx, db, g.Tables(), rebuildPrefix)
	if err != nil {
		return 0, err
	}
	defer copies.drop(context.WithoutCancel(ctx))
	head, err := store.Head(ctx)
	if err != nil {
		return 0, err
	}
	pos, err := replay(ctx, db, store, g, rebuildPrefix, 0, head, progress)
	if err != nil {
		return 0, err
	}
	if err := copies.index(ctx); err != nil {
		return 0, err
	}
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := readCheckpoint(ctx, tx, db.Dialect, g.Name, true); err != nil {
		return 0, err
	}
	// Catch up with whatever was appended during the replay.
	ptx := newTx(tx, db, rebuildPrefix)
	for {
		page, err := store.ReadAll(ctx, pos, replayPageSize)
		if err != nil {
			return 0, err
		}
		for i := range page {
			if err := applyAll(ctx, g, ptx, &page[i]); err != nil {
				return 0, err
			}
			pos = page[i].Position
		}
		if len(page) < replayPageSize {
			break
		}
	}
	if err := flush(ctx, g, ptx); err != nil {
		return 0, err
	}
	if err := copies.swap(ctx, tx); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, db.Rebind("UPDATE checkpoints SET position = ?, updated_at = ? WHERE name = ?"), pos, time.Now().UnixNano(), g.Name); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("projections: commit rebuild of %s: %w", g.Name, err)
	}
	return pos, nil
}

// TableDiff is a difference between a live table and its replay.
type TableDiff struct {
	Table string
	// Diff is a go-cmp diff, (-live +replayed).
	Diff string
}

// Check replays the ledger into scratch tables up to the live checkpoint,
// read in the same snapshot as the live tables, and compares every row. It
// returns the differences (none when the projection is exact) and the
// position compared at.
func Check(ctx context.Context, db *sqldb.DB, store events.Store, g Group, progress Progress) ([]TableDiff, int64, error) {
	live, pos, err := snapshot(ctx, db, g)
	if err != nil {
		return nil, 0, err
	}
	copies, err := newScratch(ctx, db, g.Tables(), checkPrefix)
	if err != nil {
		return nil, 0, err
	}
	defer copies.drop(context.WithoutCancel(ctx))
	if _, err := replay(ctx, db, store, g, checkPrefix, 0, pos, progress); err != nil {
		return nil, 0, err
	}
	var diffs []TableDiff
	for _, t := range g.Tables() {
		got, err := dumpTable(ctx, db.Read, checkPrefix+t)
		if err != nil {
			return nil, 0, err
		}
		if d := cmp.Diff(live[t], got); d != "" {
			diffs = append(diffs, TableDiff{Table: t, Diff: d})
		}
	}
	return diffs, pos, nil
}

// snapshot reads the group's checkpoint and every row of its tables in one
// consistent read transaction.
func snapshot(ctx context.Context, db *sqldb.DB, g Group) (map[string][][]any, int64, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.Dialect == sqldb.Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.Read.BeginTx(ctx, opts)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	pos, err := readCheckpoint(ctx, tx, db.Dialect, g.Name, false)
	if err != nil {
		return nil, 0, err
	}
	out := map[string][][]any{}
	for _, t := range g.Tables() {
		rows, err := dumpTable(ctx, tx, t)
		if err != nil {
			return nil, 0, err
		}
		out[t] = rows
	}
	return out, pos, nil
}

// replay applies events in (from, to] to the tables with prefix, one
// transaction per page. A reader goroutine fetches the next page, and
// describes its events, while the current one is applied.
func replay(ctx context.Context, db *sqldb.DB, store events.Store, g Group, prefix string, from, to int64, progress Progress) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan replayPage, 1)
	go readAhead(ctx, store, from, to, pages)
	pos := from
	for p := range pages {
		if p.err != nil {
			return pos, p.err
		}
		tx, err := db.Write.BeginTx(ctx, nil)
		if err != nil {
			return pos, err
		}
		ptx := newTx(tx, db, prefix)
		ptx.ahead, ptx.aheadFrom = p.described, p.events[0].Position
		for i := range p.events {
			if err := applyAll(ctx, g, ptx, &p.events[i]); err != nil {
				tx.Rollback()
				return pos, err
			}
		}
		if err := flush(ctx, g, ptx); err != nil {
			tx.Rollback()
			return pos, err
		}
		if err := tx.Commit(); err != nil {
			return pos, err
		}
		pos = p.events[len(p.events)-1].Position
		if progress != nil {
			progress(pos-from, to-from)
		}
	}
	return pos, nil
}

// replayPage is a page of the ledger with Describe of each event.
type replayPage struct {
	events    []events.Event
	described []AuditEntry
	err       error
}

// readAhead sends the pages of (from, to] on pages, then closes it; a
// failed or short read is sent as the last page's err.
func readAhead(ctx context.Context, store events.Store, from, to int64, pages chan<- replayPage) {
	defer close(pages)
	for pos := from; pos < to; {
		var p replayPage
		p.events, p.err = store.ReadAll(ctx, pos, min(replayPageSize, int(to-pos)))
		if p.err == nil && len(p.events) == 0 {
			p.err = fmt.Errorf("projections: the ledger ends at %d, before position %d", pos, to)
		}
		if p.err == nil {
			// Descriptions are found by position, so only a gapless page
			// has them; the ledger's verification names any gap.
			first, last := p.events[0].Position, p.events[len(p.events)-1].Position
			if last-first == int64(len(p.events)-1) {
				p.described = make([]AuditEntry, len(p.events))
				for i := range p.events {
					p.described[i] = Describe(&p.events[i])
				}
			}
			pos = last
		}
		select {
		case pages <- p:
		case <-ctx.Done():
			return
		}
		if p.err != nil {
			return
		}
	}
}

func applyAll(ctx context.Context, g Group, tx *Tx, e *events.Event) error {
	for _, h := range g.Handlers {
		if err := h.Apply(ctx, tx, e); err != nil {
			return fmt.Errorf("projections: %s at position %d (%s): %w", g.Name, e.Position, e.Type, err)
		}
	}
	return nil
}

// dumpTable returns every row of table, ordered by all columns, with byte
// slices turned to strings so rows compare by content.
func dumpTable(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, table string) ([][]any, error) {
	probe, err := q.QueryContext(ctx, "SELECT * FROM "+table+" WHERE 1 = 0")
	if err != nil {
		return nil, err
	}
	cols, err := probe.Columns()
	probe.Close()
	if err != nil {
		return nil, err
	}
	order := make([]string, len(cols))
	for i := range cols {
		order[i] = fmt.Sprint(i + 1)
	}
	rows, err := q.QueryContext(ctx, "SELECT * FROM "+table+" ORDER BY "+strings.Join(order, ", "))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, 0, 2*len(cols))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			row = append(row, cols[i], v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}
