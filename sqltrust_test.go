package eventsourcing_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// lockedBackend is a database whose events table another session can lock.
type lockedBackend struct {
	name string
	// open returns a recorder's database and a function that locks the
	// events table t from another connection until the returned release
	// is called.
	open func(t *testing.T) (db *sql.DB, d es.Dialect, schema string, lock func(es.Table) (release func()))
}

var lockedBackends = []lockedBackend{
	{"SQLiteFile", func(t *testing.T) (*sql.DB, es.Dialect, string, func(es.Table) func()) {
		path := filepath.Join(t.TempDir(), "locked.db")
		db, err := sqlite.Open(context.Background(), path, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		other, err := sqlite.Open(context.Background(), path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		return db, sqlite.Dialect{}, "", func(es.Table) func() {
			tx, err := other.Begin() // BEGIN IMMEDIATE: the write lock
			if err != nil {
				t.Fatal(err)
			}
			return func() { tx.Rollback() }
		}
	}},
	{"Postgres", func(t *testing.T) (*sql.DB, es.Dialect, string, func(es.Table) func()) {
		db, d, schema := postgresSchema(t)
		return db, d, schema, func(tb es.Table) func() {
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("LOCK TABLE " + tb.Quote(d) + " IN EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			return func() { tx.Rollback() }
		}
	}},
}

// TestSQLCallersGiveUpWhileLocked holds the events table's write lock from
// another session, with no lock timeout, while callers with short and long
// deadlines insert: each short one returns within its deadline and a small
// bound, with an error wrapping context.DeadlineExceeded, and nothing of
// it is ever written; the long ones commit once the lock is released.
func TestSQLCallersGiveUpWhileLocked(t *testing.T) {
	for _, b := range lockedBackends {
		for _, mode := range []struct {
			name string
			size int
		}{{"Grouped", 0}, {"Single", 1}} {
			t.Run(b.name+"/"+mode.name, func(t *testing.T) {
				db, d, schema, lock := b.open(t)
				r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Locked", MaxGroupSize: mode.size})
				release := lock(r.EventsTable())
				defer release()
				type result struct {
					id       uuid.UUID
					deadline time.Duration
					took     time.Duration
					err      error
				}
				const short, long = 300 * time.Millisecond, 20 * time.Second
				deadlines := []time.Duration{short, short, short, 2 * short, 2 * short, long, long}
				results := make(chan result, len(deadlines))
				var wg sync.WaitGroup
				for _, dl := range deadlines {
					wg.Add(1)
					go func() {
						defer wg.Done()
						id := uuid.New()
						ctx, cancel := context.WithTimeout(context.Background(), dl)
						defer cancel()
						start := time.Now()
						_, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil)
						results <- result{id, dl, time.Since(start), err}
					}()
				}
				time.Sleep(2*short + 500*time.Millisecond) // the short ones have given up
				release()
				wg.Wait()
				close(results)
				const bound = 250 * time.Millisecond
				for res := range results {
					evs, err := r.SelectEvents(context.Background(), res.id, nil)
					if err != nil {
						t.Fatal(err)
					}
					if res.deadline == long {
						if res.err != nil || len(evs) != 1 {
							t.Errorf("caller with time to spare: %v, %d events recorded; want success once the lock is released", res.err, len(evs))
						}
						continue
					}
					if !errors.Is(res.err, context.DeadlineExceeded) {
						t.Errorf("caller with a %v deadline: %v, want an error wrapping context.DeadlineExceeded", res.deadline, res.err)
					}
					if res.took > res.deadline+bound {
						t.Errorf("caller with a %v deadline returned after %v", res.deadline, res.took)
					}
					if len(evs) != 0 {
						t.Errorf("caller with a %v deadline gave up (%v), but its event was written", res.deadline, res.err)
					}
				}
			})
		}
	}
}

// TestSQLBadRows: a row whose columns do not fit (NULL topic, a version
// that is not an integer) is ErrData naming the table and the row, and is
// not retryable.
func TestSQLBadRows(t *testing.T) {
	for _, b := range backends {
		if b.name == "SQLiteMemory" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, d, schema := b.open(t)
			r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bad"})
			id := uuid.New()
			insert := "INSERT INTO " + r.EventsTable().Quote(d) + " (originator_id, originator_version, topic, state) VALUES (" +
				d.Placeholder(1) + ", " + d.Placeholder(2) + ", NULL, " + d.Placeholder(3) + ")"
			if _, err := db.Exec(insert, d.UUIDArg(id), 1, []byte("{}")); err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error, names ...string) {
				t.Helper()
				if !errors.Is(err, es.ErrData) || errors.Is(err, es.ErrOperational) || es.IsRetryable(err) {
					t.Errorf("%s of a bad row: %v, want ErrData only, not retryable", what, err)
					return
				}
				for _, n := range append(names, r.EventsTable().String()) {
					if !strings.Contains(err.Error(), n) {
						t.Errorf("%s of a bad row: %q does not name %q", what, err, n)
					}
				}
			}
			_, err := r.SelectEvents(ctx, id, nil)
			check("SelectEvents", err, id.String(), "version 1")
			_, err = r.SelectNotifications(ctx, 1, 10, nil)
			check("SelectNotifications", err, "notification 1")
			if b.name == "SQLiteFile" {
				other := uuid.New()
				if _, err := db.Exec("INSERT INTO "+r.EventsTable().Quote(d)+" VALUES (?, 'abc', 't', x'')", d.UUIDArg(other)); err != nil {
					t.Fatal(err)
				}
				_, err = r.SelectEvents(ctx, other, nil)
				check("SelectEvents (text version)", err, other.String())
			}
		})
	}
}

