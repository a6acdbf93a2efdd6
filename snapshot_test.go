package eventsourcing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// TestSnapshotStore runs snapshots through every recorder: memory, SQLite
// and Postgres snapshots tables.
func TestSnapshotStore(t *testing.T) {
	recorders := map[string]func(t *testing.T) (es.AggregateRecorder, es.AggregateRecorder){
		"Memory": func(t *testing.T) (es.AggregateRecorder, es.AggregateRecorder) {
			return es.NewMemoryRecorder(), es.NewMemoryRecorder()
		},
	}
	for _, b := range backends {
		recorders[b.name] = func(t *testing.T) (es.AggregateRecorder, es.AggregateRecorder) {
			db, d, schema := b.open(t)
			return newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Snaps"}),
				newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{AppName: "Snaps"})
		}
	}
	ctx := context.Background()
	for name, open := range recorders {
		t.Run(name, func(t *testing.T) {
			evRec, snapRec := open(t)
			mapper := es.NewMapper[es.Event](nil)
			if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}); err != nil {
				t.Fatal(err)
			}
			events := es.NewEventStore(mapper, evRec)
			snaps, err := es.NewSnapshotStore[AccountState]("bank:Account", nil, snapRec)
			if err != nil {
				t.Fatal(err)
			}
			id := uuid.New()
			if snap, err := snaps.Latest(ctx, id, 0); err != nil || snap != nil {
				t.Fatalf("no snapshot yet: %v, %v", snap, err)
			}
			if snap, after, err := es.LoadAggregate(ctx, snaps, events, id); err != nil || snap != nil || len(after) != 0 {
				t.Fatalf("LoadAggregate of nothing: %v %v %v", snap, after, err)
			}
			put := func(v int64, amount int64) {
				if _, err := events.Put(ctx, &MoneyDeposited{DomainEvent: es.NewDomainEvent(id, v), Amount: amount}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := events.Put(ctx, &AccountOpened{DomainEvent: es.NewDomainEvent(id, 1), FullName: "Ann"}); err != nil {
				t.Fatal(err)
			}
			put(2, 10)
			for _, v := range []int64{2} {
				if err := snaps.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, v), State: AccountState{"Ann", 10}}); err != nil {
					t.Fatal(err)
				}
			}
			put(3, 5)
			put(4, 1)
			if err := snaps.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, 4), State: AccountState{"Ann", 16}}); err != nil {
				t.Fatal(err)
			}
			put(5, 100)
			snap, after, err := es.LoadAggregate(ctx, snaps, events, id)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Version != 4 || snap.State.Balance != 16 || snap.Topic != "bank:Account" || len(after) != 1 || after[0].OriginatorVersion() != 5 {
				t.Errorf("LoadAggregate: snapshot %+v, %d events after", snap, len(after))
			}
			if old, err := snaps.Latest(ctx, id, 3); err != nil || old.Version != 2 {
				t.Errorf("Latest at or below 3: %+v, %v", old, err)
			}
			err = snaps.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, 4)})
			wantIntegrityErr(t, err)
		})
	}
}

func wantIntegrityErr(t *testing.T, err error) {
	t.Helper()
	var ie *es.IntegrityError
	if err == nil || !errors.As(err, &ie) {
		t.Fatalf("got %v, want an *IntegrityError", err)
	}
}

// TestSnapshotStorePutLeavesSnapshot checks that Put fills in the topic and
// timestamp of what it records, not of the snapshot it is given.
func TestSnapshotStorePutLeavesSnapshot(t *testing.T) {
	ctx := context.Background()
	snaps, err := es.NewSnapshotStore[AccountState]("bank:Account", nil, es.NewMemoryRecorder())
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	snap := &es.Snapshot[AccountState]{DomainEvent: es.DomainEvent{Originator: id, Version: 3}, State: AccountState{"Ann", 10}}
	before := *snap
	if err := snaps.Put(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if *snap != before {
		t.Errorf("Put changed the snapshot:\n got %+v\nwant %+v", *snap, before)
	}
	got, err := snaps.Latest(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Topic != "bank:Account" || got.Timestamp.IsZero() || got.State != before.State || got.Version != 3 {
		t.Errorf("recorded snapshot %+v, want the aggregate topic and a timestamp", got)
	}
	if err := snaps.Put(ctx, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Put(nil): %v, want ErrProgramming", err)
	}
}
