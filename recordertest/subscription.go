package recordertest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// subscriptions runs the consuming-side tests: subscriptions (catch-up,
// following, topics, holes, cancellation, many writers and subscribers) and
// waiting for tracking records.
func (o Options) subscriptions(t *testing.T, newRecorder func(t *testing.T) es.ProcessRecorder) {
	t.Run("CatchUpAndFollow", func(t *testing.T) { subscribeCatchUpAndFollow(t, newRecorder(t)) })
	t.Run("Topics", func(t *testing.T) { subscribeTopics(t, newRecorder(t)) })
	t.Run("PastRolledBackInsert", func(t *testing.T) { subscribePastRolledBack(t, newRecorder(t)) })
	t.Run("CancelEndsPromptly", func(t *testing.T) { subscribeCancel(t, newRecorder(t)) })
	t.Run("BreakReleases", func(t *testing.T) { subscribeBreak(t, newRecorder(t)) })
	t.Run("WritersAndSubscribers", func(t *testing.T) { o.writersAndSubscribers(t, newRecorder(t)) })
	t.Run("WaitTracking", func(t *testing.T) { waitTracking(t, newRecorder(t)) })
}

// testPoll is the poll interval of the subscriptions under test: short, so
// a recorder that cannot wake them still passes in good time.
const testPoll = 100 * time.Millisecond

// collector runs a subscription in a goroutine, keeping what it delivers.
type collector struct {
	mu     sync.Mutex
	ns     []es.Notification
	err    error
	last   atomic.Int64
	done   chan struct{}
	cancel context.CancelFunc
}

func collect(r es.ApplicationRecorder, after int64, opts *es.SubscribeOptions) *collector {
	ctx, cancel := context.WithCancel(ctx)
	c := &collector{done: make(chan struct{}), cancel: cancel}
	c.last.Store(after)
	go func() {
		defer close(c.done)
		for n, err := range es.Subscribe(ctx, r, after, opts) {
			c.mu.Lock()
			if err != nil {
				c.err = err
			} else {
				c.ns = append(c.ns, n)
			}
			c.mu.Unlock()
			if err == nil {
				c.last.Store(n.ID)
			}
		}
	}()
	return c
}

// waitFor waits until the collector has delivered notification id, and
// fails the test if it does not within the timeout.
func (c *collector) waitFor(t *testing.T, id int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.last.Load() < id {
		select {
		case <-c.done:
			t.Fatalf("subscription ended (%v) before notification %d", c.stop(), id)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription did not deliver notification %d within %v (last %d)", id, timeout, c.last.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// stop cancels the subscription, waits for it to end, and returns its
// error if it is not the cancellation.
func (c *collector) stop() error {
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(c.err, context.Canceled) {
		return nil
	}
	if c.err == nil {
		return errors.New("a cancelled subscription ended without the context's error")
	}
	return c.err
}

func (c *collector) ids() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return noteIDs(c.ns)
}

func maxID(t *testing.T, r es.ApplicationRecorder) int64 {
	t.Helper()
	n, err := r.MaxNotificationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func subscribeCatchUpAndFollow(t *testing.T, r es.ProcessRecorder) {
	topic := "t:" + uuid.NewString()
	start := maxID(t, r)
	id := uuid.New()
	first := insert(t, r, events(id, 1, 5, topic), nil)
	// From the third: catch-up delivers 3..5, then new ones as they commit.
	c := collect(r, first[1], &es.SubscribeOptions{PollInterval: testPoll, PageSize: 2})
	c.waitFor(t, first[4], 5*time.Second)
	second := insert(t, r, events(id, 6, 8, topic), nil)
	c.waitFor(t, second[2], 5*time.Second)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(first[2:]), second...)
	got := c.ids()
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v (log started after %d)", got, want, start)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.ns {
		v := int64(i + 3)
		if n.OriginatorID != id || n.OriginatorVersion != v || n.Topic != topic || !bytes.Equal(n.State, events(id, v, v, topic)[0].State) {
			t.Errorf("notification %d is %v v%d %q %s, want %v v%d", n.ID, n.OriginatorID, n.OriginatorVersion, n.Topic, n.State, id, v)
		}
	}
}

func subscribeTopics(t *testing.T, r es.ProcessRecorder) {
	a, b := "t:"+uuid.NewString(), "t:"+uuid.NewString()
	start := maxID(t, r)
	c := collect(r, start, &es.SubscribeOptions{PollInterval: testPoll, Topics: []string{b}})
	var want []int64
	for i := range 6 {
		topic := a
		if i%2 == 1 {
			topic = b
		}
		ids := insert(t, r, events(uuid.New(), 1, 2, topic), nil)
		if topic == b {
			want = append(want, ids...)
		}
	}
	c.waitFor(t, want[len(want)-1], 5*time.Second)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if got := c.ids(); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want only topic b's %v", got, want)
	}
}

