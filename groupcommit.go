package eventsourcing

// Group commit: the state machine that combines concurrent InsertEvents
// calls on one SQLRecorder into one transaction.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit: concurrent InsertEvents calls on one SQLRecorder are
// combined into one transaction (one lock, one commit), as bbolt's
// DB.Batch does.
//
// Who runs a transaction. At most one transaction is being started at a
// time; the right to start one is the turn (see turn). A caller that finds
// the turn free (the leader) takes it and commits its own call at once, on
// its own goroutine, under its own context, paying nothing for grouping.
// Callers that arrive while the turn is taken queue. Just before a
// transaction's COMMIT, its holder hands the turn on if calls are queued:
// a committer goroutine takes every queued call (up to MaxGroupSize) and
// begins and waits for the lock while the first COMMIT runs; and so on
// until the queue is empty, when the turn is given back. A transaction
// that is one statement committing itself (PostgreSQL's append function,
// autocommitTx) has no COMMIT to overlap: its holder keeps the turn until
// its callers have their results, then takes the next batch itself. With
// group commit off (MaxGroupSize 1) there is no turn and no queue: every
// call is a leader, alone in its transaction.
//
// A transaction (transact, the one function that decides every call's
// outcome) goes through these steps:
//
//  1. begin: the writer turn (SQLite), BEGIN and the lock statements;
//  2. claim: once the lock is held, the calls of the batch still waiting
//     are claimed, and calls that queued meanwhile join (claimed at once);
//     from then on nothing but the transaction's outcome ends a claimed
//     call: no context cancels the transaction any more;
//  3. insert: all claimed calls' events in one multi-row INSERT (in call
//     order, so each gets its own notification IDs), then each call's
//     tracking record; on an integrity error with several calls, the
//     transaction is rolled back and done again, under the lock again,
//     with a savepoint per call, so that exactly the conflicting calls get
//     ErrIntegrity and the others commit;
//  4. commit: COMMIT, and if its error leaves the outcome open, the check
//     of whether it committed (commitOutcome).
//
// Whichever step fails, every call the transaction took gets a result:
// deliver is the only place a call's result is set, exactly once, and the
// only place its done channel is closed. A call whose caller gave up (its
// context ended) while it was queued or before it was claimed is abandoned
// instead: its caller has returned the context's error, and nothing of it
// is written.

// A call's state, changed under groupCommitter.mu only.
const (
	callWaiting   = iota // queued, or taken into a transaction that has not the lock yet: its caller may give up
	callClaimed          // in a transaction that holds the lock: its caller waits for the outcome
	callAbandoned        // its caller gave up first: nothing of it is written, no result is delivered
	callDelivered        // its result is set and done is closed
)

// groupCall is one InsertEvents call.
//
// Invariants: state moves waiting -> claimed -> delivered, or waiting ->
// delivered (the transaction failed before the lock was held), or waiting
// -> abandoned; never anything else. ids and err are written once, by
// deliver, before done is closed, and read by the caller only after.
type groupCall struct {
	ctx      context.Context
	events   []StoredEvent
	tracking *Tracking

	state int     // under groupCommitter.mu
	grp   *group  // the transaction that took it, under groupCommitter.mu
	ids   []int64 // set by deliver
	err   error   // set by deliver
	done  chan struct{}
}

func newCall(ctx context.Context, events []StoredEvent, tracking *Tracking) *groupCall {
	return &groupCall{ctx: ctx, events: events, tracking: tracking, done: make(chan struct{})}
}

// group is one committer transaction's batch, whose context is cancelled
// when all of its calls have given up before the lock was held.
type group struct {
	live    int  // calls of the batch not abandoned, under groupCommitter.mu
	claimed bool // the lock is held and the live calls claimed: nothing cancels it now
	cancel  context.CancelFunc
}

// groupCommitter is a recorder's group commit: its queue and its turn.
type groupCommitter struct {
	groups, calls atomic.Int64 // transactions and calls committed

	tx       txBackend
	maxSize  int
	maxDelay time.Duration

	mu    sync.Mutex
	queue []*groupCall
	busy  bool // the turn is held (by a leader or a committer)
}

// grouping reports whether calls are grouped (MaxGroupSize > 1).
func (g *groupCommitter) grouping() bool { return g != nil && g.maxSize > 1 }

