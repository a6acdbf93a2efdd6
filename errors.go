package eventsourcing

// The sentinel errors and the error types that carry them.

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing/internal/transcode"
)

// Sentinel errors. Every error returned by this package matches one of
// the sentinels below with [errors.Is] (two where a sentinel says it also
// matches another: ErrLockTimeout and ErrOutcomeUnknown also match
// ErrOperational) and unwraps to its cause (a driver error, a JSON error,
// ...). All the package's sentinels are declared in this file.
//
// Each kind is built one way: a recorder's failure is a *[DatabaseError]
// (naming the operation and table) or an *[IntegrityError]; a
// configuration's, a *[ConfigError]; a store read with another pipeline
// than it was written with, a *[PipelineError]; personal data of a
// forgotten subject, a *[ForgottenError]; every other error wraps its
// sentinel as fmt.Errorf("%w: ...", ErrX, ...), its cause wrapped by %w
// too.
//
// The persistence sentinels follow the Python library (and PEP 249):
var (
	// ErrIntegrity: a (originator_id, originator_version) was already
	// recorded, or a tracking record is not higher than the one stored for
	// its upstream application. Nothing of the batch was written.
	ErrIntegrity = errors.New("eventsourcing: integrity error")
	// ErrOperational: the database is unreachable, the connection was lost,
	// the database is read-only, or a transaction was cancelled. Retrying may
	// succeed.
	ErrOperational = errors.New("eventsourcing: operational error")
	// ErrLockTimeout: a write lock could not be taken in time (Postgres
	// lock_timeout, SQLite busy timeout). It also matches ErrOperational and is
	// safe to retry: nothing was written.
	ErrLockTimeout = errors.New("eventsourcing: lock timeout")
	// ErrProgramming: the request can never succeed as given: a missing
	// table, an invalid table name, an invalid argument, a tracking record
	// given to a recorder that keeps none.
	ErrProgramming = errors.New("eventsourcing: programming error")
	// ErrData: a value does not fit the database (out of range, invalid
	// text encoding).
	ErrData = errors.New("eventsourcing: data error")
	// ErrOutcomeUnknown: a write's COMMIT was sent but its reply never
	// came, and the recorder could not find out whether it committed. The
	// error also matches ErrOperational; the call's events are then either
	// all recorded under the IDs the transaction was given or none is (read
	// them back to tell). It is the only error after which a call's events
	// may be recorded.
	ErrOutcomeUnknown = errors.New("eventsourcing: outcome unknown")
)

// The mapping sentinels: converting between domain events and stored events.
var (
	// ErrUnknownTopic: a stored event's topic has no registered event type,
	// or an event's type has no registered topic.
	ErrUnknownTopic = errors.New("eventsourcing: unknown topic")
	// ErrUnsupportedType: a value of a Go type the transcoder cannot encode
	// or decode (register a Transcoding for it).
	ErrUnsupportedType = transcode.ErrUnsupportedType
	// ErrUnknownTranscoding: stored JSON names a "_type_" that has no
	// registered Transcoding.
	ErrUnknownTranscoding = transcode.ErrUnknownTranscoding
	// ErrSyntax: stored state is not valid JSON.
	ErrSyntax = transcode.ErrSyntax
	// ErrDecode: stored JSON is valid but does not fit the Go type it is
	// decoded into, or a Transcoding rejected its data.
	ErrDecode = transcode.ErrDecode
	// ErrDecrypt: ciphertext could not be decrypted: wrong key, damaged or
	// truncated data.
	ErrDecrypt = errors.New("eventsourcing: cannot decrypt state")
	// ErrDecompress: compressed state is corrupt or truncated.
	ErrDecompress = errors.New("eventsourcing: cannot decompress state")
	// ErrClassVersion: a stored event's class version cannot be brought to
	// the version of its Go type (a missing upcaster, or a stored version newer
	// than the type).
	ErrClassVersion = errors.New("eventsourcing: class version mismatch")
	// ErrForgotten: personal data of a data subject was to be written
	// after the subject was forgotten ([PersonalKeys.Forget]); nothing was
	// written. [PersonalKeys.Renew] gives the subject a new key. Reading
	// such data is not an error: it reads as forgotten.
	ErrForgotten = errors.New("eventsourcing: data subject forgotten")
)

