package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// Upstream and downstream events of the runner tests.
type upEvent struct {
	es.DomainEvent
	N int64 `json:"n"`
}

type downEvent struct {
	es.DomainEvent
	Upstream int64 `json:"upstream"` // upstream notification ID
	N        int64 `json:"n"`
}

func upStore(t testing.TB, r es.AggregateRecorder) *es.EventStore[*upEvent] {
	m := es.NewMapper[*upEvent](nil)
	if err := m.Register(&upEvent{}); err != nil {
		t.Fatal(err)
	}
	return es.NewEventStore(m, r)
}

func downStore(t testing.TB, r es.AggregateRecorder) *es.EventStore[*downEvent] {
	m := es.NewMapper[*downEvent](nil)
	if err := m.Register(&downEvent{}); err != nil {
		t.Fatal(err)
	}
	return es.NewEventStore(m, r)
}

// putUp puts n upstream events (one aggregate each) and returns the last
// notification ID.
func putUp(t testing.TB, s *es.EventStore[*upEvent], n int) int64 {
	t.Helper()
	var last int64
	for done := 0; done < n; {
		k := min(n-done, 500)
		evs := make([]*upEvent, k)
		for i := range evs {
			evs[i] = &upEvent{DomainEvent: es.NewDomainEvent(uuid.New(), 1), N: int64(done + i)}
		}
		ids, err := s.Put(context.Background(), evs...)
		if err != nil {
			t.Fatal(err)
		}
		last = ids[k-1]
		done += k
	}
	return last
}

// handleOne makes one downstream event per upstream event: a new
// aggregate, so that processing a notification twice would show as two.
func handleOne(_ context.Context, u es.Recorded[*upEvent]) ([]*downEvent, error) {
	return []*downEvent{{DomainEvent: es.NewDomainEvent(uuid.New(), 1), Upstream: u.ID, N: u.Event.N}}, nil
}

