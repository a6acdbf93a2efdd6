package eventsourcing_test

// Tests of the PostgreSQL append function (sqlfunc.go,
// dialect/postgres/append.go): the same contract as the transaction path,
// item by item, the fallback, one round trip, and the check of a call
// whose reply was lost.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
	"github.com/seed06b138f8/eventsourcing/recordertest"
)

// TestSQLRecorderConformanceNoAppendFunction runs the conformance suite
// on PostgreSQL with the append function off (the default, on, is
// TestSQLRecorderConformance), with and without group commit.
func TestSQLRecorderConformanceNoAppendFunction(t *testing.T) {
	modes := map[string]es.SQLOptions{
		"Group":   {NoAppendFunction: true},
		"NoGroup": {NoAppendFunction: true, MaxGroupSize: 1},
		"Delay":   {NoAppendFunction: true, MaxGroupDelay: time.Millisecond, MaxGroupSize: 8},
	}
	for mode, opts := range modes {
		t.Run(mode, func(t *testing.T) {
			db, d, schema := postgresSchema(t)
			recordertest.Options{Writers: 8, BatchesPerWriter: 25}.Run(t, func(t *testing.T) es.ProcessRecorder {
				o := opts
				o.Table, o.TrackingTable = pgtestName("ev"), pgtestName("tr")
				r := newSQLRecorder(t, db, d, schema, o)
				if r.Stats().AppendFunction {
					t.Fatal("NoAppendFunction: the recorder appends through the function")
				}
				return r
			})
		})
	}
}

// TestAppendFunctionOn: a PostgreSQL recorder whose tables CreateTables
// made appends through the function (and says so), SQLite never does.
func TestAppendFunctionOn(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			for _, multiRow := range []bool{false, true} {
				r := newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr"), MultiRowTracking: multiRow})
				want := b.name == "Postgres"
				if r.Stats().AppendFunction != want {
					t.Fatalf("Stats().AppendFunction %v; want %v", r.Stats().AppendFunction, want)
				}
				ids, err := r.InsertEvents(context.Background(), fnEvents(uuid.New(), 1, 3), &es.Tracking{ApplicationName: "up", NotificationID: 4})
				if err != nil || len(ids) != 3 || ids[0]+1 != ids[1] || ids[1]+1 != ids[2] {
					t.Fatalf("InsertEvents: %v, %v", ids, err)
				}
			}
		})
	}
}

func fnEvents(id uuid.UUID, from int64, n int) []es.StoredEvent {
	evs := make([]es.StoredEvent, n)
	for i := range evs {
		evs[i] = es.StoredEvent{OriginatorID: id, OriginatorVersion: from + int64(i), Topic: "fn:Event", State: []byte(fmt.Sprintf(`{"n":%d}`, from+int64(i)))}
	}
	return evs
}

// describeErr describes what a caller can see of an InsertEvents error:
// its kinds, and the fields of an *IntegrityError.
func describeErr(err error) string {
	if err == nil {
		return "nil"
	}
	var b strings.Builder
	for _, k := range []error{es.ErrIntegrity, es.ErrOperational, es.ErrLockTimeout, es.ErrProgramming, es.ErrOutcomeUnknown} {
		if errors.Is(err, k) {
			fmt.Fprintf(&b, "[%v]", k)
		}
	}
	fmt.Fprintf(&b, " retryable=%v", es.IsRetryable(err))
	var ie *es.IntegrityError
	if errors.As(err, &ie) {
		fmt.Fprintf(&b, " integrity{table %s, aggregate %v, version %d", tableName(ie.Table), ie.OriginatorID != uuid.Nil, ie.Version)
		if ie.Tracking != nil {
			fmt.Fprintf(&b, ", tracking %+v", *ie.Tracking)
		}
		if ie.Tracking != nil && ie.Err != nil {
			fmt.Fprintf(&b, ", cause %q", ie.Err.Error()[:min(len(ie.Err.Error()), 40)])
		} else if ie.Tracking != nil {
			b.WriteString(", no cause")
		}
		b.WriteString("}")
	}
	return b.String()
}

// tableName drops the random part of a test table's name.
func tableName(s string) string {
	if i := strings.LastIndex(s, "_"); i > 0 {
		return s[:i]
	}
	return s
}

