package eventsourcing

// Snapshots: Snapshot, SnapshotStore and LoadAggregate.

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing/internal/transcode"
)

// SnapshotTopic is the topic under which snapshots are stored, the Python
// library's eventsourcing.domain:Snapshot, so that Go and Python
// applications can read each other's snapshots.
const SnapshotTopic = "eventsourcing.domain:Snapshot"

// Snapshot is the state S of an aggregate at a version, stored so that the
// aggregate can be rebuilt from it and the events after it instead of from
// all of its events. Its stored state has the Python library's layout:
// "timestamp", "topic" (the aggregate type's topic) and "state". If S
// (or what it points to) is a struct that implements [ClassVersioner], its
// version is written into "state" as the Python library does, and checked
// when the snapshot is read (see [SnapshotStore.Latest]).
type Snapshot[S any] struct {
	DomainEvent
	// Topic names the aggregate's type, such as
	// "interop_domain:BankAccount".
	Topic string `json:"topic"`
	// State is the aggregate's state at version DomainEvent.Version.
	State S `json:"state"`
}

// SnapshotStore records snapshots of aggregates of one state type S in an
// aggregate recorder (a snapshots table). Make it with [NewSnapshotStore]:
// every method of a store not made so (the zero SnapshotStore, or a nil
// *SnapshotStore) returns an error wrapping [ErrProgramming], and Mapper
// returns nil. It is safe for concurrent use if its recorder is.
type SnapshotStore[S any] struct {
	// AggregateTopic is written into snapshots put with an empty Topic,
	// and names the upcasters of S's older class versions (see Latest).
	AggregateTopic string
	// Personal, if not nil, holds the data keys that seal the [Personal]
	// values of snapshot states when they are put, and open them when
	// they are read: give the event store's.
	Personal *PersonalKeys
	store    *EventStore[*Snapshot[S]]
	// state is S as the mapper sees an event type: its class version. It
	// is nil if S is not a struct or a pointer to one, whose states the
	// transcoder writes no class version into.
	state *eventType
}

// NewSnapshotStore returns a snapshot store for aggregates of topic
// aggregateTopic, mapping snapshots with the given options (use the same
// transcoder, compressor and cipher as the application's events) and
// recording them with r, which should be a recorder on a snapshots table.
// A nil r is an error wrapping ErrProgramming.
func NewSnapshotStore[S any](aggregateTopic string, opts *MapperOptions, r AggregateRecorder) (*SnapshotStore[S], error) {
	if r == nil {
		return nil, fmt.Errorf("%w: NewSnapshotStore %q: nil recorder", ErrProgramming, aggregateTopic)
	}
	m := NewMapper[*Snapshot[S]](opts)
	if err := m.RegisterTopic(SnapshotTopic, &Snapshot[S]{}); err != nil {
		return nil, err
	}
	s := &SnapshotStore[S]{AggregateTopic: aggregateTopic, store: NewEventStore(m, r)}
	if et := newEventType(aggregateTopic, reflect.TypeFor[S]()); et.elem.Kind() == reflect.Struct {
		s.state = et
	}
	return s, nil
}

// check reports a store not made with NewSnapshotStore.
func (s *SnapshotStore[S]) check() error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil SnapshotStore (make one with NewSnapshotStore)", ErrProgramming)
	case s.store == nil:
		return fmt.Errorf("%w: SnapshotStore not made with NewSnapshotStore", ErrProgramming)
	}
	return nil
}

// Mapper returns the store's mapper, to register transcodings for the types
// the state holds, and upcasters for S's older class versions under the
// aggregate topic (see Latest). It returns nil for a store not made with
// NewSnapshotStore. Its FromStoredEvent decodes a snapshot without
// checking the class version of the snapshot's state: Latest checks it.
func (s *SnapshotStore[S]) Mapper() *Mapper[*Snapshot[S]] {
	if s.check() != nil {
		return nil
	}
	return s.store.Mapper
}

// Put records a snapshot, with the store's AggregateTopic if its Topic is
// empty and the current time if its Timestamp is zero; the snapshot given
// is left as it is. Two snapshots of the same aggregate version are an
// [ErrIntegrity] error; a nil snapshot, or a store not made with
// NewSnapshotStore, an [ErrProgramming] one.
func (s *SnapshotStore[S]) Put(ctx context.Context, snap *Snapshot[S]) error {
	if err := s.check(); err != nil {
		return err
	}
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
	st := *s.store
	st.Personal = s.Personal
	_, err := st.Put(ctx, &c)
	return err
}

