package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
	"github.com/seed06b138f8/eventsourcing/recordertest"
)

// replicaFixture is a primary recorder in a schema of its own and a
// ReplicatedRecorder reading from the standby.
type replicaFixture struct {
	primaryDB, standbyDB *sql.DB
	schema               string
	primary              *es.SQLRecorder
	rr                   *es.ReplicatedRecorder
}

func newReplicaFixture(t *testing.T, opts *es.ReplicaOptions) *replicaFixture {
	return newObservedReplicaFixture(t, opts, nil)
}

// newObservedReplicaFixture is newReplicaFixture with an Observer on the
// primary recorder (a StandbyObserver is told each check).
func newObservedReplicaFixture(t *testing.T, opts *es.ReplicaOptions, obs es.Observer) *replicaFixture {
	t.Helper()
	standbyDB := pgtest.ReplicaDB(t)
	db := pgtest.DB(t)
	f := &replicaFixture{primaryDB: db, standbyDB: standbyDB, schema: pgtest.Schema(t, db)}
	f.primary = newSQLRecorder(t, db, postgres.Dialect{}, f.schema, es.SQLOptions{AppName: "App", Observer: obs})
	f.rr = newReplicated(t, f.primary, standbyDB, opts)
	return f
}

func newReplicated(t *testing.T, primary *es.SQLRecorder, standbyDB *sql.DB, opts *es.ReplicaOptions) *es.ReplicatedRecorder {
	t.Helper()
	rr, err := es.NewReplicatedRecorder(context.Background(), primary, []es.Standby{{Name: "standby", DB: standbyDB}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rr.Close() })
	return rr
}

// waitUsable waits until the standby is usable (or not), as checks find it.
func waitUsable(t *testing.T, rr *es.ReplicatedRecorder, want bool, timeout time.Duration) es.StandbyStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := rr.Standbys()[0]
		if st.Usable == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby usable %v after %v, want %v: %+v", st.Usable, timeout, want, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// primaryLog returns every notification ID in the primary's log.
func primaryLog(t *testing.T, r es.ApplicationRecorder) []int64 {
	t.Helper()
	var ids []int64
	var last int64
	for {
		ns, err := r.SelectNotifications(context.Background(), last, 1000, &es.NotificationQuery{ExclusiveStart: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			ids = append(ids, n.ID)
			last = n.ID
		}
		if len(ns) < 1000 {
			return ids
		}
	}
}

// TestReplicaConformance runs the recorder suite on a ReplicatedRecorder
// whose reads go to the standby and wait for the recorder's own writes.
func TestReplicaConformance(t *testing.T) {
	standbyDB := pgtest.ReplicaDB(t)
	db := pgtest.DB(t)
	schema := pgtest.Schema(t, db)
	var rrs []*es.ReplicatedRecorder
	recordertest.Run(t, func(t *testing.T) es.ProcessRecorder {
		p := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{AppName: "App", Table: pgtest.UniqueName("ev"), TrackingTable: pgtest.UniqueName("tr")})
		rr := newReplicated(t, p, standbyDB, &es.ReplicaOptions{ReadYourWrites: true})
		rrs = append(rrs, rr)
		return rr
	})
	var standby, primary int64
	for _, rr := range rrs {
		standby += rr.Standbys()[0].Reads
		primary += rr.Stats().PrimaryReads
	}
	t.Logf("reads: %d from the standby, %d from the primary", standby, primary)
	if standby == 0 {
		t.Error("no read went to the standby")
	}
}

