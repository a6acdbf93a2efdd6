package eventsourcing

// The append function: on a database whose dialect is an
// AppendFunctioner (PostgreSQL), a transaction of group commit is one
// statement, in autocommit mode, that calls a server-side function created
// by CreateTables next to the tables: it takes the append lock, inserts
// every call's events and tracking records, notifies, and commits, in one
// round trip. funcTx is that transaction, a writeTx like sqlTx (the
// transaction of BEGIN, lock statements, INSERT and COMMIT), which the
// recorder falls back to where the function does not exist or cannot be
// made. See docs/writes.md.

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Statuses of a call in the function's rows (see AppendFunction.Call).
const (
	funcOK = iota
	funcEventsConflict
	funcTrackingConflict
	funcTrackingUnique
)

// appendFunc is a recorder's append function, with what it knows of the
// connections it runs on.
type appendFunc struct {
	AppendFunction
	af AppendFunctioner

	mu   sync.Mutex
	pids map[any]int64 // server process IDs of driver connections the dialect cannot tell
}

// funcPath is what an SQLRecorder knows of its append function.
type funcPath struct {
	spec *appendFunc                // nil: none (turned off, snapshots, a dialect without)
	on   atomic.Pointer[appendFunc] // set once it is known to exist: appends use it
}

// appendFunction reports whether the recorder appends through the
// dialect's server-side function (one statement and round trip per
// transaction) rather than with BEGIN, lock statements, INSERT and
// COMMIT. It is decided when the recorder is made (the function exists)
// or by CreateTables (which creates it if it can).
func (r *SQLRecorder) appendFunction() bool { return r.fn.on.Load() != nil }

// initAppendFunction prepares the recorder's append function, unless it
// is off or the dialect has none, and uses it if it exists.
func (r *SQLRecorder) initAppendFunction(ctx context.Context, off bool) error {
	af, ok := r.d.(AppendFunctioner)
	if off || !ok || r.snapshots {
		return nil
	}
	events, tracking := r.events, r.tracking
	if events.Schema == "" {
		var s sql.NullString
		if err := r.db.QueryRowContext(ctx, af.CurrentSchemaQuery()).Scan(&s); err != nil {
			return r.dbError(ctx, "check append function", r.events, err)
		}
		if !s.Valid {
			return nil // no schema to create anything in
		}
		events.Schema, tracking.Schema = s.String, s.String
	}
	f := &appendFunc{AppendFunction: af.AppendFunction(events, tracking, r.multiRow), af: af}
	r.fn.spec = f
	var exists bool
	if err := r.db.QueryRowContext(ctx, f.Exists, f.Args...).Scan(&exists); err != nil {
		return r.dbError(ctx, "check append function", r.events, err)
	}
	if exists {
		r.fn.on.Store(f)
	}
	return nil
}

// missingAppendFunction returns the statements that create the append
// function, if the recorder has one that does not exist.
func (r *SQLRecorder) missingAppendFunction(ctx context.Context) ([]string, error) {
	f := r.fn.spec
	if f == nil || r.fn.on.Load() != nil {
		return nil, nil
	}
	var exists bool
	if err := r.db.QueryRowContext(ctx, f.Exists, f.Args...).Scan(&exists); err != nil {
		return nil, r.dbError(ctx, "check append function", r.events, err)
	}
	if exists {
		r.fn.on.Store(f)
		return nil, nil
	}
	return f.Create, nil
}

// createAppendFunction runs stmts (the append function's DDL) in tx under
// a savepoint, and reports whether they made it. If they fail (no CREATE
// privilege on the schema, a read-only session), the savepoint is rolled
// back to and the tables are created all the same: the recorder then
// appends without the function. Only an error rolling back to the
// savepoint is returned.
func (r *SQLRecorder) createAppendFunction(ctx context.Context, tx *sql.Tx, stmts []string) (bool, error) {
	if len(stmts) == 0 {
		return false, nil
	}
	const sp = "es_append_function"
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
		return false, err
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp); rerr != nil {
				return false, err
			}
			return false, nil
		}
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp); err != nil {
		return false, err
	}
	return true, nil
}

// funcTx is a transaction that is one call of the append function on a
// connection of its own: insert sends the call, which commits, and
// commit reports what it did.
type funcTx struct {
	r     *SQLRecorder
	f     *appendFunc
	conn  *sql.Conn
	pid   int64 // the connection's server process
	ended bool
}

var _ writeTx = (*funcTx)(nil)

// autocommitTx is a writeTx whose insert commits (a statement in
// autocommit mode): its caller's context is never disarmed, since the
// insert is the last step that can be cancelled.
type autocommitTx interface{ autocommitted() bool }