// TestAppendFunctionSameContract runs the same calls through a recorder
// with the append function and one without, on tables of their own, and
// compares every result: IDs (relative to the first), errors (kinds,
// integrity fields, tracking causes), alone and in groups.
func TestAppendFunctionSameContract(t *testing.T) {
	db, d, schema := postgresSchema(t)
	for _, multiRow := range []bool{false, true} {
		for _, group := range []int{1, 100} {
			t.Run(fmt.Sprintf("multirow=%v/group=%d", multiRow, group), func(t *testing.T) {
				run := func(fnOff bool) []string {
					r := newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr"),
						MultiRowTracking: multiRow, MaxGroupSize: group, NoAppendFunction: fnOff, LockTimeout: 200 * time.Millisecond})
					if r.Stats().AppendFunction == fnOff {
						t.Fatalf("AppendFunction %v with NoAppendFunction %v", r.Stats().AppendFunction, fnOff)
					}
					return contractScript(t, db, d, r)
				}
				on, off := run(false), run(true)
				for i := range max(len(on), len(off)) {
					a, b := "(none)", "(none)"
					if i < len(on) {
						a = on[i]
					}
					if i < len(off) {
						b = off[i]
					}
					if a != b {
						t.Errorf("step %d: with the function %s; without %s", i, a, b)
					}
				}
			})
		}
	}
}

// contractScript makes calls on r that meet each rule of InsertEvents
// and returns what each gave.
func contractScript(t *testing.T, db *sql.DB, d es.Dialect, r *es.SQLRecorder) []string {
	ctx := context.Background()
	var out []string
	var base int64
	put := func(what string, evs []es.StoredEvent, tr *es.Tracking) {
		ids, err := r.InsertEvents(ctx, evs, tr)
		if base == 0 && len(ids) > 0 {
			base = ids[0] - 1
		}
		rel := make([]int64, len(ids))
		for i, id := range ids {
			rel[i] = id - base
		}
		out = append(out, fmt.Sprintf("%s: ids %v, err %s", what, rel, describeErr(err)))
	}
	a, b := uuid.New(), uuid.New()
	put("first", fnEvents(a, 1, 3), nil)
	put("duplicate version", fnEvents(a, 3, 2), nil)
	put("duplicate in batch", append(fnEvents(b, 1, 2), fnEvents(b, 2, 1)...), nil)
	put("next", fnEvents(a, 4, 2), nil)
	put("tracking", fnEvents(b, 1, 1), &es.Tracking{ApplicationName: "up", NotificationID: 5})
	put("tracking same", fnEvents(b, 2, 1), &es.Tracking{ApplicationName: "up", NotificationID: 5})
	put("tracking lower", fnEvents(b, 2, 1), &es.Tracking{ApplicationName: "up", NotificationID: 3})
	put("tracking First after", fnEvents(b, 2, 1), &es.Tracking{ApplicationName: "up", NotificationID: 8, First: 6})
	put("tracking First at last", fnEvents(b, 3, 1), &es.Tracking{ApplicationName: "up", NotificationID: 10, First: 8})
	put("tracking alone", nil, &es.Tracking{ApplicationName: "up", NotificationID: 11})
	put("tracking alone same", nil, &es.Tracking{ApplicationName: "up", NotificationID: 11})
	put("tracking other app", fnEvents(b, 3, 1), &es.Tracking{ApplicationName: "other", NotificationID: 1})
	put("conflict and tracking", fnEvents(a, 1, 1), &es.Tracking{ApplicationName: "up", NotificationID: 20})
	put("tracking not moved", nil, &es.Tracking{ApplicationName: "up", NotificationID: 12})

	// A group: calls queued behind a held table lock commit together;
	// the conflicting ones fail alone.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("LOCK TABLE " + r.EventsTable().Quote(d) + " IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	type call struct {
		what string
		evs  []es.StoredEvent
		tr   *es.Tracking
	}
	c := uuid.New()
	calls := []call{
		{"g ok", fnEvents(c, 1, 2), nil},
		{"g dup", fnEvents(a, 2, 1), nil},
		{"g ok tracking", fnEvents(c, 3, 1), &es.Tracking{ApplicationName: "g", NotificationID: 3}},
		{"g tracking conflict", fnEvents(c, 4, 1), &es.Tracking{ApplicationName: "up", NotificationID: 1}},
		{"g ok 2", fnEvents(uuid.New(), 1, 1), nil},
		{"g tracking alone conflict", nil, &es.Tracking{ApplicationName: "up", NotificationID: 2}},
	}
	res := make([]string, len(calls))
	var wg sync.WaitGroup
	// The first call waits for the lock (alone, or holding the turn);
	// the rest queue behind it and form a group.
	first := make(chan struct{})
	for i, cl := range calls {
		if i == 1 {
			<-first
			time.Sleep(20 * time.Millisecond)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				close(first)
			}
			ids, err := r.InsertEvents(ctx, cl.evs, cl.tr)
			res[i] = fmt.Sprintf("%s: %d ids, err %s", cl.what, len(ids), describeErr(err))
		}()
	}
	time.Sleep(50 * time.Millisecond)
	tx.Rollback()
	wg.Wait()
	out = append(out, res...)

	// The lock timeout.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("LOCK TABLE " + r.EventsTable().Quote(d) + " IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	put("lock timeout", fnEvents(uuid.New(), 1, 1), nil)
	// A deadline shorter than the lock timeout: the context's error, in
	// about its time.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	start := time.Now()
	_, err = r.InsertEvents(dctx, fnEvents(uuid.New(), 1, 1), nil)
	cancel()
	out = append(out, fmt.Sprintf("deadline: %s, context error %v", describeErr(err), errors.Is(err, context.DeadlineExceeded)))
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Errorf("a call with a 30 ms deadline took %v behind a held lock", took)
	}
	tx.Rollback()

	// What is stored.
	for _, id := range []uuid.UUID{a, b, c} {
		evs, err := r.SelectEvents(ctx, id, nil)
		out = append(out, fmt.Sprintf("stored %d events (%v)", len(evs), err))
	}
	n, err := r.MaxTrackingID(ctx, "up")
	out = append(out, fmt.Sprintf("tracking up %d (%v)", n, err))
	return out
}