// The sentinels of the layers above the recorders.
var (
	// ErrAggregateNotFound is returned (wrapped, naming the ID) by
	// [Repository.Load], LoadAt and Update when an aggregate has no events
	// and no snapshot. It also matches [sql.ErrNoRows] with [errors.Is], as
	// pgx's ErrNoRows does, so code that treats "no rows" as "not found"
	// needs no new case.
	ErrAggregateNotFound error = notFoundError{}
	// ErrRunnerStopped is the error [Runner.Wait] and [Projection.Wait]
	// return when the runner stops before the notification waited for is
	// processed. When the runner stopped because it failed, the error also
	// wraps that failure (what Run returned), so errors.Is finds both.
	ErrRunnerStopped = errors.New("eventsourcing: runner stopped")
)

type notFoundError struct{}

func (notFoundError) Error() string { return "eventsourcing: aggregate not found" }
func (notFoundError) Unwrap() error { return sql.ErrNoRows }

// IntegrityError reports a conflict that failed a whole batch. It matches
// [ErrIntegrity] and unwraps to the driver's error, if any.
type IntegrityError struct {
	// Table is the table (or recorder) where the conflict happened.
	Table string
	// OriginatorID and Version identify the conflicting event when the
	// recorder knows it; both are zero otherwise.
	OriginatorID uuid.UUID
	Version      int64
	// Tracking is set when the conflict is a tracking record that is not
	// higher than the one already stored.
	Tracking *Tracking
	// Err is the underlying driver error, or nil.
	Err error
}

func (e *IntegrityError) Error() string {
	var what string
	switch {
	case e.Tracking != nil:
		what = fmt.Sprintf("tracking record %q %d is not higher than the one recorded", e.Tracking.ApplicationName, e.Tracking.NotificationID)
	case e.OriginatorID != uuid.Nil:
		// What a user acts on: which event, and that someone wrote it first.
		what = fmt.Sprintf("version %d of aggregate %s is already recorded", e.Version, e.OriginatorID)
		if e.Table != "" {
			what += " in " + e.Table
		}
		return "eventsourcing: integrity error: " + what + " (another writer saved that version first: reload the aggregate and decide again)"
	default:
		what = "an event's originator version was already recorded"
	}
	if e.Table != "" {
		what += " in " + e.Table
	}
	if e.Err != nil {
		return "eventsourcing: integrity error: " + what + ": " + e.Err.Error()
	}
	return "eventsourcing: integrity error: " + what
}

// Is reports whether target is ErrIntegrity.
func (e *IntegrityError) Is(target error) bool { return target == ErrIntegrity }

// Unwrap returns the driver error.
func (e *IntegrityError) Unwrap() error { return e.Err }

// DatabaseError is a recorder failure other than an integrity conflict. It
// matches its Kind (one of the persistence sentinels) with [errors.Is],
// names the operation and table, and unwraps to the driver error.
type DatabaseError struct {
	Kind  error  // ErrOperational, ErrLockTimeout, ErrProgramming or ErrData
	Op    string // what was being done, e.g. "insert events"
	Table string // the table involved, if any
	Err   error  // the driver error, or nil
	// Transient reports that the failure is known to pass (a lost
	// connection, a lock timeout, a serialization failure, a deadlock, the
	// server shutting down): see [IsRetryable].
	Transient bool
}

func (e *DatabaseError) Error() string {
	s := e.Kind.Error() + ": " + e.Op
	if e.Table != "" {
		s += " (table " + e.Table + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is the error's Kind; a lock timeout is also an
// operational error.
func (e *DatabaseError) Is(target error) bool {
	return target == e.Kind || (e.Kind == ErrLockTimeout && target == ErrOperational)
}

// Unwrap returns the driver error.
func (e *DatabaseError) Unwrap() error { return e.Err }

// IsRetryable reports whether err is a failure after which the same call
// may succeed unchanged: one known to be transient, such as a lost
// connection, a lock timeout, a serialization failure, a deadlock or a
// server shutting down. Integrity, programming and data errors are not
// retryable, nor are operational errors the dialect does not know to be
// transient (such as a read-only database), nor a call whose own context
// ended (it would end again).
func IsRetryable(err error) bool {
	var de *DatabaseError
	return errors.As(err, &de) && de.Transient && !errors.Is(err, ErrIntegrity)
}
