package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// The view of the projection tests, in the downstream database: applied
// has one row per notification applied (no key, so that one applied twice
// shows), totals one row the handlers read and update, so that a handler
// that did not see the writes of those before it in its batch shows.

// viewSQL is the view's SQL in one database.
type viewSQL struct {
	d      es.Dialect
	schema string
}

func (v viewSQL) table(name string) string {
	return es.Table{Schema: v.schema, Name: name}.Quote(v.d)
}

func (v viewSQL) create(t testing.TB, db *sql.DB) {
	t.Helper()
	for _, s := range []string{
		"CREATE TABLE IF NOT EXISTS " + v.table("applied") + " (notification_id BIGINT NOT NULL, n BIGINT NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + v.table("totals") + " (k TEXT PRIMARY KEY, cnt BIGINT NOT NULL, total BIGINT NOT NULL)",
		"INSERT INTO " + v.table("totals") + " (k, cnt, total) VALUES ('all', 0, 0) ON CONFLICT (k) DO NOTHING",
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
}

// handler applies an upstream event to the view.
func (v viewSQL) handler() es.ProjectionHandler[*upEvent, *sql.Tx] {
	p := v.d.Placeholder
	ins := "INSERT INTO " + v.table("applied") + " (notification_id, n) VALUES (" + p(1) + ", " + p(2) + ")"
	sel := "SELECT cnt, total FROM " + v.table("totals") + " WHERE k = 'all'"
	upd := "UPDATE " + v.table("totals") + " SET cnt = " + p(1) + ", total = " + p(2) + " WHERE k = 'all'"
	return func(ctx context.Context, tx *sql.Tx, u es.Recorded[*upEvent]) error {
		if _, err := tx.ExecContext(ctx, ins, u.ID, u.Event.N); err != nil {
			return err
		}
		var cnt, total int64
		if err := tx.QueryRowContext(ctx, sel).Scan(&cnt, &total); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, upd, cnt+1, total+u.Event.N)
		return err
	}
}

// reset empties the view.
func (v viewSQL) reset(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+v.table("applied")); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "UPDATE "+v.table("totals")+" SET cnt = 0, total = 0")
	return err
}

// rows returns the view: how many times each notification was applied
// and with which n, and the totals row.
func (v viewSQL) rows(t testing.TB, db *sql.DB) (applied map[int64][]int64, cnt, total int64) {
	t.Helper()
	rows, err := db.Query("SELECT notification_id, n FROM " + v.table("applied"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	applied = map[int64][]int64{}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		applied[id] = append(applied[id], n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT cnt, total FROM "+v.table("totals")+" WHERE k = 'all'").Scan(&cnt, &total); err != nil {
		t.Fatal(err)
	}
	return applied, cnt, total
}

// replay computes the view independently: upstream notification ID -> n,
// for every notification up to last, except those in skip.
func replay(t testing.TB, up es.ApplicationRecorder, last int64, skip ...int64) map[int64]int64 {
	t.Helper()
	ns, err := up.SelectNotifications(context.Background(), 0, 1<<30, &es.NotificationQuery{Stop: last})
	if err != nil {
		t.Fatal(err)
	}
	m := upStore(t, up).Mapper
	want := map[int64]int64{}
	for _, n := range ns {
		if slices.Contains(skip, n.ID) {
			continue
		}
		e, err := m.FromStoredEvent(n.StoredEvent)
		if err != nil {
			t.Fatal(err)
		}
		want[n.ID] = e.N
	}
	return want
}

// checkView checks that the view holds exactly want: each notification
// applied once, with its n, and the totals of them all.
func (v viewSQL) check(t testing.TB, db *sql.DB, want map[int64]int64) {
	t.Helper()
	applied, cnt, total := v.rows(t, db)
	checkApplied(t, applied, want)
	var sum int64
	for _, n := range want {
		sum += n
	}
	if cnt != int64(len(want)) || total != sum {
		t.Fatalf("totals: %d notifications summing to %d, want %d summing to %d", cnt, total, len(want), sum)
	}
}

func checkApplied(t testing.TB, applied map[int64][]int64, want map[int64]int64) {
	t.Helper()
	bad := 0
	for id, n := range want {
		if got := applied[id]; len(got) != 1 || got[0] != n {
			if bad < 5 {
				t.Errorf("notification %d applied as %v, want once as [%d]", id, got, n)
			}
			bad++
		}
	}
	for id, got := range applied {
		if _, ok := want[id]; !ok {
			if bad < 5 {
				t.Errorf("notification %d applied %v, want not at all", id, got)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d notifications not applied exactly once", bad, len(want))
	}
}

// projectionBackend gives an upstream recorder and the downstream SQL
// recorder whose database holds the view.
type projectionBackend struct {
	name string
	open func(t *testing.T, multiRow bool) (up es.ApplicationRecorder, down *es.SQLRecorder, v viewSQL)
}

var projectionBackends = []projectionBackend{
	{"SQLite", func(t *testing.T, multiRow bool) (es.ApplicationRecorder, *es.SQLRecorder, viewSQL) {
		u, _, _ := sqliteFile(t)
		d, _, _ := sqliteFile(t)
		down := newSQLRecorder(t, d, sqlite.Dialect{}, "", es.SQLOptions{MultiRowTracking: multiRow})
		v := viewSQL{d: sqlite.Dialect{}}
		v.create(t, d)
		return newSQLRecorder(t, u, sqlite.Dialect{}, "", es.SQLOptions{}), down, v
	}},
	{"SQLiteSameDatabase", func(t *testing.T, multiRow bool) (es.ApplicationRecorder, *es.SQLRecorder, viewSQL) {
		db, _, _ := sqliteFile(t)
		rec := newSQLRecorder(t, db, sqlite.Dialect{}, "", es.SQLOptions{MultiRowTracking: multiRow})
		v := viewSQL{d: sqlite.Dialect{}}
		v.create(t, db)
		return rec, rec, v
	}},
	{"Postgres", func(t *testing.T, multiRow bool) (es.ApplicationRecorder, *es.SQLRecorder, viewSQL) {
		db := pgtest.DB(t)
		schema := pgtest.Schema(t, db)
		down := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{AppName: "Down", MultiRowTracking: multiRow})
		v := viewSQL{d: postgres.Dialect{}, schema: schema}
		v.create(t, db)
		return newSQLRecorder(t, db, postgres.Dialect{}, pgtest.Schema(t, db), es.SQLOptions{AppName: "Up"}), down, v
	}},
}

// runProjection runs p in a goroutine; stop cancels it and returns Run's
// error.
func runProjection[E es.Event, Tx any](p *es.Projection[E, Tx]) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return within 10 s of its context's end")
		}
	}
}