// subscribePastRolledBack: a batch that fails (on PostgreSQL it consumes
// notification IDs, leaving a hole) does not stop delivery of what follows.
func subscribePastRolledBack(t *testing.T, r es.ProcessRecorder) {
	topic := "t:" + uuid.NewString()
	c := collect(r, maxID(t, r), &es.SubscribeOptions{PollInterval: testPoll})
	id := uuid.New()
	want := insert(t, r, events(id, 1, 2, topic), nil)
	_, err := r.InsertEvents(ctx, append(events(uuid.New(), 1, 3, topic), events(id, 2, 2, topic)...), nil)
	wantIntegrity(t, err)
	want = append(want, insert(t, r, events(id, 3, 4, topic), nil)...)
	c.waitFor(t, want[len(want)-1], 5*time.Second)
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	var got []int64
	c.mu.Lock()
	for _, n := range c.ns {
		if n.Topic == topic {
			got = append(got, n.ID)
		}
	}
	c.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// baseline records goroutines (and connections in use, for recorders on
// database/sql) before a test, to check afterwards that it left none.
type baseline struct {
	goroutines int
	db         *sql.DB
	inUse      int
}

func takeBaseline(r any) baseline {
	b := baseline{goroutines: runtime.NumGoroutine()}
	if d, ok := r.(interface{ DB() *sql.DB }); ok {
		b.db = d.DB()
		b.inUse = b.db.Stats().InUse
	}
	return b
}

// check waits up to 3 s for goroutines and connections in use to be back
// at the baseline.
func (b baseline) check(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		g := runtime.NumGoroutine()
		inUse := 0
		if b.db != nil {
			inUse = b.db.Stats().InUse
		}
		if g <= b.goroutines && inUse <= b.inUse {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("left behind: %d goroutines (was %d), %d connections in use (was %d)\n%s", g, b.goroutines, inUse, b.inUse, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func subscribeCancel(t *testing.T, r es.ProcessRecorder) {
	topic := "t:" + uuid.NewString()
	start := maxID(t, r)
	b := takeBaseline(r)
	// A long poll interval: only the cancellation can end the wait.
	c := collect(r, start, &es.SubscribeOptions{PollInterval: time.Hour, Topics: []string{topic}})
	ids := insert(t, r, events(uuid.New(), 1, 1, topic), nil)
	// Delivered by a wake-up from this process, or not at all if the
	// recorder has none: only wait for it if it can.
	if _, ok := r.(es.Waker); ok {
		c.waitFor(t, ids[0], 5*time.Second)
	}
	time.Sleep(20 * time.Millisecond) // let it block in its wait
	began := time.Now()
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("cancelled subscription took %v to end", d)
	}
	b.check(t)
}

func subscribeBreak(t *testing.T, r es.ProcessRecorder) {
	topic := "t:" + uuid.NewString()
	start := maxID(t, r)
	ids := insert(t, r, events(uuid.New(), 1, 3, topic), nil)
	b := takeBaseline(r)
	n := 0
	for note, err := range es.Subscribe(ctx, r, start, &es.SubscribeOptions{Topics: []string{topic}}) {
		if err != nil {
			t.Fatal(err)
		}
		if note.ID != ids[n] {
			t.Fatalf("got %d, want %d", note.ID, ids[n])
		}
		n++
		if n == 2 {
			break
		}
	}
	b.check(t)
}

// writersAndSubscribers: 8 writers insert batches for a while (as long as
// BatchesPerWriter×20ms) while 3 subscribers follow the log. Every
// subscriber receives every committed event exactly once, in strictly
// increasing ID order, with the content that was written under its ID.
func (o Options) writersAndSubscribers(t *testing.T, r es.ProcessRecorder) {
	const writers, subscribers = 8, 3
	dur := time.Duration(o.BatchesPerWriter) * 20 * time.Millisecond
	if testing.Short() {
		dur = min(dur, 300*time.Millisecond)
	}
	topic := "t:" + uuid.NewString()
	start := maxID(t, r)
	opts := &es.SubscribeOptions{Topics: []string{topic}, PollInterval: testPoll, PageSize: 37}
	subs := make([]*collector, subscribers)
	for i := range subs {
		subs[i] = collect(r, start, opts)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written = map[int64]es.StoredEvent{}
		errs    = make(chan error, writers)
		until   = time.Now().Add(dur)
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)))
			id := uuid.New()
			v := int64(0)
			for b := 0; time.Now().Before(until); b++ {
				n := 1 + rng.IntN(o.MaxBatchSize)
				evs := events(id, v+1, v+int64(n), topic)
				v += int64(n)
				ids, err := r.InsertEvents(ctx, evs, nil)
				if err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
					return
				}
				mu.Lock()
				for i, id := range ids {
					written[id] = evs[i]
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := make([]int64, 0, len(written))
	for id := range written {
		want = append(want, id)
	}
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("nothing written")
	}
	for i, c := range subs {
		c.waitFor(t, want[len(want)-1], 30*time.Second)
		if err := c.stop(); err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
		c.mu.Lock()
		ns := c.ns
		c.mu.Unlock()
		got := noteIDs(ns)
		if !slices.Equal(got, want) {
			missing, extra := 0, 0
			for _, id := range want {
				if !slices.Contains(got, id) {
					missing++
				}
			}
			extra = len(got) - (len(want) - missing)
			t.Fatalf("subscriber %d got %d notifications, want %d (%d missing, %d extra or repeated; ascending: %v)",
				i, len(got), len(want), missing, extra, slices.IsSorted(got))
		}
		for _, n := range ns {
			w := written[n.ID]
			if w.OriginatorID != n.OriginatorID || w.OriginatorVersion != n.OriginatorVersion || !bytes.Equal(w.State, n.State) {
				t.Fatalf("subscriber %d: notification %d is %v v%d, written %v v%d", i, n.ID, n.OriginatorID, n.OriginatorVersion, w.OriginatorID, w.OriginatorVersion)
			}
		}
	}
	t.Logf("%d events in %v, %d subscribers each received all, in order", len(want), dur, subscribers)
}

func waitTracking(t *testing.T, r es.ProcessRecorder) {
	app := appName()
	if _, err := r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: app, NotificationID: 5}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{1, 5} {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := es.WaitTracking(tctx, r, app, id)
		cancel()
		if err != nil {
			t.Fatalf("WaitTracking(%d) with 5 tracked: %v", id, err)
		}
	}
	b := takeBaseline(r)
	// Not yet: the context ends it.
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := es.WaitTracking(tctx, r, app, 6)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitTracking(6) with 5 tracked and a 100ms context: %v, want DeadlineExceeded", err)
	}
	// Recorded meanwhile, with events and alone: it returns.
	for i, withEvents := range []bool{true, false} {
		id := int64(7 + i)
		go func() {
			time.Sleep(30 * time.Millisecond)
			var evs []es.StoredEvent
			if withEvents {
				evs = events(uuid.New(), 1, 1, "t:A")
			}
			if _, err := r.InsertEvents(ctx, evs, &es.Tracking{ApplicationName: app, NotificationID: id}); err != nil {
				t.Error(err)
			}
		}()
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := es.WaitTracking(tctx, r, app, id)
		cancel()
		if err != nil {
			t.Fatalf("WaitTracking(%d) recorded after 30ms: %v", id, err)
		}
	}
	b.check(t)
}
