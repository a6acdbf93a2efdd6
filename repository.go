package eventsourcing

// Repository: load an aggregate, decide, save its new events; with snapshots
// and retries.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/google/uuid"
)

// Defaults of [RepositoryOptions].
const (
	// DefaultUpdateAttempts is how many times Update tries a command, in
	// all, when concurrent writers keep winning.
	DefaultUpdateAttempts = 10
	// DefaultUpdateRetryDelay is the wait before Update's first retry,
	// doubling up to DefaultUpdateMaxRetryDelay; each wait is drawn at
	// random up to that bound (full jitter), so that writers that collided
	// do not collide again.
	DefaultUpdateRetryDelay    = time.Millisecond
	DefaultUpdateMaxRetryDelay = 100 * time.Millisecond
)

// RepositoryOptions configures a [Repository]. The zero value (and nil)
// takes no snapshots, retries Update's conflicts DefaultUpdateAttempts
// times, and retries no transient error.
type RepositoryOptions struct {
	// SnapshotEvery, if positive, makes Save take a snapshot of an
	// aggregate whose saved events reach a multiple of SnapshotEvery (at
	// its version after the save), so that Load reads fewer than
	// SnapshotEvery events after the latest snapshot. Zero means no
	// automatic snapshots. It needs a snapshot store.
	SnapshotEvery int64
	// OnSnapshotError is called when a snapshot taken after a save cannot
	// be written. The save has succeeded all the same: a missing snapshot
	// only makes loading slower. Nil logs the error with slog.Default at
	// warning level.
	OnSnapshotError func(ctx context.Context, id uuid.UUID, err error)
	// Attempts is how many times, in all, Update runs its command when
	// saving it meets ErrIntegrity (another writer saved the aggregate
	// first), and how many times Save and Update try when RetryTransient
	// is set. Zero means DefaultUpdateAttempts; 1 means no retry; negative
	// means until the context ends.
	Attempts int
	// RetryDelay is the bound of the random wait before the first retry,
	// doubling with each retry up to MaxRetryDelay. Zero means
	// DefaultUpdateRetryDelay and DefaultUpdateMaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// RetryTransient makes Save and Update also retry errors that
	// [IsRetryable] reports transient (a lost connection, a lock timeout,
	// a serialization failure), as the Python library retries PostgreSQL
	// operational errors. Off by default. A connection lost during COMMIT
	// is checked by the SQL recorder on PostgreSQL (see
	// [SQLRecorder.InsertEvents]); where that check cannot be made, it
	// leaves unknown whether the first attempt was recorded: its retry may
	// then fail with ErrIntegrity against that attempt's own events
	// (Update then reloads and runs its command again, on the state that
	// includes them).
	RetryTransient bool
	// OnRetry, if not nil, is called with each error that will be retried
	// and the number of the attempt that failed (from 1), before the wait.
	OnRetry func(err error, attempt int)
}

// Repository loads and saves aggregates of one type A (a pointer to a
// struct implementing [Aggregate]) through an event store of [Event], and
// optionally a snapshot store of A. It is the layer the Python library
// calls Application: Load (repository.get), Save (Application.save),
// Update (load, decide, save, and again on a conflict) and snapshotting
// intervals. It is safe for concurrent use; aggregates are not (each
// goroutine loads its own).
type Repository[A Aggregate] struct {
	events    *EventStore[Event]
	snapshots *SnapshotStore[A]
	o         RepositoryOptions
	elem      reflect.Type // the struct A points to
}

// NewRepository returns a repository of aggregates of type A whose events
// are in events and whose snapshots, if snapshots is not nil, are in
// snapshots (make it with the same mapper options as the events, and the
// aggregate's topic). A that is not a pointer to a struct, a nil event
// store or one without mapper or recorder, a negative SnapshotEvery, or
// SnapshotEvery without a snapshot store is an error wrapping
// ErrProgramming.
func NewRepository[A Aggregate](events *EventStore[Event], snapshots *SnapshotStore[A], opts *RepositoryOptions) (*Repository[A], error) {
	r := &Repository[A]{events: events, snapshots: snapshots}
	if opts != nil {
		r.o = *opts
	}
	typ := reflect.TypeFor[A]()
	switch {
	case typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct:
		return nil, fmt.Errorf("%w: repository: aggregate type %v is not a pointer to a struct", ErrProgramming, typ)
	case events == nil:
		return nil, fmt.Errorf("%w: repository: nil event store", ErrProgramming)
	case r.o.SnapshotEvery < 0:
		return nil, fmt.Errorf("%w: repository: negative SnapshotEvery %d", ErrProgramming, r.o.SnapshotEvery)
	case r.o.SnapshotEvery > 0 && snapshots == nil:
		return nil, fmt.Errorf("%w: repository: SnapshotEvery %d needs a snapshot store", ErrProgramming, r.o.SnapshotEvery)
	}
	r.elem = typ.Elem()
	if err := events.check(); err != nil {
		return nil, err
	}
	if r.o.Attempts == 0 {
		r.o.Attempts = DefaultUpdateAttempts
	}
	if r.o.RetryDelay <= 0 {
		r.o.RetryDelay = DefaultUpdateRetryDelay
	}
	if r.o.MaxRetryDelay <= 0 {
		r.o.MaxRetryDelay = DefaultUpdateMaxRetryDelay
	}
	r.o.MaxRetryDelay = max(r.o.MaxRetryDelay, r.o.RetryDelay)
	return r, nil
}