// TestPostgresConcurrentCreateTables: processes creating the same tables at
// once on a fresh schema all succeed (no catalog collision reported as an
// integrity error).
func TestPostgresConcurrentCreateTables(t *testing.T) {
	const procs = 6
	dbs := make([]*sql.DB, procs) // a pool each, as processes have
	for i := range dbs {
		dbs[i] = pgtest.DB(t)
		dbs[i].SetMaxIdleConns(2)
	}
	schema := pgtest.Schema(t, dbs[0])
	for round := range 20 {
		app := fmt.Sprintf("Fresh%d", round)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, procs)
		for _, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := es.NewSQLRecorder(context.Background(), db, postgres.Dialect{}, &es.SQLOptions{AppName: app, Schema: schema})
				<-start
				if err == nil {
					err = r.CreateTables(context.Background())
				}
				errs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent CreateTables: %v", round, err)
			}
		}
	}
}

// TestSQLMaxRowsPerStatementLimit: more rows per statement than the dialect
// can bind is refused when the recorder is made.
func TestSQLMaxRowsPerStatementLimit(t *testing.T) {
	for _, c := range []struct {
		d        es.Dialect
		ok, over int
	}{{postgres.Dialect{}, 16383, 16384}, {sqlite.Dialect{}, 8191, 8192}} {
		db := sql.OpenDB(nil)
		if _, err := es.NewSQLRecorder(context.Background(), db, c.d, &es.SQLOptions{MaxRowsPerStatement: c.over}); !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), fmt.Sprint(c.ok)) {
			t.Errorf("%s: MaxRowsPerStatement %d: %v, want ErrProgramming naming the limit %d", c.d.Name(), c.over, err, c.ok)
		}
	}
}

