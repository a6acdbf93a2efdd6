package eventsourcing

// Aggregates: the Aggregate interface, Root (the embeddable base) and
// Trigger.

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Aggregate is what a [Repository] needs of an aggregate: a pointer to a
// struct that applies events to its own state and keeps its bookkeeping in
// a [Root]. Embedding Root provides AggregateRoot, so a user writes only
// Apply and the command methods:
//
//	type Account struct {
//		eventsourcing.Root
//		Balance int64 `json:"balance"`
//	}
//
//	func (a *Account) Apply(e eventsourcing.Event) {
//		switch e := e.(type) {
//		case *Deposited:
//			a.Balance += e.Amount
//		}
//	}
//
//	func (a *Account) Deposit(amount int64) error {
//		return eventsourcing.Trigger(a, &Deposited{Amount: amount})
//	}
//
// The aggregate's exported fields (and Root's created and modified times)
// are what a snapshot holds, in the Python library's layout.
type Aggregate interface {
	// Apply moves the aggregate's state on by one event. It is called when
	// the event is triggered and again whenever the aggregate is loaded, so
	// it must only record what the event says: no checks that can fail,
	// no side effects. ID, version and timestamps are kept by the Root.
	Apply(e Event)
	// AggregateRoot returns the aggregate's bookkeeping.
	AggregateRoot() *Root
}

// Root is the bookkeeping of an aggregate: its ID, its version (that of
// the last event applied), when it was created and last modified, and the
// events triggered since it was last saved. Embed it in an aggregate
// struct; the zero Root is a new aggregate with no ID yet. Its created and
// modified times are state (written into snapshots as "_created_on" and
// "_modified_on", as the Python library writes them); ID and version are
// not (a snapshot's originator columns hold them).
type Root struct {
	CreatedOn  time.Time `json:"_created_on"`
	ModifiedOn time.Time `json:"_modified_on"`

	id      uuid.UUID
	version int64
	pending []Event
}

// NewRoot returns the root of a new aggregate with the given ID, for
// aggregates whose ID is not random (such as one derived from a name with
// uuid.NewSHA1). A zero Root takes a random ID at its first event.
func NewRoot(id uuid.UUID) Root { return Root{id: id} }

// AggregateRoot returns r, so that a struct embedding Root implements
// [Aggregate] once it has an Apply method.
func (r *Root) AggregateRoot() *Root { return r }

// ID returns the aggregate's ID (uuid.Nil before its first event, unless
// made with NewRoot).
func (r *Root) ID() uuid.UUID { return r.id }

// Version returns the version of the last event applied, pending ones
// included: 0 for a new aggregate.
func (r *Root) Version() int64 { return r.version }

// PendingEvents returns the events triggered since the aggregate was last
// saved (or loaded), oldest first. Save records them and, if it succeeds,
// forgets them.
func (r *Root) PendingEvents() []Event { return r.pending }

// record moves the bookkeeping on to an event just applied.
func (r *Root) record(e Event, de *DomainEvent) {
	r.id, r.version = e.OriginatorID(), e.OriginatorVersion()
	if de != nil {
		if r.CreatedOn.IsZero() {
			r.CreatedOn = de.Timestamp
		}
		r.ModifiedOn = de.Timestamp
	}
}

// Trigger makes e the aggregate's next event and applies it: it sets e's
// originator ID (a new random one if the aggregate has none yet), its
// version (the aggregate's version plus one) and, if zero, its timestamp
// (now), then calls a.Apply(e) and keeps e as pending until the aggregate
// is saved. e must be a pointer to a struct that embeds [DomainEvent]
// (anything else is an error wrapping ErrProgramming, and nothing
// changes); its type must be registered with the repository's mapper.
// Commands check what they must before they trigger:
//
//	func (a *Account) Withdraw(amount int64) error {
//		if amount > a.Balance {
//			return ErrInsufficientFunds
//		}
//		return eventsourcing.Trigger(a, &Withdrawn{Amount: amount})
//	}
func Trigger(a Aggregate, e Event) error {
	de := domainEventOf(e)
	if de == nil {
		return fmt.Errorf("%w: Trigger: event %T is not a pointer to a struct embedding eventsourcing.DomainEvent", ErrProgramming, e)
	}
	r := a.AggregateRoot()
	if r.id == uuid.Nil {
		r.id = uuid.New()
	}
	de.Originator, de.Version = r.id, r.version+1
	if de.Timestamp.IsZero() {
		de.Timestamp = Now()
	}
	a.Apply(e)
	r.record(e, de)
	r.pending = append(r.pending, e)
	return nil
}

// applyLoaded applies an event read from the store (not pending).
func applyLoaded(a Aggregate, e Event) {
	a.Apply(e)
	a.AggregateRoot().record(e, domainEventOf(e))
}

// domainEventPaths caches, per event type, the index path of the
// DomainEvent its struct embeds (nil: none), as encoding/json caches
// struct fields.
var domainEventPaths sync.Map // reflect.Type -> []int

var domainEventType = reflect.TypeFor[DomainEvent]()

// domainEventOf returns the DomainEvent embedded in the struct e points
// to, or nil if e is not such a pointer.
func domainEventOf(e Event) *DomainEvent {
	v := reflect.ValueOf(e)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	typ := v.Type()
	path, ok := domainEventPaths.Load(typ)
	if !ok {
		var p []int
		if sf, found := typ.Elem().FieldByName("DomainEvent"); found && sf.Anonymous && sf.Type == domainEventType {
			p = sf.Index
		}
		path, _ = domainEventPaths.LoadOrStore(typ, p)
	}
	p := path.([]int)
	if p == nil {
		return nil
	}
	f, err := v.Elem().FieldByIndexErr(p)
	if err != nil { // a nil embedded pointer on the way
		return nil
	}
	return f.Addr().Interface().(*DomainEvent)
}