// Load returns the aggregate's current state: its latest snapshot, if a
// snapshot store is configured and has one, with the events recorded after
// it applied, or else all its events applied to a new A. A snapshot whose
// state's class version cannot be read ([ErrClassVersion]: written by a
// newer version of the program, or older with no upcaster) is skipped, and
// the events replayed. An aggregate with neither is an error wrapping
// [ErrAggregateNotFound].
func (r *Repository[A]) Load(ctx context.Context, id uuid.UUID) (A, error) {
	return r.load(ctx, id, 0)
}

// LoadAt returns the aggregate as it was at a version (or at its latest
// version, if that is lower): for history, audits and debugging. It starts
// from the latest snapshot at or below that version, if any. A version
// below 1 is an error wrapping ErrProgramming; an aggregate without events
// one wrapping ErrAggregateNotFound.
func (r *Repository[A]) LoadAt(ctx context.Context, id uuid.UUID, version int64) (A, error) {
	if version < 1 {
		var zero A
		return zero, fmt.Errorf("%w: load aggregate %s at version %d: versions start at 1", ErrProgramming, id, version)
	}
	return r.load(ctx, id, version)
}

func (r *Repository[A]) load(ctx context.Context, id uuid.UUID, lte int64) (A, error) {
	var zero A
	var a A
	q := &Query{LTE: lte}
	if r.snapshots != nil {
		snap, err := r.snapshots.Latest(ctx, id, lte)
		if errors.Is(err, ErrClassVersion) {
			// A snapshot this program cannot read (written by a newer
			// version, or older with no upcaster) is a cache that does
			// not fit: the events are the truth.
			snap, err = nil, nil
		}
		if err != nil {
			return zero, fmt.Errorf("load aggregate: %w", err)
		}
		if snap != nil {
			if reflect.ValueOf(snap.State).IsNil() { // a snapshot of "state": null
				snap.State = r.newAggregate()
			}
			a = snap.State
			root := a.AggregateRoot()
			root.id, root.version, root.pending = snap.Originator, snap.Version, nil
			q.GT = snap.Version
		}
	}
	if q.GT == 0 {
		a = r.newAggregate()
	}
	for e, err := range r.events.Events(ctx, id, q) {
		if err != nil {
			return zero, fmt.Errorf("load aggregate %s: %w", id, err)
		}
		applyLoaded(a, e)
	}
	if a.AggregateRoot().version == 0 {
		return zero, fmt.Errorf("load aggregate %s: %w", id, ErrAggregateNotFound)
	}
	return a, nil
}

func (r *Repository[A]) newAggregate() A {
	return reflect.New(r.elem).Interface().(A)
}

// Save records the pending events of all the given aggregates in one
// atomic Put, so that a command that changed several aggregates is
// recorded whole or not at all, and returns their notification IDs (nil if
// the recorder assigns none, or if no aggregate has pending events). If any
// aggregate's events conflict with recorded ones (another writer saved it
// first), the error wraps [ErrIntegrity], nothing is recorded and every
// aggregate keeps its pending events: load it again and decide again (or
// use Update). On success the pending events are forgotten, and snapshots
// are taken as SnapshotEvery asks; a snapshot that fails does not fail the
// save (see OnSnapshotError). With RetryTransient, a transient error is
// retried as RepositoryOptions says. A nil aggregate is an error wrapping
// ErrProgramming.
func (r *Repository[A]) Save(ctx context.Context, aggregates ...A) ([]int64, error) {
	return r.save(ctx, nil, aggregates, r.o.RetryTransient)
}

// SaveWithTracking is Save with a tracking record written in the same
// transaction: the upstream notification the changes were made from, for a
// process application (see [EventStore.PutWithTracking]). It writes the
// tracking record even if no aggregate has pending events.
func (r *Repository[A]) SaveWithTracking(ctx context.Context, tracking Tracking, aggregates ...A) ([]int64, error) {
	return r.save(ctx, &tracking, aggregates, r.o.RetryTransient)
}