func TestProjection(t *testing.T) {
	for _, b := range projectionBackends {
		for _, multiRow := range []bool{false, true} {
			for _, batch := range []int{1, 7, 0} {
				t.Run(fmt.Sprintf("%s/MultiRow=%v/Batch%d", b.name, multiRow, batch), func(t *testing.T) {
					ctx := context.Background()
					up, down, v := b.open(t, multiRow)
					us := upStore(t, up)
					last := putUp(t, us, 40)
					p, err := es.NewProjection("Up", us, down, v.handler(), &es.RunnerOptions{BatchSize: batch, Subscribe: es.SubscribeOptions{PollInterval: 50 * time.Millisecond}})
					if err != nil {
						t.Fatal(err)
					}
					stop := runProjection(p)
					if err := p.Wait(ctx, last); err != nil {
						t.Fatal(err)
					}
					last = putUp(t, us, 25)
					// WaitTracking on the store sees the projection's
					// commits too.
					waitTracked(t, down, "Up", last)
					if err := stop(); err != nil {
						t.Fatalf("Run after its context ended: %v, want nil", err)
					}
					v.check(t, down.DB(), replay(t, up, last))
					st, err := p.Status(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if st.Position != last || st.UpstreamHead != last || st.Lag != 0 || st.Running || st.LastError != nil || st.Batches == 0 {
						t.Errorf("status %+v, want position and head %d, no lag, not running, no error", st, last)
					}
					// Resumed: nothing again, the new ones once.
					last = putUp(t, us, 5)
					if err := p.RunUntilCaughtUp(ctx); err != nil {
						t.Fatal(err)
					}
					v.check(t, down.DB(), replay(t, up, last))
					if n := down.DB().Stats().InUse; n != 0 {
						t.Errorf("%d downstream connections in use after the projection stopped", n)
					}
				})
			}
		}
	}
}

// memView is the in-memory view of the projection tests.
type memView struct {
	applied map[int64][]int64
	cnt     int64
	total   int64
}

func cloneMemView(v *memView) *memView {
	c := *v
	c.applied = maps.Clone(v.applied)
	return &c
}

func applyMem(_ context.Context, v *memView, u es.Recorded[*upEvent]) error {
	v.applied[u.ID] = append(slices.Clip(v.applied[u.ID]), u.Event.N)
	v.cnt++
	v.total += u.Event.N
	return nil
}

func TestProjectionMemory(t *testing.T) {
	ctx := context.Background()
	up := es.NewMemoryRecorder()
	us := upStore(t, up)
	last := putUp(t, us, 50)
	view := es.NewMemoryView(&memView{applied: map[int64][]int64{}}, cloneMemView)
	boom := errors.New("boom")
	var fails atomic.Int64
	fails.Store(1)
	handle := func(ctx context.Context, v *memView, u es.Recorded[*upEvent]) error {
		if err := applyMem(ctx, v, u); err != nil {
			return err
		}
		if u.ID == 17 && fails.Add(-1) >= 0 {
			return boom // after changing the state: the batch must leave nothing
		}
		return nil
	}
	p, err := es.NewProjection("Up", us, view, handle, &es.RunnerOptions{BatchSize: 10, Attempts: 2, RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunUntilCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(last int64) {
		t.Helper()
		want := replay(t, up, last)
		view.Read(func(v *memView) {
			checkApplied(t, v.applied, want)
			if v.cnt != int64(len(want)) {
				t.Errorf("count %d, want %d", v.cnt, len(want))
			}
		})
	}
	check(last)
	if err := es.WaitTracking(ctx, view, "Up", last); err != nil {
		t.Fatal(err)
	}
	// Rebuild in place.
	if err := p.Reset(ctx, func(_ context.Context, v *memView) error {
		*v = memView{applied: map[int64][]int64{}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	view.Read(func(v *memView) {
		if len(v.applied) != 0 {
			t.Fatalf("%d applied after Reset", len(v.applied))
		}
	})
	if err := p.RunUntilCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	check(last)
	if _, err := view.MaxTrackingID(ctx, "Up"); err != nil {
		t.Fatal(err)
	}
	if err := es.NewMemoryView(0, nil).WithTracking(ctx, es.Tracking{ApplicationName: "x", NotificationID: 1}, func(context.Context, int) error { return nil }); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("MemoryView without clone: %v, want ErrProgramming", err)
	}
}

// A handler that fails: the notifications of its batch before it are
// applied and committed, it is not (by default, Run returns its error),
// and with OnSkip it is skipped, recorded, and the rest applied.
func TestProjectionPoison(t *testing.T) {
	for _, b := range projectionBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			up, down, v := b.open(t, false)
			us := upStore(t, up)
			last := putUp(t, us, 20)
			boom := errors.New("boom")
			handle := v.handler()
			poison := func(ctx context.Context, tx *sql.Tx, u es.Recorded[*upEvent]) error {
				if err := handle(ctx, tx, u); err != nil {
					return err
				}
				if u.ID == 5 {
					return boom // after writing: the write must be rolled back
				}
				return nil
			}
			p, err := es.NewProjection("Up", us, down, poison, &es.RunnerOptions{BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Run(ctx)
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), "notification 5") {
				t.Fatalf("Run: %v, want the handler's error naming notification 5", err)
			}
			v.check(t, down.DB(), replay(t, up, 4))
			if n, _ := down.MaxTrackingID(ctx, "Up"); n != 4 {
				t.Fatalf("tracked %d, want 4", n)
			}
			// Again, with a skip: the poison one is handed to OnSkip, which
			// records it in a table of its own, and is tracked.
			var skipped []int64
			obs := &batchObserver{}
			p, err = es.NewProjection("Up", us, down, poison, &es.RunnerOptions{BatchSize: 100, Attempts: 3, RetryDelay: time.Millisecond, Observer: obs,
				OnSkip: func(ctx context.Context, n es.Notification, err error) error {
					if !errors.Is(err, boom) {
						t.Errorf("OnSkip(%d, %v)", n.ID, err)
					}
					skipped = append(skipped, n.ID)
					return nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.RunUntilCaughtUp(ctx); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(skipped, []int64{5}) {
				t.Errorf("skipped %v, want [5]", skipped)
			}
			v.check(t, down.DB(), replay(t, up, last, 5))
			st, err := p.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Skipped != 1 || st.LastSkipped != 5 || !errors.Is(st.LastError, boom) || st.Position != last {
				t.Errorf("status %+v: want 1 skipped (5), the handler's error last, position %d", st, last)
			}
			if obs.skips.Load() != 1 || obs.batches.Load() == 0 {
				t.Errorf("observer told of %d batches and %d skips, want some and 1", obs.batches.Load(), obs.skips.Load())
			}
			// A skip OnSkip refuses ends Run with both errors.
			if err := down.ResetTracking(ctx, "Up", v.reset); err != nil {
				t.Fatal(err)
			}
			refuse := errors.New("no")
			p, _ = es.NewProjection("Up", us, down, poison, &es.RunnerOptions{OnSkip: func(context.Context, es.Notification, error) error { return refuse }})
			if err := p.RunUntilCaughtUp(ctx); !errors.Is(err, boom) || !errors.Is(err, refuse) {
				t.Fatalf("refused skip: %v, want both errors", err)
			}
			v.check(t, down.DB(), replay(t, up, 4))
		})
	}
}

// batchObserver counts the runner batches and skips it is told of.
type batchObserver struct {
	batches, skips atomic.Int64
	mu             sync.Mutex
	ops            []es.Op
}

func (o *batchObserver) ObserveStart(ctx context.Context, op es.Op) context.Context { return ctx }

func (o *batchObserver) ObserveEnd(ctx context.Context, op es.Op, res es.OpResult) {
	switch op.Kind {
	case es.OpRunnerBatch:
		o.batches.Add(1)
	case es.OpRunnerSkip:
		o.skips.Add(1)
	}
	o.mu.Lock()
	o.ops = append(o.ops, op)
	o.mu.Unlock()
}

// Reset empties the view and its tracking record in one transaction; the
// projection then applies everything again. A new name rebuilds beside.
func TestProjectionReset(t *testing.T) {
	for _, b := range projectionBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			up, down, v := b.open(t, false)
			us := upStore(t, up)
			last := putUp(t, us, 30)
			p, err := es.NewProjection("Up", us, down, v.handler(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.RunUntilCaughtUp(ctx); err != nil {
				t.Fatal(err)
			}
			// A reset that fails changes nothing.
			bad := errors.New("bad reset")
			if err := p.Reset(ctx, func(ctx context.Context, tx *sql.Tx) error {
				if err := v.reset(ctx, tx); err != nil {
					return err
				}
				return bad
			}); !errors.Is(err, bad) {
				t.Fatalf("Reset: %v, want the reset's error", err)
			}
			v.check(t, down.DB(), replay(t, up, last))
			if n, _ := down.MaxTrackingID(ctx, "Up"); n != last {
				t.Fatalf("tracked %d after a failed reset, want %d", n, last)
			}
			if err := p.Reset(ctx, v.reset); err != nil {
				t.Fatal(err)
			}
			if n, _ := down.MaxTrackingID(ctx, "Up"); n != 0 {
				t.Fatalf("tracked %d after reset, want 0", n)
			}
			if applied, _, _ := v.rows(t, down.DB()); len(applied) != 0 {
				t.Fatalf("%d applied after reset", len(applied))
			}
			if err := p.RunUntilCaughtUp(ctx); err != nil {
				t.Fatal(err)
			}
			v.check(t, down.DB(), replay(t, up, last))
		})
	}
}

// Two copies of one projection at once (a process thought dead that is
// still running): each notification is applied once.
func TestProjectionTwoCopies(t *testing.T) {
	for _, b := range projectionBackends {
		for _, multiRow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/MultiRow=%v", b.name, multiRow), func(t *testing.T) {
				up, down, v := b.open(t, multiRow)
				us := upStore(t, up)
				var stops []func() error
				for i := range 2 {
					p, err := es.NewProjection("Up", us, down, v.handler(), &es.RunnerOptions{BatchSize: []int{3, 10}[i], Attempts: -1, RetryDelay: time.Millisecond,
						Subscribe: es.SubscribeOptions{PollInterval: 20 * time.Millisecond}})
					if err != nil {
						t.Fatal(err)
					}
					stops = append(stops, runProjection(p))
				}
				var last int64
				for range 20 {
					last = putUp(t, us, 10)
				}
				waitTracked(t, down, "Up", last)
				for _, stop := range stops {
					if err := stop(); err != nil {
						t.Fatal(err)
					}
				}
				v.check(t, down.DB(), replay(t, up, last))
			})
		}
	}
}

func TestProjectionInvalid(t *testing.T) {
	us := upStore(t, es.NewMemoryRecorder())
	view := es.NewMemoryView(&memView{applied: map[int64][]int64{}}, cloneMemView)
	for _, name := range []string{"", "__migration__"} {
		if _, err := es.NewProjection(name, us, view, applyMem, nil); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("NewProjection(%q): %v, want ErrProgramming", name, err)
		}
	}
	if _, err := es.NewProjection[*upEvent, *memView]("Up", us, view, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil handler: %v, want ErrProgramming", err)
	}
	if _, err := es.NewProjection[*upEvent, *memView]("Up", us, nil, applyMem, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil store: %v, want ErrProgramming", err)
	}
	if _, err := es.NewProjection("Up", us, (*es.SQLRecorder)(nil), func(context.Context, *sql.Tx, es.Recorded[*upEvent]) error { return nil }, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil *SQLRecorder: %v, want ErrProgramming", err)
	}
	if _, err := es.NewProjection("Up", upStore(t, snapshotOnly{}), view, applyMem, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("upstream without notifications: %v, want ErrProgramming", err)
	}
	// Two Runs at once.
	p, err := es.NewProjection("Up", us, view, applyMem, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runProjection(p)
	defer stop()
	time.Sleep(20 * time.Millisecond)
	if err := p.Run(context.Background()); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("second Run: %v, want ErrProgramming", err)
	}
	if err := p.Reset(context.Background(), nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Reset while running: %v, want ErrProgramming", err)
	}
}

