package eventsourcing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
// DB.Batch does. The first caller to find no transaction running becomes
// the leader: it takes the callers queued (up to MaxGroupSize), commits
// them together, hands each its own result, and passes leadership to the
// next queued caller. A caller alone pays no delay.
//
// In the transaction, all callers' events go into one multi-row INSERT
// (in caller order, so each gets its own notification IDs), then each
// caller's tracking record. If that meets an integrity error, the
// transaction is rolled back and done again with a savepoint per caller, so
// that exactly the conflicting callers get ErrIntegrity and the others
// commit.

type groupCall struct {
	ctx      context.Context
	events   []StoredEvent
	tracking *Tracking
	ids      []int64
	err      error
	// wake receives false when the call is done, true when it must lead.
	wake chan bool
}

type groupCommitter struct {
	groups, calls atomic.Int64

	mu       sync.Mutex
	queue    []*groupCall
	leading  bool
	maxSize  int
	maxDelay time.Duration
}

// insertGrouped queues a call and waits for its result, leading the group
// when it is its turn.
func (r *SQLRecorder) insertGrouped(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	g := r.group
	c := &groupCall{ctx: ctx, events: events, tracking: tracking, wake: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.leading
	if lead {
		g.leading = true
	}
	g.mu.Unlock()
	if !lead {
		lead = <-c.wake
	}
	if lead {
		r.lead(c)
	}
	return c.ids, c.err
}

// lead commits groups until the leader's own call is done, then passes
// leadership to the first queued call, if any.
func (r *SQLRecorder) lead(self *groupCall) {
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
		n := min(len(g.queue), g.maxSize)
		batch := g.queue[:n:n]
		g.queue = g.queue[n:]
		g.mu.Unlock()
		r.commitGroup(batch)
		selfDone := false
		for _, c := range batch {
			if c == self {
				selfDone = true
			} else {
				c.wake <- false
			}
		}
		if selfDone {
			break
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	g.queue[0].wake <- true
}

// commitGroup writes a group's calls, setting each call's ids or err.
func (r *SQLRecorder) commitGroup(batch []*groupCall) {
	live := batch[:0:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = &DatabaseError{Kind: ErrOperational, Op: "insert events", Table: r.events.String(), Err: err}
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	r.group.groups.Add(1)
	r.group.calls.Add(int64(len(live)))
	// The group's transaction is not cancelled with any one caller's
	// context: a caller whose context ends while its group commits gets the
	// group's outcome.
	ctx := context.WithoutCancel(live[0].ctx)
	if len(live) == 1 {
		c := live[0]
		c.err = r.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			c.ids, err = r.insertInTx(ctx, tx, c.events, c.tracking)
			return err
		})
		if c.err != nil {
			c.ids, c.err = nil, r.dbError(c.ctx, "insert events", r.events, c.err)
		} else {
			r.commits.broadcast()
		}
		return
	}
	err := r.inTx(ctx, func(tx *sql.Tx) error { return r.insertCombined(ctx, tx, live) })
	if err == nil {
		r.commits.broadcast()
		return
	}
	if !errors.Is(err, ErrIntegrity) {
		for _, c := range live {
			c.ids, c.err = nil, r.dbError(c.ctx, "insert events", r.events, err)
		}
		return
	}
	// Someone conflicted: redo with a savepoint per caller.
	for _, c := range live {
		c.ids, c.err = nil, nil
	}
	err = r.inTx(ctx, func(tx *sql.Tx) error { return r.insertSavepoints(ctx, tx, live) })
	if err == nil {
		r.commits.broadcast()
	} else {
		for _, c := range live {
			if c.err == nil || !errors.Is(c.err, ErrIntegrity) {
				c.ids, c.err = nil, r.dbError(c.ctx, "insert events", r.events, err)
			}
		}
	}
}

// insertCombined inserts every call's events with one statement (or a few)
// and then their tracking records.
func (r *SQLRecorder) insertCombined(ctx context.Context, tx *sql.Tx, calls []*groupCall) error {
	n := 0
	for _, c := range calls {
		n += len(c.events)
	}
	all := make([]StoredEvent, 0, n)
	for _, c := range calls {
		all = append(all, c.events...)
	}
	if err := r.lockForAppend(ctx, tx, n); err != nil {
		return err
	}
	ids, err := r.insertRows(ctx, tx, all)
	if err != nil {
		return err
	}
	for _, c := range calls {
		if ids != nil {
			c.ids, ids = ids[:len(c.events):len(c.events)], ids[len(c.events):]
		}
		if c.tracking != nil {
			if err := r.insertTracking(ctx, tx, *c.tracking); err != nil {
				return err
			}
		}
	}
	return r.notify(ctx, tx, n)
}

// insertSavepoints inserts each call under its own savepoint, rolling back
// to it on an integrity error, which becomes that call's error.
func (r *SQLRecorder) insertSavepoints(ctx context.Context, tx *sql.Tx, calls []*groupCall) error {
	n := 0
	for _, c := range calls {
		n += len(c.events)
	}
	if err := r.lockForAppend(ctx, tx, n); err != nil {
		return err
	}
	for i, c := range calls {
		sp := fmt.Sprintf("es_call_%d", i)
		if _, err := tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
			return err
		}
		ids, err := r.insertRows(ctx, tx, c.events)
		if err == nil && c.tracking != nil {
			err = r.insertTracking(ctx, tx, *c.tracking)
		}
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				return err
			}
			c.err = err
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
				return err
			}
			continue
		}
		c.ids = ids
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp); err != nil {
			return err
		}
	}
	inserted := 0
	for _, c := range calls {
		if c.err == nil {
			inserted += len(c.events)
		}
	}
	return r.notify(ctx, tx, inserted)
}
