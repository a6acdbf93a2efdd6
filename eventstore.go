package eventsourcing

// EventStore: typed events in, typed events out, through a Mapper and a
// recorder.

import (
	"context"
	"fmt"
	"iter"
	"reflect"

	"github.com/google/uuid"
)

// DefaultPageSize is how many stored events [EventStore.Events] reads per
// query when the store's PageSize is zero.
const DefaultPageSize = 1000

// EventStore puts typed domain events into a recorder and gets them back,
// typed and in order. It needs both a Mapper and a Recorder: without either
// (as in the zero EventStore, or a nil *EventStore) every method returns an
// error wrapping [ErrProgramming]. It is safe for concurrent use if its
// mapper and recorder are.
type EventStore[E Event] struct {
	Mapper   *Mapper[E]
	Recorder AggregateRecorder
	// PageSize is how many stored events Events reads per query; zero means
	// DefaultPageSize.
	PageSize int
	// Observer, if not nil, is told when each Put and each Get (or Events
	// iteration) starts and ends, with counts, durations and errors.
	Observer Observer
	// Personal, if not nil, holds the data keys that seal the [Personal]
	// values of events when they are put, and open them when they are
	// read (Get, Events, Subscribe, runners and projections following
	// the store). Without it, an event holding a Personal value is an
	// error wrapping ErrProgramming, written or read.
	Personal *PersonalKeys
}

// NewEventStore returns an event store that maps events with m and records
// them with r.
func NewEventStore[E Event](m *Mapper[E], r AggregateRecorder) *EventStore[E] {
	return &EventStore[E]{Mapper: m, Recorder: r}
}

// Put maps the events and records them atomically, returning their
// notification IDs (nil if the recorder assigns none). A version that was
// already recorded fails the whole call with [ErrIntegrity]; an event type
// without a topic fails it with [ErrUnknownTopic]. Nothing is recorded on
// error.
func (s *EventStore[E]) Put(ctx context.Context, events ...E) ([]int64, error) {
	return s.put(ctx, nil, events)
}

// PutWithTracking is Put with a tracking record written in the same
// transaction: the upstream notification that the events were made from.
// The recorder must be a [ProcessRecorder]. A tracking ID that is not higher
// than the last one recorded for its application fails with [ErrIntegrity]
// and records nothing. With no events, only the tracking record is written.
func (s *EventStore[E]) PutWithTracking(ctx context.Context, tracking Tracking, events ...E) ([]int64, error) {
	return s.put(ctx, &tracking, events)
}

// check reports an event store that lacks its mapper or recorder.
func (s *EventStore[E]) check() error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil EventStore", ErrProgramming)
	case s.Mapper == nil:
		return fmt.Errorf("%w: EventStore has no Mapper", ErrProgramming)
	case s.Recorder == nil:
		return fmt.Errorf("%w: EventStore has no Recorder", ErrProgramming)
	}
	return nil
}

func (s *EventStore[E]) put(ctx context.Context, tracking *Tracking, events []E) ([]int64, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	stored := make([]StoredEvent, len(events))
	for i, e := range events {
		e, err := s.seal(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("put event %d of %d: %w", i+1, len(events), err)
		}
		se, err := s.Mapper.ToStoredEvent(e)
		if err != nil {
			return nil, fmt.Errorf("put event %d of %d: %w", i+1, len(events), err)
		}
		stored[i] = se
	}
	ctx, end := observe(ctx, s.Observer, Op{Kind: OpPut, Events: len(stored)})
	ids, err := s.Recorder.InsertEvents(ctx, stored, tracking)
	res := OpResult{Err: err}
	if err == nil {
		res.Rows = len(stored)
		if len(ids) > 0 {
			res.LastID = ids[len(ids)-1]
		}
	}
	end(res)
	return ids, err
}

