package eventsourcing_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"maps"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// ExampleProjection keeps a read model, each account's balance, in an
// ordinary SQL table of the application's own database. The handler writes
// the table through the transaction it is given; the projection records
// the tracking record in the same transaction and commits, so each event is
// applied exactly once, however often the program stops or crashes and
// runs again.
func ExampleProjection() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "projection-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "accounts.db"), 0)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	rec, err := eventsourcing.NewSQLRecorder(ctx, db, sqlite.Dialect{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := rec.CreateTables(ctx); err != nil {
		log.Fatal(err)
	}
	// The read model's table is the application's, not the library's.
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, owner TEXT, cents INTEGER NOT NULL)"); err != nil {
		log.Fatal(err)
	}

	mapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}, &MoneyWithdrawn{}); err != nil {
		log.Fatal(err)
	}
	accounts := eventsourcing.NewEventStore(mapper, rec)
	id := uuid.MustParse("6ba7b816-9dad-11d1-80b4-00c04fd430c8")
	if _, err := accounts.Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Erin"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 1000},
		&MoneyWithdrawn{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 250},
	); err != nil {
		log.Fatal(err)
	}

	apply := func(ctx context.Context, tx *sql.Tx, r eventsourcing.Recorded[eventsourcing.Event]) error {
		var err error
		switch e := r.Event.(type) {
		case *AccountOpened:
			_, err = tx.ExecContext(ctx, "INSERT INTO balances (account, owner, cents) VALUES (?, ?, 0)", e.Originator.String(), e.FullName)
		case *MoneyDeposited:
			_, err = tx.ExecContext(ctx, "UPDATE balances SET cents = cents + ? WHERE account = ?", e.Amount, e.Originator.String())
		case *MoneyWithdrawn:
			_, err = tx.ExecContext(ctx, "UPDATE balances SET cents = cents - ? WHERE account = ?", e.Amount, e.Originator.String())
		}
		return err
	}
	// The events and the read model share a database here; the upstream
	// store could as well be another one.
	balances, err := eventsourcing.NewProjection("Balances", accounts, rec, apply, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Apply everything recorded so far, then return (a batch job); Run
	// would go on applying new events as they commit, until its context
	// ends.
	if err := balances.RunUntilCaughtUp(ctx); err != nil {
		log.Fatal(err)
	}
	var owner string
	var cents int64
	if err := db.QueryRowContext(ctx, "SELECT owner, cents FROM balances WHERE account = ?", id.String()).Scan(&owner, &cents); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d cents\n", owner, cents)

	// Run again: nothing is applied twice.
	if err := balances.RunUntilCaughtUp(ctx); err != nil {
		log.Fatal(err)
	}
	st, err := balances.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("position %d of %d, lag %d\n", st.Position, st.UpstreamHead, st.Lag)
	// Output:
	// Erin: 750 cents
	// position 3 of 3, lag 0
}

// ExampleMemoryView runs a projection into an in-memory view, for tests:
// the same Projection, with the handler given a copy of the view's state
// to change, which replaces the state when the batch commits with its
// tracking record.
func ExampleMemoryView() {
	ctx := context.Background()
	mapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}); err != nil {
		log.Fatal(err)
	}
	accounts := eventsourcing.NewEventStore(mapper, eventsourcing.NewMemoryRecorder())
	id := uuid.MustParse("6ba7b817-9dad-11d1-80b4-00c04fd430c8")
	if _, err := accounts.Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Frank"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 300},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 200},
	); err != nil {
		log.Fatal(err)
	}
	// Balances by account, copied with maps.Clone for each transaction.
	view := eventsourcing.NewMemoryView(map[uuid.UUID]int64{}, maps.Clone)
	apply := func(ctx context.Context, balances map[uuid.UUID]int64, r eventsourcing.Recorded[eventsourcing.Event]) error {
		if d, ok := r.Event.(*MoneyDeposited); ok {
			balances[d.Originator] += d.Amount
		}
		return nil
	}
	p, err := eventsourcing.NewProjection("Balances", accounts, view, apply, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := p.RunUntilCaughtUp(ctx); err != nil {
		log.Fatal(err)
	}
	view.Read(func(balances map[uuid.UUID]int64) {
		fmt.Println("balance:", balances[id])
	})
	// Output:
	// balance: 500
}
