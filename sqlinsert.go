package eventsourcing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// InsertEvents records the events and, if tracking is not nil, the tracking
// record in one transaction, returning the events' notification IDs. A
// duplicate (originator ID, version) or a tracking ID that is not higher
// than the last recorded is an *[IntegrityError]; nothing of the batch is
// written on any error.
//
// The context bounds every wait: for the recorder's turn to write, for the
// database's write lock and for the statements. If it ends before the
// transaction reaches COMMIT, nothing is written and the error wraps the
// context's error; except that once the transaction holds the lock and
// other calls share it (group commit), the call waits for the shared
// outcome, at most an INSERT and a COMMIT away, and reports it truly.
// COMMIT itself is not cancelled, so an error never
// reports a batch that was committed: a nil error means every event is
// recorded under the returned IDs, and an error means none is. If the
// connection is lost during COMMIT, the recorder finds out whether the
// transaction committed (on PostgreSQL: under the append lock, which the
// lost transaction held until it ended) and reports that: the IDs, or a
// transient error saying nothing was written. Only if that check fails
// too (the database unreachable for 10 seconds, the caller's context
// ending first when its call was alone in the transaction, or a dialect
// with no append lock) is the outcome unknown: the transient error then
// says so and why, and a retry may meet ErrIntegrity against the first
// attempt's events.
func (r *SQLRecorder) InsertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	return r.insertEvents(ctx, events, tracking)
}

func (r *SQLRecorder) insertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	if tracking != nil && r.snapshots {
		return nil, &DatabaseError{Kind: ErrProgramming, Op: "insert events", Table: r.events.String(), Err: errors.New("a snapshots recorder keeps no tracking records")}
	}
	if tracking != nil {
		if err := checkTrackingRecord(tracking); err != nil {
			return nil, err
		}
	}
	if len(events) == 0 && tracking == nil {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, r.ctxError(ctx, "insert events")
	}
	var ids []int64
	var err error
	if r.group != nil {
		ids, err = r.insertGrouped(ctx, events, tracking)
	} else {
		c := &groupCall{ctx: ctx, events: events, tracking: tracking}
		r.commitAlone(c)
		ids, err = c.ids, c.err
	}
	if err != nil {
		r.conflictDetail(ctx, events, err)
		return nil, err
	}
	return ids, nil
}

// ctxError is the error of a call whose context ended before its events
// were written.
func (r *SQLRecorder) ctxError(ctx context.Context, op string) error {
	return &DatabaseError{Kind: ErrOperational, Op: op, Table: r.events.String(), Err: context.Cause(ctx)}
}

