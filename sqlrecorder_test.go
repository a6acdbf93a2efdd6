package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
	"github.com/seed06b138f8/eventsourcing/recordertest"
)

// backend opens fresh recorders of one database kind.
type backend struct {
	name string
	// open returns a database and dialect for one test; tables made in it
	// are gone when the test ends.
	open func(t *testing.T) (*sql.DB, es.Dialect, string)
}

func sqliteFile(t *testing.T) (*sql.DB, es.Dialect, string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "test.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, sqlite.Dialect{}, ""
}

func sqliteMemory(t *testing.T) (*sql.DB, es.Dialect, string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, sqlite.Dialect{}, ""
}

func postgresSchema(t *testing.T) (*sql.DB, es.Dialect, string) {
	t.Helper()
	db := pgtest.DB(t)
	return db, postgres.Dialect{}, pgtest.Schema(t, db)
}

var backends = []backend{
	{"SQLiteFile", sqliteFile},
	{"SQLiteMemory", sqliteMemory},
	{"Postgres", postgresSchema},
}

func newSQLRecorder(t *testing.T, db *sql.DB, d es.Dialect, schema string, opts es.SQLOptions) *es.SQLRecorder {
	t.Helper()
	opts.Schema = schema
	r, err := es.NewSQLRecorder(context.Background(), db, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func newSQLSnapshotRecorder(t *testing.T, db *sql.DB, d es.Dialect, schema string, opts es.SQLOptions) *es.SQLSnapshotRecorder {
	t.Helper()
	opts.Schema = schema
	r, err := es.NewSQLSnapshotRecorder(context.Background(), db, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSQLRecorderConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			recordertest.Run(t, func(t *testing.T) es.ProcessRecorder {
				if schema == "" && b.name == "SQLiteFile" {
					db, d, schema = sqliteFile(t) // a file of its own per subtest
				}
				return newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "App", Table: "events", TrackingTable: "tracking"})
			})
		})
	}
}

// TestSQLRecorderConformanceGroupCommit runs the suite with group commit
// off, and with a delay that makes groups form on every backend.
func TestSQLRecorderConformanceGroupCommit(t *testing.T) {
	modes := map[string]es.SQLOptions{
		"Off":   {MaxGroupSize: 1},
		"Delay": {MaxGroupDelay: time.Millisecond, MaxGroupSize: 8},
	}
	for _, b := range backends {
		for mode, opts := range modes {
			t.Run(b.name+"/"+mode, func(t *testing.T) {
				db, d, schema := b.open(t)
				recordertest.Options{Writers: 8, BatchesPerWriter: 25}.Run(t, func(t *testing.T) es.ProcessRecorder {
					o := opts
					o.Table, o.TrackingTable = pgtestName("ev"), pgtestName("tr")
					return newSQLRecorder(t, db, d, schema, o)
				})
			})
		}
	}
}

func TestSQLRecorderConformanceMultiRowTracking(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			recordertest.Options{Writers: 4, BatchesPerWriter: 20}.Run(t, func(t *testing.T) es.ProcessRecorder {
				return newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr"), MultiRowTracking: true})
			})
		})
	}
}

func TestSQLSnapshotsConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			recordertest.RunAggregate(t, func(t *testing.T) es.AggregateRecorder {
				return newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("snap")})
			})
		})
	}
}

func pgtestName(prefix string) string { return pgtest.UniqueName(prefix) }

