package kurrentstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/haldir-dev/haldir/events/storetest"
)

// The tests in this file need a KurrentDB (EventStoreDB) server. They run
// whenever HALDIR_TEST_KURRENTDB holds its connection string, for example
//
//	HALDIR_TEST_KURRENTDB='esdb://haldir:secret@localhost:2113?tlsCAFile=ca.crt' go test -race ./events/kurrentstore
//
// Without it they are skipped with a NOT RUN message, under CI=true too:
// no KurrentDB can run on the build machines, and nothing here fakes one.
// A connection string that is set but does not answer fails them.
//
// The AppendOnly case of the contract suite checks that the server refuses
// to delete or truncate the ledger stream. It passes only on a secure
// server with an ordinary (non-admin) user, whose ledger the store
// protects with an ACL; on an insecure server, or as an admin, nothing
// refuses it and the case fails, as it should.
const envServer = "HALDIR_TEST_KURRENTDB"

const notRunBanner = `
################################################################################
##  KURRENTDB TESTS NOT RUN: HALDIR_TEST_KURRENTDB is not set.
##  The KurrentDB event store (events/kurrentstore) was NOT tested against a
##  server in this run: no contract suite, no replica or crash tests. Only the
##  server-less unit tests (mapping, records, planning, errors) ran.
##  Set HALDIR_TEST_KURRENTDB=esdb://user:pass@host:2113 to run them.
################################################################################
`

func TestMain(m *testing.M) {
	if target := os.Getenv("HALDIR_KDB_CRASH_CHILD"); target != "" {
		crashChild(target)
		return
	}
	if os.Getenv(envServer) == "" {
		fmt.Fprint(os.Stderr, notRunBanner)
	}
	os.Exit(m.Run())
}

// serverURL returns HALDIR_TEST_KURRENTDB or skips the test, loudly.
func serverURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(envServer)
	if u == "" {
		ci := ""
		if os.Getenv("CI") == "true" {
			ci = " (CI=true: this test did NOT pass, it did not run)"
		}
		t.Skip("KURRENTDB TEST NOT RUN: no server; set " + envServer + "=esdb://… to run it" + ci)
	}
	return u
}

// newLedger returns a ledger stream name no other test uses.
func newLedger(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	return "haldirtest_" + hex.EncodeToString(b[:]) + "-ledger"
}

// openStore opens a store on the test server, closed at cleanup. A server
// that does not answer fails the test.
func openStore(t *testing.T, url, ledger string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenURL(ctx, url, Options{Ledger: ledger, AppendTimeout: time.Minute})
	if err != nil {
		t.Fatalf("%s names %s, which does not answer: %v", envServer, Redact(url), err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ordinaryClient is a client with the store's credentials, for what an
// ordinary client of the server can do to the ledger.
func ordinaryClient(t *testing.T, url string) *esdb.Client {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// switchLedger points the store at another ledger stream and rebuilds its
// index from it. Tests use it to show the store a rewritten ledger.
func (s *Store) switchLedger(ctx context.Context, ledger string) error {
	s.stopFollower()
	s.mu.Lock()
	s.idx = newIndex(ledger, ringSize)
	s.mu.Unlock()
	if err := s.sync(ctx); err != nil {
		return err
	}
	s.startFollower()
	return nil
}

// kdbHarness gives the contract suite its SQL-shaped access to a ledger on
// KurrentDB (see table).
type kdbHarness struct {
	store  *Store
	client *esdb.Client
	ledger string // the stream the store was opened on
	n      int    // rewrites so far
}

// exec does what an ordinary client of KurrentDB can do that comes closest
// to the statement. KurrentDB has no operation that changes a recorded
// event, so an UPDATE has nothing to run; the nearest to deleting an event
// is truncating the stream before it ($tb), and to deleting them all,
// deleting the stream. Both must be refused: the store protects the
// ledger with an ACL that leaves deletes and metadata writes to $admins.
func (h *kdbHarness) exec(ctx context.Context, q string, vals ...any) error {
	switch {
	case updateRe.MatchString(q):
		return errors.New("kurrentdb: no client operation changes a recorded event")
	case deleteRe.MatchString(q):
		where := deleteRe.FindStringSubmatch(q)[1]
		if where == "" {
			_, err := h.client.DeleteStream(ctx, h.ledger, esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}})
			return err
		}
		pos, err := (&args{vals: vals}).int(where)
		if err != nil {
			return err
		}
		var md esdb.StreamMetadata
		md.SetTruncateBefore(uint64(pos))
		_, err = h.client.SetStreamMetadata(ctx, h.ledger, esdb.AppendToStreamOptions{}, md)
		return err
	}
	return fmt.Errorf("kurrentstore test harness: no ordinary-client equivalent of %q", q)
}

// read returns the store's current ledger stream as a table, each record
// as stored (a record's position is the one its header names).
func (h *kdbHarness) read(ctx context.Context) (table, error) {
	h.store.mu.RLock()
	ledger := h.store.idx.stream
	h.store.mu.RUnlock()
	var out table
	rs, err := h.client.ReadStream(ctx, ledger, esdb.ReadStreamOptions{}, ^uint64(0))
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		e, parsed, _ := decodeRecord(ev.OriginalEvent())
		if !parsed {
			return nil, fmt.Errorf("record at revision %d is not a ledger record", ev.OriginalEvent().EventNumber)
		}
		out = append(out, e)
	}
}

// tamper applies a statement as an attacker with direct access to the
// stored bytes would: the ledger is read, changed, written whole to a new
// stream (KurrentDB cannot change a stream in place) and the store pointed
// at it, so that everything the store serves afterwards comes from the
// changed bytes.
func (h *kdbHarness) tamper(ctx context.Context, q string, args ...any) error {
	rows, err := h.read(ctx)
	if err != nil {
		return err
	}
	rows, err = rows.exec(q, args...)
	if err != nil {
		return err
	}
	h.n++
	name := fmt.Sprintf("%s_t%d", h.ledger, h.n)
	if len(rows) > 0 {
		data := make([]esdb.EventData, len(rows))
		for i := range rows {
			data[i] = encodeRecord(&rows[i])
			data[i].EventID = eventUUID(fmt.Sprintf("%s/%d/%d", rows[i].ID, h.n, i)) // two rows may share an id now
		}
		if _, err := h.client.AppendToStream(ctx, name, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, data...); err != nil {
			return err
		}
	}
	return h.store.switchLedger(ctx, name)
}

func (h *kdbHarness) query(ctx context.Context, q string, args ...any) (any, error) {
	rows, err := h.read(ctx)
	if err != nil {
		return nil, err
	}
	return rows.query(q, args...)
}

// TestKurrentDBContract runs the shared contract suite, unchanged, against
// a ledger on the test server.
func TestKurrentDBContract(t *testing.T) {
	url := serverURL(t)
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		ledger := newLedger(t)
		h := &kdbHarness{store: openStore(t, url, ledger), client: ordinaryClient(t, url), ledger: ledger}
		return storetest.Harness{Store: h.store, Exec: h.exec, Tamper: h.tamper, Query: h.query}
	})
}