// acquireWriter takes the single-writer turn (SQLite), or returns the
// context's error.
func (r *SQLRecorder) acquireWriter(ctx context.Context) error {
	if r.writeMu == nil {
		return nil
	}
	select {
	case r.writeMu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (r *SQLRecorder) releaseWriter() {
	if r.writeMu != nil {
		<-r.writeMu
	}
}

// cancelUntil returns a context that is cancelled with parent until disarm
// is called, and never after a disarm that returns nil. disarm returns the
// parent's error if the parent ended first. release frees the context. A
// transaction begun under it can be cancelled up to its point of no
// return, and its COMMIT cannot be.
func cancelUntil(parent context.Context) (ctx context.Context, disarm func() error, release context.CancelFunc) {
	if parent.Done() == nil {
		// Never cancelled (context.Background): nothing to disarm, and no
		// Done channel for database/sql and the driver to watch with
		// goroutines of their own.
		return parent, noErr, noCancel
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { cancel(context.Cause(parent)) })
	disarm = func() error {
		// stop reports false once the parent has ended (even if cancel has
		// not run yet): the parent's cause is then set.
		if !stop() {
			return context.Cause(parent)
		}
		return nil
	}
	return ctx, disarm, func() { stop(); cancel(nil) }
}

func noErr() error { return nil }
func noCancel()    {}

// commitAlone writes one call in its own transaction, on the caller's
// goroutine, honouring its context until COMMIT (group commit off).
func (r *SQLRecorder) commitAlone(c *groupCall) {
	if r.observer != nil {
		_, end := Observe(c.ctx, r.observer, Op{Kind: OpGroupCommit, Table: r.events.String(), Calls: 1, Events: len(c.events)})
		defer func() { end(groupResult([]*groupCall{c}, c.err)) }()
	}
	c.state.Store(callClaimed)
	ctx, disarm, release := cancelUntil(c.ctx)
	defer release()
	if err := r.writeTx(ctx, disarm, []*groupCall{c}, false, nil); err != nil {
		c.ids = nil
		if c.err == nil {
			c.err = r.callError(c, err)
		}
	}
}

// groupResult is what an Observer is told of a transaction: the events
// written, the highest ID, and err.
func groupResult(calls []*groupCall, err error) OpResult {
	res := OpResult{Err: err}
	if errors.Is(err, errAbandoned) {
		res.Err = nil
	}
	for _, c := range calls {
		if c.state.Load() == callClaimed && c.err == nil && err == nil {
			res.Calls++
			res.Rows += len(c.events)
			if len(c.ids) > 0 {
				res.LastID = max(res.LastID, c.ids[len(c.ids)-1])
			}
		}
	}
	return res
}

// callError makes the error a call returns from its transaction's error.
func (r *SQLRecorder) callError(c *groupCall, err error) error {
	if errors.Is(err, errCommitLost) {
		return err // it says what is known of the outcome
	}
	if c.ctx.Err() != nil && !errors.Is(err, ErrIntegrity) {
		return r.ctxError(c.ctx, "insert events")
	}
	return r.dbError(c.ctx, "insert events", r.events, err)
}

// txHooks lets group commit take part in a write transaction: join takes
// calls that queued while the lock was awaited (given how many the
// transaction holds), and preCommit runs just before COMMIT, when the next
// group may start waiting for the lock.
type txHooks struct {
	join      func(have int) []*groupCall
	preCommit func()
	// disarmFirst: the transaction runs under one caller's own context,
	// disarmed before any call joins (and only if one is queued).
	disarmFirst bool
}

// errAbandoned: every caller of a group gave up before its rows were
// inserted.
var errAbandoned = errors.New("every caller's context ended")

// writeTx writes calls in one transaction under ctx, which disarm makes
// uncancellable at the point of no return (just before COMMIT). Calls still
// queued are claimed after the append lock is taken, and calls whose callers
// gave up by then are left out. With savepoints, each call is inserted under
// its own savepoint and a call that conflicts gets its own *IntegrityError
// while the others commit; without, the first error fails the transaction.
func (r *SQLRecorder) writeTx(ctx context.Context, disarm func() error, calls []*groupCall, savepoints bool, hooks *txHooks) (err error) {
	n, tracking := 0, false
	for _, c := range calls {
		n += len(c.events)
		tracking = tracking || c.tracking != nil
	}
	r.prepareInserts(ctx, n, tracking)
	if err := r.acquireWriter(ctx); err != nil {
		return err
	}
	defer r.releaseWriter()
	tx, err := r.begin(ctx)
	if err != nil {
		return r.dbError(ctx, "begin", r.events, err)
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback()
		}
	}()
	if err := r.lockForAppend(ctx, tx, n); err != nil {
		return err
	}
	live := calls[:0:0]
	for _, c := range calls {
		if c.state.CompareAndSwap(callQueued, callClaimed) || c.state.Load() == callClaimed {
			live = append(live, c)
		}
	}
	if hooks != nil && hooks.join != nil && (n > 0 || len(r.lockSQL) == 0) {
		// The lock is held (or none is needed): calls that queued while
		// it was awaited join this transaction, claimed at once.
		switch {
		case !hooks.disarmFirst:
			live = append(live, hooks.join(len(live))...)
		case r.group.queued():
			if err := disarm(); err != nil {
				return err
			}
			disarm = noErr
			live = append(live, hooks.join(len(live))...)
		}
	}
	if len(live) == 0 {
		return errAbandoned
	}
	if savepoints {
		err = r.insertSavepoints(ctx, tx, live)
	} else {
		err = r.insertCombined(ctx, tx, live)
	}
	if err != nil {
		return err
	}
	if err := disarm(); err != nil {
		return err
	}
	if hooks != nil && hooks.preCommit != nil {
		hooks.preCommit()
	}
	if err := tx.Commit(); err != nil {
		if !connectionLost(err) {
			return r.dbError(ctx, "commit", r.events, err)
		}
		if ok, checkErr := r.commitOutcome(live); !ok {
			return r.commitLost(err, checkErr)
		}
	}
	committed = true
	r.commits.broadcast()
	return nil
}

// begin begins a write transaction. On a single-writer database, BEGIN
// waits for the write lock in SQLite's busy handler, which no context
// interrupts: it runs on a goroutine of its own, so that the caller can
// leave when its context ends, and the transaction it then gets is rolled
// back.
func (r *SQLRecorder) begin(ctx context.Context) (*sql.Tx, error) {
	if r.writeMu == nil || ctx.Done() == nil {
		return r.db.BeginTx(ctx, nil)
	}
	type result struct {
		tx  *sql.Tx
		err error
	}
	ch := make(chan result, 1)
	var taken atomic.Bool // the first to set it owns the outcome
	go func() {
		tx, err := r.db.BeginTx(ctx, nil)
		if !taken.CompareAndSwap(false, true) {
			if err == nil {
				tx.Rollback() // the caller has left
			}
			return
		}
		ch <- result{tx, err}
	}()
	select {
	case res := <-ch:
		return res.tx, res.err
	case <-ctx.Done():
	}
	if !taken.CompareAndSwap(false, true) {
		// BEGIN returned just now and its result is on its way.
		if res := <-ch; res.err == nil {
			res.tx.Rollback()
		}
	}
	return nil, context.Cause(ctx)
}

// lockForAppend takes the dialect's append lock before n events are
// inserted.
func (r *SQLRecorder) lockForAppend(ctx context.Context, tx *sql.Tx, n int) error {
	if r.snapshots || n == 0 {
		return nil
	}
	for _, s := range r.lockSQL {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return r.dbError(ctx, "lock events table", r.events, err)
		}
	}
	return nil
}

