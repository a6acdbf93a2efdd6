package eventsourcing

// This file holds Projection, which keeps a read model in the user's own
// tables (or in-memory structures) exactly once, and ProjectionStore, the
// transactions it writes in: SQLRecorder's (sqltracking.go) and
// MemoryView's (projection_memory.go).

import (
	"context"
	"fmt"
	"reflect"
)

// A ProjectionStore is where a [Projection] keeps its view and its
// tracking records: a database (an [SQLRecorder], whose tracking table is
// in the same database as the view's tables, with Tx *sql.Tx) or memory (a
// [MemoryView], with Tx the view's state). Its transactions hold the
// view's writes and a tracking record together.
type ProjectionStore[Tx any] interface {
	TrackingRecorder
	// WithTracking runs fn in a new transaction and records t in it, then
	// commits both, or neither if anything fails. A tracking record that
	// is not after the last recorded for its application (see
	// Tracking.First) is an *IntegrityError (fn is then not called); fn's
	// own error is returned as it is.
	WithTracking(ctx context.Context, t Tracking, fn func(ctx context.Context, tx Tx) error) error
	// ResetTracking deletes the tracking records of applicationName and
	// runs reset (if not nil) in the same transaction.
	ResetTracking(ctx context.Context, applicationName string, reset func(ctx context.Context, tx Tx) error) error
}

// A ProjectionHandler applies one upstream event to a projection's view,
// writing through tx: the downstream transaction, which the projection
// commits with the tracking record of the notification. Every handler of a
// batch writes in the same transaction, in notification order, so each
// sees the writes of those before it. It is called again for the same
// event if its batch is retried (after the transaction was rolled back),
// so effects it has outside tx must be idempotent. It must not commit or
// roll back tx, nor write events through the store's recorder: that write
// would wait for the transaction the handler is in (see
// [SQLRecorder.WithTracking]).
type ProjectionHandler[E Event, Tx any] func(ctx context.Context, tx Tx, upstream Recorded[E]) error

// Projection keeps a read model (a view) in the user's own tables exactly
// once: it follows an upstream application's notification log (possibly
// in another database), hands each notification, decoded, to a
// [ProjectionHandler] together with a transaction of the [ProjectionStore],
// and records the tracking record (name, notification ID) in the same
// transaction before committing it. So each upstream notification is
// applied to the view exactly once, however often the process is stopped
// or killed and restarted: on start it resumes after the store's
// MaxTrackingID. It is Python eventsourcing 9.5's Projection, with the
// view's transaction handed to the handler.
//
// Notifications are processed in batches (RunnerOptions.BatchSize) of one
// transaction each, whose tracking record covers the whole batch
// ([Tracking].First). The record is written at the start of the
// transaction, so two copies of one projection running at once (a process
// thought dead that is still running) do not both apply a batch: the
// second waits for the first's transaction, is refused, and goes on after
// what the first committed. A handler that fails rolls its batch back: the
// notifications before it are applied again in a transaction of their own
// and committed, and the failing one is retried or ends Run (or is skipped:
// RunnerOptions.OnSkip).
//
// The name is the application name of the projection's tracking records:
// the upstream application's name, as the Python library uses, or any
// name, one per projection kept in the same tracking table. To rebuild a
// view from the beginning, run the projection under a new name into new
// tables, or call Reset with a function that empties its tables.
//
// Wait or [WaitTracking] (on the store) waits for the view to include a
// notification: read-your-writes for a user interface after a command.
//
// Run, RunUntilCaughtUp, Wait and Status may be called from several
// goroutines, but only one Run or RunUntilCaughtUp at a time.
type Projection[E Event, Tx any] struct {
	core     runCore
	upstream *EventStore[E]
	store    ProjectionStore[Tx]
	handle   ProjectionHandler[E, Tx]
}

// NewProjection returns a projection named name of the notifications of
// upstream (whose recorder must be an [ApplicationRecorder]) into store,
// applied by handle. An empty name, the name "__migration__", a nil store
// or handler, or an upstream that is no application recorder is an error
// matching ErrProgramming.
func NewProjection[E Event, Tx any](name string, upstream *EventStore[E], store ProjectionStore[Tx], handle ProjectionHandler[E, Tx], opts *RunnerOptions) (*Projection[E, Tx], error) {
	switch {
	case name == "" || name == migrationTrackingName:
		return nil, fmt.Errorf("%w: projection: invalid name %q", ErrProgramming, name)
	case handle == nil:
		return nil, fmt.Errorf("%w: projection %s: nil handler", ErrProgramming, name)
	case store == nil || isNilPointer(store):
		return nil, fmt.Errorf("%w: projection %s: nil store", ErrProgramming, name)
	case upstream == nil || upstream.Mapper == nil:
		return nil, fmt.Errorf("%w: projection %s: nil upstream event store or mapper", ErrProgramming, name)
	}
	up, ok := upstream.Recorder.(ApplicationRecorder)
	if !ok {
		return nil, fmt.Errorf("%w: projection %s: upstream recorder %T is not an application recorder", ErrProgramming, name, upstream.Recorder)
	}
	p := &Projection[E, Tx]{upstream: upstream, store: store, handle: handle}
	p.core.init("projection", name, up, store, opts)
	p.core.handle = p.processOnce
	p.core.skip = func(ctx context.Context, n Notification) error {
		return store.WithTracking(ctx, Tracking{ApplicationName: name, NotificationID: n.ID, First: n.ID},
			func(context.Context, Tx) error { return nil })
	}
	return p, nil
}