// A handler that panics ends Run with the panic; the runner can run again.
func TestProjectionHandlerPanics(t *testing.T) {
	ctx := context.Background()
	for _, b := range projectionBackends[:1] {
		up, down, v := b.open(t, false)
		us := upStore(t, up)
		last := putUp(t, us, 5)
		handle := v.handler()
		panics := true
		p, err := es.NewProjection("Up", us, down, func(ctx context.Context, tx *sql.Tx, u es.Recorded[*upEvent]) error {
			if u.ID == 3 && panics {
				panic("handler bug")
			}
			return handle(ctx, tx, u)
		}, &es.RunnerOptions{BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if r := recover(); r != "handler bug" {
					t.Fatalf("recovered %v", r)
				}
			}()
			p.RunUntilCaughtUp(ctx)
		}()
		if err := p.Wait(ctx, last); !errors.Is(err, es.ErrRunnerStopped) {
			t.Fatalf("Wait after the panic: %v, want ErrRunnerStopped", err)
		}
		panics = false
		// The transaction was rolled back and the writer turn released.
		if err := p.RunUntilCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		v.check(t, down.DB(), replay(t, up, last))
	}
}

// snapshotOnly is an aggregate recorder without notifications.
type snapshotOnly struct{ es.AggregateRecorder }

