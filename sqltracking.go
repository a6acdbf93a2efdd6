package eventsourcing

// This file holds the SQLRecorder's transactions that a caller's own writes
// share with a tracking record: what makes an SQLRecorder the
// ProjectionStore of a Projection whose view is in the same database.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

var _ ProjectionStore[*sql.Tx] = (*SQLRecorder)(nil)

// WithTracking runs fn in a new transaction of the recorder's database and
// records the tracking record t in the same transaction, then commits: the
// writes fn makes through tx and the tracking record are committed
// together or not at all. It is what a [Projection] runs for each batch,
// and what to use to keep a read model in the database's own tables
// exactly once by hand (Python eventsourcing's insert_tracking, inside the
// view's transaction).
//
// The tracking record is written first, before fn runs: a record that is
// not after the last one recorded for its application (see [Tracking].First)
// fails with an *[IntegrityError] naming it, and fn is not called. On
// PostgreSQL the record's row (single-row tracking) or the append lock
// (multi-row tracking, LOCK TABLE on the events table, as inserts of events
// take it) is held until the transaction ends, so a second copy of the
// same projection waits there, before touching the caller's tables, and is
// then refused. If fn returns an error the transaction is rolled back and
// that error is returned as it is. fn must not commit or roll back tx, and
// must not write through this recorder (InsertEvents would wait for the
// transaction fn is in: on SQLite, the one writer; on PostgreSQL with
// multi-row tracking, the append lock).
//
// After the commit, WaitTracking callers are woken: in this process, and
// on PostgreSQL by a NOTIFY on the events table's channel. A COMMIT whose
// outcome is open (a lost connection) is checked as InsertEvents checks a
// tracking record alone; an error matching ErrOutcomeUnknown means it
// could not be told.
func (r *SQLRecorder) WithTracking(ctx context.Context, t Tracking, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := r.checkTrackingTx("with tracking"); err != nil {
		return err
	}
	if err := checkTrackingRecord(&t); err != nil {
		return err
	}
	if t.ApplicationName == "" {
		return fmt.Errorf("%w: tracking record with an empty application name", ErrProgramming)
	}
	if fn == nil {
		return fmt.Errorf("%w: WithTracking: nil function", ErrProgramming)
	}
	r.prepareInserts(ctx, 0, true)
	tx, locked, err := r.beginTracking(ctx)
	if err != nil {
		return err
	}
	ended := false
	defer func() {
		if !ended {
			tx.Rollback()
			r.releaseWriter()
		}
	}()
	if err := r.insertTracking(ctx, tx, t); err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if r.notifySQL != "" && !(locked && r.notifyLock) {
		if _, err := tx.ExecContext(ctx, r.notifySQL); err != nil {
			return r.dbError(ctx, "notify", r.events, err)
		}
	}
	ended = true
	err = tx.Commit()
	r.releaseWriter()
	if err != nil {
		if errors.Is(err, sql.ErrTxDone) || r.kind(err) == ErrIntegrity {
			return r.dbError(context.Background(), "commit", r.tracking, err)
		}
		committed, checkErr := r.commitOutcome(commitProbe{ctx: ctx, tracking: &t}, locked)
		if !committed {
			return r.commitLost(err, checkErr)
		}
	}
	r.committed()
	return nil
}

// ResetTracking deletes the tracking records of applicationName and runs
// reset (if not nil) in the same transaction, then commits: the way to
// rebuild a projection from the beginning in place, reset emptying the
// tables it writes. Stop every copy of the projection first: one still
// running would go on from where it was, onto the emptied tables. (To
// rebuild beside the old view instead, run the projection under a new
// name into new tables.) An error from reset rolls everything back and is
// returned as it is.
func (r *SQLRecorder) ResetTracking(ctx context.Context, applicationName string, reset func(ctx context.Context, tx *sql.Tx) error) error {
	if err := r.checkTrackingTx("reset tracking"); err != nil {
		return err
	}
	if err := checkTrackingName(applicationName); err != nil {
		return err
	}
	tx, _, err := r.beginTracking(ctx)
	if err != nil {
		return err
	}
	defer r.releaseWriter()
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+r.qTracking+" WHERE application_name = "+r.d.Placeholder(1), applicationName); err != nil {
		return r.dbError(ctx, "reset tracking", r.tracking, err)
	}
	if reset != nil {
		if err := reset(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return r.dbError(context.Background(), "reset tracking", r.tracking, err)
	}
	r.committed()
	return nil
}

// checkTrackingTx refuses a snapshots recorder, which keeps no tracking
// records.
func (r *SQLRecorder) checkTrackingTx(op string) error {
	if r.snapshots {
		return &DatabaseError{Kind: ErrProgramming, Op: op, Table: r.events.String(), Err: errors.New("a snapshots recorder keeps no tracking records")}
	}
	return nil
}

// beginTracking takes the writer turn (SQLite), begins a transaction and,
// with multi-row tracking, takes the append lock, which serialises the
// check of a record's First against the records stored between two
// writers of one application name (as beginTx does for tracking records
// alone). The caller rolls back or commits, and releases the writer turn.
func (r *SQLRecorder) beginTracking(ctx context.Context) (tx *sql.Tx, locked bool, err error) {
	if err := r.acquireWriter(ctx); err != nil {
		return nil, false, r.ctxError(ctx, "begin")
	}
	tx, err = r.begin(ctx)
	if err != nil {
		r.releaseWriter()
		return nil, false, r.dbError(ctx, "begin", r.tracking, err)
	}
	if r.multiRow {
		for _, s := range r.lockSQL {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				tx.Rollback()
				r.releaseWriter()
				return nil, false, r.dbError(ctx, "lock events table", r.events, err)
			}
		}
		locked = len(r.lockSQL) > 0
	}
	return tx, locked, nil
}
