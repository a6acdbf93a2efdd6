package eventsourcing

// One SQL write transaction (sqlTx): BEGIN, lock, insert with a savepoint
// per call, NOTIFY, COMMIT.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// The steps of a write transaction on an SQL database, as group commit
// (groupcommit.go) runs them: beginTx (the writer turn, BEGIN, the lock
// statements), sqlTx.insert (the calls' rows, with or without a savepoint
// each), sqlTx.commit (COMMIT, and the check of a COMMIT whose outcome is
// open: sqlcommit.go).

var _ txBackend = (*SQLRecorder)(nil)

// sqlTx is a write transaction of an SQLRecorder that holds the append
// lock (if it needs one) and, on a single-writer database, the writer
// turn, until commit or rollback.
type sqlTx struct {
	r      *SQLRecorder
	tx     *sql.Tx
	locked bool // the lock statements ran (with the NOTIFY, where notifyLock)
	ended  bool // committed or rolled back, and the writer turn released
}

// beginTx takes the writer turn (SQLite), begins a transaction and runs
// the lock statements if it will insert events, or (multi-row tracking)
// tracking records alone: the append lock also serialises the check of a
// tracking record's First against the records stored, which is a read
// and an insert, between two writers of one application name.
func (r *SQLRecorder) beginTx(ctx context.Context, events int, tracking bool) (writeTx, error) {
	if f := r.fn.on.Load(); f != nil {
		return r.beginFunc(ctx, f) // one call of the append function (sqlfunc.go)
	}
	r.prepareInserts(ctx, events, tracking)
	if err := r.acquireWriter(ctx); err != nil {
		return nil, err
	}
	tx, err := r.begin(ctx)
	if err != nil {
		r.releaseWriter()
		return nil, r.dbError(ctx, "begin", r.events, err)
	}
	t := &sqlTx{r: r, tx: tx}
	if !r.snapshots && (events > 0 || tracking && r.multiRow) {
		for _, s := range r.lockSQL {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				t.rollback()
				return nil, r.dbError(ctx, "lock events table", r.events, err)
			}
		}
		t.locked = true
	}
	return t, nil
}

// rollback rolls the transaction back, unless it has ended, and releases
// the writer turn.
func (t *sqlTx) rollback() {
	if t.ended {
		return
	}
	t.ended = true
	t.tx.Rollback()
	t.r.releaseWriter()
}

// insert writes the calls' rows: every call's events with one multi-row
// INSERT (or a few) and then their tracking records, or with savepoints
// each call under its own, rolled back to on an integrity error, which
// becomes that call's error. Then it notifies, unless the lock statements
// did.
func (t *sqlTx) insert(ctx context.Context, calls []*groupCall, savepoints bool) (ids [][]int64, errs []error, err error) {
	if savepoints {
		return t.insertSavepoints(ctx, calls)
	}
	r := t.r
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
	flat, err := r.insertRows(ctx, t.tx, all)
	if err != nil {
		return nil, nil, err
	}
	ids = make([][]int64, len(calls))
	tracked := 0
	for i, c := range calls {
		if flat != nil {
			ids[i], flat = flat[:len(c.events):len(c.events)], flat[len(c.events):]
		}
		if c.tracking != nil {
			if err := r.insertTracking(ctx, t.tx, *c.tracking); err != nil {
				return nil, nil, err
			}
			tracked++
		}
	}
	return ids, nil, t.notify(ctx, len(all), tracked)
}

