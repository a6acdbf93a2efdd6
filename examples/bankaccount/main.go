// Command bankaccount is a small event-sourced bank: accounts saved and
// loaded through a repository, and a read model of their balances kept in
// an ordinary SQL table by a projection, exactly once, however often the
// program stops and runs again.
//
// By default it stores everything in an SQLite file in the system's
// temporary directory, so it needs no server:
//
//	go run ./examples/bankaccount
//
// Run it again: the projection catches up with what it has not applied,
// the same accounts get new deposits, and the balances grow. The
// environment configures it as any application of this library (or of the
// Python library):
//
//	SQLITE_DBNAME=bank.db go run ./examples/bankaccount
//	PERSISTENCE_MODULE=postgres POSTGRES_HOST=127.0.0.1 POSTGRES_DBNAME=test \
//	    POSTGRES_USER=postgres POSTGRES_PASSWORD= go run ./examples/bankaccount
//
// CIPHER_KEY (a base64 AES key) and COMPRESSOR_TOPIC=zlib encrypt and
// compress events and snapshots alike. A store remembers how it was
// written: opening it with another setting fails, naming the variable.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	_ "github.com/seed06b138f8/eventsourcing/dialect/postgres"
	_ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// The account's events. Each embeds DomainEvent: the account's ID, the
// event's version and its time.
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

// Deposit and Withdraw are commands: they check, then trigger an event.
func (a *Account) Deposit(amount int64) error { return es.Trigger(a, &Deposited{Amount: amount}) }

func (a *Account) Withdraw(amount int64) error {
	if amount > a.Balance {
		return errInsufficientFunds
	}
	return es.Trigger(a, &Withdrawn{Amount: amount})
}

// account returns the account of owner (its ID is made from the name, so
// every run finds the same one): loaded, or opened if it has no events.
func account(ctx context.Context, app *es.App[*Account], owner string) (*Account, error) {
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("bankaccount:"+owner))
	a, err := app.Load(ctx, id)
	if errors.Is(err, es.ErrAggregateNotFound) {
		a = &Account{Root: es.NewRoot(id)}
		err = es.Trigger(a, &Opened{FullName: owner})
	}
	return a, err
}

// project is the balances projection's handler: it writes one event into
// the balances table, in the transaction that records the event's
// notification as applied.
func project(ctx context.Context, tx *sql.Tx, r es.Recorded[es.Event]) error {
	var err error
	switch e := r.Event.(type) {
	case *Opened:
		_, err = tx.ExecContext(ctx, "INSERT INTO balances (account, owner, cents) VALUES ($1, $2, 0)", e.Originator.String(), e.FullName)
	case *Deposited:
		_, err = tx.ExecContext(ctx, "UPDATE balances SET cents = cents + $1 WHERE account = $2", e.Amount, e.Originator.String())
	case *Withdrawn:
		_, err = tx.ExecContext(ctx, "UPDATE balances SET cents = cents - $1 WHERE account = $2", e.Amount, e.Originator.String())
	}
	return err
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bankaccount:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer) error {
	// The configuration comes from the environment; these are the defaults.
	app, err := es.OpenApp[*Account](ctx, "BankAccounts", &es.AppOptions{
		Defaults: map[string]string{
			es.EnvPersistenceModule: es.ModuleSQLite,
			es.EnvSQLiteDBName:      filepath.Join(os.TempDir(), "eventsourcing-bankaccount.db"),
		},
		// Explicit topics: stored events keep theirs for ever, whatever
		// happens to this package's import path.
		Topics: map[string]es.Event{
			"bankaccount:Opened": &Opened{}, "bankaccount:Deposited": &Deposited{}, "bankaccount:Withdrawn": &Withdrawn{},
		},
		AggregateTopic: "bankaccount:Account",
		Repository:     es.RepositoryOptions{SnapshotEvery: 3},
	})
	if err != nil {
		return err
	}
	defer app.Close()
	fmt.Fprintln(w, "store:", app.Config.Module(), app.Config.SQLite.DBName+app.Config.Postgres.DBName)

	// The read model is a table of the application's own, in the same
	// database as the events and the projection's tracking records.
	rec, ok := app.Store.Recorder.(*es.SQLRecorder)
	if !ok {
		return errors.New("the balances table needs a database: set PERSISTENCE_MODULE to sqlite or postgres")
	}
	if _, err := app.Store.DB.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, owner TEXT NOT NULL, cents BIGINT NOT NULL)"); err != nil {
		return err
	}
	balances, err := es.NewProjection("Balances", app.Events, rec, project, nil)
	if err != nil {
		return err
	}
	// Restart: apply what earlier runs recorded and the projection has not
	// applied yet (everything, the first time), then follow new events.
	if err := balances.RunUntilCaughtUp(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "the balances projection has caught up with earlier runs")
	follow, stop := context.WithCancel(ctx)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- balances.Run(follow) }()

	alice, err1 := account(ctx, app, "Alice")
	bob, err2 := account(ctx, app, "Bob")
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	// A transfer changes two accounts: Save records both, or neither.
	if err := errors.Join(alice.Deposit(10000), alice.Withdraw(2550), bob.Deposit(2550)); err != nil {
		return err
	}
	ids, err := app.Save(ctx, alice, bob)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "deposited 100.00 into Alice's account and transferred 25.50 to Bob's")
	// Update loads, runs the command and saves, again if another writer
	// saved the account first; here the command refuses.
	_, err = app.Update(ctx, alice.ID(), func(a *Account) error { return a.Withdraw(100_000_000) })
	fmt.Fprintln(w, "withdrawing 1000000.00 was refused:", err)

	// Read your writes: wait until the projection has applied the transfer.
	if err := balances.Wait(ctx, ids[len(ids)-1]); err != nil {
		return err
	}
	rows, err := app.Store.DB.QueryContext(ctx, "SELECT owner, cents FROM balances ORDER BY owner")
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintln(w, "balances (from the balances table):")
	for rows.Next() {
		var owner string
		var cents int64
		if err := rows.Scan(&owner, &cents); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %-6s %8d.%02d\n", owner, cents/100, cents%100)
	}
	stop() // a normal stop: Run returns nil
	return errors.Join(rows.Err(), <-stopped)
}
