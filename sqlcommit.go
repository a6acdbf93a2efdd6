package eventsourcing

import (
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

// commitOutcome finds out whether the transaction that inserted calls
// (whose COMMIT lost its connection) committed, or returns why it could
// not. A call alone bounds the check with its own context too (its caller
// may leave, with the outcome unknown); a group's calls, claimed, wait for
// it up to the timeout.
func (r *SQLRecorder) commitOutcome(calls []*groupCall) (committed bool, err error) {
	var probe *groupCall
	for _, c := range calls {
		if c.err == nil && len(c.ids) > 0 && len(c.events) > 0 {
			probe = c
			break
		}
	}
	switch {
	case probe == nil:
		return false, errors.New("the transaction has no notification IDs to look for (tracking records or snapshots alone)")
	case len(r.lockSQL) == 0:
		return false, errors.New("the dialect has no append lock to wait for the transaction's end with")
	}
	parent := context.Background()
	if len(calls) == 1 {
		parent = calls[0].ctx
	}
	ctx, cancel := context.WithTimeout(parent, commitCheckTimeout)
	defer cancel()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	// The lock statements (with a NOTIFY, on a dialect that sends it with
	// them: this transaction rolls back, so none is sent).
	for _, s := range r.lockSQL {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return false, err
		}
	}
	e := probe.events[0]
	var v int64
	err = tx.QueryRowContext(ctx, "SELECT originator_version FROM "+r.qEvents+" WHERE "+r.nid+" = "+r.d.Placeholder(1)+
		" AND originator_id = "+r.d.Placeholder(2), probe.ids[0], r.d.UUIDArg(e.OriginatorID)).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	case v != e.OriginatorVersion:
		return false, fmt.Errorf("notification %d is version %d of %s, not %d", probe.ids[0], v, e.OriginatorID, e.OriginatorVersion)
	}
	return true, nil
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
