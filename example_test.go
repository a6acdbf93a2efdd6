package eventsourcing_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
)

// Events of a bank account: each embeds DomainEvent (originator ID, version,
// timestamp) and adds its own fields.
type AccountOpened struct {
	eventsourcing.DomainEvent
	FullName string `json:"full_name"`
}

type MoneyDeposited struct {
	eventsourcing.DomainEvent
	Amount int64 `json:"amount"` // cents
}

type MoneyWithdrawn struct {
	eventsourcing.DomainEvent
	Amount int64 `json:"amount"`
}

// Example shows the main flow: define events, register them with a mapper,
// put them into an event store and get them back, typed and in order.
func Example() {
	ctx := context.Background()

	mapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}, &MoneyWithdrawn{}); err != nil {
		log.Fatal(err)
	}
	store := eventsourcing.NewEventStore(mapper, eventsourcing.NewMemoryRecorder())

	id := uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	ids, err := store.Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Alice"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 10000},
		&MoneyWithdrawn{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 2500},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("notification IDs:", ids)

	// Version 3 is taken: optimistic concurrency refuses it.
	_, err = store.Put(ctx, &MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 1})
	fmt.Println("conflict:", errors.Is(err, eventsourcing.ErrIntegrity))

	events, err := store.Get(ctx, id, nil)
	if err != nil {
		log.Fatal(err)
	}
	var balance int64
	for _, e := range events {
		switch e := e.(type) {
		case *AccountOpened:
			fmt.Printf("v%d opened for %s\n", e.Version, e.FullName)
		case *MoneyDeposited:
			balance += e.Amount
			fmt.Printf("v%d deposited %d\n", e.Version, e.Amount)
		case *MoneyWithdrawn:
			balance -= e.Amount
			fmt.Printf("v%d withdrew %d\n", e.Version, e.Amount)
		}
	}
	fmt.Println("balance:", balance)
	// Output:
	// notification IDs: [1 2 3]
	// conflict: true
	// v1 opened for Alice
	// v2 deposited 10000
	// v3 withdrew 2500
	// balance: 7500
}

// ExampleEventStore_Events reads a sequence page by page, newest first, so a
// long sequence is never held in memory at once.
func ExampleEventStore_Events() {
	ctx := context.Background()
	mapper := eventsourcing.NewMapper[*MoneyDeposited](nil)
	if err := mapper.Register(&MoneyDeposited{}); err != nil {
		log.Fatal(err)
	}
	store := eventsourcing.NewEventStore(mapper, eventsourcing.NewMemoryRecorder())
	store.PageSize = 2

	id := uuid.MustParse("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
	for v := int64(1); v <= 5; v++ {
		if _, err := store.Put(ctx, &MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, v), Amount: v * 100}); err != nil {
			log.Fatal(err)
		}
	}
	for e, err := range store.Events(ctx, id, &eventsourcing.Query{Desc: true, LTE: 4}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Version, e.Amount)
	}
	// Output:
	// 4 400
	// 3 300
	// 2 200
	// 1 100
}

// ExampleEventStore_PutWithTracking records events made from an upstream
// notification together with a tracking record, so that the notification is
// processed exactly once.
func ExampleEventStore_PutWithTracking() {
	ctx := context.Background()
	mapper := eventsourcing.NewMapper[*MoneyDeposited](nil)
	if err := mapper.Register(&MoneyDeposited{}); err != nil {
		log.Fatal(err)
	}
	recorder := eventsourcing.NewMemoryRecorder()
	store := eventsourcing.NewEventStore(mapper, recorder)
	id := uuid.MustParse("6ba7b812-9dad-11d1-80b4-00c04fd430c8")

	upstream := eventsourcing.Tracking{ApplicationName: "Payments", NotificationID: 42}
	_, err := store.PutWithTracking(ctx, upstream, &MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 1), Amount: 500})
	fmt.Println("first:", err)

	// Processing notification 42 again is refused, and records nothing.
	_, err = store.PutWithTracking(ctx, upstream, &MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 500})
	fmt.Println("again:", errors.Is(err, eventsourcing.ErrIntegrity))

	last, _ := recorder.MaxTrackingID(ctx, "Payments")
	done, _ := recorder.HasTrackingID(ctx, "Payments", 42)
	fmt.Println("resume after:", last, done)
	// Output:
	// first: <nil>
	// again: true
	// resume after: 42 true
}

// AccountState is what a bank account snapshot holds.
type AccountState struct {
	FullName string `json:"full_name"`
	Balance  int64  `json:"balance"`
}

// ExampleSnapshotStore stores a snapshot and loads it back with the events
// recorded after it.
func ExampleSnapshotStore() {
	ctx := context.Background()
	mapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}); err != nil {
		log.Fatal(err)
	}
	events := eventsourcing.NewEventStore(mapper, eventsourcing.NewMemoryRecorder())
	snapshots, err := eventsourcing.NewSnapshotStore[AccountState]("bank:Account", nil, eventsourcing.NewMemoryRecorder())
	if err != nil {
		log.Fatal(err)
	}

	id := uuid.MustParse("6ba7b813-9dad-11d1-80b4-00c04fd430c8")
	if _, err := events.Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Bob"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 300},
	); err != nil {
		log.Fatal(err)
	}
	snap := &eventsourcing.Snapshot[AccountState]{
		DomainEvent: eventsourcing.NewDomainEvent(id, 2),
		State:       AccountState{FullName: "Bob", Balance: 300},
	}
	if err := snapshots.Put(ctx, snap); err != nil {
		log.Fatal(err)
	}
	if _, err := events.Put(ctx, &MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 50}); err != nil {
		log.Fatal(err)
	}

	latest, after, err := eventsourcing.LoadAggregate(ctx, snapshots, events, id)
	if err != nil {
		log.Fatal(err)
	}
	balance := latest.State.Balance
	for _, e := range after {
		balance += e.(*MoneyDeposited).Amount
	}
	fmt.Printf("snapshot v%d of %s, %d event(s) after it, balance %d\n", latest.Version, latest.Topic, len(after), balance)
	// Output:
	// snapshot v2 of bank:Account, 1 event(s) after it, balance 350
}
