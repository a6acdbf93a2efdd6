package eventsourcing

// This file holds MemoryView, the in-memory ProjectionStore: a view's state
// and its tracking records, for tests and prototypes.

import (
	"context"
	"fmt"
	"sync"
)

// MemoryView is a [ProjectionStore] in memory: a view's state of type V
// (a map, a pointer to a struct of maps) and its tracking records, with
// the same exactly-once semantics as an [SQLRecorder]'s transactions, for
// tests and prototypes. A transaction's handlers work on a copy of the
// state, made by the clone function: it replaces the state when the
// transaction commits, and is dropped when a handler fails, so a failed
// batch leaves nothing behind. Read the state with Read: the value given
// to NewMemoryView is the initial state, not kept up to date. It is safe
// for concurrent use.
type MemoryView[V any] struct {
	mu       sync.RWMutex
	state    V
	clone    func(V) V
	tracking map[string]int64
	commits  commitSignal
}

var (
	_ ProjectionStore[map[string]int] = (*MemoryView[map[string]int])(nil)
	_ Waker                           = (*MemoryView[int])(nil)
)

// NewMemoryView returns a view whose state starts as state, copied by
// clone for each transaction (for a map, maps.Clone; for a struct, a
// function copying what the handlers change). A nil clone makes every
// transaction fail with ErrProgramming.
func NewMemoryView[V any](state V, clone func(V) V) *MemoryView[V] {
	return &MemoryView[V]{state: state, clone: clone, tracking: map[string]int64{}}
}

// Read calls fn with the view's state, as of the last commit. fn must not
// change it, nor keep it after it returns.
func (v *MemoryView[V]) Read(fn func(state V)) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	fn(v.state)
}

// WithTracking runs fn on a copy of the state and, if it returns nil,
// makes the copy the state and records t, at once; transactions are one
// at a time. A tracking record that is not after the last recorded for its
// application is an *[IntegrityError], and fn is not called.
func (v *MemoryView[V]) WithTracking(ctx context.Context, t Tracking, fn func(ctx context.Context, tx V) error) error {
	if err := checkTrackingRecord(&t); err != nil {
		return err
	}
	switch {
	case t.ApplicationName == "":
		return fmt.Errorf("%w: tracking record with an empty application name", ErrProgramming)
	case fn == nil:
		return fmt.Errorf("%w: WithTracking: nil function", ErrProgramming)
	case v.clone == nil:
		return fmt.Errorf("%w: MemoryView without a clone function", ErrProgramming)
	}
	if err := ctxErr(ctx, "with tracking"); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if last, ok := v.tracking[t.ApplicationName]; ok && t.lowest() <= last {
		return &IntegrityError{Table: "tracking", Tracking: &t,
			Err: fmt.Errorf("notification %d of %q is not after the last tracked, %d", t.lowest(), t.ApplicationName, last)}
	}
	work := v.clone(v.state)
	if err := fn(ctx, work); err != nil {
		return err
	}
	v.state = work
	v.tracking[t.ApplicationName] = t.NotificationID
	v.commits.broadcast()
	return nil
}

// ResetTracking deletes the tracking record of applicationName and runs
// reset (if not nil) on a copy of the state, which then becomes the state.
func (v *MemoryView[V]) ResetTracking(ctx context.Context, applicationName string, reset func(ctx context.Context, tx V) error) error {
	if err := checkTrackingName(applicationName); err != nil {
		return err
	}
	if v.clone == nil {
		return fmt.Errorf("%w: MemoryView without a clone function", ErrProgramming)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	work := v.clone(v.state)
	if reset != nil {
		if err := reset(ctx, work); err != nil {
			return err
		}
	}
	v.state = work
	delete(v.tracking, applicationName)
	v.commits.broadcast()
	return nil
}

// MaxTrackingID returns the highest notification ID tracked for the
// upstream application, or 0.
func (v *MemoryView[V]) MaxTrackingID(ctx context.Context, applicationName string) (int64, error) {
	if err := ctxErr(ctx, "max tracking id"); err != nil {
		return 0, err
	}
	if err := checkTrackingName(applicationName); err != nil {
		return 0, err
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.tracking[applicationName], nil
}

// HasTrackingID reports whether the upstream notification was processed.
func (v *MemoryView[V]) HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error) {
	last, err := v.MaxTrackingID(ctx, applicationName)
	if err != nil {
		return false, err
	}
	return last > 0 && notificationID <= last, nil
}

// Wake calls wake after each commit of the view, for [WaitTracking].
func (v *MemoryView[V]) Wake(ctx context.Context, listen bool, wake func()) {
	followSignal(ctx, &v.commits, wake)
}
