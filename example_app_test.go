package eventsourcing_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/seed06b138f8/eventsourcing"
	_ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// ExampleOpenApp opens an application in one call: its configuration from
// the environment (PERSISTENCE_MODULE, SQLITE_DBNAME, CIPHER_KEY,
// COMPRESSOR_TOPIC, ...), with defaults for what the environment does not
// set, then the store, the event and snapshot stores (encrypted and
// compressed alike) and the repository of BankAccount aggregates.
func ExampleOpenApp() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	app, err := eventsourcing.OpenApp[*BankAccount](ctx, "BankAccounts", &eventsourcing.AppOptions{
		Defaults: map[string]string{
			eventsourcing.EnvPersistenceModule: eventsourcing.ModuleSQLite,
			eventsourcing.EnvSQLiteDBName:      filepath.Join(dir, "bank.db"),
		},
		Topics: map[string]eventsourcing.Event{
			"bank:AccountOpened":  &AccountOpened{},
			"bank:MoneyDeposited": &MoneyDeposited{},
			"bank:MoneyWithdrawn": &MoneyWithdrawn{},
		},
		AggregateTopic: "bank:BankAccount",
		Repository:     eventsourcing.RepositoryOptions{SnapshotEvery: 2},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()

	account, err := OpenAccount("Alice")
	if err != nil {
		log.Fatal(err)
	}
	if err := account.Deposit(10000); err != nil {
		log.Fatal(err)
	}
	if _, err := app.Save(ctx, account); err != nil {
		log.Fatal(err)
	}
	updated, err := app.Update(ctx, account.ID(), func(a *BankAccount) error { return a.Withdraw(2500) })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: balance %d at version %d\n", updated.FullName, updated.Balance, updated.Version())

	snap, err := app.Snapshots.Latest(ctx, account.ID(), 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("snapshot at version", snap.Version)
	// Output:
	// Alice: balance 7500 at version 3
	// snapshot at version 2
}