// Latest returns the aggregate's newest snapshot whose version is at most
// lte (zero: any version), or nil and no error if there is none. A store
// not made with NewSnapshotStore is an error wrapping [ErrProgramming].
//
// The class version of the snapshot's state ("class_version" in "state", 1
// if absent, as in the Python library) is checked against S's
// ([ClassVersioner], 1 if not implemented) as [Mapper.FromStoredEvent]
// checks an event's: an older state is upcast by the upcasters registered
// with Mapper().Upcast under the store's AggregateTopic (or, if it has
// none, under the topic stored in the snapshot), each step in turn; a
// newer one, an older one without an upcaster for every step (none runs
// then), an upcaster's error, or a "class_version" that is not a positive
// integer is an error wrapping [ErrClassVersion] that names the topic and
// both versions. The check applies when S is a struct or a pointer to one
// without a registered [Transcoding] (the states the transcoder writes a
// class version into); other S get the state as stored.
func (s *SnapshotStore[S]) Latest(ctx context.Context, originatorID uuid.UUID, lte int64) (*Snapshot[S], error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	stored, err := s.store.Recorder.SelectEvents(ctx, originatorID, &Query{LTE: lte, Desc: true, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("latest snapshot of %s: %w", originatorID, err)
	}
	if len(stored) == 0 {
		return nil, nil
	}
	snap, err := s.fromStoredEvent(stored[0])
	if err == nil {
		snap, err = openPersonal(ctx, s.Personal, s.store.Mapper.Transcoder(), snap, originatorID)
	}
	if err != nil {
		return nil, fmt.Errorf("latest snapshot of %s: snapshot v%d (%s): %w", originatorID, stored[0].OriginatorVersion, stored[0].Topic, err)
	}
	return snap, nil
}

// fromStoredEvent is the mapper's FromStoredEvent with the snapshot's
// state brought to S's class version before it is decoded.
func (s *SnapshotStore[S]) fromStoredEvent(se StoredEvent) (*Snapshot[S], error) {
	m := s.store.Mapper
	m.init()
	m.mu.RLock()
	et, ok := m.types[se.Topic]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, se.Topic)
	}
	data, err := m.plaintext(se.State)
	if err != nil {
		return nil, err
	}
	mem, err := snapshotMembers(data)
	if err != nil {
		return nil, err
	}
	if mem.classVersion { // of the snapshot itself, as the mapper checks it
		if _, err := m.atClassVersion(se.Topic, et, nil, data); err != nil {
			return nil, err
		}
	}
	if mem.stateStart >= 0 {
		topic := mem.topic
		if topic == "" {
			topic = s.AggregateTopic
		}
		if data, err = s.upcastState(topic, data, mem.stateStart, mem.stateEnd); err != nil {
			return nil, err
		}
	}
	snap := new(Snapshot[S])
	if err := m.transcoder.decodeState(data, snap); err != nil {
		return nil, err
	}
	snap.SetOriginator(se.OriginatorID, se.OriginatorVersion)
	return snap, nil
}

// upcastState checks the class version of the snapshot state
// data[start:end] of an aggregate of topic against S's, and returns data
// with the state upcast to S's version if it is older (see Latest). The
// mapper's own machinery does the work: a state that surely is at S's
// version is not decoded, and an older one is upcast by the mapper's
// upcasters as an event's would be.
func (s *SnapshotStore[S]) upcastState(topic string, data []byte, start, end int) ([]byte, error) {
	st, m, state := s.state, s.store.Mapper, data[start:end]
	if st == nil || state[0] != '{' || st.atVersion(state) || m.transcoder.hasTranscoding(st.elem) || m.transcoder.hasTranscoding(st.typ) {
		return data, nil // no class version to check; "state": null decodes as such
	}
	m.mu.RLock()
	ups := m.upcasters[s.AggregateTopic]
	if ups == nil {
		ups = m.upcasters[topic]
	}
	m.mu.RUnlock()
	up, err := m.atClassVersion(topic, st, ups, state)
	if err != nil {
		return nil, err
	}
	return slices.Concat(data[:start], up, data[end:]), nil
}

// snapshotFields is what snapshotMembers finds in a snapshot's state.
type snapshotFields struct {
	topic                string // the aggregate's topic, "" if absent
	stateStart, stateEnd int    // where "state"'s value is; -1 if absent
	classVersion         bool   // the snapshot itself has a "class_version"
}

// snapshotMembers scans the top-level members of a snapshot's stored state
// (the last of repeated keys wins, as in Python) without decoding values.
// A state that is not an object is left for decoding to report.
func snapshotMembers(data []byte) (snapshotFields, error) {
	f := snapshotFields{stateStart: -1, stateEnd: -1}
	_, err := transcode.Members(data, func(k, v []byte) error {
		switch string(k) {
		case "topic":
			if s, ok, err := transcode.String(v); ok || err != nil {
				f.topic = s
				return err
			}
		case "class_version":
			f.classVersion = true
		case "state":
			f.stateStart = cap(data) - cap(v)
			f.stateEnd = f.stateStart + len(v)
		}
		return nil
	})
	return f, err
}

// LoadAggregate returns the latest snapshot of an aggregate (nil if it has
// none) and the events recorded after it, oldest first: what is needed to
// rebuild the aggregate's current state. A nil snapshots means no snapshot
// store: it returns a nil snapshot and all the events, as a [Repository]
// without one loads. A snapshot store not made with NewSnapshotStore is an
// error wrapping [ErrProgramming]; a snapshot whose state cannot be
// brought to S's class version one wrapping [ErrClassVersion] (see
// [SnapshotStore.Latest]).
func LoadAggregate[S any, E Event](ctx context.Context, snapshots *SnapshotStore[S], events *EventStore[E], originatorID uuid.UUID) (*Snapshot[S], []E, error) {
	var snap *Snapshot[S]
	if snapshots != nil {
		var err error
		if snap, err = snapshots.Latest(ctx, originatorID, 0); err != nil {
			return nil, nil, err
		}
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