func (t *funcTx) autocommitted() bool { return true }

// beginFunc takes a connection for a call of the append function and
// finds its server process ID (asking the server the first time).
func (r *SQLRecorder) beginFunc(ctx context.Context, f *appendFunc) (writeTx, error) {
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return nil, r.dbError(ctx, "begin", r.events, err)
	}
	pid, err := f.backendPID(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, r.dbError(ctx, "begin", r.events, err)
	}
	return &funcTx{r: r, f: f, conn: conn, pid: pid}, nil
}

// backendPID returns the server process ID of conn.
func (f *appendFunc) backendPID(ctx context.Context, conn *sql.Conn) (int64, error) {
	var key any
	var pid int64
	var known bool
	conn.Raw(func(dc any) error {
		if dc != nil && reflect.TypeOf(dc).Comparable() {
			key = dc
		}
		return nil
	})
	if key != nil {
		f.mu.Lock()
		pid, known = f.pids[key]
		f.mu.Unlock()
		if known {
			return pid, nil
		}
	}
	if err := conn.QueryRowContext(ctx, f.BackendPIDQuery).Scan(&pid); err != nil {
		return 0, err
	}
	if key != nil {
		f.mu.Lock()
		if len(f.pids) >= 1024 { // connections closed since: ask again
			f.pids = nil
		}
		if f.pids == nil {
			f.pids = map[any]int64{}
		}
		f.pids[key] = pid
		f.mu.Unlock()
	}
	return pid, nil
}

// rollback gives the connection back; it ends nothing else (insert ended
// the transaction).
func (t *funcTx) rollback() {
	if !t.ended {
		t.ended = true
		t.conn.Close()
	}
}

// commit reports the outcome: insert committed, or failed, or found out.
func (t *funcTx) commit(commitProbe) error {
	t.rollback()
	return nil
}

// insert appends the calls with one call of the function, which commits
// them. Calls that conflict get their *IntegrityError in errs (with
// several calls; alone, it is the error). The lock wait is bounded by the
// recorder's LockTimeout and by the calls' deadlines: the function's lock
// timeout is the shortest; if that fires, the calls whose contexts have
// ended get their context's error and the others are sent again, so that
// a call sent with others waits for the lock no longer than it would
// alone, and leave as soon as they have their error. A call whose reply
// is lost (or whose context ended while it was on its way: the driver
// then drops the connection) is checked.
func (t *funcTx) insert(ctx context.Context, calls []*groupCall, _ bool) ([][]int64, []error, error) {
	ids, errs := make([][]int64, len(calls)), make([]error, len(calls))
	live := make([]int, 0, len(calls))
	for i := range calls {
		live = append(live, i)
	}
	for attempt := 0; ; attempt++ {
		lockTO, short := t.r.lockTO, false
		var sub, left []*groupCall
		var leftErrs []error
		keep := live[:0]
		for _, i := range live {
			c := calls[i]
			if attempt > 0 && ended(c.ctx) {
				errs[i] = &DatabaseError{Kind: ErrOperational, Op: "insert events", Table: t.r.events.String(), Err: endedCause(c.ctx)}
				left, leftErrs = append(left, c), append(leftErrs, errs[i])
				continue
			}
			if dl, ok := c.ctx.Deadline(); ok {
				if rem := time.Until(dl); lockTO == 0 || rem < lockTO {
					lockTO, short = max(rem, time.Millisecond), true
				}
			}
			keep = append(keep, i)
			sub = append(sub, c)
		}
		live = keep
		if len(left) > 0 {
			// Nothing of them is written: they leave now, not when the
			// others' outcome is known (transact's delivery skips them).
			t.r.group.deliverAll(left, nil, leftErrs, nil)
		}
		if len(live) == 0 {
			return ids, errs, nil
		}
		got, gotErrs, err := t.call(ctx, sub, lockTO)
		if err != nil && short && attempt < 100 && !t.ended && errors.Is(err, ErrLockTimeout) {
			continue // a deadline's lock timeout: those whose contexts ended leave
		}
		if err != nil {
			if len(calls) > 1 && len(live) < len(calls) {
				// The calls that left have their errors; the others
				// share this one.
				for _, i := range live {
					errs[i] = t.r.callError(calls[i], err)
				}
				return ids, errs, nil
			}
			return nil, nil, err
		}
		for j, i := range live {
			ids[i], errs[i] = got[j], gotErrs[j]
		}
		return ids, errs, nil
	}
}