func (r *Repository[A]) save(ctx context.Context, tracking *Tracking, aggregates []A, retry bool) ([]int64, error) {
	var events []Event
	for i, a := range aggregates {
		if v := reflect.ValueOf(a); !v.IsValid() || v.IsNil() {
			return nil, fmt.Errorf("%w: save: aggregate %d of %d is nil", ErrProgramming, i+1, len(aggregates))
		}
		events = append(events, a.AggregateRoot().pending...)
	}
	if len(events) == 0 && tracking == nil {
		return nil, nil
	}
	var ids []int64
	err := r.retry(ctx, retry, false, func() (err error) {
		if tracking != nil {
			ids, err = r.events.PutWithTracking(ctx, *tracking, events...)
		} else {
			ids, err = r.events.Put(ctx, events...)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("save %d event(s) of %d aggregate(s): %w", len(events), len(aggregates), err)
	}
	for _, a := range aggregates {
		root := a.AggregateRoot()
		n := int64(len(root.pending))
		root.pending = nil
		if every := r.o.SnapshotEvery; every > 0 && n > 0 && (root.version-n)/every < root.version/every {
			if err := r.TakeSnapshot(ctx, a); err != nil {
				r.snapshotFailed(ctx, root.id, err)
			}
		}
	}
	return ids, nil
}

func (r *Repository[A]) snapshotFailed(ctx context.Context, id uuid.UUID, err error) {
	if r.o.OnSnapshotError != nil {
		r.o.OnSnapshotError(ctx, id, err)
		return
	}
	slog.Default().WarnContext(ctx, "eventsourcing: snapshot not taken (the save succeeded)", "aggregate", id, "err", err)
}

// TakeSnapshot records a snapshot of a saved aggregate at its version, in
// the Python library's layout (topic eventsourcing.domain:Snapshot, with
// the snapshot store's aggregate topic and A's exported fields as state).
// Save calls it as SnapshotEvery asks; call it to snapshot on your own
// schedule. An aggregate with pending events, or a repository without a
// snapshot store, is an error wrapping ErrProgramming; a snapshot of that
// version recorded already one wrapping ErrIntegrity.
func (r *Repository[A]) TakeSnapshot(ctx context.Context, a A) error {
	root := a.AggregateRoot()
	switch {
	case r.snapshots == nil:
		return fmt.Errorf("%w: snapshot: the repository has no snapshot store", ErrProgramming)
	case len(root.pending) > 0:
		return fmt.Errorf("%w: snapshot of %s: %d event(s) not saved", ErrProgramming, root.id, len(root.pending))
	case root.version == 0:
		return fmt.Errorf("%w: snapshot: the aggregate has no events", ErrProgramming)
	}
	snap := &Snapshot[A]{DomainEvent: NewDomainEvent(root.id, root.version), State: a}
	if err := r.snapshots.Put(ctx, snap); err != nil {
		return fmt.Errorf("snapshot of %s at version %d: %w", root.id, root.version, err)
	}
	return nil
}

// Update loads the aggregate, runs the command fn on it and saves what fn
// triggered, returning the saved aggregate. If the save meets
// [ErrIntegrity] because another writer saved the aggregate first, Update
// loads it again and runs fn again, up to Attempts times in all, with a
// random wait that grows between attempts; with RetryTransient it does so
// after transient errors too. So fn may run more than once, each time on a
// fresh aggregate: it must decide only from the aggregate it is given and
// have no effect outside it (or only idempotent ones). An error that fn
// returns is returned as it is, and nothing is saved. An aggregate that
// does not exist is an error wrapping ErrAggregateNotFound (create new
// aggregates with Trigger and Save). When attempts run out, the error
// wraps the last conflict.
func (r *Repository[A]) Update(ctx context.Context, id uuid.UUID, fn func(A) error) (A, error) {
	var zero, saved A
	var cmdErr error
	err := r.retry(ctx, r.o.RetryTransient, true, func() error {
		a, err := r.Load(ctx, id)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			cmdErr = err
			return nil
		}
		if _, err := r.save(ctx, nil, []A{a}, false); err != nil {
			return err
		}
		saved = a
		return nil
	})
	switch {
	case cmdErr != nil:
		return zero, cmdErr
	case err != nil:
		return zero, fmt.Errorf("update: %w", err) // err names the aggregate
	}
	return saved, nil
}

// retry runs f until it succeeds, fails with an error not to retry, or
// the attempts run out. transient retries IsRetryable errors, conflicts
// retries ErrIntegrity.
func (r *Repository[A]) retry(ctx context.Context, transient, conflicts bool, f func() error) error {
	bound := r.o.RetryDelay
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		retryable := (conflicts && errors.Is(err, ErrIntegrity)) || (transient && IsRetryable(err))
		if !retryable || (r.o.Attempts > 0 && attempt >= r.o.Attempts) {
			if retryable {
				return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
			}
			return err
		}
		if r.o.OnRetry != nil {
			r.o.OnRetry(err, attempt)
		}
		t := time.NewTimer(rand.N(bound) + 1)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (waiting to retry after: %w)", context.Cause(ctx), err)
		}
		bound = min(2*bound, r.o.MaxRetryDelay)
	}
}
