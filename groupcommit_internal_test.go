package eventsourcing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The group commit state machine, through a fake transaction whose every
// step (BEGIN and the lock, COMMIT) waits for the test to answer it: no
// timing decides what happens.

// fakeTxs is a txBackend whose transactions the test steps through.
type fakeTxs struct {
	begins  chan chan error // each beginTx sends its answer channel, then waits for the answer
	commits chan chan error // each commit likewise, if not nil
	// ids: how many notification IDs insert returns per call, if not
	// len(events) (a broken step, on purpose).
	ids func(events int) int

	mu   sync.Mutex
	next int64
}

func newFakeTxs() *fakeTxs {
	return &fakeTxs{begins: make(chan chan error), commits: make(chan chan error)}
}

func (f *fakeTxs) beginTx(ctx context.Context, events int, tracking bool) (writeTx, error) {
	answer := make(chan error)
	f.begins <- answer
	if err := <-answer; err != nil {
		return nil, err
	}
	return &fakeTx{f: f}, nil
}

func (f *fakeTxs) callError(c *groupCall, err error) error { return fmt.Errorf("call: %w", err) }
func (f *fakeTxs) observe(context.Context, int, int) func([]*groupCall, error) {
	return func([]*groupCall, error) {}
}
func (f *fakeTxs) committed() {}

// answer answers the next step waiting on ch with err.
func answer(t *testing.T, ch chan chan error, err error) {
	t.Helper()
	select {
	case a := <-ch:
		a <- err
	case <-time.After(10 * time.Second):
		t.Fatal("no transaction step came to be answered")
	}
}

type fakeTx struct{ f *fakeTxs }

func (tx *fakeTx) insert(ctx context.Context, calls []*groupCall, savepoints bool) ([][]int64, []error, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err // as a driver fails a statement under a cancelled context
	}
	tx.f.mu.Lock()
	defer tx.f.mu.Unlock()
	ids := make([][]int64, len(calls))
	for i, c := range calls {
		n := len(c.events)
		if tx.f.ids != nil {
			n = tx.f.ids(n)
		}
		for range n {
			tx.f.next++
			ids[i] = append(ids[i], tx.f.next)
		}
	}
	return ids, nil, nil
}

func (tx *fakeTx) commit(commitProbe) error {
	answer := make(chan error)
	tx.f.commits <- answer
	return <-answer
}

func (tx *fakeTx) rollback() {}

type outcome struct {
	ids []int64
	err error
}

// call runs one insert of n events in the background; its outcome arrives
// on the returned channel.
func call(g *groupCommitter, ctx context.Context, n int) <-chan outcome {
	ch := make(chan outcome, 1)
	evs := make([]StoredEvent, n)
	for i := range evs {
		evs[i] = StoredEvent{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}
	}
	go func() {
		ids, err := g.insert(ctx, evs, nil)
		ch <- outcome{ids, err}
	}()
	return ch
}

// waitQueued waits until n calls are queued.
func waitQueued(t *testing.T, g *groupCommitter, n int) {
	t.Helper()
	for range 10000 {
		g.mu.Lock()
		q := len(g.queue)
		g.mu.Unlock()
		if q == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d calls never queued", n)
}

func get(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("a call never returned")
		return outcome{}
	}
}

var errLock = errors.New("lock timeout (fake)")

// A batch whose BEGIN or lock fails before its calls were claimed: every
// call gets the error. (Group commit once returned these calls with
// neither IDs nor an error: success for events never written.)
func TestGroupCommitStateQueuedCallsFailWithTheirLock(t *testing.T) {
	f := newFakeTxs()
	g := &groupCommitter{tx: f, maxSize: 100}
	ctx := context.Background()
	leader := call(g, ctx, 1)
	lbegin := <-f.begins // the leader waits for the lock
	b, c := call(g, ctx, 2), call(g, ctx, 3)
	waitQueued(t, g, 2)
	lbegin <- errLock
	if o := get(t, leader); !errors.Is(o.err, errLock) || o.ids != nil {
		t.Errorf("leader: %v %v, want the lock error", o.ids, o.err)
	}
	answer(t, f.begins, errLock) // the queued calls' transaction
	for i, ch := range []<-chan outcome{b, c} {
		if o := get(t, ch); !errors.Is(o.err, errLock) || o.ids != nil {
			t.Errorf("queued call %d: IDs %v, error %v; want the lock error", i, o.ids, o.err)
		}
	}
	if s := (Stats{Transactions: g.groups.Load(), Calls: g.calls.Load()}); s != (Stats{}) {
		t.Errorf("stats %+v after failures only, want zero", s)
	}
}