// Get returns the events of one aggregate within the query's bounds (nil
// means all of them, oldest first). It reads stored events PageSize at a
// time, so at most one page of stored states is held besides the typed
// events it returns.
func (s *EventStore[E]) Get(ctx context.Context, originatorID uuid.UUID, q *Query) ([]E, error) {
	var events []E
	for e, err := range s.Events(ctx, originatorID, q) {
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}

// Events iterates over the events of one aggregate within the query's bounds,
// reading PageSize stored events per query, so that a long sequence is never
// held in memory at once. Iteration stops after the first error, which is
// yielded with the zero E. A stored event that cannot be read (a bad row,
// ErrData) or decoded fails only itself: every event before it is yielded
// first.
func (s *EventStore[E]) Events(ctx context.Context, originatorID uuid.UUID, q *Query) iter.Seq2[E, error] {
	return func(yield func(E, error) bool) {
		var zero E
		if err := s.check(); err != nil {
			yield(zero, err)
			return
		}
		page := Query{}
		if q != nil {
			page = *q
		}
		ctx, end := observe(ctx, s.Observer, Op{Kind: OpGet, OriginatorID: originatorID, Limit: max(page.Limit, 0)})
		var res OpResult
		defer func() { end(res) }()
		remaining := page.Limit // <= 0: no limit
		size := s.PageSize
		if size <= 0 {
			size = DefaultPageSize
		}
		for {
			page.Limit = size
			if remaining > 0 && remaining < size {
				page.Limit = remaining
			}
			stored, err := selectEvents(ctx, s.Recorder, originatorID, &page)
			for _, se := range stored {
				e, err := s.decode(ctx, se)
				if err != nil {
					res.Err = err
					yield(zero, err)
					return
				}
				res.Rows++
				if !yield(e, nil) {
					return
				}
			}
			if err != nil { // after the good rows before a bad one, if any
				res.Err = err
				yield(zero, err)
				return
			}
			if remaining > 0 {
				remaining -= len(stored)
				if remaining == 0 {
					return
				}
			}
			if len(stored) < page.Limit {
				return
			}
			last := stored[len(stored)-1].OriginatorVersion
			if page.Desc {
				page.LT = last
			} else {
				page.GT = last
			}
		}
	}
}

// partialEvents is a recorder that can return the events before a stored
// row that does not fit together with that row's error (ErrData), where
// SelectEvents returns the error alone: [SQLRecorder] and
// [ReplicatedRecorder]. Events uses it to yield those events first; with a
// recorder that lacks it, a bad row's error comes without the events of its
// page before it.
type partialEvents interface {
	selectEventsPartial(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error)
}

// selectEvents is rec's SelectEvents, or its selectEventsPartial if it has
// it.
func selectEvents(ctx context.Context, rec AggregateRecorder, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	if p, ok := rec.(partialEvents); ok {
		return p.selectEventsPartial(ctx, originatorID, q)
	}
	return rec.SelectEvents(ctx, originatorID, q)
}

// seal returns e with its Personal values sealed (a copy: e is not
// changed), or e itself if it holds none.
func (s *EventStore[E]) seal(ctx context.Context, e E) (E, error) {
	if v := reflect.ValueOf(e); !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
		return e, nil // the mapper reports it
	}
	return sealPersonal(ctx, s.Personal, s.Mapper.Transcoder(), e, e.OriginatorID())
}

// decode is the mapper's FromStoredEvent with the event's Personal values
// opened (or found forgotten).
func (s *EventStore[E]) decode(ctx context.Context, se StoredEvent) (E, error) {
	e, err := s.Mapper.FromStoredEvent(se)
	if err != nil {
		return e, err
	}
	e, err = openPersonal(ctx, s.Personal, s.Mapper.Transcoder(), e, se.OriginatorID)
	if err != nil {
		var zero E
		return zero, fmt.Errorf("event %s v%d (%s): %w", se.OriginatorID, se.OriginatorVersion, se.Topic, err)
	}
	return e, nil
}
