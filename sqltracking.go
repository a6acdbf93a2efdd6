package eventsourcing

// This file holds the SQLRecorder's transactions that a caller's own writes
// share with a tracking record: what makes an SQLRecorder the
// ProjectionStore of a Projection whose view is in the same database.

import (
	"context"
	"database/sql"
	"errors"
)

var _ ProjectionStore[*sql.Tx] = (*SQLRecorder)(nil)

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
