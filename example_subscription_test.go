package eventsourcing_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// ExampleEventStore_Subscribe follows a store's notification log: first the
// events already recorded, then each new one as it commits, in order, each
// once, until the loop breaks or the context ends.
func ExampleEventStore_Subscribe() {
	ctx := context.Background()
	mapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}); err != nil {
		log.Fatal(err)
	}
	store := eventsourcing.NewEventStore(mapper, eventsourcing.NewMemoryRecorder())
	id := uuid.MustParse("6ba7b814-9dad-11d1-80b4-00c04fd430c8")
	if _, err := store.Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Carol"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 700},
	); err != nil {
		log.Fatal(err)
	}

	// Another part of the program deposits more while we follow.
	go func() {
		for v := int64(3); v <= 4; v++ {
			if _, err := store.Put(ctx, &MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, v), Amount: v * 100}); err != nil {
				log.Fatal(err)
			}
		}
	}()

	follow, stop := context.WithCancel(ctx)
	defer stop()
	for r, err := range store.Subscribe(follow, 0, nil) {
		if err != nil {
			log.Fatal(err)
		}
		switch e := r.Event.(type) {
		case *AccountOpened:
			fmt.Printf("%d: opened for %s\n", r.ID, e.FullName)
		case *MoneyDeposited:
			fmt.Printf("%d: deposited %d\n", r.ID, e.Amount)
		}
		if r.ID == 4 {
			break // or cancel the context
		}
	}
	// Output:
	// 1: opened for Carol
	// 2: deposited 700
	// 3: deposited 300
	// 4: deposited 400
}

// DepositAudited is what the audit application records for each deposit.
type DepositAudited struct {
	eventsourcing.DomainEvent
	Account uuid.UUID `json:"account"`
	Amount  int64     `json:"amount"`
	Large   bool      `json:"large"`
}

// ExampleRunner processes the events of one application (bank accounts)
// into another (an audit log), each in its own SQLite database, as Python
// eventsourcing keeps one database file per application. Each upstream
// notification is processed exactly once: the audit events and the
// tracking record commit together, and a restarted runner resumes after
// the last tracked notification.
func ExampleRunner() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "runner-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	open := func(file string) *eventsourcing.SQLRecorder {
		db, err := sqlite.Open(ctx, filepath.Join(dir, file), 0)
		if err != nil {
			log.Fatal(err)
		}
		rec, err := eventsourcing.NewSQLRecorder(ctx, db, sqlite.Dialect{}, nil)
		if err != nil {
			log.Fatal(err)
		}
		if err := rec.CreateTables(ctx); err != nil {
			log.Fatal(err)
		}
		return rec
	}
	accountsRec, auditRec := open("accounts.db"), open("audit.db")
	defer accountsRec.DB().Close()
	defer auditRec.DB().Close()

	accountsMapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
	auditMapper := eventsourcing.NewMapper[*DepositAudited](nil)
	if err := errors.Join(accountsMapper.Register(&AccountOpened{}, &MoneyDeposited{}), auditMapper.Register(&DepositAudited{})); err != nil {
		log.Fatal(err)
	}
	accounts := eventsourcing.NewEventStore(accountsMapper, accountsRec)
	audit := eventsourcing.NewEventStore(auditMapper, auditRec)

	id := uuid.MustParse("6ba7b815-9dad-11d1-80b4-00c04fd430c8")
	ids, err := accounts.Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Dave"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 500},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 50000},
	)
	if err != nil {
		log.Fatal(err)
	}

	// The handler turns each deposit into an audit event, and ignores the
	// rest (still tracked, so never seen again).
	handle := func(ctx context.Context, r eventsourcing.Recorded[eventsourcing.Event]) ([]*DepositAudited, error) {
		d, ok := r.Event.(*MoneyDeposited)
		if !ok {
			return nil, nil
		}
		return []*DepositAudited{{
			DomainEvent: eventsourcing.NewDomainEvent(uuid.NewSHA1(id, fmt.Append(nil, r.ID)), 1),
			Account:     d.Originator, Amount: d.Amount, Large: d.Amount >= 10000,
		}}, nil
	}
	runner, err := eventsourcing.NewRunner("BankAccounts", accounts, audit, handle, nil)
	if err != nil {
		log.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(run) }()

	// Wait until the audit has processed the last deposit, then stop. The
	// wait ends too if the runner fails (ErrRunnerStopped, with Run's
	// error): it cannot hang on a dead runner. A stop asked for is no
	// error: Run returns nil.
	if err := runner.Wait(ctx, ids[len(ids)-1]); err != nil {
		log.Fatal(err)
	}
	stop()
	fmt.Println("runner:", <-done)

	ns, err := auditRec.SelectNotifications(ctx, 1, 10, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range ns {
		e, err := auditMapper.FromStoredEvent(n.StoredEvent)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("audit %d: %d large=%v\n", n.ID, e.Amount, e.Large)
	}
	last, _ := auditRec.MaxTrackingID(ctx, "BankAccounts")
	fmt.Println("tracked up to:", last)
	// Output:
	// runner: <nil>
	// audit 1: 500 large=false
	// audit 2: 50000 large=true
	// tracked up to: 3
}