// checkDownstream checks that downstream holds exactly one result per
// upstream notification up to last (those of topic upEvent in upstream)
// and tracks last.
func checkDownstream(t *testing.T, up es.ApplicationRecorder, down es.ProcessRecorder, name string, last int64) {
	t.Helper()
	ctx := context.Background()
	ns, err := up.SelectNotifications(ctx, 0, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int{}
	for _, n := range ns {
		if n.ID <= last {
			want[n.ID] = 0
		}
	}
	ds := downStore(t, down)
	got, err := down.SelectNotifications(ctx, 0, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range got {
		e, err := ds.Mapper.FromStoredEvent(n.StoredEvent)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := want[e.Upstream]; !ok {
			t.Fatalf("downstream event for upstream notification %d, which is not in the upstream log up to %d", e.Upstream, last)
		}
		want[e.Upstream]++
	}
	bad := 0
	for id, c := range want {
		if c != 1 {
			if bad < 5 {
				t.Errorf("upstream notification %d has %d downstream results, want 1", id, c)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d upstream notifications not processed exactly once", bad, len(want))
	}
	if got, err := down.MaxTrackingID(ctx, name); err != nil || got != last {
		t.Fatalf("tracking %d (%v), want the upstream maximum %d", got, err, last)
	}
}

// runnerBackend gives an upstream and a downstream recorder: in memory, in
// two SQLite files (one per application), or in two Postgres schemas.
type runnerBackend struct {
	name string
	open func(t *testing.T) (up es.ApplicationRecorder, down es.ProcessRecorder)
}

var runnerBackends = []runnerBackend{
	{"Memory", func(t *testing.T) (es.ApplicationRecorder, es.ProcessRecorder) {
		return es.NewMemoryRecorder(), es.NewMemoryRecorder()
	}},
	{"SQLite", func(t *testing.T) (es.ApplicationRecorder, es.ProcessRecorder) {
		u, _, _ := sqliteFile(t)
		d, _, _ := sqliteFile(t)
		return newSQLRecorder(t, u, sqlite.Dialect{}, "", es.SQLOptions{}), newSQLRecorder(t, d, sqlite.Dialect{}, "", es.SQLOptions{})
	}},
	{"Postgres", func(t *testing.T) (es.ApplicationRecorder, es.ProcessRecorder) {
		db := pgtest.DB(t)
		return newSQLRecorder(t, db, postgres.Dialect{}, pgtest.Schema(t, db), es.SQLOptions{AppName: "Up"}),
			newSQLRecorder(t, db, postgres.Dialect{}, pgtest.Schema(t, db), es.SQLOptions{AppName: "Down"})
	}},
}

// startRunner runs r in a goroutine; stop cancels it and returns Run's
// error.
func startRunner[U, D es.Event](r *es.Runner[U, D]) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("Run did not return within 5 s of its context's end")
		}
	}
}

func waitTracked(t *testing.T, down es.ProcessRecorder, name string, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := es.WaitTracking(ctx, down, name, id); err != nil {
		t.Fatal(err)
	}
}

func TestRunner(t *testing.T) {
	for _, b := range runnerBackends {
		for _, batch := range []int{1, 7, 0} {
			t.Run(fmt.Sprintf("%s/Batch%d", b.name, batch), func(t *testing.T) {
				up, down := b.open(t)
				us, ds := upStore(t, up), downStore(t, down)
				last := putUp(t, us, 40)
				g0 := runtime.NumGoroutine()
				r, err := es.NewRunner("Up", us, ds, handleOne, &es.RunnerOptions{BatchSize: batch, Subscribe: es.SubscribeOptions{PollInterval: 100 * time.Millisecond}})
				if err != nil {
					t.Fatal(err)
				}
				stop := startRunner(r)
				waitTracked(t, down, "Up", last)
				// New upstream events are processed as they commit.
				last = putUp(t, us, 25)
				waitTracked(t, down, "Up", last)
				if err := stop(); err != nil {
					t.Fatalf("Run returned %v after its context ended, want nil", err)
				}
				checkDownstream(t, up, down, "Up", last)
				// Resumed: nothing again, the new ones once.
				last = putUp(t, us, 5)
				stop = startRunner(r)
				waitTracked(t, down, "Up", last)
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				checkDownstream(t, up, down, "Up", last)
				for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > g0; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%d goroutines after the runner stopped, %d before", runtime.NumGoroutine(), g0)
					}
				}
				if db, ok := down.(interface{ DB() *sql.DB }); ok {
					if n := db.DB().Stats().InUse; n != 0 {
						t.Errorf("%d downstream connections in use after the runner stopped", n)
					}
				}
			})
		}
	}
}

func TestRunnerInvalid(t *testing.T) {
	us, ds := upStore(t, es.NewMemoryRecorder()), downStore(t, es.NewMemoryRecorder())
	for _, name := range []string{"", "__migration__"} {
		if _, err := es.NewRunner(name, us, ds, handleOne, nil); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("NewRunner(%q): %v, want ErrProgramming", name, err)
		}
	}
	if _, err := es.NewRunner("Up", us, ds, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil handler: %v, want ErrProgramming", err)
	}
}