func TestSQLRecorderTableNames(t *testing.T) {
	ctx := context.Background()
	bad := []string{"1abc", "a-b", "a b", `a"b`, "a;drop table x", strings.Repeat("x", 64), "ünï"}
	for _, d := range []es.Dialect{sqlite.Dialect{}, postgres.Dialect{}} {
		for _, name := range bad {
			// A nil *sql.DB would panic on any SQL: validation comes first.
			_, err := es.NewSQLRecorder(ctx, nil, d, &es.SQLOptions{Table: name})
			if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "invalid name") {
				t.Errorf("%s: table %q: got %v, want an ErrProgramming naming the problem", d.Name(), name, err)
			}
		}
		if _, err := es.NewSQLRecorder(ctx, nil, d, &es.SQLOptions{Table: "ok", Schema: "bad schema"}); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("%s: bad schema: got %v", d.Name(), err)
		}
	}
	ev, snap, tr := postgres.Dialect{}.DefaultTables("BankAccounts")
	if ev != "bankaccounts_events" || snap != "bankaccounts_snapshots" || tr != "bankaccounts_tracking" {
		t.Errorf("postgres default tables %s %s %s", ev, snap, tr)
	}
}

func TestSQLRecorderMissingTable(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			r, err := es.NewSQLRecorder(ctx, db, d, &es.SQLOptions{Table: "missing_events", TrackingTable: "missing_tracking", Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil)
			if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "missing_events") {
				t.Errorf("insert into a missing table: %v, want ErrProgramming naming missing_events", err)
			}
			if _, err := r.SelectEvents(ctx, uuid.New(), nil); !errors.Is(err, es.ErrProgramming) {
				t.Errorf("select from a missing table: %v", err)
			}
			if _, err := r.MaxTrackingID(ctx, "x"); !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "missing_tracking") {
				t.Errorf("tracking of a missing table: %v", err)
			}
		})
	}
}

func TestSQLRecorderTrackingLayoutMismatch(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: "ev", TrackingTable: "tr", MultiRowTracking: true})
			_, err := es.NewSQLRecorder(ctx, db, d, &es.SQLOptions{Table: "ev", TrackingTable: "tr", Schema: schema})
			if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "SINGLE_ROW_TRACKING") {
				t.Errorf("single-row mode on a multi-row table: %v", err)
			}
			newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: "ev2", TrackingTable: "tr2"})
			_, err = es.NewSQLRecorder(ctx, db, d, &es.SQLOptions{Table: "ev2", TrackingTable: "tr2", Schema: schema, MultiRowTracking: true})
			if !errors.Is(err, es.ErrProgramming) {
				t.Errorf("multi-row mode on a single-row table: %v", err)
			}
		})
	}
}

func TestSQLRecorderCreateTablesIdempotent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Idem"})
			id := uuid.New()
			if _, err := r.InsertEvents(context.Background(), []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: "t"}}, nil); err != nil {
				t.Fatal(err)
			}
			if err := r.CreateTables(context.Background()); err != nil {
				t.Fatalf("second CreateTables: %v", err)
			}
			if evs, _ := r.SelectEvents(context.Background(), id, nil); len(evs) != 1 {
				t.Errorf("events after a second CreateTables: %d", len(evs))
			}
		})
	}
}

func TestSQLiteReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ro.db")
	db, err := sqlite.Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newSQLRecorder(t, db, sqlite.Dialect{}, "", es.SQLOptions{})
	db.Close()
	_ = r
	ro, err := sqlite.Open(ctx, "file:"+path+"?mode=ro", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	r, err = es.NewSQLRecorder(ctx, ro, sqlite.Dialect{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil)
	if !errors.Is(err, es.ErrOperational) || !strings.Contains(strings.ToLower(err.Error()), "readonly") {
		t.Errorf("insert into a read-only database: %v, want ErrOperational saying read-only", err)
	}
	if _, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"), 0); !errors.Is(err, es.ErrOperational) {
		t.Errorf("open in a missing directory: %v, want ErrOperational", err)
	}
}

func TestPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if !errors.Is(err, es.ErrOperational) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("unreachable server: %v, want ErrOperational naming the host", err)
	}
	if _, err := postgres.Open(ctx, "postgres://%zz"); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("bad connection string: %v, want ErrProgramming", err)
	}
}