// Environment of TestProjectionKillChild.
const (
	envProjBackend = "ES_TEST_PROJ_BACKEND" // sqlite or postgres
	envProjUp      = "ES_TEST_PROJ_UP"      // SQLite file or Postgres schema
	envProjDown    = "ES_TEST_PROJ_DOWN"
	envProjBatch   = "ES_TEST_PROJ_BATCH"
	envProjTarget  = "ES_TEST_PROJ_TARGET"
)

func openProjectionKillStores(t testing.TB, backend, upName, downName string) (es.ApplicationRecorder, *es.SQLRecorder, viewSQL) {
	t.Helper()
	up, down := openKillStores(t, backend, upName, downName)
	rec := down.(*es.SQLRecorder)
	v := viewSQL{d: sqlite.Dialect{}}
	if backend != "sqlite" {
		v = viewSQL{d: postgres.Dialect{}, schema: downName}
	}
	v.create(t, rec.DB())
	return up, rec, v
}

// TestProjectionKillChild is the projection process that
// TestProjectionKilled kills: it applies upstream notifications until the
// target is tracked.
func TestProjectionKillChild(t *testing.T) {
	backend := os.Getenv(envProjBackend)
	if backend == "" {
		t.Skip("run by TestProjectionKilled")
	}
	up, down, v := openProjectionKillStores(t, backend, os.Getenv(envProjUp), os.Getenv(envProjDown))
	batch, _ := strconv.Atoi(os.Getenv(envProjBatch))
	target, _ := strconv.ParseInt(os.Getenv(envProjTarget), 10, 64)
	p, err := es.NewProjection("Up", upStore(t, up), down, v.handler(), &es.RunnerOptions{BatchSize: batch, Attempts: -1, RetryDelay: time.Millisecond,
		Subscribe: es.SubscribeOptions{PollInterval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	if err := p.Wait(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestProjectionKilled kills the projection process with SIGKILL at random
// points (5 times) while it applies 10,000 upstream notifications into a
// table, restarting it each time, with two copies running at once in every
// other run; after the last run, the table equals a replay computed
// independently: no notification applied twice or missed.
func TestProjectionKilled(t *testing.T) {
	if os.Getenv(envProjBackend) != "" {
		return
	}
	const total, kills = 10_000, 5
	backends := []string{"sqlite"}
	if os.Getenv(pgtest.EnvDSN) != "" || os.Getenv(pgtest.EnvRequire) == "1" {
		backends = append(backends, "postgres")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			var upName, downName string
			if backend == "sqlite" {
				dir := t.TempDir()
				upName, downName = filepath.Join(dir, "up.db"), filepath.Join(dir, "down.db")
			} else {
				db := pgtest.DB(t)
				upName, downName = pgtest.Schema(t, db), pgtest.Schema(t, db)
			}
			up, down, v := openProjectionKillStores(t, backend, upName, downName)
			last := putUp(t, upStore(t, up), total)
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
			points := make([]int64, kills)
			for i := range points {
				points[i] = 1 + rng.Int64N(last-1)
			}
			slices.Sort(points)
			tracked := func() int64 {
				n, err := down.MaxTrackingID(context.Background(), "Up")
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			var killedAt []int64
			for run := 0; run <= kills; run++ {
				copies := 1 + run%2
				var cmds []*exec.Cmd
				var outs []*syncBuffer
				for c := range copies {
					// Alone in batches of 13 or 100; two copies: one
					// per transaction beside 50 at once.
					batch := []int{13, 100}[run/2%2]
					if copies == 2 {
						batch = []int{1, 50}[c]
					}
					cmd := exec.Command(os.Args[0], "-test.run=^TestProjectionKillChild$")
					cmd.Env = append(os.Environ(), envProjBackend+"="+backend, envProjUp+"="+upName, envProjDown+"="+downName,
						envProjBatch+"="+strconv.Itoa(batch), envProjTarget+"="+strconv.FormatInt(last, 10))
					out := new(syncBuffer)
					cmd.Stdout, cmd.Stderr = out, out
					if err := cmd.Start(); err != nil {
						t.Fatal(err)
					}
					cmds, outs = append(cmds, cmd), append(outs, out)
				}
				if run == kills {
					for i, cmd := range cmds {
						if err := cmd.Wait(); err != nil {
							t.Fatalf("last run, copy %d: %v\n%s", i, err, outs[i])
						}
					}
					break
				}
				deadline := time.Now().Add(20 * time.Second)
				for tracked() < points[run] && time.Now().Before(deadline) {
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				for _, cmd := range cmds {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
				for _, cmd := range cmds {
					cmd.Wait()
				}
				killedAt = append(killedAt, tracked())
			}
			t.Logf("killed at tracking %v of %d", killedAt, last)
			v.check(t, down.DB(), replay(t, up, last))
		})
	}
}

// On PostgreSQL, WaitTracking in another session (another process's
// recorder, on a pool of its own) is woken by the projection's commit
// (NOTIFY), not only by its polling, which has slowed to 640 ms or more
// between checks by then.
func TestProjectionWaitTrackingOtherSession(t *testing.T) {
	ctx := context.Background()
	db := pgtest.DB(t)
	schema := pgtest.Schema(t, db)
	up := newSQLRecorder(t, db, postgres.Dialect{}, pgtest.Schema(t, db), es.SQLOptions{AppName: "Up"})
	down := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{AppName: "Down"})
	v := viewSQL{d: postgres.Dialect{}, schema: schema}
	v.create(t, db)
	other, err := es.NewSQLRecorder(ctx, pgtest.DB(t), postgres.Dialect{}, &es.SQLOptions{AppName: "Down", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	us := upStore(t, up)
	p, err := es.NewProjection("Up", us, down, v.handler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runProjection(p)
	defer stop()
	for i := range 3 {
		last, _ := up.MaxNotificationID(ctx)
		put := make(chan time.Time, 1)
		go func() {
			time.Sleep(1500 * time.Millisecond) // WaitTracking's polls are 640 ms or more apart by then
			putUp(t, us, 1)
			put <- time.Now()
		}()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := es.WaitTracking(wctx, other, "Up", last+1)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(<-put); d > 400*time.Millisecond {
			t.Fatalf("wait %d: WaitTracking in another session returned %v after the upstream commit, want it woken by the projection's NOTIFY", i, d)
		}
	}
	v.check(t, db, replay(t, up, 3))
}
