package eventsourcing_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// countingObserver adds up what recorders report.
type countingObserver struct {
	mu                         sync.Mutex
	txs, calls, rows, pages    int
	pageRows                   int
	lastPageID, maxCommittedID int64
}

func (o *countingObserver) ObserveStart(ctx context.Context, op es.Op) context.Context { return ctx }

func (o *countingObserver) ObserveEnd(ctx context.Context, op es.Op, res es.OpResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch op.Kind {
	case es.OpGroupCommit:
		o.txs++
		o.calls += res.Calls
		o.rows += res.Rows
		o.maxCommittedID = max(o.maxCommittedID, res.LastID)
	case es.OpSelectNotifications:
		o.pages++
		o.pageRows += res.Rows
		o.lastPageID = res.LastID
	}
}

// TestRecorderObserver: every insert transaction is reported with the calls
// it holds and the events it wrote, and every page of the log with its rows
// and last ID, on every recorder.
func TestRecorderObserver(t *testing.T) {
	recorders := map[string]func(t *testing.T, o es.Observer) es.ProcessRecorder{
		"Memory": func(t *testing.T, o es.Observer) es.ProcessRecorder {
			r := es.NewMemoryRecorder()
			r.Observer = o
			return r
		},
	}
	for _, b := range backends {
		recorders[b.name] = func(t *testing.T, o es.Observer) es.ProcessRecorder {
			db, d, schema := b.open(t)
			return newSQLRecorder(t, db, d, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr"), Observer: o})
		}
	}
	for name, open := range recorders {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			o := &countingObserver{}
			r := open(t, o)
			const writers, calls, per = 8, 20, 3
			var wg sync.WaitGroup
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := uuid.New()
					for c := range calls {
						var evs []es.StoredEvent
						for v := range per {
							evs = append(evs, es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(c*per + v + 1), Topic: "t", State: []byte("{}")})
						}
						if _, err := r.InsertEvents(ctx, evs, nil); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			max, err := r.MaxNotificationID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.SelectNotifications(ctx, 0, 1000, nil); err != nil {
				t.Fatal(err)
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.calls != writers*calls || o.rows != writers*calls*per {
				t.Errorf("observed %d calls and %d events in %d transactions, want %d calls and %d events", o.calls, o.rows, o.txs, writers*calls, writers*calls*per)
			}
			if o.maxCommittedID != max {
				t.Errorf("highest ID observed committed %d, max notification ID %d", o.maxCommittedID, max)
			}
			if o.pages != 1 || o.pageRows != writers*calls*per || o.lastPageID != max {
				t.Errorf("observed %d pages, %d rows, last ID %d; want 1 page of %d rows ending at %d", o.pages, o.pageRows, o.lastPageID, writers*calls*per, max)
			}
			t.Logf("%d calls in %d transactions", o.calls, o.txs)
		})
	}
}