// TestReplicaConfiguration: writes can never be routed to a standby.
func TestReplicaConfiguration(t *testing.T) {
	f := newReplicaFixture(t, nil)
	ctx := context.Background()
	if st := waitUsable(t, f.rr, true, 5*time.Second); st.Err != nil || st.Lagging {
		t.Fatalf("standby status %+v", st)
	}

	t.Run("standby as primary is ErrProgramming", func(t *testing.T) {
		onStandby, err := es.NewSQLRecorder(ctx, f.standbyDB, postgres.Dialect{}, &es.SQLOptions{AppName: "App", Schema: f.schema})
		if err != nil {
			t.Fatal(err)
		}
		_, err = es.NewReplicatedRecorder(ctx, onStandby, nil, nil)
		if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "standby") {
			t.Fatalf("got %v, want ErrProgramming naming the standby", err)
		}
		t.Log(err)
	})
	t.Run("primary as standby is ErrProgramming", func(t *testing.T) {
		other := pgtest.DB(t) // the primary server, another pool
		_, err := es.NewReplicatedRecorder(ctx, f.primary, []es.Standby{{Name: "not-a-standby", DB: other}}, nil)
		if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "not-a-standby is not a standby") {
			t.Fatalf("got %v, want ErrProgramming", err)
		}
		_, err = es.NewReplicatedRecorder(ctx, f.primary, []es.Standby{{DB: f.primaryDB}}, nil)
		if !errors.Is(err, es.ErrProgramming) {
			t.Fatalf("the primary's own DB as a standby: got %v, want ErrProgramming", err)
		}
	})
	t.Run("a write on a standby is a clear error", func(t *testing.T) {
		onStandby, err := es.NewSQLRecorder(ctx, f.standbyDB, postgres.Dialect{}, &es.SQLOptions{AppName: "App", Schema: f.schema})
		if err != nil {
			t.Fatal(err)
		}
		_, err = onStandby.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil)
		// PostgreSQL: SQLSTATE 25006, "cannot execute LOCK TABLE during
		// recovery" (or "in a read-only transaction").
		if !errors.Is(err, es.ErrOperational) || es.IsRetryable(err) || !strings.Contains(err.Error(), "25006") {
			t.Fatalf("got %v, want a non-retryable ErrOperational with SQLSTATE 25006 (read-only)", err)
		}
		t.Log(err)
	})
	t.Run("environment", func(t *testing.T) {
		u, err := url.Parse(pgtest.DSN(t))
		if err != nil {
			t.Fatal(err)
		}
		su, err := url.Parse(pgtest.ReplicaDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{
			"PERSISTENCE_MODULE": "postgres", "POSTGRES_DBNAME": strings.TrimPrefix(u.Path, "/"),
			"POSTGRES_HOST": u.Hostname(), "POSTGRES_PORT": u.Port(), "POSTGRES_USER": u.User.Username(),
			"POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": f.schema,
			"POSTGRES_READ_HOSTS":      su.Host + ", 127.0.0.1:1",
			"POSTGRES_MAX_REPLICA_LAG": "2.5",
		}
		cfg, err := es.LoadConfig("Env", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Postgres.MaxReplicaLag != 2500*time.Millisecond || cfg.Postgres.ReadHosts != su.Host+", 127.0.0.1:1" {
			t.Fatalf("config %+v", cfg.Postgres)
		}
		st, err := es.OpenReplicated(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		sts := st.Replicated.Standbys()
		if len(sts) != 2 || !sts[0].Usable || sts[1].Usable || !errors.Is(sts[1].Err, es.ErrOperational) {
			t.Fatalf("standbys %+v, want the first usable and the second (port 1) down", sts)
		}
		store := es.NewEventStore(es.NewMapper[*upEvent](nil), st.Recorder)
		if err := store.Mapper.Register(&upEvent{}); err != nil {
			t.Fatal(err)
		}
		ctx := es.ReadYourWrites(ctx)
		id := uuid.New()
		if _, err := store.Put(ctx, &upEvent{DomainEvent: es.NewDomainEvent(id, 1), N: 7}); err != nil {
			t.Fatal(err)
		}
		got, err := store.Get(ctx, id, nil)
		if err != nil || len(got) != 1 || got[0].N != 7 {
			t.Fatalf("Get: %v, %v", got, err)
		}
		if st.Replicated.Standbys()[0].Reads != 1 {
			t.Fatalf("standby reads %d, want 1", st.Replicated.Standbys()[0].Reads)
		}
		for _, bad := range []string{"h:0", "h:x", ",", "::1"} {
			env["POSTGRES_READ_HOSTS"] = bad
			if _, err := es.LoadConfig("Env", func(k string) (string, bool) { v, ok := env[k]; return v, ok }); !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "POSTGRES_READ_HOSTS") {
				t.Errorf("POSTGRES_READ_HOSTS=%q: got %v, want a ConfigError naming it", bad, err)
			}
		}
	})
}

// TestReplicaWritersAndReaders: 8 writers on the primary, 3 subscribers
// reading the log from the standby: each sees the primary's log, in order,
// with nothing skipped or repeated.
func TestReplicaWritersAndReaders(t *testing.T) {
	f := newReplicaFixture(t, nil)
	waitUsable(t, f.rr, true, 5*time.Second)
	const writers, readers = 8, 3
	run := 4 * time.Second
	if testing.Short() {
		run = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var committed []int64
	var wg sync.WaitGroup
	stopWriting := time.Now().Add(run)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stopWriting); i++ {
				n := 1 + i%3
				evs := make([]es.StoredEvent, n)
				id := uuid.New()
				for j := range evs {
					evs[j] = es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(j + 1), Topic: "t", State: []byte(fmt.Sprintf(`{"w":%d}`, w))}
				}
				if i%10 == 9 {
					// A conflict: nothing written, a hole in the IDs.
					evs = append(evs, evs[0])
				}
				ids, err := f.primary.InsertEvents(ctx, evs, nil)
				if i%10 == 9 {
					if !errors.Is(err, es.ErrIntegrity) {
						t.Errorf("writer %d: got %v, want ErrIntegrity", w, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				committed = append(committed, ids...)
				mu.Unlock()
			}
		}()
	}
	seen := make([][]int64, readers)
	var rwg sync.WaitGroup
	rctx, rcancel := context.WithCancel(ctx)
	for r := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for n, err := range es.Subscribe(rctx, f.rr, 0, &es.SubscribeOptions{PageSize: 100 + 50*r}) {
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("reader %d: %v", r, err)
					}
					return
				}
				mu.Lock()
				seen[r] = append(seen[r], n.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Let the readers catch up with the primary.
	max, err := f.primary.MaxNotificationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		done := true
		mu.Lock()
		for r := range readers {
			if len(seen[r]) == 0 || seen[r][len(seen[r])-1] < max {
				done = false
			}
		}
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rcancel()
	rwg.Wait()
	log := primaryLog(t, f.primary)
	slices.Sort(committed)
	if !slices.Equal(committed, log) {
		t.Fatalf("the primary's log (%d) is not exactly the committed events (%d)", len(log), len(committed))
	}
	for r := range readers {
		if !slices.Equal(seen[r], log) {
			i := 0
			for i < min(len(seen[r]), len(log)) && seen[r][i] == log[i] {
				i++
			}
			t.Fatalf("reader %d saw %d notifications, the primary has %d; first difference at index %d", r, len(seen[r]), len(log), i)
		}
	}
	holes := log[len(log)-1] - int64(len(log))
	st := f.rr.Standbys()[0]
	t.Logf("%d writers, %v: %d events committed (IDs 1..%d, %d holes from rolled-back inserts); %d readers each saw exactly the primary's log; reads: %d standby, %d primary; last lag %v (%d bytes behind)",
		writers, run, len(log), log[len(log)-1], holes, readers, st.Reads, f.rr.Stats().PrimaryReads, st.Lag, st.Behind)
	if st.Reads == 0 {
		t.Error("no read went to the standby")
	}
}

// TestReplicaReadYourWrites: Put then Get through the standby, 1,000
// times, with the wait (a ReadYourWrites context, and an explicit
// position): no miss; without it, count the misses.
func TestReplicaReadYourWrites(t *testing.T) {
	f := newReplicaFixture(t, nil)
	waitUsable(t, f.rr, true, 5*time.Second)
	store := upStore(t, f.rr)
	for _, mode := range []string{"session", "token", "none"} {
		pairs := 1000
		if mode == "token" {
			pairs = 200 // the same wait as "session", with the position passed by hand
		}
		t.Run(mode, func(t *testing.T) {
			misses, primary0, standby0 := 0, f.rr.Stats().PrimaryReads, f.rr.Standbys()[0].Reads
			start := time.Now()
			for i := range pairs {
				ctx := context.Background()
				if mode == "session" {
					ctx = es.ReadYourWrites(ctx)
				}
				id := uuid.New()
				if _, err := store.Put(ctx, &upEvent{DomainEvent: es.NewDomainEvent(id, 1), N: int64(i)}); err != nil {
					t.Fatal(err)
				}
				if mode == "token" {
					pos, err := f.rr.Position(ctx)
					if err != nil {
						t.Fatal(err)
					}
					ctx = es.ReadAfter(ctx, pos)
				}
				got, err := store.Get(ctx, id, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 {
					misses++
				}
			}
			el := time.Since(start)
			fromPrimary := f.rr.Stats().PrimaryReads - primary0
			fromStandby := f.rr.Standbys()[0].Reads - standby0
			t.Logf("%s: %d Put-then-Get pairs in %v (%v a pair): %d misses; reads %d standby, %d primary",
				mode, pairs, el.Round(time.Millisecond), (el / time.Duration(pairs)).Round(time.Microsecond), misses, fromStandby, fromPrimary)
			if mode != "none" && misses != 0 {
				t.Errorf("%d of %d reads missed their own write", misses, pairs)
			}
			if fromStandby == 0 {
				t.Error("no read went to the standby")
			}
		})
	}
}

// TestReplicaLagging: a standby whose replay is paused falls behind: it is
// skipped (reads go to the primary), reads that ask for a position still
// see it, and once replay resumes it is used again.
func TestReplicaLagging(t *testing.T) {
	var checks atomic.Int64
	f := newObservedReplicaFixture(t, &es.ReplicaOptions{MaxLag: 200 * time.Millisecond, CheckInterval: 100 * time.Millisecond},
		&checkCounter{n: &checks})
	waitUsable(t, f.rr, true, 5*time.Second)
	ctx := context.Background()
	if _, err := f.standbyDB.ExecContext(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if _, err := f.standbyDB.ExecContext(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer resume()
	store := upStore(t, f.rr)
	id := uuid.New()
	if _, err := store.Put(ctx, &upEvent{DomainEvent: es.NewDomainEvent(id, 1)}); err != nil {
		t.Fatal(err)
	}
	st := waitUsable(t, f.rr, false, 5*time.Second)
	if !st.Lagging || st.Lag < 200*time.Millisecond || st.Behind <= 0 {
		t.Fatalf("status %+v, want lagging by at least MaxLag", st)
	}
	t.Logf("paused standby: %+v", st)
	p0 := f.rr.Stats().PrimaryReads
	got, err := store.Get(ctx, id, nil)
	if err != nil || len(got) != 1 || f.rr.Stats().PrimaryReads != p0+1 {
		t.Fatalf("Get on a lagging standby: %v %v, primary reads %d, want 1 event from the primary", got, err, f.rr.Stats().PrimaryReads-p0)
	}
	resume()
	st = waitUsable(t, f.rr, true, 5*time.Second)
	if st.Lagging {
		t.Fatalf("status %+v", st)
	}
	s0 := st.Reads
	if _, err := store.Get(ctx, id, nil); err != nil || f.rr.Standbys()[0].Reads != s0+1 {
		t.Fatalf("Get after resume: %v, standby reads %d, want 1", err, f.rr.Standbys()[0].Reads-s0)
	}
	if checks.Load() < 3 {
		t.Errorf("OnCheck called %d times", checks.Load())
	}
}

// TestReplicaStandbyStopped stops the standby while a writer writes and a
// subscriber reads through it: reads fall back to the primary, nothing is
// skipped or repeated, and the standby is used again once restarted.
func TestReplicaStandbyStopped(t *testing.T) {
	ctl := pgtest.ReplicaCtl(t)
	f := newReplicaFixture(t, &es.ReplicaOptions{CheckInterval: 100 * time.Millisecond})
	waitUsable(t, f.rr, true, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writes sync.WaitGroup
	wctx, stopWriter := context.WithCancel(ctx)
	writes.Add(1)
	go func() {
		defer writes.Done()
		for wctx.Err() == nil {
			if _, err := f.primary.InsertEvents(wctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil); err != nil && wctx.Err() == nil {
				t.Errorf("writer: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	var seen []int64
	var smu sync.Mutex
	var subs sync.WaitGroup
	sctx, stopSub := context.WithCancel(ctx)
	subs.Add(1)
	go func() {
		defer subs.Done()
		for n, err := range es.Subscribe(sctx, f.rr, 0, &es.SubscribeOptions{PageSize: 50, PollInterval: 50 * time.Millisecond}) {
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("subscriber: %v", err)
				}
				return
			}
			smu.Lock()
			seen = append(seen, n.ID)
			smu.Unlock()
		}
	}()
	count := func() int { smu.Lock(); defer smu.Unlock(); return len(seen) }
	time.Sleep(500 * time.Millisecond)
	before := f.rr.Standbys()[0].Reads
	ctl("stop")
	stopped := true
	defer func() {
		if stopped {
			ctl("start")
		}
	}()
	st := waitUsable(t, f.rr, false, 5*time.Second)
	t.Logf("standby stopped: %+v", st)
	p0, c0 := f.rr.Stats().PrimaryReads, count()
	time.Sleep(time.Second)
	if f.rr.Stats().PrimaryReads == p0 || count() == c0 {
		t.Fatalf("with the standby stopped: %d primary reads and %d notifications in a second, want some", f.rr.Stats().PrimaryReads-p0, count()-c0)
	}
	ctl("start")
	stopped = false
	st = waitUsable(t, f.rr, true, 30*time.Second)
	s1 := st.Reads
	time.Sleep(500 * time.Millisecond)
	stopWriter()
	writes.Wait()
	max, err := f.primary.MaxNotificationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		smu.Lock()
		done := len(seen) > 0 && seen[len(seen)-1] >= max
		smu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopSub()
	subs.Wait()
	after := f.rr.Standbys()[0].Reads
	if after == s1 {
		t.Errorf("the restarted standby served no read")
	}
	log := primaryLog(t, f.primary)
	if !slices.Equal(seen, log) {
		t.Fatalf("the subscriber saw %d notifications, the primary has %d", len(seen), len(log))
	}
	t.Logf("%d notifications, each seen once in order; standby reads %d before the stop, %d after the restart; primary reads %d",
		len(log), before, after-s1, f.rr.Stats().PrimaryReads)
}

// TestReplicaRunner: a runner whose upstream reads come from the standby
// processes every upstream notification exactly once.
func TestReplicaRunner(t *testing.T) {
	f := newReplicaFixture(t, nil)
	waitUsable(t, f.rr, true, 5*time.Second)
	down := newSQLRecorder(t, f.primaryDB, postgres.Dialect{}, f.schema, es.SQLOptions{AppName: "Down"})
	up := upStore(t, f.rr)
	last := putUp(t, upStore(t, f.primary), 300)
	r, err := es.NewRunner("Up", up, downStore(t, down), handleOne, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := startRunner(r)
	last = max(last, putUp(t, upStore(t, f.primary), 200))
	waitTracked(t, down, "Up", last)
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	checkDownstream(t, f.primary, down, "Up", last)
	if f.rr.Standbys()[0].Reads == 0 {
		t.Error("the runner read nothing from the standby")
	}
}

// newReplicaBench is newReplicaFixture for benchmarks.
func newReplicaBench(b *testing.B) *replicaFixture {
	b.Helper()
	standbyDB := pgtest.ReplicaDB(b)
	db := pgtest.DB(b)
	f := &replicaFixture{primaryDB: db, standbyDB: standbyDB, schema: pgtest.Schema(b, db)}
	p, err := es.NewSQLRecorder(context.Background(), db, postgres.Dialect{}, &es.SQLOptions{AppName: "App", Schema: f.schema})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.CreateTables(context.Background()); err != nil {
		b.Fatal(err)
	}
	f.primary = p
	rr, err := es.NewReplicatedRecorder(context.Background(), p, []es.Standby{{Name: "standby", DB: standbyDB}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rr.Close() })
	f.rr = rr
	return f
}

// BenchmarkReplicaReads reads an aggregate of 10 events, and pages of 500
// of a 10,000-event log, from the primary and from the standby (through a
// ReplicatedRecorder) in the same run.
func BenchmarkReplicaReads(b *testing.B) {
	f := newReplicaBench(b)
	ctx := context.Background()
	const aggregates, versions = 1000, 10
	ids := make([]uuid.UUID, aggregates)
	for i := range ids {
		ids[i] = uuid.New()
		evs := make([]es.StoredEvent, versions)
		for v := range evs {
			evs[v] = es.StoredEvent{OriginatorID: ids[i], OriginatorVersion: int64(v + 1), Topic: "bench:Event", State: []byte(`{"amount":100,"note":"a deposit of some size"}`)}
		}
		if _, err := f.primary.InsertEvents(ctx, evs, nil); err != nil {
			b.Fatal(err)
		}
	}
	pos, err := f.rr.Position(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if ok, err := f.rr.WaitReplayed(ctx, pos); !ok || err != nil {
		b.Fatalf("standby did not replay the fixture: %v", err)
	}
	max, _ := f.primary.MaxNotificationID(ctx)
	standbyOnly, err := es.NewSQLRecorder(ctx, f.standbyDB, postgres.Dialect{}, &es.SQLOptions{AppName: "App", Schema: f.schema})
	if err != nil {
		b.Fatal(err)
	}
	for _, target := range []struct {
		name string
		rec  es.ApplicationRecorder
	}{{"primary", f.primary}, {"standby", f.rr}, {"standby-direct", standbyOnly}} {
		b.Run("GetAggregate/"+target.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				evs, err := target.rec.SelectEvents(ctx, ids[i%aggregates], nil)
				if err != nil || len(evs) != versions {
					b.Fatal(len(evs), err)
				}
			}
		})
		b.Run("PageLog500/"+target.name, func(b *testing.B) {
			b.ReportAllocs()
			var start int64
			for b.Loop() {
				ns, err := target.rec.SelectNotifications(ctx, start, 500, &es.NotificationQuery{ExclusiveStart: true})
				if err != nil {
					b.Fatal(err)
				}
				start = ns[len(ns)-1].ID
				if start >= max-500 {
					start = 0
				}
			}
			b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReplicaLag measures, under 8 writers committing as fast as they
// can, how long after a commit the standby shows it: the time from reading
// the primary's WAL position to the standby having replayed it, sampled
// every b.Loop iteration; and a Put-then-Get pair with read-your-writes.
func BenchmarkReplicaLag(b *testing.B) {
	f := newReplicaBench(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var written atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := f.primary.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte(`{"amount":100}`)}}, nil); err == nil {
					written.Add(1)
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	time.Sleep(200 * time.Millisecond)
	var lags []time.Duration
	start := time.Now()
	w0 := written.Load()
	for b.Loop() {
		pos, err := f.rr.Position(ctx)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if ok, err := f.rr.WaitReplayed(ctx, pos); !ok || err != nil {
			b.Fatalf("not replayed within MaxLag: %v", err)
		}
		lags = append(lags, time.Since(t0))
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	slices.Sort(lags)
	q := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "lag-p50-ms")
	b.ReportMetric(q(0.99), "lag-p99-ms")
	b.ReportMetric(float64(written.Load()-w0)/el.Seconds(), "commits/s")
}

// TestReplicaSnapshots: snapshots are written to the primary and read from
// the standby, after the write in a ReadYourWrites context.
func TestReplicaSnapshots(t *testing.T) {
	f := newReplicaFixture(t, nil)
	waitUsable(t, f.rr, true, 5*time.Second)
	snaps := f.rr.Snapshots(newSQLSnapshotRecorder(t, f.primaryDB, postgres.Dialect{}, f.schema, es.SQLOptions{AppName: "App"}))
	ctx := es.ReadYourWrites(context.Background())
	id := uuid.New()
	for v := int64(1); v <= 3; v++ {
		if _, err := snaps.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: v, Topic: "snap", State: []byte("{}")}}, nil); err != nil {
			t.Fatal(err)
		}
		s0 := f.rr.Standbys()[0].Reads
		got, err := snaps.SelectEvents(ctx, id, &es.Query{Desc: true, Limit: 1})
		if err != nil || len(got) != 1 || got[0].OriginatorVersion != v {
			t.Fatalf("latest snapshot: %v %v, want version %d", got, err, v)
		}
		if f.rr.Standbys()[0].Reads != s0+1 {
			t.Fatal("the snapshot was not read from the standby")
		}
	}
}

// standbyObserver is an Observer that is also a StandbyObserver.
type standbyObserver struct {
	mu   sync.Mutex
	seen []es.StandbyStatus
}

func (o *standbyObserver) ObserveStart(ctx context.Context, op es.Op) context.Context { return ctx }
func (o *standbyObserver) ObserveEnd(context.Context, es.Op, es.OpResult)             {}
func (o *standbyObserver) ObserveStandby(_ context.Context, st es.StandbyStatus) {
	o.mu.Lock()
	o.seen = append(o.seen, st)
	o.mu.Unlock()
}

// TestReplicaObserver: the primary recorder's Observer, if it is a
// StandbyObserver, is told each standby's status and lag.
func TestReplicaObserver(t *testing.T) {
	standbyDB := pgtest.ReplicaDB(t)
	db := pgtest.DB(t)
	obs := &standbyObserver{}
	p := newSQLRecorder(t, db, postgres.Dialect{}, pgtest.Schema(t, db), es.SQLOptions{AppName: "App", Observer: obs})
	newReplicated(t, p, standbyDB, &es.ReplicaOptions{CheckInterval: 20 * time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	for {
		obs.mu.Lock()
		n := len(obs.seen)
		var last es.StandbyStatus
		if n > 0 {
			last = obs.seen[n-1]
		}
		obs.mu.Unlock()
		if n >= 3 {
			if last.Name != "standby" || !last.Usable || last.Checked.IsZero() {
				t.Fatalf("observed %+v", last)
			}
			t.Logf("%d checks observed; last: usable, lag %v, %d bytes behind", n, last.Lag, last.Behind)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d checks observed in 5 s, want 3", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicaReadYourWritesAsyncCommit: with synchronous_commit off on the
// primary, a commit is acknowledged before its WAL is written out; the
// position a ReadYourWrites context keeps after it still covers it, so a
// read on the standby never misses the write.
func TestReplicaReadYourWritesAsyncCommit(t *testing.T) {
	standbyDB := pgtest.ReplicaDB(t)
	db, err := postgres.Open(context.Background(), withParams(pgtest.DSN(t), "synchronous_commit=off"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the schema's cleanup
	primary := newSQLRecorder(t, db, postgres.Dialect{}, pgtest.Schema(t, db), es.SQLOptions{AppName: "Async"})
	rr := newReplicated(t, primary, standbyDB, nil)
	waitUsable(t, rr, true, 5*time.Second)
	store := upStore(t, rr)
	const pairs = 200
	misses, s0 := 0, rr.Standbys()[0].Reads
	for i := range pairs {
		ctx := es.ReadYourWrites(context.Background())
		id := uuid.New()
		if _, err := store.Put(ctx, &upEvent{DomainEvent: es.NewDomainEvent(id, 1), N: int64(i)}); err != nil {
			t.Fatal(err)
		}
		got, err := store.Get(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			misses++
		}
	}
	standby := rr.Standbys()[0].Reads - s0
	t.Logf("%d Put-then-Get pairs with synchronous_commit off: %d misses; %d reads from the standby", pairs, misses, standby)
	if misses != 0 {
		t.Errorf("%d of %d reads missed their own write", misses, pairs)
	}
	if standby == 0 {
		t.Error("no read went to the standby")
	}
}