// TestAppendFunctionFallback: where the function does not exist (tables
// made without it, as by Python or an older version of the library, or
// the function dropped) a recorder appends without it until CreateTables
// makes it; a function of an older signature is replaced.
func TestAppendFunctionFallback(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	opts := es.SQLOptions{Schema: schema, Table: pgtestName("ev"), TrackingTable: pgtestName("tr")}
	off := opts
	off.NoAppendFunction = true
	newRec := func(o es.SQLOptions) *es.SQLRecorder {
		t.Helper()
		r, err := es.NewSQLRecorder(ctx, db, d, &o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	check := func(what string, r *es.SQLRecorder, want bool) {
		t.Helper()
		if r.Stats().AppendFunction != want {
			t.Errorf("%s: Stats().AppendFunction %v; want %v", what, r.Stats().AppendFunction, want)
		}
		if _, err := r.InsertEvents(ctx, fnEvents(uuid.New(), 1, 2), nil); err != nil {
			t.Errorf("%s: InsertEvents: %v", what, err)
		}
	}
	old := newRec(off)
	if err := old.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	check("tables made without the function", newRec(opts), false)
	r := newRec(opts)
	if err := r.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	check("after CreateTables", r, true)
	check("a new recorder", newRec(opts), true)

	fnName := func() (name string, n int) {
		t.Helper()
		err := db.QueryRow("SELECT min(p.proname), count(*) FROM pg_proc p WHERE p.pronamespace = $1::regnamespace AND p.proname LIKE $2",
			schema, opts.Table+"_append_%").Scan(&name, &n)
		if err != nil {
			t.Fatal(err)
		}
		return name, n
	}
	name, n := fnName()
	if n != 1 {
		t.Fatalf("%d functions named %s_append_...", n, opts.Table)
	}
	if _, err := db.Exec("DROP FUNCTION " + schema + "." + name); err != nil {
		t.Fatal(err)
	}
	check("function dropped", newRec(opts), false)

	// An older version's function: same name, another signature.
	if _, err := db.Exec("CREATE FUNCTION " + schema + "." + name + "(ids uuid[]) RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 1::bigint'"); err != nil {
		t.Fatal(err)
	}
	r = newRec(opts)
	check("an older function", r, false)
	if err := r.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	check("older function replaced", r, true)
	if _, n := fnName(); n != 1 {
		t.Errorf("%d functions after the replacement, want 1", n)
	}
	// The same signature with another body (a comment that is not this
	// version's) is replaced too.
	if _, err := db.Exec("COMMENT ON FUNCTION " + schema + "." + name + " IS 'something else'"); err != nil {
		t.Fatal(err)
	}
	r = newRec(opts)
	check("a function of another version", r, false)
	if err := r.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	check("replaced", r, true)
}

// TestAppendFunctionNoCreatePrivilege: a role that may write the tables
// but not create in their schema makes no function: CreateTables
// succeeds and the recorder appends without it.
func TestAppendFunctionNoCreatePrivilege(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	role := "es_nocreate_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	opts := es.SQLOptions{Schema: schema, Table: pgtestName("ev"), TrackingTable: pgtestName("tr"), NoAppendFunction: true}
	admin, err := es.NewSQLRecorder(ctx, db, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	ev, tr := admin.EventsTable().Quote(d), admin.TrackingTable().Quote(d)
	for _, s := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT SELECT, INSERT, UPDATE ON " + ev + ", " + tr + " TO " + role,
		"GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + role,
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() {
		for _, s := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := db.Exec(s); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	rdb := stdlib.OpenDB(*cfg)
	defer rdb.Close()
	if err := rdb.PingContext(ctx); err != nil {
		t.Skipf("cannot connect as a new role (%v): the server's authentication needs a password", err)
	}
	opts.NoAppendFunction = false
	r, err := es.NewSQLRecorder(ctx, rdb, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(ctx); err != nil {
		t.Fatalf("CreateTables without CREATE privilege: %v", err)
	}
	if r.Stats().AppendFunction {
		t.Fatal("a function was made without CREATE privilege")
	}
	if _, err := r.InsertEvents(ctx, fnEvents(uuid.New(), 1, 2), &es.Tracking{ApplicationName: "up", NotificationID: 1}); err != nil {
		t.Fatalf("InsertEvents: %v", err)
	}
}

// faultedFunctionRecorder returns a recorder with the append function on
// a pool through the audit's connector, whose schedule s the test arms.
func faultedFunctionRecorder(t *testing.T, opts es.SQLOptions) (*es.SQLRecorder, *auditConnector, *faultSchedule, *sql.DB) {
	t.Helper()
	side := pgtest.DB(t)
	opts.Schema = pgtest.Schema(t, side)
	opts.Table, opts.TrackingTable = pgtestName("ev"), pgtestName("tr")
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &faultSchedule{seed: 1}
	c := &auditConnector{inner: stdlib.GetConnector(*cfg), s: s, errs: postgresFaultErrors()}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	r, err := es.NewSQLRecorder(context.Background(), db, postgres.Dialect{}, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Stats().AppendFunction == opts.NoAppendFunction {
		t.Fatalf("AppendFunction %v with NoAppendFunction %v", r.Stats().AppendFunction, opts.NoAppendFunction)
	}
	return r, c, s, side
}

// TestAppendFunctionRoundTrips counts the statements one append sends
// (each a round trip): one with the function (the call, which commits),
// with a tracking record or not; without, four (BEGIN, the lock
// statements with NOTIFY, INSERT, COMMIT) and one more for a tracking
// record.
func TestAppendFunctionRoundTrips(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		opts es.SQLOptions
		want [2]int64 // without and with a tracking record
	}{
		{"function", es.SQLOptions{}, [2]int64{1, 1}},
		{"function/nogroup", es.SQLOptions{MaxGroupSize: 1}, [2]int64{1, 1}},
		{"transaction", es.SQLOptions{NoAppendFunction: true}, [2]int64{4, 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, conn, _, _ := faultedFunctionRecorder(t, c.opts)
			r.DB().SetMaxOpenConns(1) // one connection: its first use (statement caches, process ID) is warm-up
			id := uuid.New()
			for v := int64(1); v <= 3; v++ {
				if _, err := r.InsertEvents(ctx, fnEvents(id, v, 1), &es.Tracking{ApplicationName: "up", NotificationID: v}); err != nil {
					t.Fatal(err)
				}
			}
			for i, tracking := range []bool{false, true} {
				var tr *es.Tracking
				if tracking {
					tr = &es.Tracking{ApplicationName: "up", NotificationID: 10}
				}
				before := conn.stmts.Load()
				ids, err := r.InsertEvents(ctx, fnEvents(id, int64(10+i), 1), tr)
				if err != nil || len(ids) != 1 {
					t.Fatal(ids, err)
				}
				if got := conn.stmts.Load() - before; got != c.want[i] {
					t.Errorf("tracking %v: %d statements for one append, want %d", tracking, got, c.want[i])
				}
			}
		})
	}
}

// TestAppendFunctionLostReply: a call whose reply is lost is checked:
// after the server committed it, the call succeeds with the IDs stored;
// lost before the server ran it, or cancelled while the call waited for
// the lock, it fails saying nothing was written (not "unknown"); and
// nothing is stored that the caller was not told of.
func TestAppendFunctionLostReply(t *testing.T) {
	ctx := context.Background()
	for _, group := range []int{1, 100} {
		t.Run(fmt.Sprintf("group=%d", group), func(t *testing.T) {
			r, _, s, side := faultedFunctionRecorder(t, es.SQLOptions{MaxGroupSize: group})
			once := func(f auditFault, evs []es.StoredEvent, tr *es.Tracking) ([]int64, error) {
				s.rate = [numFaults]float64{}
				s.rate[f] = 1
				s.armed.Store(true)
				defer s.armed.Store(false)
				return r.InsertEvents(ctx, evs, tr)
			}
			stored := func(id uuid.UUID) []es.Notification {
				var got []es.Notification
				ns, err := r.SelectNotifications(ctx, 1, 1000, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range ns {
					if n.OriginatorID == id {
						got = append(got, n)
					}
				}
				return got
			}
			// Committed, the reply lost.
			a := uuid.New()
			ids, err := once(faultCallReplyLost, fnEvents(a, 1, 3), &es.Tracking{ApplicationName: "up", NotificationID: 7})
			got := stored(a)
			if err != nil || len(ids) != 3 || len(got) != 3 || got[0].ID != ids[0] || got[2].ID != ids[2] {
				t.Fatalf("reply lost after the commit: %v, %v; stored %v", ids, err, got)
			}
			if n, _ := r.MaxTrackingID(ctx, "up"); n != 7 {
				t.Errorf("tracking %d after the lost reply, want 7", n)
			}
			// Tracking alone, committed, the reply lost.
			if _, err := once(faultCallReplyLost, nil, &es.Tracking{ApplicationName: "up", NotificationID: 8}); err != nil {
				t.Errorf("tracking alone, reply lost after the commit: %v", err)
			}
			// Lost before the server ran it.
			b := uuid.New()
			ids, err = once(faultCallLost, fnEvents(b, 1, 2), nil)
			if err == nil || errors.Is(err, es.ErrOutcomeUnknown) || !es.IsRetryable(err) || len(stored(b)) != 0 {
				t.Fatalf("call lost before it ran: %v, %v (%s); stored %d", ids, err, describeErr(err), len(stored(b)))
			}
			// The retry succeeds.
			if _, err := r.InsertEvents(ctx, fnEvents(b, 1, 2), nil); err != nil {
				t.Fatalf("retry: %v", err)
			}

			// Cancelled while the call waits for a lock held elsewhere:
			// the driver drops the connection, the server process still
			// waits; the check ends it and finds nothing written.
			tx, err := side.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("LOCK TABLE " + r.EventsTable().Quote(postgres.Dialect{}) + " IN EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			c := uuid.New()
			_, err = r.InsertEvents(cctx, fnEvents(c, 1, 1), nil)
			if err == nil || errors.Is(err, es.ErrOutcomeUnknown) {
				t.Errorf("cancelled while waiting for the lock: %v, want an error saying nothing was written", err)
			}
			tx.Rollback()
			time.Sleep(50 * time.Millisecond)
			if n := len(stored(c)); n != 0 {
				t.Errorf("cancelled call: %d events stored after the lock was released", n)
			}
			// The recorder works on.
			if _, err := r.InsertEvents(ctx, fnEvents(c, 1, 1), nil); err != nil {
				t.Fatalf("after the cancelled call: %v", err)
			}
		})
	}
}

// TestAppendFunctionCreateTablesConcurrently: processes that create the
// same tables at once all succeed, all append through the function, and
// one function is left (one made it; the others found it made under the
// DDL lock and left it alone).
func TestAppendFunctionCreateTablesConcurrently(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	opts := es.SQLOptions{Schema: schema, Table: pgtestName("ev"), TrackingTable: pgtestName("tr")}
	const n = 4
	recs := make([]*es.SQLRecorder, n)
	for i := range recs {
		r, err := es.NewSQLRecorder(ctx, db, d, &opts)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = r
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Go(func() { errs[i] = r.CreateTables(ctx) })
	}
	wg.Wait()
	for i, r := range recs {
		if errs[i] != nil {
			t.Errorf("CreateTables %d: %v", i, errs[i])
		} else if !r.Stats().AppendFunction {
			t.Errorf("recorder %d does not append through the function", i)
		}
	}
	var fns int
	if err := db.QueryRow("SELECT count(*) FROM pg_proc WHERE pronamespace = $1::regnamespace AND proname LIKE $2", schema, opts.Table+"_append_%").Scan(&fns); err != nil || fns != 1 {
		t.Errorf("%d functions (%v), want 1", fns, err)
	}
	for i, r := range recs {
		if _, err := r.InsertEvents(ctx, fnEvents(uuid.New(), 1, 1), nil); err != nil {
			t.Errorf("recorder %d: %v", i, err)
		}
	}
}
