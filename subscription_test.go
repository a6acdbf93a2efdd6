package eventsourcing_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// pgSubscribeFixture is a Postgres events table with a writer recorder and
// a reader recorder: separate SQLRecorder values, so nothing in this
// process wakes the reader's subscriptions (as if the writer were another
// process), only LISTEN and polling.
type pgSubscribeFixture struct {
	db             *sql.DB
	schema, table  string
	writer, reader *es.SQLRecorder
}

func newPGSubscribeFixture(t *testing.T, writerOpts es.SQLOptions) *pgSubscribeFixture {
	t.Helper()
	db := pgtest.DB(t)
	f := &pgSubscribeFixture{db: db, schema: pgtest.Schema(t, db), table: pgtestName("ev")}
	writerOpts.Table, writerOpts.TrackingTable = f.table, f.table+"_tr"
	f.writer = newSQLRecorder(t, db, postgres.Dialect{}, f.schema, writerOpts)
	f.reader = newSQLRecorder(t, db, postgres.Dialect{}, f.schema, es.SQLOptions{Table: f.table, TrackingTable: f.table + "_tr"})
	return f
}

// listeners returns the backend PIDs listening on the fixture's channel.
func (f *pgSubscribeFixture) listeners(t *testing.T) []int {
	t.Helper()
	q := `LISTEN "` + postgres.Channel(es.Table{Schema: f.schema, Name: f.table}) + `"`
	rows, err := f.db.Query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1", q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitListeners waits until n sessions listen on the channel, other than
// those in not.
func (f *pgSubscribeFixture) waitListeners(t *testing.T, n int, not []int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pids []int
		for _, p := range f.listeners(t) {
			if !slices.Contains(not, p) {
				pids = append(pids, p)
			}
		}
		if len(pids) == n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions listening (besides %v), want %d", len(pids), not, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// timedSub follows a recorder, recording when each notification arrived.
type timedSub struct {
	mu     sync.Mutex
	ids    []int64
	states [][]byte
	at     map[int64]time.Time
	err    error
	last   atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func startTimedSub(r es.ApplicationRecorder, after int64, opts *es.SubscribeOptions) *timedSub {
	ctx, cancel := context.WithCancel(context.Background())
	s := &timedSub{at: map[int64]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for n, err := range es.Subscribe(ctx, r, after, opts) {
			now := time.Now()
			s.mu.Lock()
			if err != nil {
				s.err = err
			} else {
				s.ids = append(s.ids, n.ID)
				s.states = append(s.states, n.State)
				s.at[n.ID] = now
			}
			s.mu.Unlock()
			if err == nil {
				s.last.Store(n.ID)
			}
		}
	}()
	return s
}

func (s *timedSub) waitFor(t *testing.T, id int64, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.last.Load() < id {
		if time.Now().After(deadline) {
			t.Fatalf("notification %d not delivered within %v (last %d)", id, timeout, s.last.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at[id]
}

func (s *timedSub) stop(t *testing.T) []int64 {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription did not end within 5 s of its cancellation")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !errors.Is(s.err, context.Canceled) {
		t.Fatalf("subscription ended with %v, want context.Canceled", s.err)
	}
	return s.ids
}

func putOne(t *testing.T, r es.ApplicationRecorder) int64 {
	t.Helper()
	ids, err := r.InsertEvents(context.Background(), []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

// A writer in another session wakes the subscriber through NOTIFY and
// LISTEN, far sooner than its poll; with NoListen only the poll finds it.
func TestSubscribePostgresListen(t *testing.T) {
	f := newPGSubscribeFixture(t, es.SQLOptions{})
	s := startTimedSub(f.reader, 0, &es.SubscribeOptions{PollInterval: time.Hour})
	f.waitListeners(t, 1, nil)
	for range 5 {
		put := time.Now()
		id := putOne(t, f.writer)
		if d := s.waitFor(t, id, 5*time.Second).Sub(put); d > time.Second {
			t.Errorf("notification %d delivered %v after the put, want far less with LISTEN", id, d)
		}
	}
	s.stop(t)

	poll := 300 * time.Millisecond
	p := startTimedSub(f.reader, 5, &es.SubscribeOptions{PollInterval: poll, NoListen: true})
	time.Sleep(50 * time.Millisecond)
	if n := len(f.listeners(t)); n != 0 {
		t.Errorf("%d sessions listening with NoListen", n)
	}
	put := time.Now()
	id := putOne(t, f.writer)
	if d := p.waitFor(t, id, 5*time.Second).Sub(put); d > poll+200*time.Millisecond {
		t.Errorf("without LISTEN, delivered after %v, want within the poll interval %v", d, poll)
	}
	p.stop(t)
}

// TestSubscribePostgresFaults: a killed listen connection, writers that do
// not notify, and a writer that pauses longer than the poll interval cost
// latency (no more than the poll interval), never an event.
func TestSubscribePostgresFaults(t *testing.T) {
	const poll = 250 * time.Millisecond
	// write puts events from 2 goroutines until stop is closed, returning
	// their IDs.
	write := func(t *testing.T, r es.ApplicationRecorder, stop <-chan struct{}, gap time.Duration) []int64 {
		var mu sync.Mutex
		var ids []int64
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := uuid.New()
				for v := int64(1); ; v++ {
					select {
					case <-stop:
						return
					case <-time.After(gap):
					}
					got, err := r.InsertEvents(context.Background(), []es.StoredEvent{{OriginatorID: id, OriginatorVersion: v, Topic: "t", State: []byte(fmt.Sprint(v))}}, nil)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					ids = append(ids, got...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.Sort(ids)
		return ids
	}
	check := func(t *testing.T, s *timedSub, want []int64) {
		t.Helper()
		if len(want) == 0 {
			t.Fatal("nothing written")
		}
		s.waitFor(t, want[len(want)-1], 5*time.Second)
		got := s.stop(t)
		if !slices.Equal(got, want) {
			t.Fatalf("delivered %d notifications, want the %d written, in order, once each", len(got), len(want))
		}
	}

	t.Run("ListenConnectionKilled", func(t *testing.T) {
		f := newPGSubscribeFixture(t, es.SQLOptions{})
		s := startTimedSub(f.reader, 0, &es.SubscribeOptions{PollInterval: poll})
		old := f.waitListeners(t, 1, nil)
		stop := make(chan struct{})
		var ids []int64
		done := make(chan struct{})
		go func() { ids = write(t, f.writer, stop, time.Millisecond); close(done) }()
		time.Sleep(300 * time.Millisecond)
		if _, err := f.db.Exec("SELECT pg_terminate_backend($1)", old[0]); err != nil {
			t.Fatal(err)
		}
		// It listens again, on a new connection.
		f.waitListeners(t, 1, old)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		<-done
		check(t, s, ids)
		// And the new connection is released at the end.
		f.waitListeners(t, 0, nil)
	})

	t.Run("WritersDoNotNotify", func(t *testing.T) {
		f := newPGSubscribeFixture(t, es.SQLOptions{NoNotify: true})
		s := startTimedSub(f.reader, 0, &es.SubscribeOptions{PollInterval: poll})
		f.waitListeners(t, 1, nil)
		stop := make(chan struct{})
		time.AfterFunc(time.Second, func() { close(stop) })
		ids := write(t, f.writer, stop, 20*time.Millisecond)
		// Latency of the last one: the poll interval at most, with slack
		// for a loaded machine (CI runs packages at once), still well
		// under the default poll interval (1 s) it would show if the
		// option were ignored.
		put := time.Now()
		id := putOne(t, f.writer)
		if d := s.waitFor(t, id, 5*time.Second).Sub(put); d > 3*poll {
			t.Errorf("a write that did not notify was delivered after %v, want within the poll interval %v", d, poll)
		}
		check(t, s, append(ids, id))
	})

	t.Run("WriterPausesLongerThanPoll", func(t *testing.T) {
		f := newPGSubscribeFixture(t, es.SQLOptions{})
		s := startTimedSub(f.reader, 0, &es.SubscribeOptions{PollInterval: poll})
		var ids []int64
		for range 3 {
			ids = append(ids, putOne(t, f.writer))
			time.Sleep(2 * poll)
		}
		check(t, s, ids)
	})
}

// TestSubscribePostgresCancelReleases counts what a subscription holds:
// its goroutines and its listen connection are gone when it ends.
func TestSubscribePostgresCancelReleases(t *testing.T) {
	f := newPGSubscribeFixture(t, es.SQLOptions{})
	putOne(t, f.writer)
	for deadline := time.Now().Add(time.Second); f.db.Stats().InUse > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	g0, open0 := runtime.NumGoroutine(), f.db.Stats().InUse
	var subs []*timedSub
	for range 3 {
		subs = append(subs, startTimedSub(f.reader, 0, nil))
	}
	f.waitListeners(t, 3, nil)
	if got := f.db.Stats().InUse; got < 3 {
		t.Errorf("%d connections in use with 3 subscriptions listening, want at least 3", got)
	}
	for _, s := range subs {
		s.waitFor(t, 1, 5*time.Second)
		s.stop(t)
	}
	f.waitListeners(t, 0, nil)
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > g0 || f.db.Stats().InUse > open0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the subscriptions ended: %d goroutines (was %d), %d connections in use (was %d)", runtime.NumGoroutine(), g0, f.db.Stats().InUse, open0)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Environment of TestSubscribeWriterProcess, a writer started by
// TestSubscribePostgresTwoWriterProcesses.
const (
	envWriterSchema = "ES_TEST_WRITER_SCHEMA"
	envWriterTable  = "ES_TEST_WRITER_TABLE"
	envWriterFor    = "ES_TEST_WRITER_FOR"
)

// TestSubscribeWriterProcess is a writer process for
// TestSubscribePostgresTwoWriterProcesses: 4 goroutines write batches into
// the table for the given time, then it prints how many events it wrote.
func TestSubscribeWriterProcess(t *testing.T) {
	schema := os.Getenv(envWriterSchema)
	if schema == "" {
		t.Skip("run by TestSubscribePostgresTwoWriterProcesses")
	}
	dur, err := time.ParseDuration(os.Getenv(envWriterFor))
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.DB(t)
	table := os.Getenv(envWriterTable)
	r := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{Table: table, TrackingTable: table + "_tr"})
	var n atomic.Int64
	var wg sync.WaitGroup
	until := time.Now().Add(dur)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uuid.New()
			for v := int64(1); time.Now().Before(until); v += 3 {
				var evs []es.StoredEvent
				for i := range int64(3) {
					evs = append(evs, es.StoredEvent{OriginatorID: id, OriginatorVersion: v + i, Topic: "t", State: []byte(fmt.Sprintf(`{"w":%d,"v":%d}`, w, v+i))})
				}
				if _, err := r.InsertEvents(context.Background(), evs, nil); err != nil {
					t.Error(err)
					return
				}
				n.Add(3)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("WROTE %d\n", n.Load())
}

// TestSubscribePostgresTwoWriterProcesses: two writer processes and writers
// in this process write for a few seconds while 3 subscribers follow; each
// subscriber receives the whole log, once each, in order.
func TestSubscribePostgresTwoWriterProcesses(t *testing.T) {
	f := newPGSubscribeFixture(t, es.SQLOptions{})
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	var subs []*timedSub
	for range 3 {
		subs = append(subs, startTimedSub(f.reader, 0, &es.SubscribeOptions{PollInterval: 200 * time.Millisecond, PageSize: 100}))
	}
	f.waitListeners(t, 3, nil)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSubscribeWriterProcess$", "-test.v")
		cmd.Env = append(os.Environ(), envWriterSchema+"="+f.schema, envWriterTable+"="+f.table, envWriterFor+"="+dur.String())
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	// And this process writes too, through the reader's own recorder (so
	// in-process wake-ups mix with LISTEN).
	ownStop := make(chan struct{})
	time.AfterFunc(dur, func() { close(ownStop) })
	own := 0
	for v := int64(1); ; v++ {
		select {
		case <-ownStop:
		default:
			if _, err := f.reader.InsertEvents(context.Background(), []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil); err != nil {
				t.Fatal(err)
			}
			own++
			time.Sleep(5 * time.Millisecond)
			continue
		}
		break
	}
	total := int64(own)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process %d: %v\n%s", i, err, outs[i])
		}
		_, after, ok := strings.Cut(outs[i].String(), "WROTE ")
		n, err := strconv.ParseInt(strings.Fields(after + " ")[0], 10, 64)
		if !ok || err != nil {
			t.Fatalf("writer process %d printed no count:\n%s", i, outs[i])
		}
		total += n
	}
	log, err := f.reader.SelectNotifications(context.Background(), 0, int(total)+10, &es.NotificationQuery{ExclusiveStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(log)) != total {
		t.Fatalf("log holds %d events, writers wrote %d", len(log), total)
	}
	want := make([]int64, len(log))
	for i, n := range log {
		want[i] = n.ID
	}
	for i, s := range subs {
		s.waitFor(t, want[len(want)-1], 10*time.Second)
		got := s.stop(t)
		if !slices.Equal(got, want) {
			t.Fatalf("subscriber %d received %d notifications, want all %d of the log in order, once each", i, len(got), len(want))
		}
		for j, n := range log {
			if !bytes.Equal(s.states[j], n.State) {
				t.Fatalf("subscriber %d: notification %d has state %s, the log %s", i, n.ID, s.states[j], n.State)
			}
		}
	}
	t.Logf("%d events from 2 processes and this one, each delivered once in order to 3 subscribers", total)
}

// TestPostgresTrackingOnlyCommitNotifies: a transaction that records a
// tracking record and no events (a projection's runner, whose handler
// returns none) sends the NOTIFY too, so that WaitTracking in another
// process is woken at once rather than at its next poll (up to 1 s).
func TestPostgresTrackingOnlyCommitNotifies(t *testing.T) {
	f := newPGSubscribeFixture(t, es.SQLOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woken := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		postgres.Dialect{}.Listen(ctx, f.db, es.Table{Schema: f.schema, Name: f.table}, func() {
			select {
			case woken <- struct{}{}:
			default:
			}
		})
	}()
	defer func() { cancel(); <-done }()
	select { // the wake-up Listen gives once it listens
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("not listening after 5 s")
	}
	if _, err := f.writer.InsertEvents(context.Background(), nil, &es.Tracking{ApplicationName: "Projection", NotificationID: 7}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(3 * time.Second):
		t.Fatal("a tracking-only commit sent no notification")
	}
}