// TestSubMillisecondTimeouts round up to 1 ms: 0 means "no limit" to
// PostgreSQL and "do not wait" to SQLite.
func TestSubMillisecondTimeouts(t *testing.T) {
	stmts := postgres.Dialect{}.LockForAppend(es.Table{Name: "e"}, 500*time.Microsecond)
	if !strings.Contains(stmts[0], "'1ms'") {
		t.Errorf("postgres lock timeout of 0.5 ms: %q, want 1ms", stmts[0])
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"), 500*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ms int
	if err := db.QueryRow("PRAGMA busy_timeout").Scan(&ms); err != nil {
		t.Fatal(err)
	}
	if ms != 1 {
		t.Errorf("sqlite busy timeout of 0.5 ms: %d ms, want 1", ms)
	}
}

// TestSQLMigrationTrackingRow: a single-row tracking table created by this
// library carries Python 9.5's ("__migration__", 1) row, a table that has
// it already is left as it is, and the row is never an application.
func TestSQLMigrationTrackingRow(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, d, schema := b.open(t)
			opts := es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr")}
			r := newSQLRecorder(t, db, d, schema, opts)
			if err := r.CreateTables(ctx); err != nil { // again: idempotent
				t.Fatal(err)
			}
			var n, id int64
			if err := db.QueryRow("SELECT COUNT(*), MAX(notification_id) FROM "+r.TrackingTable().Quote(d)+" WHERE application_name = '__migration__'").Scan(&n, &id); err != nil {
				t.Fatal(err)
			}
			if n != 1 || id != 1 {
				t.Fatalf("migration rows: %d with ID %d, want 1 with ID 1", n, id)
			}
			if _, err := r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: "Up", NotificationID: 7}); err != nil {
				t.Fatal(err)
			}
			if got, err := r.MaxTrackingID(ctx, "Up"); err != nil || got != 7 {
				t.Fatalf("MaxTrackingID(Up) = %d, %v; want 7", got, err)
			}
			if _, err := r.MaxTrackingID(ctx, "__migration__"); !errors.Is(err, es.ErrProgramming) {
				t.Errorf("MaxTrackingID(__migration__): %v, want ErrProgramming", err)
			}
			if got, err := r.MaxTrackingID(ctx, "Other"); err != nil || got != 0 {
				t.Errorf("MaxTrackingID(Other) = %d, %v; want 0", got, err)
			}
			// A recorder opened on the existing table (created with the
			// row, as Python 9.5 creates it) works as well.
			r2 := newSQLRecorder(t, db, d, schema, opts)
			if got, err := r2.MaxTrackingID(ctx, "Up"); err != nil || got != 7 {
				t.Errorf("on the existing table: MaxTrackingID(Up) = %d, %v; want 7", got, err)
			}
		})
	}
}

