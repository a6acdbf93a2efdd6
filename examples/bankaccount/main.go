// Command bankaccount is a small event-sourced bank account: an aggregate
// with commands, saved and loaded through a repository that takes a
// snapshot every few events and retries commands that meet a concurrent
// writer; then it lists the notification log.
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

	es "github.com/seed06b138f8/eventsourcing"
	_ "github.com/seed06b138f8/eventsourcing/dialect/postgres"
	_ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// The account's events, registered under explicit topics in run.
type (
	Opened struct {
		es.DomainEvent
		FullName string `json:"full_name"`
	}
	Deposited struct {
		es.DomainEvent
		Amount int64 `json:"amount"` // cents
	}
	Withdrawn struct {
		es.DomainEvent
		Amount int64 `json:"amount"`
	}
)

// Account is the aggregate. Root keeps its ID, version and pending
// events; its exported fields are what a snapshot holds.
type Account struct {
	es.Root
	FullName string `json:"full_name"`
	Balance  int64  `json:"balance"`
}

// Apply moves the account on by one event.
func (a *Account) Apply(e es.Event) {
	switch e := e.(type) {
	case *Opened:
		a.FullName = e.FullName
	case *Deposited:
		a.Balance += e.Amount
	case *Withdrawn:
		a.Balance -= e.Amount
	}
}

var errInsufficientFunds = errors.New("insufficient funds")

// Open, Deposit and Withdraw are the commands: they check, then trigger.
func Open(fullName string) (*Account, error) {
	a := &Account{}
	return a, es.Trigger(a, &Opened{FullName: fullName})
}

func (a *Account) Deposit(amount int64) error { return es.Trigger(a, &Deposited{Amount: amount}) }

func (a *Account) Withdraw(amount int64) error {
	if amount > a.Balance {
		return errInsufficientFunds
	}
	return es.Trigger(a, &Withdrawn{Amount: amount})
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bankaccount:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// The environment, as for the Python library; without it, an SQLite
	// file in the temporary directory.
	defaults := map[string]string{
		es.EnvPersistenceModule: es.ModuleSQLite,
		es.EnvSQLiteDBName:      filepath.Join(os.TempDir(), "eventsourcing-bankaccounts.db"),
	}
	cfg, err := es.LoadConfig("BankAccounts", func(key string) (string, bool) {
		if v, ok := os.LookupEnv(key); ok {
			return v, true
		}
		v, ok := defaults[key]
		return v, ok
	})
	if err != nil {
		return err
	}
	store, err := es.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Println("store:", cfg.Module(), cfg.SQLite.DBName)
	opts, err := cfg.MapperOptions()
	if err != nil {
		return err
	}

	// Explicit topics: stored events keep their topic for ever, whatever
	// happens to this package's import path. The aliases read what earlier
	// versions of this example wrote under Go's default topics.
	mapper := es.NewMapper[es.Event](opts)
	if err := errors.Join(
		mapper.RegisterTopic("bankaccount:Opened", &Opened{}, "main:Opened"),
		mapper.RegisterTopic("bankaccount:Deposited", &Deposited{}, "main:Deposited"),
		mapper.RegisterTopic("bankaccount:Withdrawn", &Withdrawn{}, "main:Withdrawn"),
	); err != nil {
		return err
	}
	snapshots, err := es.NewSnapshotStore[*Account]("bankaccount:Account", opts, store.Snapshots)
	if err != nil {
		return err
	}
	accounts, err := es.NewRepository(es.NewEventStore(mapper, store.Events), snapshots, &es.RepositoryOptions{SnapshotEvery: 3})
	if err != nil {
		return err
	}
	start, err := store.Events.MaxNotificationID(ctx)
	if err != nil {
		return err
	}

	// Open an account: a new aggregate is saved like any other.
	acct, err := Open("Alice")
	if err != nil {
		return err
	}
	if err := acct.Deposit(10000); err != nil {
		return err
	}
	if _, err := accounts.Save(ctx, acct); err != nil {
		return err
	}
	id := acct.ID()
	fmt.Printf("opened account %s and deposited 100.00\n", id)

	// Update loads, runs the command and saves, again if another writer
	// got in first. Version 3 is a multiple of 3: a snapshot is taken.
	if _, err := accounts.Update(ctx, id, func(a *Account) error { return a.Withdraw(2550) }); err != nil {
		return err
	}
	fmt.Println("withdrew 25.50")
	_, err = accounts.Update(ctx, id, func(a *Account) error { return a.Withdraw(1_000_000) })
	fmt.Println("withdrawing 10000.00 was refused:", err)

	// A write decided on an old version is refused: reload and decide again.
	stale, err := accounts.Load(ctx, id)
	if err != nil {
		return err
	}
	if _, err := accounts.Update(ctx, id, func(a *Account) error { return a.Deposit(1234) }); err != nil {
		return err
	}
	fmt.Println("deposited 12.34")
	if err := stale.Deposit(1); err != nil {
		return err
	}
	if _, err := accounts.Save(ctx, stale); !errors.Is(err, es.ErrIntegrity) {
		return fmt.Errorf("a stale write was not refused: %v", err)
	}
	fmt.Printf("a deposit decided on version %d was refused: another writer saved first\n", stale.Version()-1)

	acct, err = accounts.Load(ctx, id)
	if err != nil {
		return err
	}
	snap, err := snapshots.Latest(ctx, id, 0)
	if err != nil || snap == nil {
		return fmt.Errorf("no snapshot: %v", err)
	}
	fmt.Printf("account of %s at version %d: balance %d.%02d (loaded from the snapshot at version %d and the events after it)\n",
		acct.FullName, acct.Version(), acct.Balance/100, acct.Balance%100, snap.Version)

	// The layer below: the notification log, as a downstream reader sees it.
	fmt.Println("notification log (this run):")
	notes, err := store.Events.SelectNotifications(ctx, start, 100, &es.NotificationQuery{ExclusiveStart: true})
	if err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Printf("  %d  %-22s v%d\n", n.ID, n.Topic, n.OriginatorVersion)
	}
	return nil
}
