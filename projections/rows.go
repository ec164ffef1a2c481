package projections

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// rowBuffer collects the rows a transaction inserts into one table and
// writes them when the handler flushes, in multi-row INSERT statements: one
// statement per up to maxRowsPerInsert rows instead of one per row, which
// on Postgres is also one round trip instead of one per row. Buffering is
// safe only for rows that nothing in the same transaction reads back before
// the flush.
type rowBuffer struct {
	// insert is the statement up to and including VALUES; suffix, such as
	// an ON CONFLICT clause, follows the rows.
	insert, suffix string
	cols           int
	args           []any
}

// maxRowsPerInsert bounds one statement's rows; with a table's columns it
// stays well under SQLite's 32,766 and Postgres's 65,535 parameters.
const maxRowsPerInsert = 256

// rows returns the transaction's buffer named key for insert (see
// rowBuffer), made on first use.
func rows(tx *Tx, key, insert, suffix string, cols int) *rowBuffer {
	return Batch(tx, key, func() *rowBuffer {
		return &rowBuffer{insert: insert, suffix: suffix, cols: cols}
	})
}

// add buffers one row; it must have the buffer's number of columns.
func (b *rowBuffer) add(args ...any) {
	if len(args) != b.cols {
		panic(fmt.Sprintf("projections: row of %d columns for %q, want %d", len(args), b.insert, b.cols))
	}
	b.args = append(b.args, args...)
}

// flush writes the buffered rows and empties the buffer. Rows are written
// in the order added. Statements are of power-of-two row counts, so a table
// has at most log2(maxRowsPerInsert)+1 statement texts to prepare and cache.
func (b *rowBuffer) flush(ctx context.Context, tx *Tx) error {
	args := b.args
	b.args = b.args[:0]
	for n := len(args) / b.cols; n > 0; {
		k := maxRowsPerInsert
		for k > n {
			k /= 2
		}
		if _, err := tx.Exec(ctx, b.statement(k), args[:k*b.cols]...); err != nil {
			return err
		}
		args, n = args[k*b.cols:], n-k
	}
	return nil
}

var insertTexts sync.Map // "insert|suffix|cols|rows" -> statement

// statement returns the text inserting k rows.
func (b *rowBuffer) statement(k int) string {
	key := fmt.Sprintf("%s|%s|%d|%d", b.insert, b.suffix, b.cols, k)
	if s, ok := insertTexts.Load(key); ok {
		return s.(string)
	}
	row := "(?" + strings.Repeat(", ?", b.cols-1) + ")"
	var s strings.Builder
	s.WriteString(b.insert)
	s.WriteByte(' ')
	for i := range k {
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(row)
	}
	s.WriteString(b.suffix)
	insertTexts.Store(key, s.String())
	return s.String()
}
