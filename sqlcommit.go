package eventsourcing

// The outcome of a COMMIT whose reply was lost: checked under the lock.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// A connection lost during COMMIT leaves the outcome unknown to the client:
// the server may have committed before the loss, may never have received
// the COMMIT, or may still be about to receive it. On a database with an
// append lock (PostgreSQL's LOCK TABLE), the recorder finds out: the lost
// transaction holds the lock until it ends, so once another transaction
// has the lock, that COMMIT has landed or never will; then the first event
// of the batch is either recorded under the notification ID the lost
// transaction was given (committed) or not (rolled back: sequence values
// are never reused).

// commitCheckTimeout bounds how long a recorder waits for the append lock
// and the lookup after a connection was lost during COMMIT. A lost
// transaction whose server has not noticed the loss keeps the lock until
// it does; the outcome is then reported unknown.
const commitCheckTimeout = 10 * time.Second

// errCommitLost marks the error of a transaction whose connection was lost
// during COMMIT, which says what is known of its outcome.
var errCommitLost = errors.New("connection lost during COMMIT")

// commitOutcome finds out whether the transaction that wrote p's rows,
// whose COMMIT failed with an error that leaves the outcome open,
// committed; or returns why it cannot tell. locked says the transaction
// held the append lock.
//
// It first waits, on another connection and with a bound of its own
// (commitCheckTimeout, not the recorder's LockTimeout), for the lost
// transaction to end: under the append lock (a single-writer database's
// write lock, or the lock statements run with their own timeout), or, for
// a single-row tracking record alone, by upserting its row, which waits
// for any transaction writing it. Then the probe's first row is either
// there as it was written (committed) or not (rolled back: the IDs of a
// rolled-back transaction are never those of other rows with the same
// content). p.ctx bounds the check too (the caller of a transaction of
// one call may leave, with the outcome unknown).
func (r *SQLRecorder) commitOutcome(p commitProbe, locked bool) (committed bool, err error) {
	trackingOnly := p.event == nil && p.tracking != nil
	switch {
	case p.event == nil && p.tracking == nil:
		return false, errors.New("the transaction wrote nothing to look for")
	case r.writeMu == nil && !locked && !(trackingOnly && !r.multiRow):
		return false, errors.New("the transaction held no lock to wait for its end with")
	}
	parent := p.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, commitCheckTimeout)
	defer cancel()
	tx, err := r.beginCheck(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if locked {
		for _, s := range r.checkLockSQL {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return false, err
			}
		}
	}
	if trackingOnly {
		return r.trackingCommitted(ctx, tx, *p.tracking)
	}
	e := p.event
	var row *sql.Row
	if p.id > 0 {
		row = tx.QueryRowContext(ctx, "SELECT originator_version, topic, state FROM "+r.qEvents+" WHERE "+r.nid+" = "+r.d.Placeholder(1)+
			" AND originator_id = "+r.d.Placeholder(2), p.id, r.d.UUIDArg(e.OriginatorID))
	} else {
		row = tx.QueryRowContext(ctx, "SELECT originator_version, topic, state FROM "+r.qEvents+" WHERE originator_id = "+r.d.Placeholder(1)+
			" AND originator_version = "+r.d.Placeholder(2), r.d.UUIDArg(e.OriginatorID), e.OriginatorVersion)
	}
	var v int64
	var topic sql.NullString
	var state []byte
	switch err := row.Scan(&v, &topic, &state); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	case v != e.OriginatorVersion || topic.String != e.Topic || !bytes.Equal(state, e.State):
		return false, fmt.Errorf("the row found for version %d of %s is not the one written", e.OriginatorVersion, e.OriginatorID)
	}
	return true, nil
}

// beginCheck begins the check's transaction. On a single-writer database
// it takes the write lock (BEGIN IMMEDIATE), waiting for it in the busy
// handler up to the connection's busy timeout, which may be short: it is
// tried again until ctx ends.
func (r *SQLRecorder) beginCheck(ctx context.Context) (*sql.Tx, error) {
	for {
		tx, err := r.db.BeginTx(ctx, nil)
		if err == nil || r.writeMu == nil || r.kind(err) != ErrLockTimeout {
			return tx, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waiting for the write lock: %v)", context.Cause(ctx), err)
		case <-time.After(time.Millisecond):
		}
	}
}

// trackingCommitted reports whether tracking record t is recorded.
// Single-row: the upsert of its row waits for any transaction writing it,
// and returns the row's notification ID (the rollback undoes it).
func (r *SQLRecorder) trackingCommitted(ctx context.Context, tx *sql.Tx, t Tracking) (bool, error) {
	if r.multiRow {
		var one int
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM "+r.qTracking+" WHERE application_name = "+r.d.Placeholder(1)+
			" AND notification_id = "+r.d.Placeholder(2), t.ApplicationName, t.NotificationID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		return err == nil, err
	}
	var n sql.NullInt64
	err := tx.QueryRowContext(ctx, "INSERT INTO "+r.qTracking+" (application_name, notification_id) VALUES ("+r.d.Placeholder(1)+", 0)"+
		" ON CONFLICT (application_name) DO UPDATE SET application_name = EXCLUDED.application_name RETURNING notification_id", t.ApplicationName).Scan(&n)
	switch {
	case err != nil:
		return false, err
	case n.Int64 == t.NotificationID:
		return true, nil
	case n.Int64 < t.NotificationID:
		return false, nil
	}
	return false, fmt.Errorf("the tracking record of %q is at %d, past %d: another transaction moved it", t.ApplicationName, n.Int64, t.NotificationID)
}

// commitLost is the error of a transaction whose COMMIT lost its
// connection (err) and which did not commit (checkErr nil) or whose
// outcome could not be checked (checkErr says why). Both are transient:
// the call may be tried again.
func (r *SQLRecorder) commitLost(err, checkErr error) error {
	if checkErr != nil {
		what := fmt.Sprintf("whether it committed could not be checked (%v): its events may be recorded, and a retry may then meet ErrIntegrity", checkErr)
		return &DatabaseError{Kind: ErrOperational, Op: "commit", Table: r.events.String(), Transient: true,
			Err: fmt.Errorf("%w: %w (%s): %w", ErrOutcomeUnknown, errCommitLost, what, err)}
	}
	what := "checked: it did not commit, nothing of it was written"
	return &DatabaseError{Kind: ErrOperational, Op: "commit", Table: r.events.String(), Transient: true,
		Err: fmt.Errorf("%w (%s): %w", errCommitLost, what, err)}
}
