package eventsourcing

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// GroupStats counts what group commit did: how many InsertEvents calls it
// committed in how many transactions.
type GroupStats struct {
	Transactions int64
	Calls        int64
}

// GroupStats returns the recorder's group commit counts (zero if group
// commit is off).
func (r *SQLRecorder) GroupStats() GroupStats {
	if r.group == nil {
		return GroupStats{}
	}
	return GroupStats{Transactions: r.group.groups.Load(), Calls: r.group.calls.Load()}
}

// Group commit: concurrent InsertEvents calls on one SQLRecorder are
// combined into one transaction (one lock, one commit), as bbolt's
// DB.Batch does. A caller that finds no transaction running (the leader)
// commits its own call at once, on its own goroutine, paying nothing for
// grouping; calls that queue while it waits for the lock join its
// transaction once it has the lock (with 8 closed-loop writers on
// PostgreSQL, this is what lets a group hold nearly all 8 instead of
// alternating halves). Callers that arrive while a transaction runs
// queue. Just before that transaction's COMMIT, a committer goroutine
// starts the next one: it takes every queued call (up to MaxGroupSize),
// begins and waits for the lock while the first commits, and once it has
// the lock takes the calls that queued meanwhile too; and so on until the
// queue is empty. (The
// flags that keep one committer ahead are only for efficiency: two
// transactions writing at once would still be ordered by the lock.)
//
// In the transaction, all callers' events go into one multi-row INSERT
// (in caller order, so each gets its own notification IDs), then each
// caller's tracking record. If that meets an integrity error, the
// transaction is rolled back and done again with a savepoint per caller, so
// that exactly the conflicting callers get ErrIntegrity and the others
// commit.
//
// Contexts: a queued caller whose context ends returns at once, and is left
// out of the group. The group's transaction waits for the append lock
// until it has it or every one of its callers has given up (then it rolls
// back). Once the lock is held, the calls still live are claimed: from then
// on their callers wait for the group's outcome, which is at most an
// INSERT and a COMMIT away. The leader's transaction runs under the
// leader's own context until calls join it: it is disarmed first, so that
// the leader's context can no longer fail the joined calls, and the leader
// too then waits for the outcome.

// call states
const (
	callQueued    int32 = iota // waiting for a transaction
	callClaimed                // its rows are being written: it gets the transaction's outcome
	callAbandoned              // its caller gave up first: nothing of it is written
)

type groupCall struct {
	ctx      context.Context
	events   []StoredEvent
	tracking *Tracking
	ids      []int64
	err      error
	state    atomic.Int32
	grp      *group        // the group that took it, under groupCommitter.mu
	done     chan struct{} // closed when ids and err are set
}

// group is one transaction's calls, cancelled when all of them give up.
type group struct {
	live   int // calls not abandoned, under groupCommitter.mu
	cancel context.CancelFunc
}

type groupCommitter struct {
	groups, calls atomic.Int64

	mu       sync.Mutex
	queue    []*groupCall
	busy     bool // a transaction is running or about to: one owner at a time
	maxSize  int
	maxDelay time.Duration
}

// insertGrouped commits a call alone if no transaction is running, or
// queues it for the committer and waits for its outcome or its context.
func (r *SQLRecorder) insertGrouped(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	g := r.group
	c := &groupCall{ctx: ctx, events: events, tracking: tracking}
	g.mu.Lock()
	if !g.busy && g.maxDelay == 0 {
		g.busy = true
		g.mu.Unlock()
		if !r.commitLeader(c) {
			r.handOff()
		}
		return c.ids, c.err
	}
	c.done = make(chan struct{})
	g.queue = append(g.queue, c)
	start := !g.busy
	g.busy = true
	g.mu.Unlock()
	if start {
		go r.runGroups()
	}
	select {
	case <-c.done:
		return c.ids, c.err
	case <-ctx.Done():
	}
	if g.abandon(c) {
		return nil, r.ctxError(ctx, "insert events")
	}
	<-c.done
	return c.ids, c.err
}

// commitLeader writes a call that found no transaction running, on its
// caller's goroutine and under its context, as a call alone: the context
// bounds the waits for BEGIN and the lock. Calls that queued meanwhile join
// its transaction once the lock is held; the caller's context is disarmed
// first (the transaction can no longer be cancelled by it), so that no
// joined call is ever failed by another caller's context. It reports
// whether it started the committer of the next group.
func (r *SQLRecorder) commitLeader(c *groupCall) (handed bool) {
	c.state.Store(callClaimed)
	all := r.commitGroup(c.ctx, []*groupCall{c}, true, func() { handed = r.startNext() })
	for _, j := range all[1:] {
		close(j.done)
	}
	return handed
}

