package eventsourcing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// ctxKey marks the context ObserveStart returns, to check ObserveEnd gets it.
type ctxKey struct{}

type startedCounter struct{ readCounter }

func (c *startedCounter) ObserveStart(ctx context.Context, op es.Op) context.Context {
	return context.WithValue(ctx, ctxKey{}, op.Kind)
}

func (c *startedCounter) ObserveEnd(ctx context.Context, op es.Op, res es.OpResult) {
	if ctx.Value(ctxKey{}) != op.Kind {
		res.Err = errors.New("ObserveEnd did not get ObserveStart's context")
	}
	c.readCounter.ObserveEnd(ctx, op, res)
}

func TestEventStoreObserver(t *testing.T) {
	ctx := context.Background()
	obs := &startedCounter{}
	store := es.NewEventStore(accountMapper(t), es.NewMemoryRecorder())
	store.Observer = obs
	store.PageSize = 2
	id := uuid.New()
	if _, err := store.Put(ctx, &rOpened{DomainEvent: es.NewDomainEvent(id, 1)}, &rDeposited{DomainEvent: es.NewDomainEvent(id, 2)}, &rDeposited{DomainEvent: es.NewDomainEvent(id, 3)}); err != nil {
		t.Fatal(err)
	}
	_, conflict := store.Put(ctx, &rDeposited{DomainEvent: es.NewDomainEvent(id, 3)})
	if _, err := store.Get(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	for range store.Events(ctx, id, nil) {
		break // one event read, then the loop stops
	}
	want := []struct {
		op  es.Op
		res es.OpResult
	}{
		{es.Op{Kind: es.OpPut, Events: 3}, es.OpResult{Rows: 3, LastID: 3}},
		{es.Op{Kind: es.OpPut, Events: 1}, es.OpResult{Err: conflict}},
		{es.Op{Kind: es.OpGet, OriginatorID: id}, es.OpResult{Rows: 3}},
		{es.Op{Kind: es.OpGet, OriginatorID: id}, es.OpResult{Rows: 1}},
	}
	if len(obs.ops) != len(want) {
		t.Fatalf("observed %d ops: %+v", len(obs.ops), obs.ops)
	}
	for i, w := range want {
		got := obs.res[i]
		if obs.ops[i] != w.op || got.Rows != w.res.Rows || got.LastID != w.res.LastID || !errors.Is(got.Err, w.res.Err) || (w.res.Err == nil) != (got.Err == nil) || got.Duration <= 0 {
			t.Errorf("op %d: %+v %+v, want %+v %+v", i, obs.ops[i], got, w.op, w.res)
		}
	}
	if conflict == nil {
		t.Error("no conflict")
	}
}
