package eventsourcing

// Events: the Event interface, DomainEvent (the embeddable base) and
// ClassVersioner.

import (
	"time"

	"github.com/google/uuid"
)

// Event is a domain event: something that happened to one aggregate, its
// originator, which the event moves to a new version. Originator ID and
// version are stored in their own columns; everything else an event holds is
// its state.
//
// An event type registered with a [Mapper] must also let the mapper set the
// originator ID and version on a decoded value, through a pointer method
// SetOriginator(uuid.UUID, int64). Embedding [DomainEvent] provides all three
// methods.
type Event interface {
	OriginatorID() uuid.UUID
	OriginatorVersion() int64
}

// ClassVersioner is implemented by event types whose state layout changed
// over time. A version above 1 is written into the stored state as a trailing
// "class_version" key, as the Python library does, and older stored states
// are brought up to date by the mapper's upcasters when read.
type ClassVersioner interface {
	ClassVersion() int
}

// DomainEvent holds what every event has: the originator ID and version
// (columns, not state) and the timestamp (state, "timestamp"). Embed it in
// event structs:
//
//	type Deposited struct {
//		eventsourcing.DomainEvent
//		Amount int64 `json:"amount"`
//	}
type DomainEvent struct {
	Originator uuid.UUID `json:"-"`
	Version    int64     `json:"-"`
	Timestamp  time.Time `json:"timestamp"`
}

// NewDomainEvent returns a DomainEvent for the given originator and version,
// stamped with the current time in UTC truncated to microseconds (the
// precision stored timestamps keep, so the event reads back equal).
func NewDomainEvent(originatorID uuid.UUID, version int64) DomainEvent {
	return DomainEvent{Originator: originatorID, Version: version, Timestamp: Now()}
}

// Now returns the current time in UTC truncated to microseconds, the
// precision of stored timestamps.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// OriginatorID returns the ID of the aggregate the event belongs to.
func (e DomainEvent) OriginatorID() uuid.UUID { return e.Originator }

// OriginatorVersion returns the aggregate version the event creates.
func (e DomainEvent) OriginatorVersion() int64 { return e.Version }

// SetOriginator sets the originator ID and version; the mapper calls it when
// it reconstructs an event from a stored event.
func (e *DomainEvent) SetOriginator(id uuid.UUID, version int64) {
	e.Originator = id
	e.Version = version
}

// originatorSetter is what a mapper needs of an event type's pointer.
type originatorSetter interface {
	SetOriginator(id uuid.UUID, version int64)
}