// txBackend is what group commit needs of a recorder: its transactions,
// step by step, and its errors. *SQLRecorder is one; tests use fakes.
type txBackend interface {
	// beginTx takes the recorder's writer turn, begins a transaction and
	// takes the append lock for events inserted with a tracking record or
	// not, under ctx.
	beginTx(ctx context.Context, events int, tracking bool) (writeTx, error)
	// callError makes a call's error from its transaction's.
	callError(c *groupCall, err error) error
	// observe reports a transaction to the recorder's observer, if any:
	// the returned function is called with its end.
	observe(ctx context.Context, calls, events int) func([]*groupCall, error)
	// committed is called after a transaction committed.
	committed()
}

// writeTx is a write transaction that holds the append lock.
type writeTx interface {
	// insert writes the calls' events and tracking records in call order
	// and returns each call's notification IDs. With savepoints, each call
	// is written under a savepoint of its own: a call that conflicts gets
	// its *IntegrityError in errs (and no IDs) while the others go on;
	// without, the first error is the transaction's.
	insert(ctx context.Context, calls []*groupCall, savepoints bool) (ids [][]int64, errs []error, err error)
	// commit commits. A nil error means committed. If COMMIT's error
	// leaves the outcome open, commit finds out by looking for p, and
	// returns nil if it committed, or an error saying what is known.
	commit(p commitProbe) error
	// rollback ends the transaction if it is not committed; it may be
	// called more than once, and after commit.
	rollback()
}

// commitProbe is what shows whether a transaction committed: its first
// event (with its notification ID, if the table assigns them), or, if it
// wrote tracking records alone, its first tracking record. ctx, if not
// nil, bounds the check (the context of the transaction's only call).
type commitProbe struct {
	ctx      context.Context
	event    *StoredEvent
	id       int64 // 0 if the table assigns no notification IDs
	tracking *Tracking
}

// add takes a written call's rows into the probe, if it has none of its
// kind yet.
func (p *commitProbe) add(events []StoredEvent, ids []int64, tracking *Tracking) {
	if p.event == nil && len(events) > 0 {
		p.event = &events[0]
		if len(ids) > 0 {
			p.id = ids[0]
		}
	}
	if p.tracking == nil {
		p.tracking = tracking
	}
}

// insert runs one InsertEvents call through group commit: as the leader of
// a transaction of its own if the turn is free (or grouping is off), or
// queued for the committer. It returns once the call's result is
// delivered, or its context ended while it could still leave.
func (g *groupCommitter) insert(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	c := newCall(ctx, events, tracking)
	if !g.grouping() {
		c.state = callClaimed
		g.lead(c, nil)
		return c.result()
	}
	g.mu.Lock()
	if !g.busy && g.maxDelay == 0 {
		g.busy = true
		c.state = callClaimed // its caller is the one who waits
		g.mu.Unlock()
		t := &turn{g: g}
		g.lead(c, t)
		t.finish()
		return c.result()
	}
	g.queue = append(g.queue, c)
	start := !g.busy
	g.busy = true
	g.mu.Unlock()
	if start {
		go g.runGroups(&turn{g: g})
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		if g.abandon(c) {
			return nil, errAbandonedCall
		}
		<-c.done
	}
	return c.result()
}

// errAbandonedCall is returned for a call whose caller gave up before it
// was claimed; InsertEvents turns it into the context's error.
var errAbandonedCall = errors.New("the call's context ended before its rows were written")

// result returns a delivered call's outcome. A call that came back
// without a result delivered (which cannot happen) is an internal error,
// never a success.
func (c *groupCall) result() ([]int64, error) {
	if c.state != callDelivered {
		return nil, errNoResult
	}
	return c.ids, c.err
}

// errNoResult: a call came back with neither notification IDs nor an
// error. It cannot happen; if it did, it is reported as what it is: a
// call whose outcome is unknown.
var errNoResult = &DatabaseError{Kind: ErrOperational, Op: "insert events",
	Err: fmt.Errorf("%w: internal error: the call ended with neither notification IDs nor an error", ErrOutcomeUnknown)}

// turn is the right to start group commit's next transaction, held by one
// goroutine at a time while groupCommitter.busy is true. Its holder either
// hands it on (handOn: to the committer of the next group, started just
// before its own COMMIT) or gives it back (finish: busy = false, when the
// queue is empty), exactly once.
type turn struct {
	g      *groupCommitter
	passed bool // handed on or given back: no longer this goroutine's
}

