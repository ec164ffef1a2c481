// Package kurrentstore implements the ledger (events.Store) on KurrentDB
// (formerly EventStoreDB) through the official Go client,
// github.com/EventStore/EventStore-Client-Go/v4. It is selected by a
// connection string in HALDIR_EVENT_STORE_URL (esdb://, kurrentdb:// and
// their +discover forms; see ParseURL). Projections, idempotency keys and
// everything else stay in Postgres.
//
// This backend is tested only where a KurrentDB server is reachable
// (HALDIR_TEST_KURRENTDB); see README.md in this directory.
//
// # Streams, revisions, positions
//
// A cell's whole ledger is one KurrentDB stream, the ledger stream
// (Options.Ledger, default "haldir-ledger"). The event at stream revision
// r is the event at ledger position r+1. Each tenant's chain is the
// subsequence of the ledger stream's events of that tenant; an aggregate
// (events.Proposed.Stream, "session/ses_…") is the subsequence of its
// tenant's chain with that stream name. The stored form of an event is
// described at encodeRecord: the payload is the KurrentDB event's data,
// verbatim and never parsed; every other hashed field is in a
// length-prefixed binary header in the event's metadata, so that
// events.VerifyAll recomputes each hash from the stored bytes exactly as
// it does on SQL.
//
// Positions are gapless and commit-ordered because they are revisions of
// one stream: KurrentDB gives a stream's events consecutive revisions and
// a reader never sees revision r+1 before r. Per-tenant or per-aggregate
// streams cannot give that: the only order across streams is $all, whose
// positions are transaction-log offsets with gaps, and events.Store's
// Position is one gapless sequence across tenants (projections tail it,
// verification checks it). One stream per cell is also what makes every
// tenant's chain head and every aggregate version a function of a single
// revision, which is what the optimistic check below relies on.
//
// # Appends from several replicas
//
// Every store (one per replica) keeps an index of the ledger in memory
// (stream versions, tenant chain heads, event ids and where each tenant's
// and aggregate's events are), built by reading the ledger stream at Open
// and kept current by a catch-up subscription. Appends queue for one
// writer goroutine, which takes everything queued that fits in one append
// request (group commit) and:
//
//  1. reads the ledger stream's end, so that its index describes the ledger
//     of head h;
//  2. plans the calls in order on top of it: checks each event's expected
//     stream version, assigns versions, tenant sequence numbers and chain
//     hashes, and positions h+1, h+2, …; a call whose check fails gets
//     its ConflictError and leaves the plan as if it had not been there;
//  3. sends the planned events in one AppendToStream with ExpectedRevision
//     h-1 (NoStream for an empty ledger).
//
// KurrentDB writes such an append at revisions h… or not at all. If
// another replica appended first it answers WrongExpectedVersion: nothing
// was written, the writer reads what was, plans the same calls again (a
// decision made on a version that is now stale fails with ConflictError
// exactly as it would in one process) and retries, with a short random
// pause so that contending replicas fall out of step. There is no lock,
// in this process or anywhere else: the ledger stream's revision is the
// only arbiter, and every check of a plan (each aggregate's version, each
// tenant's chain head, each id's novelty) was made against the ledger at
// exactly the revision the append requires. After Options.AppendTimeout
// of losing, calls fail with an error matching events.ErrConflict.
//
// When an append's outcome is unknown (a timeout, a dropped connection, a
// leader election), the writer reads the ledger: the append landed exactly
// when its first and last events are recorded at the positions planned for
// them. If it did not, the same plan (same recorded time, so the same
// bytes and the same KurrentDB event ids, derived from Haldir's ids) is
// sent again; should the first attempt land late, KurrentDB recognises the
// second as the same write, or it fails WrongExpectedVersion and the
// re-plan finds the ids recorded and answers with the recorded events. A
// server that stays unreachable fails the calls with events.ErrUnavailable
// after Options.AppendTimeout; as with any remote database, such an append
// may still have been written, and retrying it with the same ids is safe.
//
// The server acknowledges an append once it is durable: on a cluster,
// written and flushed on a quorum of nodes; a single node flushes before
// acknowledging unless it runs in memory or with flushing disabled.
//
// # Reads and projections
//
// ReadAll, Scan and Tail read the ledger stream by revision; Tail serves
// the events this process indexed last (its own appends and those the
// subscription delivered) from memory. ReadStream, ReadTenant, Lookup,
// Head and TenantHead first read the ledger's end, so a replica reads what
// another has just written, then fetch the events the index points at.
// The catch-up subscription wakes Appended whenever another replica's
// appends arrive, which is how each replica's projections, with their
// checkpoints in Postgres as before, follow the one ledger.
//
// # Protection
//
// KurrentDB has no operation that changes or removes a single recorded
// event. A stream can be deleted or truncated, though, so the store gives
// the ledger stream an ACL when it finds none (Options.Roles): Haldir's
// user reads and appends, only $admins delete or change metadata. A record
// read at a revision other than the one its header names (a ledger
// truncated and rewritten) is reported as corrupt, and a ledger stream that
// reads as deleted stops the writer. An insecure server enforces no ACL.
//
// # Limits
//
// The index costs about 100 bytes an event in every replica's memory, and
// Open reads the whole ledger stream; a cell of tens of millions of events
// wants the index kept in KurrentDB instead (the successor client's
// multi-stream appends could write index streams atomically with the
// ledger). One stream's append rate bounds a cell's write rate; group
// commit gets the throughput back, and cells (Options.Ledger) shard
// tenants.
package kurrentstore
