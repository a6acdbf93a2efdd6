package eventsourcing_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
)

// BankAccount is an aggregate: Root keeps its ID, version, timestamps and
// pending events; Apply and the commands are all there is to write.
type BankAccount struct {
	eventsourcing.Root
	FullName string `json:"full_name"`
	Balance  int64  `json:"balance"` // cents
}

// ErrInsufficientFunds is what Withdraw refuses with.
var ErrInsufficientFunds = errors.New("insufficient funds")

// Apply moves the account's state on by one event, when it happens and
// whenever the account is loaded.
func (a *BankAccount) Apply(e eventsourcing.Event) {
	switch e := e.(type) {
	case *AccountOpened:
		a.FullName = e.FullName
	case *MoneyDeposited:
		a.Balance += e.Amount
	case *MoneyWithdrawn:
		a.Balance -= e.Amount
	}
}

// OpenAccount is a command that creates an account (with a new random ID).
func OpenAccount(fullName string) (*BankAccount, error) {
	a := &BankAccount{}
	return a, eventsourcing.Trigger(a, &AccountOpened{FullName: fullName})
}

// Deposit is a command: Trigger gives the event the next version and
// applies it.
func (a *BankAccount) Deposit(amount int64) error {
	return eventsourcing.Trigger(a, &MoneyDeposited{Amount: amount})
}

// Withdraw is a command that checks before it triggers.
func (a *BankAccount) Withdraw(amount int64) error {
	if amount > a.Balance {
		return ErrInsufficientFunds
	}
	return eventsourcing.Trigger(a, &MoneyWithdrawn{Amount: amount})
}

// bankMapper registers the account's events under explicit topics, which
// stay valid when the Go package is renamed or moved.
func bankMapper() *eventsourcing.Mapper[eventsourcing.Event] {
	m := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := errors.Join(
		m.RegisterTopic("bank:AccountOpened", &AccountOpened{}),
		m.RegisterTopic("bank:MoneyDeposited", &MoneyDeposited{}),
		m.RegisterTopic("bank:MoneyWithdrawn", &MoneyWithdrawn{}),
	); err != nil {
		log.Fatal(err)
	}
	return m
}