// Name returns the projection's name: the application name of its
// tracking records.
func (p *Projection[E, Tx]) Name() string { return p.core.name }

// Run applies upstream notifications as they commit until ctx ends or
// processing fails beyond the retries allowed. A stop the caller asked for
// (ctx ended) returns nil; a failure returns the error, naming the
// notification. A transient failure to read the upstream log is retried
// under the same policy; any other ends Run. Everything committed before
// it returns stays; the next Run resumes after it. A second Run while one
// runs is an error matching ErrProgramming.
func (p *Projection[E, Tx]) Run(ctx context.Context) error { return p.core.run(ctx, false) }

// RunUntilCaughtUp applies the upstream notifications up to the upstream's
// highest notification ID at the time of the call, then returns nil.
// Failures are as for Run; if ctx ends first, it returns an error wrapping
// the context's (it did not catch up).
func (p *Projection[E, Tx]) RunUntilCaughtUp(ctx context.Context) error { return p.core.run(ctx, true) }

// Wait blocks until the upstream notification notificationID is applied
// (tracked in the store, by this projection or another copy) and returns
// nil; or until the projection stops first, and returns an error matching
// [ErrRunnerStopped] (and wrapping Run's error, if Run failed); or until
// ctx ends (a wrapped ctx error). A projection that has not started yet,
// or whose last run was a RunUntilCaughtUp that caught up, is waited for;
// one that has stopped or failed, and not been started again, ends the
// wait at once (see [Runner.Wait]). With SubscribeOptions.Topics, wait for
// a notification of those topics.
func (p *Projection[E, Tx]) Wait(ctx context.Context, notificationID int64) error {
	return p.core.wait(ctx, notificationID)
}

// Status returns the projection's progress: its position and the upstream
// head as they are now (two queries), the lag between them, its counters
// and last error.
func (p *Projection[E, Tx]) Status(ctx context.Context) (RunnerStatus, error) {
	return p.core.status(ctx)
}

// Reset deletes the projection's tracking records and runs reset (which
// should empty the view: DELETE FROM its tables) in the same transaction,
// so that the next Run applies every upstream notification again, to an
// empty view. Reset while this projection runs is an error matching
// ErrProgramming; stop every other copy first too (see
// [SQLRecorder.ResetTracking]).
func (p *Projection[E, Tx]) Reset(ctx context.Context, reset func(ctx context.Context, tx Tx) error) error {
	p.core.mu.Lock()
	running := p.core.running
	p.core.mu.Unlock()
	if running {
		return fmt.Errorf("%w: projection %s: Reset while it runs", ErrProgramming, p.core.name)
	}
	if err := p.store.ResetTracking(ctx, p.core.name, reset); err != nil {
		return fmt.Errorf("eventsourcing: projection %s: reset: %w", p.core.name, err)
	}
	p.core.mu.Lock()
	p.core.pos = 0
	p.core.mu.Unlock()
	return nil
}

// processOnce applies notifications in one transaction of the store and
// commits them, returning how many are done; fewer than all with no error
// means some were found tracked by another copy, and the rest must be
// applied again.
func (p *Projection[E, Tx]) processOnce(ctx context.Context, ns []Notification) (int, error) {
	failed := -1 // the notification whose handler failed
	var cause error
	// Decoded before the transaction: opening personal values may read
	// data keys from the database the transaction would hold (a
	// one-connection SQLite in memory).
	events := make([]E, len(ns))
	decoded, decodeErr := len(ns), error(nil)
	for i, n := range ns {
		e, err := p.upstream.decode(ctx, n.StoredEvent)
		if err != nil {
			decoded, decodeErr = i, err
			break
		}
		events[i] = e
	}
	t := Tracking{ApplicationName: p.core.name, NotificationID: ns[len(ns)-1].ID, First: ns[0].ID}
	err := p.store.WithTracking(ctx, t, func(ctx context.Context, tx Tx) error {
		for i, n := range ns {
			err := decodeErr
			if i < decoded {
				err = p.handle(ctx, tx, Recorded[E]{ID: n.ID, Event: events[i]})
			}
			if err != nil {
				failed, cause = i, err
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return len(ns), nil
	case failed >= 0:
		nerr := &notificationError{what: "projection", name: p.core.name, id: ns[failed].ID, err: cause}
		if failed == 0 {
			return 0, nerr
		}
		// The batch was rolled back: apply those before the failure again,
		// on their own.
		done, err := p.processOnce(ctx, ns[:failed])
		if err != nil || done < failed {
			return done, err
		}
		return done, nerr
	case trackingConflict(err):
		return p.core.tracked(ctx, ns, err)
	}
	return 0, fmt.Errorf("eventsourcing: projection %s: notifications %d to %d: %w", p.core.name, t.First, t.NotificationID, err)
}

// isNilPointer reports whether v is a nil pointer in a non-nil interface.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}
