package eventsourcing_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
)

// CustomerRegistered is an event with personal data: Name and Email are
// the customer's (the originator's), sealed under the customer's data
// key; Country is not personal and stays readable for ever.
type CustomerRegistered struct {
	eventsourcing.DomainEvent
	Name    eventsourcing.Personal[string] `json:"name"`
	Email   eventsourcing.Personal[string] `json:"email"`
	Country string                         `json:"country"`
}

// FriendReferred carries personal data of another subject: the friend's
// name is sealed under the friend's key, named by the personal tag.
type FriendReferred struct {
	eventsourcing.DomainEvent
	FriendID   uuid.UUID                      `json:"friend_id"`
	FriendName eventsourcing.Personal[string] `json:"friend_name" personal:"FriendID"`
}

// customerStore returns an event store of the customer events with
// personal data keys, in memory.
func customerStore() *eventsourcing.EventStore[eventsourcing.Event] {
	m := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := errors.Join(
		m.RegisterTopic("crm:CustomerRegistered", &CustomerRegistered{}),
		m.RegisterTopic("crm:FriendReferred", &FriendReferred{}),
	); err != nil {
		log.Fatal(err)
	}
	events := eventsourcing.NewEventStore(m, eventsourcing.NewMemoryRecorder())
	events.Personal = eventsourcing.NewMemoryPersonalKeys(nil)
	return events
}

// ExamplePersonal marks personal data with Personal and puts it: the
// stored state holds a key identifier and a ciphertext in its place, and
// reading it back gives the value.
func ExamplePersonal() {
	ctx := context.Background()
	events := customerStore()
	alice := uuid.New()
	reg := &CustomerRegistered{
		DomainEvent: eventsourcing.NewDomainEvent(alice, 1),
		Name:        eventsourcing.NewPersonal("Alice"),
		Email:       eventsourcing.NewPersonal("alice@example.com"),
		Country:     "UK",
	}
	if _, err := events.Put(ctx, reg); err != nil {
		log.Fatal(err)
	}

	stored, _ := events.Recorder.SelectEvents(ctx, alice, nil)
	var state map[string]any
	_ = events.Mapper.Transcoder().Decode(stored[0].State, &state)
	name := state["name"].(map[string]any)
	fmt.Println("stored name has a key ID and a ciphertext:", len(name["k"].(string)) == 32, name["c"] != "")

	got, _ := events.Get(ctx, alice, nil)
	r := got[0].(*CustomerRegistered)
	fmt.Println(r.Name.Value(), r.Email.Value(), r.Country)
	// Output:
	// stored name has a key ID and a ciphertext: true true
	// Alice alice@example.com UK
}

// ExamplePersonalKeys_Forget forgets a customer: the key is destroyed, a
// row says when and why, and new personal data of the customer is
// refused with ErrForgotten until Renew.
func ExamplePersonalKeys_Forget() {
	ctx := context.Background()
	events := customerStore()
	alice := uuid.New()
	_, err := events.Put(ctx, &CustomerRegistered{
		DomainEvent: eventsourcing.NewDomainEvent(alice, 1),
		Name:        eventsourcing.NewPersonal("Alice"),
		Country:     "UK",
	})
	if err != nil {
		log.Fatal(err)
	}

	if err := events.Personal.Forget(ctx, alice, "erasure request 2026-42"); err != nil {
		log.Fatal(err)
	}
	records, _ := events.Personal.Records(ctx, alice)
	fmt.Println("forgotten:", !records[0].Forgotten.IsZero(), "because:", records[0].Reason)

	_, err = events.Put(ctx, &CustomerRegistered{
		DomainEvent: eventsourcing.NewDomainEvent(alice, 2),
		Name:        eventsourcing.NewPersonal("Alice again"),
	})
	fmt.Println("writing her data again:", errors.Is(err, eventsourcing.ErrForgotten))
	// Output:
	// forgotten: true because: erasure request 2026-42
	// writing her data again: true
}

// ExampleForgottenFields reads events after a Forget: no error, the
// forgotten values are zero and say so, and everything else (another
// subject's data in the same event too) reads as before.
func ExampleForgottenFields() {
	ctx := context.Background()
	events := customerStore()
	alice, bob := uuid.New(), uuid.New()
	_, err := events.Put(ctx,
		&CustomerRegistered{DomainEvent: eventsourcing.NewDomainEvent(alice, 1), Name: eventsourcing.NewPersonal("Alice"), Country: "UK"},
		&FriendReferred{DomainEvent: eventsourcing.NewDomainEvent(bob, 1), FriendID: alice, FriendName: eventsourcing.NewPersonal("Alice")},
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := events.Personal.Forget(ctx, alice, "erasure request"); err != nil {
		log.Fatal(err)
	}

	got, err := events.Get(ctx, alice, nil)
	r := got[0].(*CustomerRegistered)
	fmt.Printf("error %v, name %q forgotten %v, country %s\n", err, r.Name.Value(), r.Name.Forgotten(), r.Country)
	fmt.Println("forgotten fields:", eventsourcing.ForgottenFields(r))

	got, _ = events.Get(ctx, bob, nil)
	f := got[0].(*FriendReferred)
	fmt.Println("in Bob's event:", f.FriendName, f.FriendID == alice)
	// Output:
	// error <nil>, name "" forgotten true, country UK
	// forgotten fields: [Name]
	// in Bob's event: Personal(forgotten) true
}