// TestSQLSnapshotRecorderIsNotAProcessRecorder: a snapshots recorder cannot
// be passed where an application or process recorder is needed.
func TestSQLSnapshotRecorderIsNotAProcessRecorder(t *testing.T) {
	db, d, _ := sqliteFile(t)
	s, err := es.NewSQLSnapshotRecorder(context.Background(), db, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := any(s).(es.ApplicationRecorder); ok {
		t.Error("*SQLSnapshotRecorder implements ApplicationRecorder")
	}
	if s.Table().Name != "stored_snapshots" {
		t.Errorf("default snapshots table %q", s.Table().Name)
	}
	if _, err := s.InsertEvents(context.Background(), nil, &es.Tracking{ApplicationName: "A", NotificationID: 1}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("tracking record on a snapshots recorder: %v, want ErrProgramming", err)
	}
}

// TestPostgresRetryable: only failures known to pass are retryable; a
// read-only database is operational but retrying will not help.
func TestPostgresRetryable(t *testing.T) {
	d := postgres.Dialect{}
	for code, want := range map[string]bool{"40001": true, "40P01": true, "57P01": true, "08006": true, "55P03": true, "25006": false, "XX000": false, "53100": false} {
		if got := d.Classify(&pgconn.PgError{Code: code}).Transient; got != want {
			t.Errorf("Transient(SQLSTATE %s) = %v, want %v", code, got, want)
		}
	}
	dsn := pgtest.DSN(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	ctx := context.Background()
	rw := pgtest.DB(t)
	schema := pgtest.Schema(t, rw)
	newSQLRecorder(t, rw, d, schema, es.SQLOptions{AppName: "RO"})
	ro, err := postgres.Open(ctx, dsn+sep+"default_transaction_read_only=on")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r, err := es.NewSQLRecorder(ctx, ro, d, &es.SQLOptions{AppName: "RO", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil)
	if !errors.Is(err, es.ErrOperational) || es.IsRetryable(err) {
		t.Errorf("insert into a read-only database: %v (retryable %v), want ErrOperational, not retryable", err, es.IsRetryable(err))
	}
}

// TestSQLiteNotificationIDsAreTheRowids: the IDs InsertEvents returns are
// the rowids the rows got (SQLite's IDs come from last_insert_rowid(),
// not RETURNING), also after the highest rows were deleted or a failed
// batch left its rowids to be used again, and for batches split into
// several statements.
func TestSQLiteNotificationIDsAreTheRowids(t *testing.T) {
	ctx := context.Background()
	db, d, _ := sqliteFile(t)
	r := newSQLRecorder(t, db, d, "", es.SQLOptions{MaxRowsPerStatement: 7})
	check := func(evs []es.StoredEvent, ids []int64) {
		t.Helper()
		if len(ids) != len(evs) {
			t.Fatalf("%d IDs for %d events", len(ids), len(evs))
		}
		for i, e := range evs {
			var rowid int64
			if err := db.QueryRow("SELECT rowid FROM stored_events WHERE originator_id = ? AND originator_version = ?", d.UUIDArg(e.OriginatorID), e.OriginatorVersion).Scan(&rowid); err != nil {
				t.Fatal(err)
			}
			if rowid != ids[i] {
				t.Fatalf("event %d: InsertEvents said ID %d, the row has rowid %d", i, ids[i], rowid)
			}
		}
	}
	for round, n := range []int{1, 3, 7, 8, 20, 1, 50} {
		id := uuid.New()
		evs := make([]es.StoredEvent, n)
		for i := range evs {
			evs[i] = es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(i + 1), Topic: "t", State: []byte("{}")}
		}
		// A batch that fails on its last event leaves nothing, and its
		// rowids free for the next.
		bad := append(slices.Clone(evs), evs[0])
		if _, err := r.InsertEvents(ctx, bad, nil); !errors.Is(err, es.ErrIntegrity) {
			t.Fatalf("round %d: %v", round, err)
		}
		ids, err := r.InsertEvents(ctx, evs, nil)
		if err != nil {
			t.Fatal(err)
		}
		check(evs, ids)
		if round%2 == 1 { // delete the highest rows: their rowids are used again
			if _, err := db.Exec("DELETE FROM stored_events WHERE originator_id = ? AND originator_version > ?", d.UUIDArg(id), n/2); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestSQLiteSynchronous: FULL unless NORMAL is asked for.
func TestSQLiteSynchronous(t *testing.T) {
	for _, c := range []struct {
		normal bool
		want   int
	}{{false, 2}, {true, 1}} {
		db, err := sqlite.OpenWith(context.Background(), filepath.Join(t.TempDir(), "s.db"), &sqlite.Options{SynchronousNormal: c.normal})
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if got != c.want {
			t.Errorf("SynchronousNormal %v: PRAGMA synchronous = %d, want %d", c.normal, got, c.want)
		}
	}
}

// TestSQLSelectNotificationsInto: paging with one reused slice gives what
// SelectNotifications gives, page after page, whatever was in the slice.
func TestSQLSelectNotificationsInto(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, d, schema := b.open(t)
			r := newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
			for i := range 30 {
				id := uuid.New()
				var evs []es.StoredEvent
				for v := range i%4 + 1 {
					evs = append(evs, es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(v + 1),
						Topic: fmt.Sprintf("t:%d", (i+v)%3), State: bytes.Repeat([]byte{byte(i)}, i*7%50)})
				}
				if _, err := r.InsertEvents(ctx, evs, nil); err != nil {
					t.Fatal(err)
				}
			}
			var buf []es.Notification
			for _, q := range []*es.NotificationQuery{nil, {ExclusiveStart: true, Topics: []string{"t:1", "t:2"}}} {
				for start := int64(0); ; {
					want, err := r.SelectNotifications(ctx, start, 7, q)
					if err != nil {
						t.Fatal(err)
					}
					buf, err = r.SelectNotificationsInto(ctx, buf, start, 7, q)
					if err != nil {
						t.Fatal(err)
					}
					if len(buf) != len(want) {
						t.Fatalf("from %d: %d notifications, want %d", start, len(buf), len(want))
					}
					for i := range want {
						if want[i].ID != buf[i].ID || want[i].OriginatorID != buf[i].OriginatorID || want[i].OriginatorVersion != buf[i].OriginatorVersion ||
							want[i].Topic != buf[i].Topic || !bytes.Equal(want[i].State, buf[i].State) {
							t.Fatalf("from %d, entry %d: %+v, want %+v", start, i, buf[i], want[i])
						}
					}
					if len(want) == 0 {
						break
					}
					start = want[len(want)-1].ID
					if q == nil {
						start++
					}
				}
			}
		})
	}
}

// TestGroupCommitGroupsClosedLoopWriters: eight writers each waiting for
// their own commit before the next call share transactions, with no
// MaxGroupDelay. It guards grouping as such; it was written after a
// committer hand-off bug (two committers racing, callers going inline) cut
// groups to 1.01 calls per transaction in the benchmark, and does not
// reproduce that race itself.
func TestGroupCommitGroupsClosedLoopWriters(t *testing.T) {
	for _, b := range backends {
		if b.name == "SQLiteMemory" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, d, schema := b.open(t)
			r := newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := uuid.New()
					for v := range int64(40) {
						if _, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: v + 1, Topic: "t"}}, nil); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			st := r.Stats()
			perTx := float64(st.Calls) / float64(st.Transactions)
			t.Logf("%d calls in %d transactions: %.2f per transaction", st.Calls, st.Transactions, perTx)
			if st.Calls != 320 || perTx < 2 {
				t.Errorf("%d calls in %d transactions (%.2f each); want 320 calls, at least 2 per transaction", st.Calls, st.Transactions, perTx)
			}
		})
	}
}