// ended reports whether ctx has ended or its deadline has passed (its
// timer may not have fired yet on a busy machine).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// endedCause is the cause of a context that ended: its cause, or
// context.DeadlineExceeded if its deadline has passed and its timer has
// not fired yet.
func endedCause(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// call sends one call of the function for calls, with the lock timeout
// lockTO, and returns their IDs and own errors, or the call's error.
func (t *funcTx) call(ctx context.Context, calls []*groupCall, lockTO time.Duration) ([][]int64, []error, error) {
	r, f := t.r, t.f
	args := funcArgs(calls, lockTO, r.notifySQL != "")
	if ctx.Err() != nil { // not sent
		return nil, nil, r.ctxError(ctx, "insert events")
	}
	if ctx.Done() != nil {
		// A call alone, under its caller's context. Its deadline bounds
		// the lock wait on the server (lockTO), which then fails the call
		// cleanly; only a cancellation drops the connection (and leaves
		// the outcome to be checked).
		parent := ctx
		cctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
		stop := context.AfterFunc(parent, func() {
			if cause := context.Cause(parent); !errors.Is(cause, context.DeadlineExceeded) {
				cancel(cause)
			}
		})
		defer stop()
		defer cancel(nil)
		ctx = cctx
	}
	rows, err := t.conn.QueryContext(ctx, f.Call, args...)
	var res []funcRow
	if err == nil {
		res, err = scanFuncRows(rows)
	}
	if err == nil {
		return t.results(calls, res)
	}
	if errors.Is(err, driver.ErrBadConn) || f.af.AppendRolledBack(err) {
		// Not sent (database/sql's contract for ErrBadConn), or refused
		// by the server before it could commit.
		return nil, nil, t.callError(ctx, calls, err)
	}
	// The outcome is open: the reply was lost, or the context ended
	// while the call was on its way and the driver dropped the
	// connection.
	t.rollback()
	return t.outcome(ctx, calls, err)
}

// funcArgs returns the function's arguments for calls.
func funcArgs(calls []*groupCall, lockTO time.Duration, notify bool) []any {
	n := 0
	for _, c := range calls {
		n += len(c.events)
	}
	ids, topics := make([]string, 0, n), make([]string, 0, n)
	vers, states := make([]int64, 0, n), make([][]byte, 0, n)
	counts, tracked := make([]int32, len(calls)), make([]bool, len(calls))
	tnames, tids, tlows := make([]string, len(calls)), make([]int64, len(calls)), make([]int64, len(calls))
	for i, c := range calls {
		for _, e := range c.events {
			state := e.State
			if state == nil {
				state = []byte{}
			}
			ids, vers, topics, states = append(ids, e.OriginatorID.String()), append(vers, e.OriginatorVersion), append(topics, e.Topic), append(states, state)
		}
		counts[i] = int32(len(c.events))
		if c.tracking != nil {
			tracked[i], tnames[i], tids[i], tlows[i] = true, c.tracking.ApplicationName, c.tracking.NotificationID, c.tracking.lowest()
		}
	}
	ms := lockTO.Milliseconds()
	if time.Duration(ms)*time.Millisecond < lockTO {
		ms++ // 0 would be no limit
	}
	return []any{ms, ids, vers, topics, states, counts, tracked, tnames, tids, tlows, notify}
}

// funcRow is a row of the function's result.
type funcRow struct {
	status int
	call   sql.NullInt64
	id     sql.NullInt64
	detail sql.NullString
}

func scanFuncRows(rows *sql.Rows) ([]funcRow, error) {
	var res []funcRow
	for rows.Next() {
		var fr funcRow
		if err := rows.Scan(&fr.status, &fr.call, &fr.id, &fr.detail); err != nil {
			rows.Close()
			return nil, err
		}
		res = append(res, fr)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	return res, rows.Err()
}

// results makes the calls' IDs and own errors from the function's rows.
func (t *funcTx) results(calls []*groupCall, res []funcRow) ([][]int64, []error, error) {
	r := t.r
	ids, errs := make([][]int64, len(calls)), make([]error, len(calls))
	var flat []int64
	seen := make([]bool, len(calls))
	for _, fr := range res {
		if !fr.call.Valid {
			if fr.status != funcOK || !fr.id.Valid {
				return nil, nil, r.funcInternal("a row of status %d without a call", fr.status)
			}
			flat = append(flat, fr.id.Int64)
			continue
		}
		i := int(fr.call.Int64) - 1
		if i < 0 || i >= len(calls) {
			return nil, nil, r.funcInternal("a row for call %d of %d", i+1, len(calls))
		}
		seen[i] = true
		c := calls[i]
		switch fr.status {
		case funcOK:
			if fr.id.Valid {
				ids[i] = append(ids[i], fr.id.Int64)
			}
		case funcEventsConflict:
			errs[i] = &IntegrityError{Table: r.events.String(), Err: errors.New(fr.detail.String)}
		case funcTrackingConflict:
			last := int64(-1)
			if fr.id.Valid {
				last = fr.id.Int64
			}
			errs[i] = r.trackingConflict(c, last, nil)
		case funcTrackingUnique:
			errs[i] = &IntegrityError{Table: r.tracking.String(), Tracking: c.tracking, Err: errors.New(fr.detail.String)}
		default:
			return nil, nil, r.funcInternal("status %d", fr.status)
		}
	}
	if flat != nil || !slices.Contains(seen, true) {
		// Every call written, the IDs in call order.
		for i, c := range calls {
			if len(flat) < len(c.events) {
				return nil, nil, r.funcInternal("%d notification IDs for %d events", len(flat), len(c.events))
			}
			ids[i], flat = flat[:len(c.events):len(c.events)], flat[len(c.events):]
		}
		if len(flat) > 0 {
			return nil, nil, r.funcInternal("%d notification IDs more than events", len(flat))
		}
		return ids, errs, nil
	}
	for i, c := range calls {
		switch {
		case !seen[i]:
			return nil, nil, r.funcInternal("no row for call %d of %d", i+1, len(calls))
		case errs[i] == nil && len(ids[i]) != len(c.events):
			return nil, nil, r.funcInternal("%d notification IDs for %d events of call %d", len(ids[i]), len(c.events), i+1)
		case errs[i] == nil && ids[i] == nil:
			ids[i] = []int64{}
		}
		slices.Sort(ids[i])
	}
	return ids, errs, nil
}

// funcInternal is the error of a committed call whose result the recorder
// cannot read: its events are written, under IDs it does not know.
func (r *SQLRecorder) funcInternal(format string, args ...any) error {
	return &DatabaseError{Kind: ErrOperational, Op: "insert events", Table: r.events.String(),
		Err: fmt.Errorf("%w: internal error: the append function returned %s", ErrOutcomeUnknown, fmt.Sprintf(format, args...))}
}

// trackingConflict is the *IntegrityError of call c's tracking record,
// as insertTracking makes it: with single-row tracking, no cause; with
// multi-row, the last recorded (last >= 0) or the driver's error.
func (r *SQLRecorder) trackingConflict(c *groupCall, last int64, err error) error {
	t := *c.tracking
	switch {
	case r.multiRow && last >= 0:
		err = fmt.Errorf("last tracked notification of %q is %d", t.ApplicationName, last)
	case !r.multiRow:
		err = nil
	}
	return &IntegrityError{Table: r.tracking.String(), Tracking: &t, Err: err}
}

// callError is the error of a call of the function that wrote nothing.
func (t *funcTx) callError(ctx context.Context, calls []*groupCall, err error) error {
	r := t.r
	if len(calls) == 1 && calls[0].tracking != nil {
		if last, ok := t.f.af.AppendTrackingConflict(err, r.tracking); ok {
			return r.trackingConflict(calls[0], last, err)
		}
	}
	return r.dbError(ctx, "insert events", r.events, err)
}

// outcome finds out what a call of the function whose reply was lost (with
// callErr) did, on other connections and within commitCheckTimeout of its
// own (the caller's context has often ended: that is why the reply was
// lost). First the call's server process is ended and waited for: once it
// is gone, its transaction has committed or never will. Then each call's
// first rows show whether it is written: all of its events, as they were
// sent, or none (a row of another writer's in its place is a conflict);
// a call of tracking records alone, by its record. If any call is
// written, the transaction committed: the others conflicted. If the check
// fails, the outcome is unknown (ErrOutcomeUnknown).
func (t *funcTx) outcome(ctx context.Context, calls []*groupCall, callErr error) ([][]int64, []error, error) {
	r := t.r
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCheckTimeout)
	defer cancel()
	ids, errs, committed, err := t.lookup(cctx, calls)
	switch {
	case err != nil:
		return nil, nil, r.commitLost(callErr, err)
	case !committed:
		return nil, nil, r.commitLost(callErr, nil)
	}
	return ids, errs, nil
}

// lookup is outcome's check.
func (t *funcTx) lookup(ctx context.Context, calls []*groupCall) (ids [][]int64, errs []error, committed bool, err error) {
	r, f := t.r, t.f
	if err := r.awaitBackendEnd(ctx, f, t.pid); err != nil {
		return nil, nil, false, err
	}
	var keys []string
	var vers []int64
	var flat []StoredEvent
	for _, c := range calls {
		for _, e := range c.events {
			keys, vers, flat = append(keys, e.OriginatorID.String()), append(vers, e.OriginatorVersion), append(flat, e)
		}
	}
	found := make([]int64, len(flat)) // the notification ID of each event found as it was sent, or 0
	if len(flat) > 0 {
		rows, err := r.db.QueryContext(ctx, f.Lookup, keys, vers)
		if err != nil {
			return nil, nil, false, err
		}
		for rows.Next() {
			var ord, nid int64
			var topic sql.NullString
			var state []byte
			if err := rows.Scan(&ord, &topic, &state, &nid); err != nil {
				rows.Close()
				return nil, nil, false, err
			}
			if ord < 1 || ord > int64(len(flat)) {
				rows.Close()
				return nil, nil, false, fmt.Errorf("the lookup returned position %d of %d", ord, len(flat))
			}
			if e := flat[ord-1]; topic.Valid && topic.String == e.Topic && bytes.Equal(state, e.State) {
				found[ord-1] = nid
			}
		}
		if err := rows.Close(); err != nil {
			return nil, nil, false, err
		}
		if err := rows.Err(); err != nil {
			return nil, nil, false, err
		}
	}
	ids, errs = make([][]int64, len(calls)), make([]error, len(calls))
	written := make([]bool, len(calls))
	at := 0
	for i, c := range calls {
		mine := found[at : at+len(c.events)]
		at += len(c.events)
		if len(c.events) == 0 {
			ok, err := r.trackingRecorded(ctx, *c.tracking)
			if err != nil {
				return nil, nil, false, err
			}
			written[i] = ok
			if ok {
				ids[i] = []int64{}
			}
			continue
		}
		k := 0
		for _, id := range mine {
			if id != 0 {
				k++
			}
		}
		switch k {
		case 0:
		case len(mine):
			written[i], ids[i] = true, slices.Clone(mine)
		default:
			return nil, nil, false, fmt.Errorf("%d of the %d events of a call are stored as they were sent", k, len(mine))
		}
	}
	if !slices.Contains(written, true) {
		return nil, nil, false, nil
	}
	for i, c := range calls {
		if written[i] {
			continue
		}
		// The transaction committed without it: the function left it
		// out for a conflict.
		if len(c.events) == 0 {
			errs[i] = r.trackingConflict(c, -1, errors.New("the transaction committed without it (checked after its reply was lost)"))
			continue
		}
		errs[i] = &IntegrityError{Table: r.events.String(), Err: errors.New("the transaction committed without the call's events, which conflicted (checked after its reply was lost)")}
	}
	return ids, errs, true, nil
}

// awaitBackendEnd ends the server process pid, which ran a call whose
// reply was lost, and waits until it is gone.
func (r *SQLRecorder) awaitBackendEnd(ctx context.Context, f *appendFunc, pid int64) error {
	if pid == 0 {
		return errors.New("the call's server process is not known")
	}
	r.db.ExecContext(ctx, f.EndBackend, pid) // an error shows below, or does not matter (it ends by itself)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		var alive bool
		if err := r.db.QueryRowContext(ctx, f.BackendAlive, pid).Scan(&alive); err != nil {
			return fmt.Errorf("waiting for server process %d to end: %w", pid, err)
		}
		if !alive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server process %d, which ran the call, did not end: %w", pid, context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

// trackingRecorded reports whether tracking record t is recorded, once
// no transaction that may write it runs.
func (r *SQLRecorder) trackingRecorded(ctx context.Context, t Tracking) (bool, error) {
	if r.multiRow {
		var one int
		err := r.db.QueryRowContext(ctx, "SELECT 1 FROM "+r.qTracking+" WHERE application_name = "+r.d.Placeholder(1)+
			" AND notification_id = "+r.d.Placeholder(2), t.ApplicationName, t.NotificationID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		return err == nil, err
	}
	var n sql.NullInt64
	err := r.db.QueryRowContext(ctx, "SELECT notification_id FROM "+r.qTracking+" WHERE application_name = "+r.d.Placeholder(1), t.ApplicationName).Scan(&n)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	case n.Int64 == t.NotificationID:
		return true, nil
	case n.Int64 < t.NotificationID:
		return false, nil
	}
	return false, fmt.Errorf("the tracking record of %q is at %d, past %d: another transaction moved it", t.ApplicationName, n.Int64, t.NotificationID)
}
