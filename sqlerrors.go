package eventsourcing

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
)

// TransientClassifier is implemented by dialects that know which driver
// errors are transient: failures after which the same call may succeed,
// such as a lost connection, a serialization failure, a deadlock or a
// server shutting down. Errors that are not are never retried by
// [IsRetryable]; lock timeouts always are.
type TransientClassifier interface {
	Transient(err error) bool
}

// dbError wraps a driver error as a *DatabaseError (or *IntegrityError)
// of the kind the dialect classifies it as. A cancelled or expired context
// is ErrOperational, not transient.
func (r *SQLRecorder) dbError(ctx context.Context, op string, t Table, err error) error {
	var ie *IntegrityError
	var de *DatabaseError
	if errors.As(err, &ie) || errors.As(err, &de) {
		return err
	}
	kind := r.d.Classify(err)
	if ctx.Err() != nil && kind != ErrIntegrity {
		return &DatabaseError{Kind: ErrOperational, Op: op, Table: t.String(), Err: &contextError{cause: context.Cause(ctx), err: err}}
	}
	if kind == ErrIntegrity {
		return &IntegrityError{Table: t.String(), Err: err}
	}
	transient := kind == ErrLockTimeout || connectionLost(err)
	if tc, ok := r.d.(TransientClassifier); ok && tc.Transient(err) {
		transient = true
	}
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

// connectionLost reports errors that database/sql or the network give for a
// connection that broke.
func connectionLost(err error) bool {
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne)
}