func TestRunnerHandlerError(t *testing.T) {
	boom := errors.New("boom")
	// failing fails notification 5 the first times times.
	failing := func(times int, calls *atomic.Int64) es.Handler[*upEvent, *downEvent] {
		var failed atomic.Int64
		return func(ctx context.Context, u es.Recorded[*upEvent]) ([]*downEvent, error) {
			calls.Add(1)
			if u.ID == 5 && failed.Load() < int64(times) {
				failed.Add(1)
				return nil, boom
			}
			return handleOne(ctx, u)
		}
	}
	t.Run("StopAtFirst", func(t *testing.T) {
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		putUp(t, us, 10)
		var calls atomic.Int64
		r, err := es.NewRunner("Up", us, downStore(t, down), failing(1, &calls), &es.RunnerOptions{BatchSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Run(context.Background())
		if !errors.Is(err, boom) {
			t.Fatalf("Run: %v, want the handler's error", err)
		}
		t.Log(err)
		// 1..4, before the failure in the same batch, are committed; 5 is
		// not skipped.
		checkDownstream(t, up, down, "Up", 4)
		// Run again: the handler now succeeds.
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- r.Run(ctx) }()
		waitTracked(t, down, "Up", 10)
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		checkDownstream(t, up, down, "Up", 10)
	})
	t.Run("Retry", func(t *testing.T) {
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		putUp(t, us, 10)
		var calls atomic.Int64
		var retried []int
		r, err := es.NewRunner("Up", us, downStore(t, down), failing(2, &calls), &es.RunnerOptions{
			BatchSize: 3, Attempts: 4, RetryDelay: time.Millisecond,
			OnRetry: func(err error, attempt int) {
				if !errors.Is(err, boom) {
					t.Errorf("OnRetry(%v)", err)
				}
				retried = append(retried, attempt)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := startRunner(r)
		waitTracked(t, down, "Up", 10)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(retried, []int{1, 2}) {
			t.Errorf("retried attempts %v, want [1 2]", retried)
		}
		checkDownstream(t, up, down, "Up", 10)
	})
	t.Run("RetryForeverUntilCancelled", func(t *testing.T) {
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		putUp(t, us, 10)
		var calls atomic.Int64
		r, err := es.NewRunner("Up", us, downStore(t, down), failing(1<<30, &calls), &es.RunnerOptions{Attempts: -1, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		stop := startRunner(r)
		for calls.Load() < 20 {
			time.Sleep(time.Millisecond)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run: %v, want nil (its context ended)", err)
		}
		checkDownstream(t, up, down, "Up", 4)
	})
}

// flakyUpstream fails reading the log with a transient error every third
// time, fails times in all.
type flakyUpstream struct {
	es.ApplicationRecorder
	calls, fails atomic.Int64
}

func (f *flakyUpstream) SelectNotifications(ctx context.Context, start int64, limit int, q *es.NotificationQuery) ([]es.Notification, error) {
	if f.calls.Add(1)%3 == 0 && f.fails.Add(-1) >= 0 {
		return nil, &es.DatabaseError{Kind: es.ErrOperational, Transient: true, Op: "select notifications", Err: errors.New("connection reset")}
	}
	return f.ApplicationRecorder.SelectNotifications(ctx, start, limit, q)
}

// A transient failure to read the upstream log is retried, resuming after
// the last notification processed; without retries it ends Run.
func TestRunnerUpstreamReadRetried(t *testing.T) {
	up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
	f := &flakyUpstream{ApplicationRecorder: up}
	f.fails.Store(4)
	us := upStore(t, f)
	last := putUp(t, upStore(t, up), 30)
	opts := &es.RunnerOptions{BatchSize: 4, Subscribe: es.SubscribeOptions{PageSize: 5, PollInterval: 10 * time.Millisecond}}
	r, err := es.NewRunner("Up", us, downStore(t, down), handleOne, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); !es.IsRetryable(err) {
		t.Fatalf("Run without retries: %v, want the transient read error", err)
	}
	retries := 0
	opts.Attempts, opts.RetryDelay = 3, time.Millisecond
	opts.OnRetry = func(error, int) { retries++ }
	if r, err = es.NewRunner("Up", us, downStore(t, down), handleOne, opts); err != nil {
		t.Fatal(err)
	}
	stop := startRunner(r)
	waitTracked(t, down, "Up", last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if retries == 0 {
		t.Error("no retry of the transient read errors")
	}
	checkDownstream(t, up, down, "Up", last)
}

// Two runners on one downstream, one transaction per notification: the
// tracking conflict makes the later one skip what the other recorded, so
// each notification is processed once. (With batches, see Runner's doc.)
func TestRunnerSkipsTracked(t *testing.T) {
	for _, b := range runnerBackends {
		t.Run(b.name, func(t *testing.T) {
			up, down := b.open(t)
			us, ds := upStore(t, up), downStore(t, down)
			var stops []func() error
			for range 2 {
				r, err := es.NewRunner("Up", us, ds, handleOne, &es.RunnerOptions{BatchSize: 1, Attempts: -1, RetryDelay: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				stops = append(stops, startRunner(r))
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
			checkDownstream(t, up, down, "Up", last)
		})
	}
}

// Environment of TestRunnerKillChild.
const (
	envKillBackend = "ES_TEST_KILL_BACKEND" // sqlite or postgres
	envKillUp      = "ES_TEST_KILL_UP"      // SQLite file or Postgres schema
	envKillDown    = "ES_TEST_KILL_DOWN"
	envKillBatch   = "ES_TEST_KILL_BATCH"
	envKillTarget  = "ES_TEST_KILL_TARGET"
)

func openKillStores(t testing.TB, backend, upName, downName string) (es.ApplicationRecorder, es.ProcessRecorder) {
	t.Helper()
	ctx := context.Background()
	switch backend {
	case "sqlite":
		open := func(path string) *es.SQLRecorder {
			db, err := sqlite.Open(ctx, path, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			r, err := es.NewSQLRecorder(ctx, db, sqlite.Dialect{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.CreateTables(ctx); err != nil {
				t.Fatal(err)
			}
			return r
		}
		return open(upName), open(downName)
	default:
		db := pgtest.DB(t)
		open := func(schema, app string) *es.SQLRecorder {
			r, err := es.NewSQLRecorder(ctx, db, postgres.Dialect{}, &es.SQLOptions{AppName: app, Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.CreateTables(ctx); err != nil {
				t.Fatal(err)
			}
			return r
		}
		return open(upName, "Up"), open(downName, "Down")
	}
}

// TestRunnerKillChild is the runner process that TestRunnerKilled kills:
// it processes upstream notifications until the target is tracked.
func TestRunnerKillChild(t *testing.T) {
	backend := os.Getenv(envKillBackend)
	if backend == "" {
		t.Skip("run by TestRunnerKilled")
	}
	up, down := openKillStores(t, backend, os.Getenv(envKillUp), os.Getenv(envKillDown))
	batch, _ := strconv.Atoi(os.Getenv(envKillBatch))
	target, _ := strconv.ParseInt(os.Getenv(envKillTarget), 10, 64)
	r, err := es.NewRunner("Up", upStore(t, up), downStore(t, down), handleOne, &es.RunnerOptions{BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	if err := es.WaitTracking(ctx, down, "Up", target); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestRunnerKilled kills the runner process with SIGKILL at random points
// (10 times) while it processes 10,000 upstream notifications, restarting
// it each time; after the last run, downstream holds exactly one result per
// upstream notification and tracks the upstream maximum.
func TestRunnerKilled(t *testing.T) {
	if os.Getenv(envKillBackend) != "" {
		return
	}
	const total, kills = 10_000, 10
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
			up, down := openKillStores(t, backend, upName, downName)
			last := putUp(t, upStore(t, up), total)
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
			// Kill points: after random amounts of progress, increasing.
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
				batch := []int{1, 13, 100}[run%3]
				cmd := exec.Command(os.Args[0], "-test.run=^TestRunnerKillChild$")
				cmd.Env = append(os.Environ(), envKillBackend+"="+backend, envKillUp+"="+upName, envKillDown+"="+downName,
					envKillBatch+"="+strconv.Itoa(batch), envKillTarget+"="+strconv.FormatInt(last, 10))
				out := new(syncBuffer)
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if run == kills {
					if err := cmd.Wait(); err != nil {
						t.Fatalf("last run: %v\n%s", err, out)
					}
					break
				}
				// Wait for progress past the kill point (or a random time,
				// if it is already past), then kill.
				deadline := time.Now().Add(60 * time.Second)
				for tracked() < points[run] && time.Now().Before(deadline) {
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				err := cmd.Wait()
				killedAt = append(killedAt, tracked())
				if err == nil {
					t.Logf("run %d had finished before the kill", run)
				}
			}
			t.Logf("killed at tracking %v of %d", killedAt, last)
			checkDownstream(t, up, down, "Up", last)
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a child's stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// beforeTracked wraps a downstream recorder: before the first insert that
// carries a tracking record, hook runs (once).
type beforeTracked struct {
	es.ProcessRecorder
	once sync.Once
	hook func()
}

func (r *beforeTracked) InsertEvents(ctx context.Context, events []es.StoredEvent, tracking *es.Tracking) ([]int64, error) {
	if tracking != nil {
		r.once.Do(r.hook)
	}
	return r.ProcessRecorder.InsertEvents(ctx, events, tracking)
}

// TestRunnerOverlappingBatches: another process (a runner of the same name
// thought dead, say) commits the first notifications of a batch just
// before this runner commits the batch. The batch's tracking record covers
// all of its notifications, so it is refused, and the runner handles only
// the rest again: every notification is processed exactly once.
func TestRunnerOverlappingBatches(t *testing.T) {
	for _, b := range runnerBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			up, down := b.open(t)
			us := upStore(t, up)
			last := putUp(t, us, 20)
			other := func() {
				// The other process handles the first 3 and commits.
				ns, err := up.SelectNotifications(ctx, 0, 3, nil)
				if err != nil {
					t.Error(err)
					return
				}
				var out []*downEvent
				for _, n := range ns {
					e, err := us.Mapper.FromStoredEvent(n.StoredEvent)
					if err != nil {
						t.Error(err)
						return
					}
					evs, _ := handleOne(ctx, es.Recorded[*upEvent]{ID: n.ID, Event: e})
					out = append(out, evs...)
				}
				if _, err := downStore(t, down).PutWithTracking(ctx, es.Tracking{ApplicationName: "Up", NotificationID: ns[2].ID, First: ns[0].ID}, out...); err != nil {
					t.Error(err)
				}
			}
			r, err := es.NewRunner("Up", us, downStore(t, &beforeTracked{ProcessRecorder: down, hook: other}), handleOne, &es.RunnerOptions{BatchSize: 100, Attempts: -1, RetryDelay: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			stop := startRunner(r)
			waitTracked(t, down, "Up", last)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			checkDownstream(t, up, down, "Up", last)
		})
	}
}

// A handler that loads its own downstream aggregate and appends to it:
// with batching, the handlers of one batch do not see each other's events,
// so the second would return the version the first returned. The runner
// cuts the batch there (commits the first, handles the second again), so
// nothing fails and every version is written once.
func TestRunnerBatchReadsOwnWrites(t *testing.T) {
	for _, b := range runnerBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			up, down := b.open(t)
			us, ds := upStore(t, up), downStore(t, down)
			last := putUp(t, us, 20)
			agg := uuid.New()
			appendTo := func(ctx context.Context, u es.Recorded[*upEvent]) ([]*downEvent, error) {
				evs, err := ds.Get(ctx, agg, nil)
				if err != nil {
					return nil, err
				}
				return []*downEvent{{DomainEvent: es.NewDomainEvent(agg, int64(len(evs))+1), Upstream: u.ID, N: u.Event.N}}, nil
			}
			r, err := es.NewRunner("Up", us, ds, appendTo, &es.RunnerOptions{BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.RunUntilCaughtUp(ctx); err != nil {
				t.Fatal(err)
			}
			checkDownstream(t, up, down, "Up", last)
			evs, err := ds.Get(ctx, agg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range evs {
				if e.OriginatorVersion() != int64(i+1) || e.Upstream != int64(i+1) {
					t.Fatalf("event %d: version %d for notification %d", i, e.OriginatorVersion(), e.Upstream)
				}
			}
			// Two events of one version for one notification: the handler's
			// error, saying so.
			last = putUp(t, us, 1)
			twice := func(ctx context.Context, u es.Recorded[*upEvent]) ([]*downEvent, error) {
				e := es.NewDomainEvent(uuid.New(), 1)
				return []*downEvent{{DomainEvent: e}, {DomainEvent: e}}, nil
			}
			if r, err = es.NewRunner("Up", us, ds, twice, nil); err != nil {
				t.Fatal(err)
			}
			err = r.RunUntilCaughtUp(ctx)
			if !errors.Is(err, es.ErrIntegrity) || !strings.Contains(err.Error(), "twice for this one notification") || !strings.Contains(err.Error(), fmt.Sprint("notification ", last)) {
				t.Fatalf("RunUntilCaughtUp: %v, want an integrity error saying the handler returned a version twice for notification %d", err, last)
			}
		})
	}
}

// failingAt returns a handler that fails every notification with ID id.
func failingAt(id int64, err error) es.Handler[*upEvent, *downEvent] {
	return func(ctx context.Context, u es.Recorded[*upEvent]) ([]*downEvent, error) {
		if u.ID == id {
			return nil, err
		}
		return handleOne(ctx, u)
	}
}

func TestRunnerLifecycle(t *testing.T) {
	boom := errors.New("boom")
	t.Run("WaiterSeesFailureAtOnce", func(t *testing.T) {
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		last := putUp(t, us, 10)
		r, err := es.NewRunner("Up", us, downStore(t, down), failingAt(3, boom), &es.RunnerOptions{BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A waiter that starts before Run.
		waited := make(chan error, 1)
		go func() { waited <- r.Wait(ctx, last) }()
		time.Sleep(10 * time.Millisecond)
		runErr := r.Run(ctx)
		if !errors.Is(runErr, boom) {
			t.Fatalf("Run: %v, want the handler's error", runErr)
		}
		start := time.Now()
		select {
		case err := <-waited:
			if !errors.Is(err, es.ErrRunnerStopped) || !errors.Is(err, boom) {
				t.Fatalf("Wait: %v, want ErrRunnerStopped and the handler's error", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Wait did not return within 1 s of Run's failure")
		}
		// A waiter that starts after: at once, too; one for a notification
		// processed: nil.
		if err := r.Wait(ctx, last); !errors.Is(err, boom) || time.Since(start) > time.Second {
			t.Fatalf("Wait after the failure: %v after %v", err, time.Since(start))
		}
		if err := r.Wait(ctx, 2); err != nil {
			t.Fatalf("Wait for a processed notification: %v", err)
		}
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Position != 2 || st.UpstreamHead != last || st.Lag != last-2 || st.Running || !errors.Is(st.LastError, boom) {
			t.Errorf("status %+v, want position 2, head %d, lag %d, the handler's error", st, last, last-2)
		}
	})
	t.Run("WaitAndStop", func(t *testing.T) {
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		last := putUp(t, us, 10)
		r, err := es.NewRunner("Up", us, downStore(t, down), handleOne, nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := startRunner(r)
		if err := r.Wait(context.Background(), last); err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run after its context ended: %v, want nil", err)
		}
		if err := r.Wait(context.Background(), last+1); !errors.Is(err, es.ErrRunnerStopped) || errors.Unwrap(err) != nil {
			t.Fatalf("Wait after a normal stop: %v, want ErrRunnerStopped alone", err)
		}
		// A wait bounded by its own context.
		stop = startRunner(r)
		waitRunning(t, r.Status)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := r.Wait(ctx, last+1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait for a notification that never comes: %v, want DeadlineExceeded", err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RunUntilCaughtUp", func(t *testing.T) {
		for _, b := range runnerBackends {
			t.Run(b.name, func(t *testing.T) {
				ctx := context.Background()
				up, down := b.open(t)
				us, ds := upStore(t, up), downStore(t, down)
				last := putUp(t, us, 250)
				obs := &batchObserver{}
				r, err := es.NewRunner("Up", us, ds, handleOne, &es.RunnerOptions{BatchSize: 50, Observer: obs, Subscribe: es.SubscribeOptions{PageSize: 70}})
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- r.RunUntilCaughtUp(ctx) }()
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("RunUntilCaughtUp did not return")
				}
				checkDownstream(t, up, down, "Up", last)
				// 250 notifications, pages of 70 (70, 70, 70, 40) in batches
				// of 50: 50+20 three times, and 40.
				if n := obs.batches.Load(); n != 7 {
					t.Errorf("observer told of %d batches, want 7", n)
				}
				// Caught up already: returns at once; a context that ends
				// first is an error (it did not catch up).
				if err := r.RunUntilCaughtUp(ctx); err != nil {
					t.Fatal(err)
				}
				putUp(t, us, 10)
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				if err := r.RunUntilCaughtUp(cctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("RunUntilCaughtUp with its context ended: %v, want context.Canceled", err)
				}
			})
		}
	})
	// The start of a program: catch up, then follow. A Wait between the
	// two (or just after `go Run`, before it has started) waits for the
	// Run.
	t.Run("WaitAfterCaughtUp", func(t *testing.T) {
		ctx := context.Background()
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		last := putUp(t, us, 5)
		r, err := es.NewRunner("Up", us, downStore(t, down), handleOne, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.RunUntilCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- r.Wait(ctx, last+1) }()
		select {
		case err := <-waited:
			t.Fatalf("Wait after a RunUntilCaughtUp that caught up: %v before the next run", err)
		case <-time.After(50 * time.Millisecond):
		}
		stop := startRunner(r)
		putUp(t, us, 1)
		if err := <-waited; err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("RunUntilCaughtUpTopics", func(t *testing.T) {
		ctx := context.Background()
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		putUp(t, us, 5)
		// The last notifications are of another topic.
		if _, err := up.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "other:Event", State: []byte("{}")}}, nil); err != nil {
			t.Fatal(err)
		}
		topic, err := us.Mapper.Topic(&upEvent{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := es.NewRunner("Up", us, downStore(t, down), handleOne, &es.RunnerOptions{Subscribe: es.SubscribeOptions{Topics: []string{topic}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.RunUntilCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		if n, _ := down.MaxTrackingID(ctx, "Up"); n != 5 {
			t.Fatalf("tracked %d, want 5", n)
		}
	})
	t.Run("PoisonSkipped", func(t *testing.T) {
		ctx := context.Background()
		up, down := es.NewMemoryRecorder(), es.NewMemoryRecorder()
		us := upStore(t, up)
		last := putUp(t, us, 10)
		// An event that cannot be decoded is poison too.
		bad, err := up.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "unknown:Topic", State: []byte("{}")}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		last = putUp(t, us, 5)
		var skipped []int64
		obs := &batchObserver{}
		r, err := es.NewRunner("Up", us, downStore(t, down), failingAt(4, boom), &es.RunnerOptions{BatchSize: 3, Observer: obs,
			OnSkip: func(ctx context.Context, n es.Notification, err error) error {
				skipped = append(skipped, n.ID)
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.RunUntilCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(skipped, []int64{4, bad[0]}) {
			t.Fatalf("skipped %v, want [4 %d]", skipped, bad[0])
		}
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Skipped != 2 || st.LastSkipped != bad[0] || st.Position != last || !errors.Is(st.LastError, es.ErrUnknownTopic) {
			t.Errorf("status %+v, want 2 skipped, the last %d, position %d, the unknown topic last", st, bad[0], last)
		}
		if obs.skips.Load() != 2 {
			t.Errorf("observer told of %d skips, want 2", obs.skips.Load())
		}
		// Each skipped notification is tracked, with no downstream event.
		got, err := down.SelectNotifications(ctx, 0, 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != int(last)-2 {
			t.Errorf("%d downstream events, want %d", len(got), last-2)
		}
	})
}

// waitRunning waits until status says the runner runs.
func waitRunning(t *testing.T, status func(context.Context) (es.RunnerStatus, error)) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		st, err := status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the runner did not start")
		}
	}
}