// ExampleRepository opens an account, saves it, and loads it back from its
// events.
func ExampleRepository() {
	ctx := context.Background()
	events := eventsourcing.NewEventStore(bankMapper(), eventsourcing.NewMemoryRecorder())
	accounts, err := eventsourcing.NewRepository[*BankAccount](events, nil, nil)
	if err != nil {
		log.Fatal(err)
	}

	account, err := OpenAccount("Alice")
	if err != nil {
		log.Fatal(err)
	}
	if err := errors.Join(account.Deposit(10000), account.Withdraw(2500)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", len(account.PendingEvents()))
	fmt.Println("refused:", account.Withdraw(1_000_000))

	ids, err := accounts.Save(ctx, account)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("notification IDs:", ids, "pending:", len(account.PendingEvents()))

	loaded, err := accounts.Load(ctx, account.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: balance %d at version %d\n", loaded.FullName, loaded.Balance, loaded.Version())

	then, err := accounts.LoadAt(ctx, account.ID(), 2)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("at version 2: balance %d\n", then.Balance)

	_, err = accounts.Load(ctx, uuid.New())
	fmt.Println("unknown account:", errors.Is(err, eventsourcing.ErrAggregateNotFound))
	// Output:
	// pending: 3
	// refused: insufficient funds
	// notification IDs: [1 2 3] pending: 0
	// Alice: balance 7500 at version 3
	// at version 2: balance 10000
	// unknown account: true
}

// ExampleRepository_Update runs a command on the latest state. When another
// writer saves the account first, Save fails with ErrIntegrity; Update
// instead loads the account again and runs the command again.
func ExampleRepository_Update() {
	ctx := context.Background()
	events := eventsourcing.NewEventStore(bankMapper(), eventsourcing.NewMemoryRecorder())
	accounts, err := eventsourcing.NewRepository[*BankAccount](events, nil, &eventsourcing.RepositoryOptions{
		Attempts: 5, // in all; the default is DefaultUpdateAttempts
		OnRetry: func(err error, attempt int) {
			fmt.Printf("attempt %d conflicted: %v\n", attempt, errors.Is(err, eventsourcing.ErrIntegrity))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	account, _ := OpenAccount("Bob")
	if _, err := accounts.Save(ctx, account); err != nil {
		log.Fatal(err)
	}
	id := account.ID()

	// Two writers load version 1; the second to save loses.
	first, _ := accounts.Load(ctx, id)
	second, _ := accounts.Load(ctx, id)
	first.Deposit(100)
	second.Deposit(50)
	_, err1 := accounts.Save(ctx, first)
	_, err2 := accounts.Save(ctx, second)
	fmt.Println("first save:", err1, "second save conflicts:", errors.Is(err2, eventsourcing.ErrIntegrity))

	// Update retries. The command may run more than once, so it only
	// decides from the account it is given.
	runs := 0
	updated, err := accounts.Update(ctx, id, func(a *BankAccount) error {
		runs++
		if runs == 1 { // another writer gets in between load and save
			if _, err := accounts.Update(ctx, id, func(a *BankAccount) error { return a.Deposit(1) }); err != nil {
				return err
			}
		}
		return a.Withdraw(60)
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("command ran %d times: balance %d at version %d\n", runs, updated.Balance, updated.Version())

	// A command's own error is returned as it is, and nothing is saved.
	_, err = accounts.Update(ctx, id, func(a *BankAccount) error { return a.Withdraw(1000) })
	fmt.Println(err)
	// Output:
	// first save: <nil> second save conflicts: true
	// attempt 1 conflicted: true
	// command ran 2 times: balance 41 at version 4
	// insufficient funds
}

// getCounter counts the events the event store reads, through the
// Observer hook.
type getCounter struct{ rows int }

func (c *getCounter) ObserveStart(ctx context.Context, _ eventsourcing.Op) context.Context {
	return ctx
}
func (c *getCounter) ObserveEnd(_ context.Context, op eventsourcing.Op, res eventsourcing.OpResult) {
	if op.Kind == eventsourcing.OpGet {
		c.rows += res.Rows
	}
}

// ExampleRepository_snapshots takes a snapshot every 5 events, so that
// loading reads the latest snapshot and fewer than 5 events after it.
func ExampleRepository_snapshots() {
	ctx := context.Background()
	reads := &getCounter{}
	events := eventsourcing.NewEventStore(bankMapper(), eventsourcing.NewMemoryRecorder())
	events.Observer = reads
	// Snapshots go to a recorder of their own (a snapshots table), with the
	// same mapper options as the events, under the aggregate's topic.
	snapshots, err := eventsourcing.NewSnapshotStore[*BankAccount]("bank:BankAccount", nil, eventsourcing.NewMemoryRecorder())
	if err != nil {
		log.Fatal(err)
	}
	accounts, err := eventsourcing.NewRepository(events, snapshots, &eventsourcing.RepositoryOptions{SnapshotEvery: 5})
	if err != nil {
		log.Fatal(err)
	}

	account, _ := OpenAccount("Carol")
	for range 12 {
		account.Deposit(100)
		if _, err := accounts.Save(ctx, account); err != nil {
			log.Fatal(err)
		}
	}
	reads.rows = 0
	loaded, err := accounts.Load(ctx, account.ID())
	if err != nil {
		log.Fatal(err)
	}
	latest, _ := snapshots.Latest(ctx, account.ID(), 0)
	fmt.Printf("version %d, balance %d: snapshot at version %d and %d events read\n", loaded.Version(), loaded.Balance, latest.Version, reads.rows)
	// Output:
	// version 13, balance 1200: snapshot at version 10 and 3 events read
}

// ExampleMapper_RegisterTopic_aliases reads events written under old
// topics (before the package was renamed, or by a Python application) and
// writes new ones under the new topic.
func ExampleMapper_RegisterTopic_aliases() {
	ctx := context.Background()
	recorder := eventsourcing.NewMemoryRecorder()
	id := uuid.MustParse("6ba7b814-9dad-11d1-80b4-00c04fd430c8")

	// Written long ago under the default topic of an old import path.
	old := eventsourcing.NewMapper[eventsourcing.Event](nil)
	old.RegisterTopic("github.com/acme/bank:AccountOpened", &AccountOpened{})
	old.RegisterTopic("github.com/acme/bank:MoneyDeposited", &MoneyDeposited{})
	eventsourcing.NewEventStore(old, recorder).Put(ctx,
		&AccountOpened{DomainEvent: eventsourcing.NewDomainEvent(id, 1), FullName: "Dan"},
		&MoneyDeposited{DomainEvent: eventsourcing.NewDomainEvent(id, 2), Amount: 300},
	)

	// Today: explicit topics, the old ones as aliases.
	m := eventsourcing.NewMapper[eventsourcing.Event](nil)
	if err := errors.Join(
		m.RegisterTopic("bank:AccountOpened", &AccountOpened{}, "github.com/acme/bank:AccountOpened"),
		m.RegisterTopic("bank:MoneyDeposited", &MoneyDeposited{}, "github.com/acme/bank:MoneyDeposited", "bank:BankAccount.Deposited"),
		m.RegisterTopic("bank:MoneyWithdrawn", &MoneyWithdrawn{}),
	); err != nil {
		log.Fatal(err)
	}
	accounts, err := eventsourcing.NewRepository[*BankAccount](eventsourcing.NewEventStore(m, recorder), nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	account, err := accounts.Update(ctx, id, func(a *BankAccount) error { return a.Deposit(50) })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(account.FullName, account.Balance)

	stored, _ := recorder.SelectEvents(ctx, id, nil)
	for _, se := range stored {
		fmt.Println(se.OriginatorVersion, se.Topic)
	}
	// Output:
	// Dan 350
	// 1 github.com/acme/bank:AccountOpened
	// 2 github.com/acme/bank:MoneyDeposited
	// 3 bank:MoneyDeposited
}

// slogObserver logs every observed operation with log/slog: failed ones as
// warnings.
type slogObserver struct{ log *slog.Logger }

func (o slogObserver) ObserveStart(ctx context.Context, _ eventsourcing.Op) context.Context {
	return ctx
}

func (o slogObserver) ObserveEnd(ctx context.Context, op eventsourcing.Op, res eventsourcing.OpResult) {
	level := slog.LevelInfo
	if res.Err != nil {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{slog.Int("rows", res.Rows), slog.Duration("duration", res.Duration)}
	switch op.Kind {
	case eventsourcing.OpPut:
		attrs = append(attrs, slog.Int("events", op.Events), slog.Int64("last_id", res.LastID))
	case eventsourcing.OpGet:
		attrs = append(attrs, slog.String("aggregate", op.OriginatorID.String()))
	case eventsourcing.OpSelectNotifications:
		attrs = append(attrs, slog.Int64("start", op.Start), slog.Int64("last_id", res.LastID))
	case eventsourcing.OpGroupCommit:
		attrs = append(attrs, slog.Int("calls", op.Calls), slog.Int("events", op.Events))
	}
	if res.Err != nil {
		attrs = append(attrs, slog.Any("err", res.Err))
	}
	o.log.LogAttrs(ctx, level, "eventsourcing "+string(op.Kind), attrs...)
}

// ExampleObserver wires the hook to log/slog. (Time and duration are left
// out of the output here only so that it can be checked.)
func ExampleObserver() {
	ctx := context.Background()
	handler := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{}
			}
			return a
		},
	})
	events := eventsourcing.NewEventStore(bankMapper(), eventsourcing.NewMemoryRecorder())
	events.Observer = slogObserver{slog.New(handler)}
	accounts, err := eventsourcing.NewRepository[*BankAccount](events, nil, nil)
	if err != nil {
		log.Fatal(err)
	}

	account := &BankAccount{Root: eventsourcing.NewRoot(uuid.MustParse("6ba7b815-9dad-11d1-80b4-00c04fd430c8"))}
	eventsourcing.Trigger(account, &AccountOpened{FullName: "Erin"})
	account.Deposit(10)
	accounts.Save(ctx, account)
	accounts.Update(ctx, account.ID(), func(a *BankAccount) error { return a.Deposit(5) })
	// Output:
	// level=INFO msg="eventsourcing put" rows=2 events=2 last_id=2
	// level=INFO msg="eventsourcing get" rows=2 aggregate=6ba7b815-9dad-11d1-80b4-00c04fd430c8
	// level=INFO msg="eventsourcing put" rows=1 events=1 last_id=3
}
