// Command bankaccount is a small event-sourced bank account: it opens an
// account, deposits and withdraws money, takes a snapshot, rebuilds the
// account from the snapshot and the events after it, and lists the
// notification log.
//
// By default it stores everything in an embedded SQLite file in the
// system's temporary directory, so it needs no server:
//
//	go run ./examples/bankaccount
//
// The environment chooses another store, as for the Python library:
//
//	PERSISTENCE_MODULE=memory go run ./examples/bankaccount
//	PERSISTENCE_MODULE=postgres POSTGRES_HOST=127.0.0.1 POSTGRES_DBNAME=test \
//	    POSTGRES_USER=postgres POSTGRES_PASSWORD= go run ./examples/bankaccount
//
// CIPHER_TOPIC, CIPHER_KEY and COMPRESSOR_TOPIC turn on encryption and
// compression (see the README's configuration reference).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
	_ "github.com/seed06b138f8/eventsourcing/dialect/postgres"
	_ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// The account's events.
type (
	// Opened is the first event of an account.
	Opened struct {
		eventsourcing.DomainEvent
		FullName string `json:"full_name"`
	}
	// Deposited adds money, in cents.
	Deposited struct {
		eventsourcing.DomainEvent
		Amount int64 `json:"amount"`
	}
	// Withdrawn takes money out, in cents.
	Withdrawn struct {
		eventsourcing.DomainEvent
		Amount int64 `json:"amount"`
	}
)

// Account is the aggregate's state, rebuilt from its events, and what a
// snapshot holds.
type Account struct {
	FullName string `json:"full_name"`
	Balance  int64  `json:"balance"`
	Version  int64  `json:"-"`
}

// apply moves the account on by one event.
func (a *Account) apply(e eventsourcing.Event) {
	switch e := e.(type) {
	case *Opened:
		a.FullName = e.FullName
	case *Deposited:
		a.Balance += e.Amount
	case *Withdrawn:
		a.Balance -= e.Amount
	}
	a.Version = e.OriginatorVersion()
}

const appName = "BankAccounts"

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bankaccount:", err)
		os.Exit(1)
	}
}

// lookup is os.LookupEnv, except that without any PERSISTENCE_MODULE the
// example uses an SQLite file in the temporary directory.
func lookup(key string) (string, bool) {
	if v, ok := os.LookupEnv(key); ok {
		return v, true
	}
	_, set := os.LookupEnv(eventsourcing.EnvPersistenceModule)
	_, setApp := os.LookupEnv("BANKACCOUNTS_" + eventsourcing.EnvPersistenceModule)
	if set || setApp {
		return "", false
	}
	switch key {
	case eventsourcing.EnvPersistenceModule:
		return eventsourcing.ModuleSQLite, true
	case eventsourcing.EnvSQLiteDBName:
		return filepath.Join(os.TempDir(), "eventsourcing-bankaccounts.db"), true
	}
	return "", false
}

func run(ctx context.Context) error {
	cfg, err := eventsourcing.LoadConfig(appName, lookup)
	if err != nil {
		return err
	}
	store, err := eventsourcing.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	where := cfg.Module()
	if where == eventsourcing.ModuleSQLite {
		where += " " + cfg.SQLite.DBName
	}
	fmt.Println("store:", where)

	opts, err := cfg.MapperOptions()
	if err != nil {
		return err
	}
	mapper := eventsourcing.NewMapper[eventsourcing.Event](opts)
	if err := mapper.Register(&Opened{}, &Deposited{}, &Withdrawn{}); err != nil {
		return err
	}
	events := eventsourcing.NewEventStore(mapper, store.Events)
	snapshots, err := eventsourcing.NewSnapshotStore[Account]("bankaccount:Account", opts, store.Snapshots)
	if err != nil {
		return err
	}

	// Open an account and move some money.
	id := uuid.New()
	start, err := store.Events.MaxNotificationID(ctx)
	if err != nil {
		return err
	}
	ids, err := events.Put(ctx,
		&Opened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Alice"},
		&Deposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 10000},
	)
	if err != nil {
		return err
	}
	fmt.Printf("opened account %s and deposited 100.00 (notifications %v)\n", id, ids)
	if _, err := events.Put(ctx, &Withdrawn{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 2550}); err != nil {
		return err
	}
	fmt.Println("withdrew 25.50")

	// Another writer that read version 2 and also writes version 3 loses.
	_, err = events.Put(ctx, &Deposited{DomainEvent: eventsourcing.NewDomainEvent(id, 3), Amount: 1})
	if !errors.Is(err, eventsourcing.ErrIntegrity) {
		return fmt.Errorf("a conflicting write was not refused: %v", err)
	}
	fmt.Println("a conflicting write of version 3 was refused:", err)

	// Snapshot the account at its current version.
	acct, err := load(ctx, snapshots, events, id)
	if err != nil {
		return err
	}
	if err := snapshots.Put(ctx, &eventsourcing.Snapshot[Account]{DomainEvent: eventsourcing.NewDomainEvent(id, acct.Version), State: *acct}); err != nil {
		return err
	}
	fmt.Printf("snapshot taken at version %d\n", acct.Version)

	if _, err := events.Put(ctx, &Deposited{DomainEvent: eventsourcing.NewDomainEvent(id, 4), Amount: 1234}); err != nil {
		return err
	}
	fmt.Println("deposited 12.34")

	acct, err = load(ctx, snapshots, events, id)
	if err != nil {
		return err
	}
	fmt.Printf("account of %s at version %d: balance %d.%02d\n", acct.FullName, acct.Version, acct.Balance/100, acct.Balance%100)

	// Follow the notification log, as a downstream reader would.
	fmt.Println("notification log (this run):")
	notes, err := store.Events.SelectNotifications(ctx, start, 100, &eventsourcing.NotificationQuery{ExclusiveStart: true})
	if err != nil {
		return err
	}
	for _, n := range notes {
		e, err := mapper.FromStoredEvent(n.StoredEvent)
		if err != nil {
			return err
		}
		fmt.Printf("  %d  %-40s v%d  %T\n", n.ID, n.Topic, n.OriginatorVersion, e)
	}
	return nil
}

// load rebuilds an account from its latest snapshot and the events after it.
func load(ctx context.Context, snapshots *eventsourcing.SnapshotStore[Account], events *eventsourcing.EventStore[eventsourcing.Event], id uuid.UUID) (*Account, error) {
	snap, after, err := eventsourcing.LoadAggregate(ctx, snapshots, events, id)
	if err != nil {
		return nil, err
	}
	acct := &Account{}
	if snap != nil {
		*acct = snap.State
		acct.Version = snap.Version
		fmt.Printf("  (rebuilt from the snapshot at version %d and %d later event(s))\n", snap.Version, len(after))
	}
	for _, e := range after {
		acct.apply(e)
	}
	return acct, nil
}