func (t *sqlTx) insertSavepoints(ctx context.Context, calls []*groupCall) (ids [][]int64, errs []error, err error) {
	r := t.r
	ids, errs = make([][]int64, len(calls)), make([]error, len(calls))
	inserted, tracked := 0, 0
	for i, c := range calls {
		sp := fmt.Sprintf("es_call_%d", i)
		if _, err := t.tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
			return nil, nil, r.dbError(ctx, "savepoint", r.events, err)
		}
		got, err := r.insertRows(ctx, t.tx, c.events)
		if err == nil && c.tracking != nil {
			err = r.insertTracking(ctx, t.tx, *c.tracking)
		}
		if err != nil {
			if !errors.Is(err, ErrIntegrity) {
				return nil, nil, err
			}
			errs[i] = err
			if _, err := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); err != nil {
				return nil, nil, r.dbError(ctx, "rollback to savepoint", r.events, err)
			}
			continue
		}
		ids[i] = got
		inserted += len(c.events)
		if c.tracking != nil {
			tracked++
		}
		if _, err := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp); err != nil {
			return nil, nil, r.dbError(ctx, "release savepoint", r.events, err)
		}
	}
	return ids, errs, t.notify(ctx, inserted, tracked)
}

// notify runs the dialect's notify statement (waking subscribers and
// WaitTracking in other sessions) in a transaction that inserted events
// or recorded tracking records, unless the lock statements carried it.
func (t *sqlTx) notify(ctx context.Context, events, tracked int) error {
	r := t.r
	if r.notifySQL == "" || (events == 0 && tracked == 0) || (t.locked && r.notifyLock) {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx, r.notifySQL); err != nil {
		return r.dbError(ctx, "notify", r.events, err)
	}
	return nil
}

// commit commits the transaction. COMMIT is never cancelled. If it fails
// with an error that does not prove a rollback (a deferred constraint's
// integrity error does), the server may have committed all the same (a
// connection lost with the reply, a terminated backend, a pooler's error):
// commitOutcome then finds out, looking for p's rows.
func (t *sqlTx) commit(p commitProbe) error {
	r := t.r
	t.ended = true
	defer r.releaseWriter()
	err := t.tx.Commit()
	if err == nil {
		return nil
	}
	if r.kind(err) == ErrIntegrity {
		return r.dbError(context.Background(), "commit", r.events, err)
	}
	committed, checkErr := r.commitOutcome(p, t.locked)
	if committed {
		return nil
	}
	return r.commitLost(err, checkErr)
}

// callError makes the error a call returns from its transaction's error.
func (r *SQLRecorder) callError(c *groupCall, err error) error {
	switch {
	case errors.Is(err, errCommitLost), errors.Is(err, ErrOutcomeUnknown):
		return err // it says what is known of the outcome
	case errors.Is(err, errAbandonedCall):
		return err
	case c.ctx.Err() != nil && !errors.Is(err, ErrIntegrity):
		return r.ctxError(c.ctx, "insert events")
	}
	return r.dbError(c.ctx, "insert events", r.events, err)
}

// observe tells the recorder's Observer of a transaction: calls and
// events as it starts; as it ends, the calls told their events are
// written, their events and highest ID, and the transaction's error.
func (r *SQLRecorder) observe(ctx context.Context, calls, events int) func([]*groupCall, error) {
	if r.observer == nil {
		return func([]*groupCall, error) {}
	}
	_, end := observe(ctx, r.observer, Op{Kind: OpGroupCommit, Table: r.events.String(), Calls: calls, Events: events})
	return func(claimed []*groupCall, err error) {
		res := OpResult{Err: err}
		if errors.Is(err, errAbandonedCall) {
			res.Err = nil
		}
		for _, c := range claimed {
			if c.state == callDelivered && c.err == nil {
				res.Calls++
				res.Rows += len(c.events)
				if len(c.ids) > 0 {
					res.LastID = max(res.LastID, c.ids[len(c.ids)-1])
				}
			}
		}
		end(res)
	}
}

// committed wakes this process's subscribers after a commit.
func (r *SQLRecorder) committed() { r.commits.broadcast() }

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
		if r.kind(err) == ErrIntegrity {
			return conflict(err)
		}
		return r.dbError(ctx, "insert tracking", r.tracking, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return conflict(nil)
	}
	return nil
}