// TestGroupCommitLeaderTakesQueuedCalls: a caller that found no
// transaction running (the leader) waits for the lock, held by another
// session, while two more callers queue. Once the lock is free, the two
// join the leader's transaction (one transaction, not two), whatever
// happens to the leader: if its context ends while it waits, they are
// committed without it; if its event or one of theirs conflicts, exactly
// that caller gets ErrIntegrity and the others commit. (The transaction
// path: with PostgreSQL's append function the leader's call is sent
// whole, and calls queued meanwhile go in the next one.)
func TestGroupCommitLeaderTakesQueuedCalls(t *testing.T) {
	for _, b := range lockedBackends {
		for _, c := range []struct {
			name          string
			leaderGivesUp bool
			conflict      int // -1: none; 0: the leader; 1: a joiner
			wantTx        int64
		}{
			{"Join", false, -1, 1},
			{"LeaderGivesUp", true, -1, 1},
			{"LeaderConflicts", false, 0, 1},
			{"JoinerConflicts", false, 1, 1},
		} {
			t.Run(b.name+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				db, d, schema, lock := b.open(t)
				r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Leader", NoAppendFunction: true})
				ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
				if c.conflict >= 0 {
					if _, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: ids[c.conflict], OriginatorVersion: 1, Topic: "t"}}, nil); err != nil {
						t.Fatal(err)
					}
				}
				before := r.Stats()
				release := lock(r.EventsTable())
				defer release()
				errs := make([]error, len(ids))
				var wg sync.WaitGroup
				put := func(i int, ctx context.Context) {
					defer wg.Done()
					_, errs[i] = r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: ids[i], OriginatorVersion: 1, Topic: "t", State: []byte{byte(i)}}}, nil)
				}
				lctx, cancel := context.WithCancel(ctx)
				defer cancel()
				wg.Add(1)
				go put(0, lctx)
				time.Sleep(200 * time.Millisecond) // the leader waits for the lock
				wg.Add(2)
				go put(1, ctx)
				go put(2, ctx)
				time.Sleep(200 * time.Millisecond) // the others have queued
				if c.leaderGivesUp {
					cancel()
					time.Sleep(100 * time.Millisecond)
				}
				release()
				wg.Wait()
				for i, err := range errs {
					evs, serr := r.SelectEvents(ctx, ids[i], nil)
					if serr != nil {
						t.Fatal(serr)
					}
					switch {
					case i == 0 && c.leaderGivesUp:
						if !errors.Is(err, context.Canceled) || len(evs) != 0 {
							t.Errorf("leader whose context ended: %v, %d events; want context.Canceled, none written", err, len(evs))
						}
					case i == c.conflict:
						if !errors.Is(err, es.ErrIntegrity) || len(evs) != 1 || len(evs[0].State) != 0 {
							t.Errorf("caller %d conflicting: %v, %d events; want ErrIntegrity and only the earlier event", i, err, len(evs))
						}
					default:
						if err != nil || len(evs) != 1 || !bytes.Equal(evs[0].State, []byte{byte(i)}) {
							t.Errorf("caller %d: %v, %d events; want its event committed", i, err, len(evs))
						}
					}
				}
				after := r.Stats()
				if tx := after.Transactions - before.Transactions; tx != c.wantTx {
					t.Errorf("%d transactions for the calls, want %d (the queued calls join the leader's)", tx, c.wantTx)
				}
			})
		}
	}
}
