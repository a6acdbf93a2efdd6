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

type outcome int

const (
	outcomeUnknown outcome = iota
	outcomeCommitted
	outcomeRolledBack
)

// commitOutcome finds out whether the transaction that inserted calls
// (whose COMMIT lost its connection) committed. A call alone bounds the
// check with its own context too (its caller may leave, with the outcome
// unknown); a group's calls, claimed, wait for it up to the timeout.
func (r *SQLRecorder) commitOutcome(calls []*groupCall) outcome {
	var probe *groupCall
	for _, c := range calls {
		if c.err == nil && len(c.ids) > 0 && len(c.events) > 0 {
			probe = c
			break
		}
	}
	if probe == nil || r.snapshots || len(r.awaitSQL) == 0 {
		return outcomeUnknown
	}
	parent := context.Background()
	if len(calls) == 1 {
		parent = calls[0].ctx
	}
	ctx, cancel := context.WithTimeout(parent, commitCheckTimeout)
	defer cancel()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return outcomeUnknown
	}
	defer tx.Rollback()
	for _, s := range r.awaitSQL {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return outcomeUnknown
		}
	}
	e := probe.events[0]
	var v int64
	err = tx.QueryRowContext(ctx, "SELECT originator_version FROM "+r.qEvents+" WHERE "+r.nid+" = "+r.d.Placeholder(1)+
		" AND originator_id = "+r.d.Placeholder(2), probe.ids[0], r.d.UUIDArg(e.OriginatorID)).Scan(&v)
	switch {
	case err == nil && v == e.OriginatorVersion:
		return outcomeCommitted
	case errors.Is(err, sql.ErrNoRows):
		return outcomeRolledBack
	}
	return outcomeUnknown
}

// commitLost is the error of a transaction whose COMMIT lost its
// connection (err) and whose outcome was found to be o (not committed or
// unknown). Both are transient: the call may be tried again.
func (r *SQLRecorder) commitLost(err error, o outcome) error {
	what := "whether it committed could not be checked: its events may be recorded, and a retry may then meet ErrIntegrity"
	if o == outcomeRolledBack {
		what = "checked: it did not commit, nothing of it was written"
	}
	return &DatabaseError{Kind: ErrOperational, Op: "commit", Table: r.events.String(), Transient: true,
		Err: fmt.Errorf("%w (%s): %w", errCommitLost, what, err)}
}