// A batch whose every call gave up while it waited for the lock, which is
// then granted anyway: calls that queued meanwhile are not failed by the
// batch's cancelled context; they commit in the next transaction.
func TestGroupCommitStateAbandonedBatchDoesNotFailJoiners(t *testing.T) {
	f := newFakeTxs()
	g := &groupCommitter{tx: f, maxSize: 100}
	ctx := context.Background()
	leader := call(g, ctx, 1)
	answer(t, f.begins, nil)
	lcommit := <-f.commits // the leader is at COMMIT, with nothing queued
	actx, cancel := context.WithCancel(ctx)
	a := call(g, actx, 1)
	waitQueued(t, g, 1)
	lcommit <- nil
	if o := get(t, leader); o.err != nil || len(o.ids) != 1 {
		t.Fatalf("leader: %v %v", o.ids, o.err)
	}
	abegin := <-f.begins // [A] waits for the lock
	cancel()
	if o := get(t, a); !errors.Is(o.err, errAbandonedCall) {
		t.Errorf("abandoned call: %v %v, want errAbandonedCall", o.ids, o.err)
	}
	c, d := call(g, ctx, 2), call(g, ctx, 1)
	waitQueued(t, g, 2)
	abegin <- nil // the lock reply arrives anyway
	answer(t, f.begins, nil)
	answer(t, f.commits, nil)
	for i, ch := range []<-chan outcome{c, d} {
		if o := get(t, ch); o.err != nil || len(o.ids) == 0 {
			t.Errorf("call %d that queued behind the abandoned batch: IDs %v, error %v; want committed", i, o.ids, o.err)
		}
	}
	if s := (Stats{Transactions: g.groups.Load(), Calls: g.calls.Load()}); s != (Stats{Transactions: 2, Calls: 3}) {
		t.Errorf("stats %+v, want 2 transactions of 3 calls", s)
	}
}

// Calls that join a leader's transaction get its COMMIT's outcome, the
// leader's context notwithstanding; an unknown outcome reaches each.
func TestGroupCommitStateJoinersShareTheOutcome(t *testing.T) {
	f := newFakeTxs()
	g := &groupCommitter{tx: f, maxSize: 100}
	lctx, cancel := context.WithCancel(context.Background())
	leader := call(g, lctx, 1)
	lbegin := <-f.begins
	b, c := call(g, context.Background(), 1), call(g, context.Background(), 2)
	waitQueued(t, g, 2)
	lbegin <- nil // the lock: b and c join
	lcommit := <-f.commits
	cancel() // too late to matter: the calls are claimed
	unknown := fmt.Errorf("%w: test", ErrOutcomeUnknown)
	lcommit <- unknown
	for i, ch := range []<-chan outcome{leader, b, c} {
		if o := get(t, ch); !errors.Is(o.err, ErrOutcomeUnknown) || o.ids != nil {
			t.Errorf("call %d: IDs %v, error %v; want the unknown outcome", i, o.ids, o.err)
		}
	}
	waitQueued(t, g, 0)
	g.mu.Lock()
	busy := g.busy
	g.mu.Unlock()
	if busy {
		t.Error("the turn was not given back")
	}
}

// The last guard: a step that returns fewer IDs than events (broken on
// purpose) makes InsertEvents fail with ErrOutcomeUnknown, never succeed.
func TestInsertEventsGuardsTheNumberOfIDs(t *testing.T) {
	f := newFakeTxs()
	f.ids = func(n int) int { return n - 1 }
	r := &SQLRecorder{events: Table{Name: "events"}}
	r.group = &groupCommitter{tx: f, maxSize: 1}
	done := make(chan outcome, 1)
	go func() {
		ids, err := r.InsertEvents(context.Background(), []StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}, {OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil)
		done <- outcome{ids, err}
	}()
	answer(t, f.begins, nil)
	answer(t, f.commits, nil)
	o := get(t, done)
	if !errors.Is(o.err, ErrOutcomeUnknown) || !errors.Is(o.err, ErrOperational) || o.ids != nil {
		t.Errorf("InsertEvents with a step that lost an ID: %v, %v; want ErrOutcomeUnknown", o.ids, o.err)
	}
}