// handOn starts the committer of the next group, with the turn, if calls
// are queued, and reports whether it did.
func (t *turn) handOn() bool {
	if t == nil || t.passed {
		return false
	}
	g := t.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		return false
	}
	t.passed = true
	go g.runGroups(&turn{g: g})
	return true
}

// finish ends the holder's use of the turn: it is handed on if calls are
// queued, or given back.
func (t *turn) finish() {
	if t.handOn() || t.passed {
		return
	}
	g := t.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) > 0 { // queued since handOn looked
		t.passed = true
		go g.runGroups(&turn{g: g})
		return
	}
	t.passed = true
	g.busy = false
}

// next takes the next batch of queued calls for the turn's holder, with
// the group that counts them, or gives the turn back if there is none.
func (t *turn) next() (batch []*groupCall, grp *group, ok bool) {
	g := t.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		t.passed = true
		g.busy = false
		return nil, nil, false
	}
	n := min(len(g.queue), g.maxSize)
	batch = slices.Clone(g.queue[:n])
	g.queue = slices.Delete(g.queue, 0, n)
	grp = &group{live: n}
	for _, c := range batch {
		c.grp = grp
	}
	return batch, grp, true
}

// runGroups, holding the turn, commits queued calls a group at a time
// until the queue is empty or it has handed the turn on.
func (g *groupCommitter) runGroups(t *turn) {
	for !t.passed {
		if g.maxDelay > 0 {
			g.mu.Lock()
			n := len(g.queue)
			g.mu.Unlock()
			if n < g.maxSize {
				time.Sleep(g.maxDelay)
			}
		}
		// The callers of the transaction just delivered (if this
		// goroutine ran it, keeping the turn) get a moment to queue
		// again and join the next batch.
		runtime.Gosched()
		batch, grp, ok := t.next()
		if !ok {
			return
		}
		g.commitBatch(t, batch, grp)
	}
}

// lead commits a call that did not queue, on its caller's goroutine and
// under its context: the context bounds the waits for BEGIN and the lock,
// and the INSERT as long as the call is alone. t is the turn it holds, or
// nil (group commit off).
func (g *groupCommitter) lead(c *groupCall, t *turn) {
	ctx, disarm, release := cancelUntil(c.ctx)
	defer release()
	g.transact(ctx, disarm, t, nil, []*groupCall{c})
}

// commitBatch commits a batch taken from the queue, under a context of its
// own that ends when every call of the batch has given up before the lock
// was held.
func (g *groupCommitter) commitBatch(t *turn, batch []*groupCall, grp *group) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	defer cancel()
	g.mu.Lock()
	grp.cancel = cancel
	if grp.live == 0 { // all gave up already
		cancel()
	}
	g.mu.Unlock()
	g.transact(ctx, noErr, t, grp, batch)
}

// abandon marks a call whose context ended as given up, if it has not been
// claimed, and reports whether it did. The last call of a batch to give up
// cancels the batch's transaction.
func (g *groupCommitter) abandon(c *groupCall) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.state != callWaiting {
		return false
	}
	c.state = callAbandoned
	if c.grp == nil {
		if i := slices.Index(g.queue, c); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
		}
		return true
	}
	if c.grp.live--; c.grp.live == 0 && !c.grp.claimed && c.grp.cancel != nil {
		c.grp.cancel()
	}
	return true
}

