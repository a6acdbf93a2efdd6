package eventsourcing

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// SnapshotTopic is the topic under which snapshots are stored, the Python
// library's eventsourcing.domain:Snapshot, so that Go and Python
// applications can read each other's snapshots.
const SnapshotTopic = "eventsourcing.domain:Snapshot"

// Snapshot is the state S of an aggregate at a version, stored so that the
// aggregate can be rebuilt from it and the events after it instead of from
// all of its events. Its stored state has the Python library's layout:
// "timestamp", "topic" (the aggregate type's topic) and "state". If S
// implements [ClassVersioner], its version is written into "state" as the
// Python library does.
type Snapshot[S any] struct {
	DomainEvent
	// Topic names the aggregate's type, such as
	// "interop_domain:BankAccount".
	Topic string `json:"topic"`
	// State is the aggregate's state at version DomainEvent.Version.
	State S `json:"state"`
}

// SnapshotStore records snapshots of aggregates of one state type S in an
// aggregate recorder (a snapshots table). It is safe for concurrent use if
// its recorder is.
type SnapshotStore[S any] struct {
	// AggregateTopic is written into snapshots put with an empty Topic.
	AggregateTopic string
	store          *EventStore[*Snapshot[S]]
}

// NewSnapshotStore returns a snapshot store for aggregates of topic
// aggregateTopic, mapping snapshots with the given options (use the same
// transcoder, compressor and cipher as the application's events) and
// recording them with r, which should be a recorder on a snapshots table.
func NewSnapshotStore[S any](aggregateTopic string, opts *MapperOptions, r AggregateRecorder) (*SnapshotStore[S], error) {
	m := NewMapper[*Snapshot[S]](opts)
	if err := m.RegisterTopic(SnapshotTopic, &Snapshot[S]{}); err != nil {
		return nil, err
	}
	return &SnapshotStore[S]{AggregateTopic: aggregateTopic, store: NewEventStore(m, r)}, nil
}

// Mapper returns the store's mapper, to register transcodings for the types
// the state holds.
func (s *SnapshotStore[S]) Mapper() *Mapper[*Snapshot[S]] { return s.store.Mapper }

// Put records a snapshot, with the store's AggregateTopic if its Topic is
// empty and the current time if its Timestamp is zero; the snapshot given
// is left as it is. Two snapshots of the same aggregate version are an
// [ErrIntegrity] error, a nil snapshot an [ErrProgramming] one.
func (s *SnapshotStore[S]) Put(ctx context.Context, snap *Snapshot[S]) error {
	if snap == nil {
		return fmt.Errorf("%w: nil snapshot", ErrProgramming)
	}
	c := *snap
	if c.Topic == "" {
		c.Topic = s.AggregateTopic
	}
	if c.Timestamp.IsZero() {
		c.Timestamp = Now()
	}
	_, err := s.store.Put(ctx, &c)
	return err
}

// Latest returns the aggregate's newest snapshot whose version is at most
// lte (zero: any version), or nil and no error if there is none.
func (s *SnapshotStore[S]) Latest(ctx context.Context, originatorID uuid.UUID, lte int64) (*Snapshot[S], error) {
	snaps, err := s.store.Get(ctx, originatorID, &Query{LTE: lte, Desc: true, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("latest snapshot of %s: %w", originatorID, err)
	}
	if len(snaps) == 0 {
		return nil, nil
	}
	return snaps[0], nil
}

// LoadAggregate returns the latest snapshot of an aggregate (nil if it has
// none) and the events recorded after it, oldest first: what is needed to
// rebuild the aggregate's current state.
func LoadAggregate[S any, E Event](ctx context.Context, snapshots *SnapshotStore[S], events *EventStore[E], originatorID uuid.UUID) (*Snapshot[S], []E, error) {
	snap, err := snapshots.Latest(ctx, originatorID, 0)
	if err != nil {
		return nil, nil, err
	}
	var q *Query
	if snap != nil {
		q = &Query{GT: snap.Version}
	}
	evs, err := events.Get(ctx, originatorID, q)
	if err != nil {
		return nil, nil, fmt.Errorf("events of %s after its snapshot: %w", originatorID, err)
	}
	return snap, evs, nil
}
