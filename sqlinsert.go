package eventsourcing

// The insert path's helpers: the writer turn, cancelUntil, the ID-count
// guard and conflict details.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

func (r *SQLRecorder) insertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	if tracking != nil && r.snapshots {
		return nil, &DatabaseError{Kind: ErrProgramming, Op: "insert events", Table: r.events.String(), Err: errors.New("a snapshots recorder keeps no tracking records")}
	}
	if tracking != nil {
		if err := checkTrackingRecord(tracking); err != nil {
			return nil, err
		}
	}
	if len(events) == 0 && tracking == nil {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, r.ctxError(ctx, "insert events")
	}
	ids, err := r.group.insert(ctx, events, tracking)
	if errors.Is(err, errAbandonedCall) {
		return nil, r.ctxError(ctx, "insert events")
	}
	if err != nil {
		r.conflictDetail(ctx, events, err)
		return nil, err
	}
	if r.snapshots {
		return nil, nil // snapshots have no notification IDs
	}
	return checkIDs(r.events.String(), ids, len(events))
}

// checkIDs is the last guard of "a nil error means every event is written
// under the returned IDs", at the boundary of every recorder's
// InsertEvents: a success with a number of IDs other than the number of
// events (which no correct path gives) is an error saying the outcome is
// unknown.
func checkIDs(table string, ids []int64, events int) ([]int64, error) {
	if len(ids) != events {
		return nil, &DatabaseError{Kind: ErrOperational, Op: "insert events", Table: table,
			Err: fmt.Errorf("%w: internal error: %d notification IDs for %d events", ErrOutcomeUnknown, len(ids), events)}
	}
	return ids, nil
}

// ctxError is the error of a call whose context ended before its events
// were written.
func (r *SQLRecorder) ctxError(ctx context.Context, op string) error {
	return &DatabaseError{Kind: ErrOperational, Op: op, Table: r.events.String(), Err: context.Cause(ctx)}
}

// acquireWriter takes the single-writer turn (SQLite), or returns the
// context's error.
func (r *SQLRecorder) acquireWriter(ctx context.Context) error {
	if r.writeMu == nil {
		return nil
	}
	select {
	case r.writeMu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (r *SQLRecorder) releaseWriter() {
	if r.writeMu != nil {
		<-r.writeMu
	}
}

// cancelUntil returns a context that is cancelled with parent until disarm
// is called, and never after a disarm that returns nil. disarm returns the
// parent's error if the parent ended first. release frees the context. A
// transaction begun under it can be cancelled up to its point of no
// return, and its COMMIT cannot be. Once disarm has returned nil, it
// returns nil again: it is called by one goroutine.
func cancelUntil(parent context.Context) (ctx context.Context, disarm func() error, release context.CancelFunc) {
	if parent.Done() == nil {
		// Never cancelled (context.Background): nothing to disarm, and no
		// Done channel for database/sql and the driver to watch with
		// goroutines of their own.
		return parent, noErr, noCancel
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { cancel(context.Cause(parent)) })
	disarmed := false
	disarm = func() error {
		if disarmed {
			return nil
		}
		// stop reports false once the parent has ended (even if cancel has
		// not run yet): the parent's cause is then set.
		if !stop() {
			return context.Cause(parent)
		}
		disarmed = true
		return nil
	}
	return ctx, disarm, func() { stop(); cancel(nil) }
}

func noErr() error { return nil }
func noCancel()    {}

// conflictDetail fills in which event conflicted, when err is an
// *IntegrityError about events that does not say: a duplicate within the
// batch, or the first event of the batch already recorded.
func (r *SQLRecorder) conflictDetail(ctx context.Context, events []StoredEvent, err error) {
	var ie *IntegrityError
	if !errors.As(err, &ie) || ie.Tracking != nil || ie.OriginatorID != uuid.Nil || len(events) == 0 {
		return
	}
	if id, v, ok := duplicateInBatch(events); ok {
		ie.OriginatorID, ie.Version = id, v
		return
	}
	// Look the batch's versions up, one query per aggregate, briefly.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	byAgg := map[uuid.UUID][2]int64{}
	var order []uuid.UUID
	for _, e := range events {
		b, ok := byAgg[e.OriginatorID]
		if !ok {
			order = append(order, e.OriginatorID)
			b = [2]int64{e.OriginatorVersion, e.OriginatorVersion}
		}
		byAgg[e.OriginatorID] = [2]int64{min(b[0], e.OriginatorVersion), max(b[1], e.OriginatorVersion)}
	}
	for _, id := range order {
		b := byAgg[id]
		stored, err := r.SelectEvents(ctx, id, &Query{GTE: b[0], LTE: b[1]})
		if err != nil {
			return
		}
		for _, e := range events {
			if e.OriginatorID != id {
				continue
			}
			if _, found := slices.BinarySearchFunc(stored, e.OriginatorVersion, func(s StoredEvent, v int64) int {
				return int(min(max(s.OriginatorVersion-v, -1), 1))
			}); found {
				ie.OriginatorID, ie.Version = id, e.OriginatorVersion
				return
			}
		}
	}
}

// duplicateInBatch returns the first (originator ID, version) that appears
// twice in events.
func duplicateInBatch(events []StoredEvent) (uuid.UUID, int64, bool) {
	type key struct {
		id uuid.UUID
		v  int64
	}
	seen := make(map[key]struct{}, len(events))
	for _, e := range events {
		k := key{e.OriginatorID, e.OriginatorVersion}
		if _, dup := seen[k]; dup {
			return e.OriginatorID, e.OriginatorVersion, true
		}
		seen[k] = struct{}{}
	}
	return uuid.Nil, 0, false
}