// transact runs one transaction for calls and delivers every result: the
// leader's call (grp nil; ctx is the leader's, which disarm makes
// uncancellable) or a batch of queued calls (grp; ctx ends when they all
// gave up). t is the turn, nil with group commit off.
func (g *groupCommitter) transact(ctx context.Context, disarm func() error, t *turn, grp *group, calls []*groupCall) {
	events, tracking := 0, false
	for _, c := range calls {
		events += len(c.events)
		tracking = tracking || c.tracking != nil
	}
	end := g.tx.observe(ctx, len(calls), events)
	var err error
	var claimed []*groupCall
	defer func() { end(claimed, err) }()

	// 1. begin.
	var tx writeTx
	if tx, err = g.tx.beginTx(ctx, events, tracking); err != nil {
		g.deliverAll(calls, nil, nil, err)
		return
	}
	defer tx.rollback()

	// 2. claim.
	// With a transaction that is one statement (autocommitTx), no call
	// joins a leader's: the leader runs it on its own goroutine, and its
	// call must be free to leave at its own deadline while the lock
	// wait goes on for others (queued calls go in the next one).
	ac, auto := tx.(autocommitTx)
	auto = auto && ac.autocommitted()
	if claimed, err = g.claim(grp, calls, disarm, t, !auto); err != nil {
		g.deliverAll(calls, nil, nil, err)
		return
	}
	if grp != nil || len(claimed) > 1 {
		// Claimed calls of others: nothing but the outcome may end them.
		ctx = context.WithoutCancel(ctx)
	}

	// 3. insert.
	ids, errs, err := tx.insert(ctx, claimed, false)
	if err != nil && len(claimed) > 1 && errors.Is(err, ErrIntegrity) {
		tx.rollback()
		if tx, err = g.tx.beginTx(ctx, events, tracking); err == nil {
			defer tx.rollback()
			ids, errs, err = tx.insert(ctx, claimed, true)
		}
	}
	if err != nil {
		g.deliverAll(claimed, nil, nil, err)
		return
	}

	// 4. commit. A transaction whose insert committed (autocommitTx) is
	// past its point of no return already: no context to disarm; and it
	// keeps the turn until its callers have their results, so that they
	// may queue again for the next transaction (see runGroups).
	if !auto {
		if err = disarm(); err != nil { // the leader alone, whose context ended
			g.deliverAll(claimed, nil, nil, err)
			return
		}
		t.handOn()
	}
	var p commitProbe // what the check of a COMMIT with an open outcome looks for
	written := 0
	for i, c := range claimed {
		if errs == nil || errs[i] == nil {
			written++
			p.add(c.events, ids[i], c.tracking)
		}
	}
	if written > 0 {
		if len(claimed) == 1 {
			p.ctx = claimed[0].ctx // a call alone may leave the check
		}
		err = tx.commit(p)
	}
	if err == nil && written > 0 {
		g.tx.committed()
	}
	g.deliverAll(claimed, ids, errs, err)
}

// claim is step 2 of a transaction that holds the lock: it claims the
// calls still waiting, lets queued calls join (claimed too) up to
// MaxGroupSize, and returns the claimed calls in order. If every call of a
// batch gave up (grp's context is cancelled), or the leader's context
// ended before others joined (disarm), it claims none and returns why.
// Unless join, queued calls do not join a leader's transaction.
func (g *groupCommitter) claim(grp *group, calls []*groupCall, disarm func() error, t *turn, join bool) ([]*groupCall, error) {
	if t == nil || (grp == nil && !join) {
		return calls, nil // group commit off, or no joiners: the leader alone
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if grp != nil {
		if grp.live == 0 {
			return nil, errAbandonedCall
		}
		grp.claimed = true
	} else if len(g.queue) > 0 {
		// The leader's context stops bounding the transaction before
		// any call of another caller joins it.
		if err := disarm(); err != nil {
			return nil, err
		}
	}
	claimed := make([]*groupCall, 0, len(calls)+len(g.queue))
	for _, c := range calls {
		if c.state == callWaiting || c.state == callClaimed {
			c.state = callClaimed
			claimed = append(claimed, c)
		}
	}
	for len(g.queue) > 0 && len(claimed) < g.maxSize {
		c := g.queue[0]
		g.queue = g.queue[1:]
		c.state = callClaimed
		claimed = append(claimed, c)
	}
	return claimed, nil
}

// deliverAll delivers the outcome of a transaction to each of calls: with
// txErr nil, each call's IDs (or its own error, errs[i]); otherwise the
// error txErr means for the call (its own integrity error, if it has one:
// nothing of it is written either way). Abandoned calls get nothing: their
// callers have returned.
func (g *groupCommitter) deliverAll(calls []*groupCall, ids [][]int64, errs []error, txErr error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delivered := calls[:0:0]
	committed := 0
	for i, c := range calls {
		if c.state == callAbandoned || c.state == callDelivered {
			continue // its caller has returned, or it has its result already
		}
		var own error
		if errs != nil {
			own = errs[i]
		}
		switch {
		case own != nil:
			c.err = own
		case txErr != nil:
			c.err = g.tx.callError(c, txErr)
		case ids == nil:
			c.err = errNoResult
		default:
			c.ids = ids[i]
			committed++
		}
		c.state = callDelivered
		delivered = append(delivered, c)
	}
	// The stats count the calls before their callers are woken: a caller
	// that has its result sees it counted.
	if committed > 0 {
		g.groups.Add(1)
		g.calls.Add(int64(committed))
	}
	for _, c := range delivered {
		close(c.done)
	}
}
