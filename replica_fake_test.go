package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// withParams returns dsn with the URL query parameters params
// ("a=b&c=d") added.
func withParams(dsn, params string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + params
	}
	return dsn + "?" + params
}

// fakeStandbyApp is the application_name of the fake standby's
// connections: the fake's ReplicaQuery says "in recovery" on them only.
const fakeStandbyApp = "es_fake_standby"

// fakeReplication is the PostgreSQL dialect with Replication queries that
// read a table the test writes: the fake standby is another pool on the
// primary's server, whose replayed position, and the primary's position
// (and how long it takes to answer), are what the test says.
type fakeReplication struct {
	postgres.Dialect
	state string // the quoted table with the fake's positions
}

func (f fakeReplication) PositionQuery() string {
	return "SELECT position FROM " + f.state + " CROSS JOIN LATERAL pg_sleep(sleep)"
}

func (f fakeReplication) ReplicaQuery() string {
	return "SELECT current_setting('application_name') = '" + fakeStandbyApp + "', replayed, since FROM " + f.state
}

// fakeReplica is a ReplicatedRecorder over a fake standby.
type fakeReplica struct {
	t       *testing.T
	db      *sql.DB // the primary
	state   string
	primary *es.SQLRecorder
	rr      *es.ReplicatedRecorder
	checks  atomic.Int64
}

// newFakeReplica makes a ReplicatedRecorder whose standby is fake, with
// the primary at position and the standby having replayed it.
func newFakeReplica(t *testing.T, position int64, opts es.ReplicaOptions) *fakeReplica {
	t.Helper()
	db := pgtest.DB(t)
	return newFakeReplicaOn(t, db, pgtest.Schema(t, db), position, opts)
}

// newFakeReplicaOn is newFakeReplica with the primary's database and
// schema given.
func newFakeReplicaOn(t *testing.T, db *sql.DB, schema string, position int64, opts es.ReplicaOptions) *fakeReplica {
	t.Helper()
	ctx := context.Background()
	f := &fakeReplica{t: t, db: db, state: schema + ".fake_replication"}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+f.state+" (position bigint, replayed bigint, since float8, sleep float8)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO "+f.state+" VALUES ($1, $1, 0, 0)", position); err != nil {
		t.Fatal(err)
	}
	standbyDB, err := postgres.Open(ctx, withParams(pgtest.DSN(t), "application_name="+fakeStandbyApp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standbyDB.Close() })
	primary := newSQLRecorder(t, db, fakeReplication{state: f.state}, schema, es.SQLOptions{AppName: "Fake",
		Observer: &checkCounter{n: &f.checks}})
	f.primary = primary
	f.rr = newReplicated(t, primary, standbyDB, &opts)
	waitUsable(t, f.rr, true, 5*time.Second)
	return f
}

// checkCounter is a StandbyObserver that counts the checks of standbys.
type checkCounter struct{ n *atomic.Int64 }

func (c *checkCounter) ObserveStart(ctx context.Context, _ es.Op) context.Context { return ctx }
func (c *checkCounter) ObserveEnd(context.Context, es.Op, es.OpResult)            {}
func (c *checkCounter) ObserveStandby(context.Context, es.StandbyStatus)          { c.n.Add(1) }

// set changes the fake's state ("replayed = 1500", say).
func (f *fakeReplica) set(assignments string) {
	f.t.Helper()
	if _, err := f.db.Exec("UPDATE " + f.state + " SET " + assignments); err != nil {
		f.t.Fatal(err)
	}
}

