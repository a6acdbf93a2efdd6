package eventsourcing

// Driver errors to DatabaseError and IntegrityError, through the dialect's
// Classify.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
)

// dbError wraps a driver error as a *DatabaseError (or *IntegrityError)
// of the kind the dialect classifies it as. A cancelled or expired context
// is ErrOperational, not transient.
func (r *SQLRecorder) dbError(ctx context.Context, op string, t Table, err error) error {
	var ie *IntegrityError
	var de *DatabaseError
	if errors.As(err, &ie) || errors.As(err, &de) {
		return err
	}
	class := r.d.Classify(err)
	kind := class.Kind
	if ctx.Err() != nil && kind != ErrIntegrity {
		return &DatabaseError{Kind: ErrOperational, Op: op, Table: t.String(), Err: &contextError{cause: context.Cause(ctx), err: err}}
	}
	if kind == ErrIntegrity {
		return &IntegrityError{Table: t.String(), Err: err}
	}
	transient := class.Transient || kind == ErrLockTimeout || connectionLost(err)
	if kind == nil {
		kind = ErrOperational // unknown driver errors: not retryable unless known transient
	}
	return &DatabaseError{Kind: kind, Op: op, Table: t.String(), Err: err, Transient: transient}
}

// contextError is a driver error of a call whose context ended: it
// matches both the context's cause and the driver error (errors.Is), and
// prints on one line, naming the cause once (errors.Join would print two
// lines, often the same twice).
type contextError struct{ cause, err error }

func (e *contextError) Error() string {
	msg, cause := e.err.Error(), e.cause.Error()
	if strings.Contains(msg, cause) {
		return msg
	}
	return cause + ": " + msg
}

func (e *contextError) Unwrap() []error { return []error{e.cause, e.err} }

// kind returns the sentinel the dialect classifies a driver error as.
func (r *SQLRecorder) kind(err error) error { return r.d.Classify(err).Kind }

// connectionLost reports errors that database/sql or the network give for a
// connection that broke.
func connectionLost(err error) bool {
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne)
}