// insertCombined inserts every call's events with one statement (or a few),
// then their tracking records, then notifies.
func (r *SQLRecorder) insertCombined(ctx context.Context, tx *sql.Tx, calls []*groupCall) error {
	all := calls[0].events
	if len(calls) > 1 {
		n := 0
		for _, c := range calls {
			n += len(c.events)
		}
		all = make([]StoredEvent, 0, n)
		for _, c := range calls {
			all = append(all, c.events...)
		}
	}
	ids, err := r.insertRows(ctx, tx, all)
	if err != nil {
		return err
	}
	tracked := 0
	for _, c := range calls {
		if ids != nil {
			c.ids, ids = ids[:len(c.events):len(c.events)], ids[len(c.events):]
		}
		if c.tracking != nil {
			if err := r.insertTracking(ctx, tx, *c.tracking); err != nil {
				return err
			}
			tracked++
		}
	}
	return r.notify(ctx, tx, len(all), tracked)
}

// insertSavepoints inserts each call under its own savepoint, rolling back
// to it on an integrity error, which becomes that call's error.
func (r *SQLRecorder) insertSavepoints(ctx context.Context, tx *sql.Tx, calls []*groupCall) error {
	inserted, tracked := 0, 0
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
			c.ids, c.err = nil, err
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
				return err
			}
			continue
		}
		c.ids = ids
		inserted += len(c.events)
		if c.tracking != nil {
			tracked++
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp); err != nil {
			return err
		}
	}
	return r.notify(ctx, tx, inserted, tracked)
}

// notify runs the dialect's notify statement (waking subscribers and
// WaitTracking in other sessions), last in a transaction that inserted
// events and recorded tracked tracking records. Where the dialect batches
// statements, a transaction with events sent it with its lock statements
// already; one that records tracking records alone takes no lock, and
// sends it here.
func (r *SQLRecorder) notify(ctx context.Context, tx *sql.Tx, events, tracked int) error {
	if r.notifySQL == "" || (events == 0 && tracked == 0) || (events > 0 && r.notifyLock) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, r.notifySQL); err != nil {
		return r.dbError(ctx, "notify", r.events, err)
	}
	return nil
}

func (r *SQLRecorder) insertStatement(rows int) string {
	if s, ok := r.insertSQL.Load(rows); ok {
		return s.(string)
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(r.qEvents)
	b.WriteString(" (originator_id, originator_version, topic, state) VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		p := 4*i + 1
		b.WriteString("(" + r.d.Placeholder(p) + "," + r.d.Placeholder(p+1) + "," + r.d.Placeholder(p+2) + "," + r.d.Placeholder(p+3) + ")")
	}
	if !r.snapshots && !r.lastInsertID {
		b.WriteString(" RETURNING ")
		b.WriteString(r.nid)
	}
	s := b.String()
	r.insertSQL.Store(rows, s)
	return s
}

// insertRows inserts events with multi-row INSERT statements and returns
// their notification IDs in order. IDs are assigned in row order under the
// append lock, so sorting what RETURNING gives restores the order.
func (r *SQLRecorder) insertRows(ctx context.Context, tx *sql.Tx, events []StoredEvent) ([]int64, error) {
	var ids []int64
	if !r.snapshots {
		ids = make([]int64, 0, len(events))
	}
	args := make([]any, 0, 4*min(len(events), r.maxRows))
	for len(events) > 0 {
		chunk := events[:min(len(events), r.maxRows)]
		events = events[len(chunk):]
		args = args[:0]
		for _, e := range chunk {
			state := e.State
			if state == nil {
				state = []byte{}
			}
			args = append(args, r.d.UUIDArg(e.OriginatorID), e.OriginatorVersion, e.Topic, state)
		}
		q := r.insertStatement(len(chunk))
		if r.snapshots || r.lastInsertID {
			res, err := r.txExec(ctx, tx, q, args...)
			if err != nil {
				return nil, r.dbError(ctx, "insert events", r.events, err)
			}
			if r.snapshots {
				continue
			}
			// One writer at a time: the rows of one INSERT took
			// consecutive IDs ending at the last one inserted.
			last, err := res.LastInsertId()
			if err != nil {
				return nil, r.dbError(ctx, "insert events", r.events, err)
			}
			for i := range int64(len(chunk)) {
				ids = append(ids, last-int64(len(chunk))+1+i)
			}
			continue
		}
		rows, err := r.txQuery(ctx, tx, q, args...)
		if err != nil {
			return nil, r.dbError(ctx, "insert events", r.events, err)
		}
		start := len(ids)
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, r.dbError(ctx, "insert events", r.events, err)
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return nil, r.dbError(ctx, "insert events", r.events, err)
		}
		if err := rows.Err(); err != nil {
			return nil, r.dbError(ctx, "insert events", r.events, err)
		}
		if len(ids)-start != len(chunk) {
			return nil, &DatabaseError{Kind: ErrOperational, Op: "insert events", Table: r.events.String(),
				Err: fmt.Errorf("%d notification IDs returned for %d rows", len(ids)-start, len(chunk))}
		}
		slices.Sort(ids[start:])
	}
	return ids, nil
}