// waitChecks waits until n more checks of the standby have ended.
func (f *fakeReplica) waitChecks(n int64) {
	f.t.Helper()
	want := f.checks.Load() + n
	deadline := time.Now().Add(10 * time.Second)
	for f.checks.Load() < want {
		if time.Now().After(deadline) {
			f.t.Fatalf("%d checks in 10 s, want %d", n-(want-f.checks.Load()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readFrom reads through the recorder in ctx and says who served it.
func (f *fakeReplica) readFrom(ctx context.Context) string {
	f.t.Helper()
	p0, s0 := f.rr.Stats().PrimaryReads, f.rr.Standbys()[0].Reads
	if _, err := f.rr.SelectEvents(ctx, uuid.New(), nil); err != nil {
		f.t.Fatal(err)
	}
	switch p, s := f.rr.Stats().PrimaryReads-p0, f.rr.Standbys()[0].Reads-s0; {
	case p == 1 && s == 0:
		return "primary"
	case p == 0 && s == 1:
		return "standby"
	default:
		f.t.Fatalf("one read: %d primary reads, %d standby reads", p, s)
		return ""
	}
}

// TestReplicaStandbyRestartedBehind: a standby found to have replayed less
// than it had before (it restarted from an older restart point, or was
// rebuilt from an older backup) is trusted only for what it has replayed
// now, not for the highest position it was ever seen at.
func TestReplicaStandbyRestartedBehind(t *testing.T) {
	f := newFakeReplica(t, 2000, es.ReplicaOptions{CheckInterval: 20 * time.Millisecond, MaxLag: 100 * time.Millisecond})
	ctx := context.Background()
	if got := f.readFrom(es.ReadAfter(ctx, 2000)); got != "standby" {
		t.Fatalf("read after 2000, with the standby at 2000: served by the %s, want the standby", got)
	}
	f.set("replayed = 1500") // restarted behind; the primary is at 2000
	f.waitChecks(2)
	st := f.rr.Standbys()[0]
	if st.Replayed != 1500 {
		t.Errorf("status after the restart: replayed %v, want %v (what the standby has now)", st.Replayed, es.LSN(1500))
	}
	if st.Usable || !st.Lagging {
		t.Errorf("status after the restart: %+v, want lagging and not usable (500 bytes behind, replaying nothing)", st)
	}
	if got := f.readFrom(es.ReadAfter(ctx, 2000)); got != "primary" {
		t.Errorf("read after 2000, with the standby back at 1500: served by the %s, want the primary", got)
	}
	f.set("replayed = 2000") // caught up
	waitUsable(t, f.rr, true, 5*time.Second)
	if got := f.readFrom(es.ReadAfter(ctx, 2000)); got != "standby" {
		t.Errorf("read after 2000, with the standby caught up: served by the %s, want the standby", got)
	}
}

// TestReplicaPositionLookupBounded: the read-your-writes position lookup
// after a committed write is bounded by the caller's context, and by
// MaxLag when the context has no deadline: a primary that does not answer
// it does not hold InsertEvents, which returns the IDs (the write is
// committed), and the reads that must see the write go to the primary. A
// later write whose position is read puts the standby back in use.
func TestReplicaPositionLookupBounded(t *testing.T) {
	const maxLag = 1500 * time.Millisecond
	insert := func(t *testing.T, ctx context.Context, rec es.ApplicationRecorder, timeout time.Duration) time.Duration {
		t.Helper()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		start := time.Now()
		ids, err := rec.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil)
		took := time.Since(start)
		if err != nil || len(ids) != 1 {
			t.Fatalf("InsertEvents: %v, %v; want one ID and no error (the write is committed)", ids, err)
		}
		return took
	}
	t.Run("Session", func(t *testing.T) {
		f := newFakeReplica(t, 2000, es.ReplicaOptions{CheckInterval: 50 * time.Millisecond, MaxLag: maxLag})
		f.set("sleep = 10") // the primary stops answering the position query
		for _, c := range []struct {
			name           string
			timeout, bound time.Duration
		}{{"caller's deadline", 300 * time.Millisecond, 300*time.Millisecond + time.Second}, {"no deadline", 0, maxLag + time.Second}} {
			ctx := es.ReadYourWrites(context.Background())
			if took := insert(t, ctx, f.rr, c.timeout); took > c.bound {
				t.Errorf("%s: InsertEvents took %v, want at most %v", c.name, took, c.bound)
			}
			if got := f.readFrom(ctx); got != "primary" {
				t.Errorf("%s: a read after a write whose position is unknown was served by the %s, want the primary", c.name, got)
			}
		}
	})
	t.Run("Recorder", func(t *testing.T) {
		f := newFakeReplica(t, 2000, es.ReplicaOptions{CheckInterval: 50 * time.Millisecond, MaxLag: maxLag, ReadYourWrites: true})
		ctx := context.Background()
		insert(t, ctx, f.rr, 0)
		if got := f.readFrom(ctx); got != "standby" {
			t.Fatalf("read after a write at 2000: served by the %s, want the standby", got)
		}
		f.set("sleep = 10")
		if took := insert(t, ctx, f.rr, 300*time.Millisecond); took > 300*time.Millisecond+time.Second {
			t.Errorf("InsertEvents took %v with a 300 ms deadline", took)
		}
		if got := f.readFrom(ctx); got != "primary" {
			t.Errorf("a read after a write whose position is unknown was served by the %s, want the primary", got)
		}
		f.set("sleep = 0")
		insert(t, ctx, f.rr, 0) // its position covers the write before it
		if got := f.readFrom(ctx); got != "standby" {
			t.Errorf("a read after a write whose position was read was served by the %s, want the standby (one unknown position must not send every later read to the primary)", got)
		}
	})
}

// TestReplicaReadYourWritesOutcomeUnknown: after a write whose outcome is
// unknown (ErrOutcomeUnknown: it may be recorded), the reads that must see
// the context's writes go to the primary, where reading the events back
// tells whether they were recorded, until a later write's position covers
// it.
func TestReplicaReadYourWritesOutcomeUnknown(t *testing.T) {
	fc, db, schema := faultyPostgres(t)
	f := newFakeReplicaOn(t, db, schema, 2000, es.ReplicaOptions{CheckInterval: 50 * time.Millisecond})
	ctx := es.ReadYourWrites(context.Background())
	write := func(ctx context.Context) error {
		_, err := f.rr.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil)
		return err
	}
	if err := write(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.readFrom(ctx); got != "standby" {
		t.Fatalf("read after a write at 2000: served by the %s, want the standby", got)
	}
	// The COMMIT is lost and lands 3 s later; the call's context ends
	// before the outcome can be checked.
	fc.fault.Store(int32(loseThenCommitMuchLater))
	wctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	err := write(wctx)
	cancel()
	fc.fault.Store(int32(noFault))
	if !errors.Is(err, es.ErrOutcomeUnknown) {
		t.Skipf("the write did not end with ErrOutcomeUnknown (a loaded machine?): %v", err)
	}
	if got := f.readFrom(ctx); got != "primary" {
		t.Errorf("read after a write whose outcome is unknown: served by the %s, want the primary", got)
	}
	time.Sleep(3 * time.Second) // the lost COMMIT lands
	if err := write(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.readFrom(ctx); got != "standby" {
		t.Errorf("read after a later write whose position was read: served by the %s, want the standby", got)
	}
}

// TestReplicaPositionCoversAsyncCommits: with synchronous_commit off, the
// position a write's reads wait for is at or past the end of its commit
// record (PostgreSQL's WAL insert position, not its write position, which
// an unflushed commit is beyond), so a standby that has replayed it shows
// the write. The commit records are found with pg_walinspect.
func TestReplicaPositionCoversAsyncCommits(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, withParams(pgtest.DSN(t), "synchronous_commit=off"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the schema's cleanup
	if _, err := db.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS pg_walinspect"); err != nil {
		t.Skipf("pg_walinspect (PostgreSQL 15 and later, contrib), to find commit records: %v", err)
	}
	schema := pgtest.Schema(t, db)
	primary := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{AppName: "Async"})
	rr, err := es.NewReplicatedRecorder(ctx, primary, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	lsn := func(query string, args ...any) es.LSN {
		t.Helper()
		var s string
		if err := db.QueryRowContext(ctx, query, args...).Scan(&s); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		l, err := es.ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	const writes = 20
	short := 0
	for i := range writes {
		before := lsn("SELECT pg_current_wal_insert_lsn()::text")
		id := uuid.New()
		if _, err := rr.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil); err != nil {
			t.Fatal(err)
		}
		pos, err := rr.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var xid string
		if err := db.QueryRowContext(ctx, "SELECT xmin::text FROM "+primary.EventsTable().Quote(postgres.Dialect{})+" WHERE originator_id = $1", id).Scan(&xid); err != nil {
			t.Fatal(err)
		}
		// pg_walinspect reads flushed WAL only: wait for the commit's.
		after := lsn("SELECT pg_current_wal_insert_lsn()::text")
		deadline := time.Now().Add(5 * time.Second)
		for lsn("SELECT pg_current_wal_flush_lsn()::text") < after {
			if time.Now().After(deadline) {
				t.Fatal("the WAL was not flushed in 5 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		commit := lsn("SELECT COALESCE(max(end_lsn), '0/0')::text FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn) WHERE record_type = 'COMMIT' AND xid::text = $3",
			before.String(), after.String(), xid)
		if commit == 0 {
			t.Fatalf("write %d: no commit record of transaction %s between %v and %v", i, xid, before, after)
		}
		if pos < commit {
			short++
			t.Logf("write %d: Position() after it is %v, its commit record ends at %v", i, pos, commit)
		}
	}
	if short > 0 {
		t.Errorf("%d of %d writes: the position read after the write is before the end of its commit record", short, writes)
	}
}
