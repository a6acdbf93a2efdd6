package eventsourcing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

type testDeposited struct {
	DomainEvent
	Amount int64  `json:"amount"`
	Memo   string `json:"memo"`
}

// countingRecorder records the queries an event store makes.
type countingRecorder struct {
	AggregateRecorder
	queries []Query
}

func (r *countingRecorder) SelectEvents(ctx context.Context, id uuid.UUID, q *Query) ([]StoredEvent, error) {
	r.queries = append(r.queries, *q)
	return r.AggregateRecorder.SelectEvents(ctx, id, q)
}

func newTestStore(t *testing.T, pageSize int) (*EventStore[*testDeposited], *countingRecorder) {
	t.Helper()
	m := NewMapper[*testDeposited](nil)
	if err := m.Register(&testDeposited{}); err != nil {
		t.Fatal(err)
	}
	rec := &countingRecorder{AggregateRecorder: NewMemoryRecorder()}
	s := NewEventStore(m, rec)
	s.PageSize = pageSize
	return s, rec
}

func TestEventStorePutGet(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t, 0)
	id := uuid.New()
	ts := time.Date(2024, 3, 1, 9, 0, 0, 1000, time.UTC)
	in := []*testDeposited{
		{DomainEvent{id, 1, ts}, 100, "first"},
		{DomainEvent{id, 2, ts.Add(time.Second)}, -5, "ünïcode ✓"},
	}
	ids, err := s.Put(ctx, in...)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[1 2]" {
		t.Errorf("notification IDs %v, want [1 2]", ids)
	}
	out, err := s.Get(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("got %d events, want %d", len(out), len(in))
	}
	for i := range in {
		if *out[i] != *in[i] || !out[i].Timestamp.Equal(in[i].Timestamp) {
			t.Errorf("event %d: got %+v, want %+v", i, *out[i], *in[i])
		}
	}
	// A conflicting batch records nothing, not even its new versions.
	_, err = s.Put(ctx, &testDeposited{DomainEvent: NewDomainEvent(id, 3)}, &testDeposited{DomainEvent: NewDomainEvent(id, 2)})
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("conflict: got %v, want ErrIntegrity", err)
	}
	if out, _ := s.Get(ctx, id, nil); len(out) != 2 {
		t.Errorf("after failed batch: %d events, want 2", len(out))
	}
}

func TestEventStoreUnregisteredType(t *testing.T) {
	m := NewMapper[Event](nil)
	s := NewEventStore(m, NewMemoryRecorder())
	_, err := s.Put(context.Background(), &testDeposited{DomainEvent: NewDomainEvent(uuid.New(), 1)})
	if !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("got %v, want ErrUnknownTopic", err)
	}
}

// TestEventStoreEventsPaging checks that Events gives exactly what one
// unpaged query gives, for every bound, while never asking for more than a
// page.
func TestEventStoreEventsPaging(t *testing.T) {
	ctx := context.Background()
	const n, page = 23, 5
	s, rec := newTestStore(t, page)
	id := uuid.New()
	for v := int64(1); v <= n; v++ {
		if _, err := s.Put(ctx, &testDeposited{DomainEvent: NewDomainEvent(id, v), Amount: v}); err != nil {
			t.Fatal(err)
		}
	}
	queries := []Query{
		{}, {Desc: true}, {GT: 3}, {GTE: 3}, {LT: 20}, {LTE: 20}, {GT: 2, LTE: 17, Desc: true},
		{Limit: 7}, {Limit: 5}, {Limit: 12, Desc: true}, {GTE: 10, Limit: 100}, {GT: n}, {LT: 1},
	}
	for _, q := range queries {
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
			want, err := rec.AggregateRecorder.SelectEvents(ctx, id, &q)
			if err != nil {
				t.Fatal(err)
			}
			rec.queries = nil
			var got []int64
			for e, err := range s.Events(ctx, id, &q) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, e.Version)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d events %v, want %d", len(got), got, len(want))
			}
			for i := range want {
				if got[i] != want[i].OriginatorVersion {
					t.Fatalf("event %d: version %d, want %d", i, got[i], want[i].OriginatorVersion)
				}
			}
			for _, pq := range rec.queries {
				if pq.Limit <= 0 || pq.Limit > page {
					t.Errorf("query %+v asks for more than a page of %d", pq, page)
				}
			}
			if len(rec.queries) > len(want)/page+1 {
				t.Errorf("%d queries for %d events in pages of %d", len(rec.queries), len(want), page)
			}
		})
	}
}

