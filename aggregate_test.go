package eventsourcing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// A bank account aggregate for the repository tests.
type (
	rOpened struct {
		es.DomainEvent
		Owner string `json:"owner"`
	}
	rDeposited struct {
		es.DomainEvent
		Amount int64 `json:"amount"`
	}
	rWithdrawn struct {
		es.DomainEvent
		Amount int64 `json:"amount"`
	}
	rAccount struct {
		es.Root
		Owner   string `json:"owner"`
		Balance int64  `json:"balance"`
		Moves   int    `json:"moves"`
	}
)

var errNoFunds = errors.New("insufficient funds")

func (a *rAccount) Apply(e es.Event) {
	switch e := e.(type) {
	case *rOpened:
		a.Owner = e.Owner
	case *rDeposited:
		a.Balance += e.Amount
		a.Moves++
	case *rWithdrawn:
		a.Balance -= e.Amount
		a.Moves++
	}
}

func openAccount(owner string) (*rAccount, error) {
	a := &rAccount{}
	return a, es.Trigger(a, &rOpened{Owner: owner})
}

func (a *rAccount) Deposit(n int64) error { return es.Trigger(a, &rDeposited{Amount: n}) }

func (a *rAccount) Withdraw(n int64) error {
	if n > a.Balance {
		return errNoFunds
	}
	return es.Trigger(a, &rWithdrawn{Amount: n})
}

func TestTrigger(t *testing.T) {
	before := es.Now()
	a, err := openAccount("Ann")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() == uuid.Nil || a.Version() != 1 || a.Owner != "Ann" {
		t.Fatalf("after the first event: id %s version %d owner %q", a.ID(), a.Version(), a.Owner)
	}
	if err := a.Deposit(5); err != nil {
		t.Fatal(err)
	}
	pending := a.PendingEvents()
	if len(pending) != 2 || a.Version() != 2 || a.Balance != 5 {
		t.Fatalf("pending %d, version %d, balance %d", len(pending), a.Version(), a.Balance)
	}
	for i, e := range pending {
		if e.OriginatorID() != a.ID() || e.OriginatorVersion() != int64(i+1) {
			t.Errorf("event %d: %s v%d", i, e.OriginatorID(), e.OriginatorVersion())
		}
	}
	d := pending[1].(*rDeposited)
	if d.Timestamp.Before(before) || !a.ModifiedOn.Equal(d.Timestamp) || !a.CreatedOn.Equal(pending[0].(*rOpened).Timestamp) {
		t.Errorf("timestamps: event %v, created %v, modified %v", d.Timestamp, a.CreatedOn, a.ModifiedOn)
	}

	// A given timestamp is kept; a given ID is used.
	id := uuid.New()
	b := &rAccount{Root: es.NewRoot(id)}
	at := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := es.Trigger(b, &rOpened{DomainEvent: es.DomainEvent{Timestamp: at}}); err != nil {
		t.Fatal(err)
	}
	if b.ID() != id || !b.CreatedOn.Equal(at) {
		t.Errorf("NewRoot: id %s created %v", b.ID(), b.CreatedOn)
	}

	// An event that is not a pointer to a struct embedding DomainEvent
	// changes nothing.
	for _, e := range []es.Event{rDeposited{}, es.DomainEvent{}, (*rDeposited)(nil)} {
		if err := es.Trigger(b, e); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("Trigger(%T): %v, want ErrProgramming", e, err)
		}
	}
	if b.Version() != 1 || len(b.PendingEvents()) != 1 {
		t.Errorf("refused events changed the aggregate: version %d, %d pending", b.Version(), len(b.PendingEvents()))
	}
}