// count adds a transaction's committed calls to the stats.
func (g *groupCommitter) count(calls []*groupCall) {
	n := int64(0)
	for _, c := range calls {
		if c.err == nil {
			n++
		}
	}
	if n > 0 {
		g.groups.Add(1)
		g.calls.Add(n)
	}
}

// queued reports whether calls are waiting for a transaction.
func (g *groupCommitter) queued() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue) > 0
}

// handOff, after a caller committed alone without starting a successor,
// starts the committer for calls that queued meanwhile, or marks the
// recorder idle.
func (r *SQLRecorder) handOff() {
	g := r.group
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.busy = false
		return
	}
	go r.runGroups()
}

// startNext runs just before a transaction's COMMIT: if calls are queued,
// it starts the committer of the next group now, so that its BEGIN and
// lock wait overlap this COMMIT (the lock is granted as this transaction
// ends), and reports true: the recorder's busy state is then the new
// committer's to clear.
func (r *SQLRecorder) startNext() bool {
	g := r.group
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		return false
	}
	go r.runGroups()
	return true
}

// join takes queued calls into a transaction that holds the lock, up to
// MaxGroupSize calls in all, claiming them.
func (r *SQLRecorder) join(have int) []*groupCall {
	g := r.group
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*groupCall
	for len(g.queue) > 0 && have+len(out) < g.maxSize {
		c := g.queue[0]
		g.queue = g.queue[1:]
		if c.state.CompareAndSwap(callQueued, callClaimed) {
			out = append(out, c)
		}
	}
	return out
}

// abandon takes a call whose context ended out of its group, if its rows
// are not being written yet, and reports whether it did.
func (g *groupCommitter) abandon(c *groupCall) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !c.state.CompareAndSwap(callQueued, callAbandoned) {
		return false
	}
	if c.grp == nil {
		if i := slices.Index(g.queue, c); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
		}
		return true
	}
	if c.grp.live--; c.grp.live == 0 {
		c.grp.cancel()
	}
	return true
}

// runGroups commits queued calls, a group at a time, until none is left or
// it has started the committer of the next group ahead (startNext), which
// then owns the queue.
func (r *SQLRecorder) runGroups() {
	g := r.group
	for {
		if g.maxDelay > 0 {
			g.mu.Lock()
			n := len(g.queue)
			g.mu.Unlock()
			if n < g.maxSize {
				time.Sleep(g.maxDelay)
			}
		}
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.busy = false
			g.mu.Unlock()
			return
		}
		n := min(len(g.queue), g.maxSize)
		batch := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		grp := &group{live: n}
		ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
		grp.cancel = cancel
		for _, c := range batch {
			c.grp = grp
		}
		g.mu.Unlock()
		handed := false
		all := r.commitGroup(ctx, batch, false, func() { handed = r.startNext() })
		cancel()
		for _, c := range all {
			close(c.done)
		}
		if handed {
			return
		}
	}
}

// commitGroup writes a group's calls, setting each claimed call's ids or
// err, and returns them with the calls that joined. ctx is cancelled when
// every call has been abandoned, or (leader) is the one caller's context.
func (r *SQLRecorder) commitGroup(gctx context.Context, batch []*groupCall, leader bool, preCommit func()) (all []*groupCall) {
	var err error
	if r.observer != nil {
		n := 0
		for _, c := range batch {
			n += len(c.events)
		}
		_, end := Observe(gctx, r.observer, Op{Kind: OpGroupCommit, Table: r.events.String(), Calls: len(batch), Events: n})
		defer func() { end(groupResult(all, err)) }()
	}
	ctx, disarm, release := cancelUntil(gctx)
	defer release()
	var joined []*groupCall
	hooks := &txHooks{
		join: func(have int) []*groupCall {
			joined = r.join(have)
			return joined
		},
		preCommit:   preCommit,
		disarmFirst: leader,
	}
	defer func() { all = append(batch, joined...) }()
	err = r.writeTx(ctx, disarm, batch, false, hooks)
	claimed := batch[:0:0]
	for _, c := range append(batch[:len(batch):len(batch)], joined...) {
		if c.state.Load() == callClaimed {
			claimed = append(claimed, c)
		}
	}
	defer r.group.count(claimed)
	switch {
	case err == nil || errors.Is(err, errAbandoned):
		return
	case len(claimed) > 1 && errors.Is(err, ErrIntegrity):
		// Someone conflicted: redo with a savepoint per caller. Every call
		// is claimed, so nothing cancels this transaction.
		for _, c := range claimed {
			c.ids, c.err = nil, nil
		}
		err = r.writeTx(ctx, func() error { return nil }, claimed, true, nil)
		if err == nil {
			return
		}
	}
	for _, c := range claimed {
		if c.err == nil || !errors.Is(c.err, ErrIntegrity) {
			c.ids, c.err = nil, r.callError(c, err)
		}
	}
	// Calls that were never claimed were abandoned: their callers have
	// returned already.
	return
}