func TestEventStoreEventsStopsEarly(t *testing.T) {
	ctx := context.Background()
	s, rec := newTestStore(t, 2)
	id := uuid.New()
	for v := int64(1); v <= 10; v++ {
		if _, err := s.Put(ctx, &testDeposited{DomainEvent: NewDomainEvent(id, v)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.queries = nil
	for e := range s.Events(ctx, id, nil) {
		if e.Version == 3 {
			break
		}
	}
	if len(rec.queries) != 2 {
		t.Errorf("%d queries to read 3 events in pages of 2, want 2", len(rec.queries))
	}
}

func TestEventStoreDecodeErrorStopsIteration(t *testing.T) {
	ctx := context.Background()
	s, rec := newTestStore(t, 0)
	id := uuid.New()
	if _, err := rec.InsertEvents(ctx, []StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: "nowhere:Nothing", State: []byte(`{}`)}}, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range s.Events(ctx, id, nil) {
		n++
		if !errors.Is(err, ErrUnknownTopic) {
			t.Errorf("got %v, want ErrUnknownTopic", err)
		}
	}
	if n != 1 {
		t.Errorf("iteration yielded %d times after an error, want 1", n)
	}
	if _, err := s.Get(ctx, id, nil); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("Get: got %v, want ErrUnknownTopic", err)
	}
}

// TestZeroMapper uses a Mapper that was declared, not made by NewMapper: it
// maps plain JSON with its own transcoder, as NewMapper(nil) does.
func TestZeroMapper(t *testing.T) {
	var m Mapper[*testDeposited]
	if m.Transcoder() == nil {
		t.Fatal("zero Mapper has no transcoder")
	}
	if _, err := m.Topic(&testDeposited{}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("Topic before Register: %v, want ErrUnknownTopic", err)
	}
	var fresh Mapper[*testDeposited]
	if _, err := fresh.FromStoredEvent(StoredEvent{Topic: "x:Y", State: []byte(`{}`)}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("FromStoredEvent before Register: %v, want ErrUnknownTopic", err)
	}
	if _, err := fresh.ToStoredEvent(&testDeposited{}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("ToStoredEvent before Register: %v, want ErrUnknownTopic", err)
	}
	if err := m.Register(&testDeposited{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Upcast("x:Y", 1, func(map[string]any) error { return nil }); err != nil {
		t.Fatal(err)
	}
	in := &testDeposited{DomainEvent: NewDomainEvent(uuid.New(), 3), Amount: 7, Memo: "zero"}
	se, err := m.ToStoredEvent(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.FromStoredEvent(se)
	if err != nil || out.Amount != 7 || out.Memo != "zero" || out.Version != 3 {
		t.Fatalf("round trip: %+v, %v", out, err)
	}

	// First use from many goroutines at once (run with -race).
	var shared Mapper[*testDeposited]
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if i%2 == 0 {
				shared.Transcoder()
			}
			shared.Register(&testDeposited{})
			if _, err := shared.ToStoredEvent(in); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestZeroEventStore checks that an EventStore without a mapper or a
// recorder returns ErrProgramming instead of panicking.
func TestZeroEventStore(t *testing.T) {
	ctx := context.Background()
	m := NewMapper[*testDeposited](nil)
	if err := m.Register(&testDeposited{}); err != nil {
		t.Fatal(err)
	}
	ev := &testDeposited{DomainEvent: NewDomainEvent(uuid.New(), 1)}
	stores := map[string]*EventStore[*testDeposited]{
		"zero":        {},
		"nil":         nil,
		"no recorder": {Mapper: m},
		"no mapper":   {Recorder: NewMemoryRecorder()},
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Put(ctx, ev); !errors.Is(err, ErrProgramming) {
				t.Errorf("Put: %v, want ErrProgramming", err)
			}
			if _, err := s.PutWithTracking(ctx, Tracking{ApplicationName: "A", NotificationID: 1}, ev); !errors.Is(err, ErrProgramming) {
				t.Errorf("PutWithTracking: %v, want ErrProgramming", err)
			}
			if _, err := s.Get(ctx, ev.Originator, nil); !errors.Is(err, ErrProgramming) {
				t.Errorf("Get: %v, want ErrProgramming", err)
			}
			n := 0
			for _, err := range s.Events(ctx, ev.Originator, nil) {
				n++
				if !errors.Is(err, ErrProgramming) {
					t.Errorf("Events: %v, want ErrProgramming", err)
				}
			}
			if n != 1 {
				t.Errorf("Events yielded %d times, want once", n)
			}
		})
	}
}