func TestPostgresLockTimeout(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Locks", LockTimeout: 100 * time.Millisecond})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("LOCK TABLE " + r.EventsTable().Quote(d) + " IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil)
	if !errors.Is(err, es.ErrLockTimeout) || !errors.Is(err, es.ErrOperational) || !es.IsRetryable(err) {
		t.Fatalf("insert while the table is locked: %v, want a retryable ErrLockTimeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("lock timeout took %v", time.Since(start))
	}
	tx.Rollback()
	if _, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil); err != nil {
		t.Errorf("insert after the lock is released: %v", err)
	}
}

// TestPostgresConnectionKilledMidBatch terminates the inserting backend
// while its transaction has written the events and waits on the tracking
// row: nothing of the batch may remain, and the recorder works on.
func TestPostgresConnectionKilledMidBatch(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Killed"})
	// A second connection holds an uncommitted tracking row for "Up", so
	// the recorder's insert blocks on it after writing its events.
	blocker, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback()
	if _, err := blocker.Exec("INSERT INTO " + r.TrackingTable().Quote(d) + " VALUES ('Up', 1)"); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	var batch []es.StoredEvent
	for v := int64(1); v <= 500; v++ {
		batch = append(batch, es.StoredEvent{OriginatorID: id, OriginatorVersion: v, Topic: "t", State: []byte("{}")})
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.InsertEvents(ctx, batch, &es.Tracking{ApplicationName: "Up", NotificationID: 2})
		done <- err
	}()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND (query LIKE 'INSERT INTO%tracking%' OR query LIKE '%events_append_%') AND datname = current_database() LIMIT 1`).Scan(&pid)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the insert never waited on the tracking row: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := db.Exec("SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if !errors.Is(err, es.ErrOperational) {
		t.Errorf("insert on a killed connection: %v, want ErrOperational", err)
	}
	blocker.Rollback()
	if evs, err := r.SelectEvents(ctx, id, nil); err != nil || len(evs) != 0 {
		t.Fatalf("after the kill: %d events of the batch remain (%v)", len(evs), err)
	}
	if n, _ := r.MaxTrackingID(ctx, "Up"); n != 0 {
		t.Errorf("tracking %d remains", n)
	}
	if _, err := r.InsertEvents(ctx, batch, &es.Tracking{ApplicationName: "Up", NotificationID: 2}); err != nil {
		t.Fatalf("the recorder does not work after the kill: %v", err)
	}
	if evs, _ := r.SelectEvents(ctx, id, nil); len(evs) != len(batch) {
		t.Errorf("retry recorded %d events, want %d", len(evs), len(batch))
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// TestGroupCommitCombines checks that concurrent calls share transactions
// and that a conflicting call in a group fails alone.
func TestGroupCommitCombines(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Group", MaxGroupDelay: 5 * time.Millisecond})
			shared := uuid.New()
			if _, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: shared, OriginatorVersion: 1, Topic: "t"}}, nil); err != nil {
				t.Fatal(err)
			}
			const n = 20
			errs := make([]error, n)
			ids := make([][]int64, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id, v := uuid.New(), int64(1)
					if i%5 == 0 {
						id = shared // conflicts with version 1
					}
					ids[i], errs[i] = r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: v, Topic: "t"}, {OriginatorID: id, OriginatorVersion: v + 1, Topic: "t"}}, nil)
				}()
			}
			wg.Wait()
			seen := map[int64]bool{}
			for i := range n {
				if i%5 == 0 {
					if !errors.Is(errs[i], es.ErrIntegrity) {
						t.Errorf("call %d: %v, want ErrIntegrity", i, errs[i])
					}
					continue
				}
				if errs[i] != nil || len(ids[i]) != 2 || ids[i][1] != ids[i][0]+1 {
					t.Errorf("call %d: %v, %v", i, ids[i], errs[i])
				}
				for _, id := range ids[i] {
					if seen[id] {
						t.Errorf("ID %d given twice", id)
					}
					seen[id] = true
				}
			}
			st := r.Stats()
			// Committed calls only: the first, and those that did not conflict.
			if want := int64(n + 1 - n/5); st.Calls != want || st.Transactions >= st.Calls {
				t.Errorf("group stats %+v: want %d calls in fewer transactions", st, want)
			}
		})
	}
}