func (r *SQLRecorder) insertTracking(ctx context.Context, tx *sql.Tx, t Tracking) error {
	conflict := func(err error) error {
		return &IntegrityError{Table: r.tracking.String(), Tracking: &t, Err: err}
	}
	if r.multiRow {
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, r.maxTrackSQL, t.ApplicationName).Scan(&last); err != nil {
			return r.dbError(ctx, "select tracking", r.tracking, err)
		}
		if last.Valid && t.lowest() <= last.Int64 {
			return conflict(fmt.Errorf("last tracked notification of %q is %d", t.ApplicationName, last.Int64))
		}
	}
	args := []any{t.ApplicationName, t.NotificationID}
	if !r.multiRow {
		args = append(args, t.lowest())
	}
	res, err := r.txExec(ctx, tx, r.trackSQL, args...)
	if err != nil {
		if r.d.Classify(err) == ErrIntegrity {
			return conflict(err)
		}
		return r.dbError(ctx, "insert tracking", r.tracking, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return conflict(nil)
	}
	return nil
}

// conflictDetail fills in which event conflicted, when err is an
// *IntegrityError about events that does not say: a duplicate within the
// batch, or the first event of the batch already recorded.
func (r *SQLRecorder) conflictDetail(ctx context.Context, events []StoredEvent, err error) {
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Tracking != nil || ie.OriginatorID != uuid.Nil || len(events) == 0 {
		return
	}
	if id, v, ok := duplicateInBatch(events); ok {
		ie.OriginatorID, ie.Version = id, v
		return
	}
	// Look the batch's versions up, one query per aggregate, briefly.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	byAgg := map[uuid.UUID][2]int64{}
	var order []uuid.UUID
	for _, e := range events {
		b, ok := byAgg[e.OriginatorID]
		if !ok {
			order = append(order, e.OriginatorID)
			b = [2]int64{e.OriginatorVersion, e.OriginatorVersion}
		}
		byAgg[e.OriginatorID] = [2]int64{min(b[0], e.OriginatorVersion), max(b[1], e.OriginatorVersion)}
	}
	for _, id := range order {
		b := byAgg[id]
		stored, err := r.SelectEvents(ctx, id, &Query{GTE: b[0], LTE: b[1]})
		if err != nil {
			return
		}
		for _, e := range events {
			if e.OriginatorID != id {
				continue
			}
			if _, found := slices.BinarySearchFunc(stored, e.OriginatorVersion, func(s StoredEvent, v int64) int {
				return int(min(max(s.OriginatorVersion-v, -1), 1))
			}); found {
				ie.OriginatorID, ie.Version = id, e.OriginatorVersion
				return
			}
		}
	}
}

// duplicateInBatch returns the first (originator ID, version) that appears
// twice in events.
func duplicateInBatch(events []StoredEvent) (uuid.UUID, int64, bool) {
	type key struct {
		id uuid.UUID
		v  int64
	}
	seen := make(map[key]struct{}, len(events))
	for _, e := range events {
		k := key{e.OriginatorID, e.OriginatorVersion}
		if _, dup := seen[k]; dup {
			return e.OriginatorID, e.OriginatorVersion, true
		}
		seen[k] = struct{}{}
	}
	return uuid.Nil, 0, false
}
