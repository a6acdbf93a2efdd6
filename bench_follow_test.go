// Benchmarks of the consuming side: subscriptions and the process runner
// (bench_test.go has the recorders' benchmarks and their helpers).

package eventsourcing_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// ---- consuming side: subscriptions and the process runner ----

// latencies collects, per notification ID, when its Put returned and when
// a subscriber received it.
type latencies struct {
	mu       sync.Mutex
	put, got map[int64]time.Time
}

func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ds []time.Duration
	for id, p := range l.put {
		g, ok := l.got[id]
		if !ok {
			b.Fatalf("notification %d never received", id)
		}
		ds = append(ds, max(g.Sub(p), 0)) // in process, delivery can beat Put's return
	}
	slices.Sort(ds)
	if len(ds) == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(ds[len(ds)/2]), "p50-ms")
	b.ReportMetric(ms(ds[len(ds)*99/100]), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSubscribeLatency measures delivery latency, from Put returning
// to the subscriber receiving the event, with 1 and 8 writers putting one
// event at a time. Modes: "inprocess" (writer and subscriber share the
// recorder: the commit broadcast wakes it), "listen" (separate recorders
// as if separate processes, PostgreSQL LISTEN wakes it), "poll" (separate
// recorders, LISTEN off, PollInterval 50ms: only polling finds events).
func BenchmarkSubscribeLatency(b *testing.B) {
	const poll = 50 * time.Millisecond
	for _, bd := range benchDBs(b) {
		modes := []string{"inprocess", "poll"}
		if bd.name == "postgres" {
			modes = []string{"inprocess", "listen", "poll"}
		}
		for _, mode := range modes {
			for _, writers := range []int{1, 8} {
				b.Run(fmt.Sprintf("%s/%s/writers=%d", bd.name, mode, writers), func(b *testing.B) {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					w := bd.recorder(b, es.SQLOptions{})
					s := w
					if mode != "inprocess" {
						var err error
						s, err = es.NewSQLRecorder(ctx, bd.db, bd.d, &es.SQLOptions{Schema: bd.schema, Table: w.EventsTable().Name, TrackingTable: w.TrackingTable().Name})
						if err != nil {
							b.Fatal(err)
						}
					}
					l := &latencies{put: map[int64]time.Time{}, got: map[int64]time.Time{}}
					received := make(chan struct{})
					var want atomic.Int64
					want.Store(int64(b.N))
					go func() {
						n := int64(0)
						for note, err := range es.Subscribe(ctx, s, 0, &es.SubscribeOptions{PollInterval: poll, NoListen: mode == "poll"}) {
							if err != nil {
								return
							}
							now := time.Now()
							l.mu.Lock()
							l.got[note.ID] = now
							l.mu.Unlock()
							if n++; n == want.Load() {
								close(received)
							}
						}
					}()
					time.Sleep(100 * time.Millisecond) // listening
					b.ResetTimer()
					var wg sync.WaitGroup
					var next atomic.Int64
					for range writers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							id := uuid.New()
							for v := int64(1); next.Add(1) <= int64(b.N); v++ {
								ids, err := w.InsertEvents(ctx, benchEvents(id, v, 1), nil)
								now := time.Now()
								if err != nil {
									b.Error(err)
									return
								}
								l.mu.Lock()
								l.put[ids[0]] = now
								l.mu.Unlock()
							}
						}()
					}
					wg.Wait()
					select {
					case <-received:
					case <-time.After(30 * time.Second):
						b.Fatal("not all received")
					}
					b.StopTimer()
					l.report(b)
				})
			}
		}
	}
}

// BenchmarkSubscribeCatchUp reads a 1,000,000-event log from the start,
// through a subscription and through SelectNotifications pages of 500 (the
// same page size), one after the other in each op, after one read that
// warms the cache; it reports both rates and their ratio (subscription /
// paging), which alternating makes robust to a machine whose load drifts.
func BenchmarkSubscribeCatchUp(b *testing.B) {
	const size, page = 1_000_000, 500
	ctx := context.Background()
	for _, bd := range benchDBs(b) {
		r := bd.recorder(b, es.SQLOptions{})
		bd.fillStore(b, r, size)
		last, err := r.MaxNotificationID(ctx)
		if err != nil {
			b.Fatal(err)
		}
		subscribe := func(b *testing.B) {
			n := 0
			for note, err := range es.Subscribe(ctx, r, 0, &es.SubscribeOptions{PageSize: page, NoListen: true}) {
				if err != nil {
					b.Fatal(err)
				}
				n++
				if note.ID == last {
					break
				}
			}
			if n != size {
				b.Fatalf("%d notifications, want %d", n, size)
			}
		}
		paging := func(b *testing.B) {
			n, start := 0, int64(0)
			for {
				ns, err := r.SelectNotifications(ctx, start, page, &es.NotificationQuery{ExclusiveStart: true})
				if err != nil {
					b.Fatal(err)
				}
				n += len(ns)
				if len(ns) < page {
					break
				}
				start = ns[len(ns)-1].ID
			}
			if n != size {
				b.Fatalf("%d notifications, want %d", n, size)
			}
		}
		b.Run(bd.name, func(b *testing.B) {
			paging(b) // warm the cache
			var sub, sel time.Duration
			for b.Loop() {
				t0 := time.Now()
				subscribe(b)
				t1 := time.Now()
				paging(b)
				sub, sel = sub+t1.Sub(t0), sel+time.Since(t1)
			}
			events := float64(b.N * size)
			b.ReportMetric(events/sub.Seconds(), "subscribe-events/s")
			b.ReportMetric(events/sel.Seconds(), "select-events/s")
			b.ReportMetric(sel.Seconds()/sub.Seconds(), "ratio")
		})
	}
}

// BenchmarkRunner processes upstream notifications into downstream events
// (one each) with upstream and downstream on the same database, one
// transaction per notification (batch=1) and batches of 100. One op is
// one upstream notification.
func BenchmarkRunner(b *testing.B) {
	type up struct {
		es.DomainEvent
		N int `json:"n"`
	}
	type down struct {
		es.DomainEvent
		N int `json:"n"`
	}
	ctx := context.Background()
	for _, bd := range benchDBs(b) {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", bd.name, batch), func(b *testing.B) {
				um, dm := es.NewMapper[*up](nil), es.NewMapper[*down](nil)
				if err := errors.Join(um.Register(&up{}), dm.Register(&down{})); err != nil {
					b.Fatal(err)
				}
				ur, dr := bd.recorder(b, es.SQLOptions{}), bd.recorder(b, es.SQLOptions{})
				us, ds := es.NewEventStore(um, ur), es.NewEventStore(dm, dr)
				var last int64
				for i := 0; i < b.N; i += 500 {
					evs := make([]*up, min(500, b.N-i))
					for j := range evs {
						evs[j] = &up{DomainEvent: es.NewDomainEvent(uuid.New(), 1), N: i + j}
					}
					ids, err := us.Put(ctx, evs...)
					if err != nil {
						b.Fatal(err)
					}
					last = ids[len(ids)-1]
				}
				r, err := es.NewRunner("Up", us, ds, func(_ context.Context, u es.Recorded[*up]) ([]*down, error) {
					return []*down{{DomainEvent: es.NewDomainEvent(uuid.New(), 1), N: u.Event.N}}, nil
				}, &es.RunnerOptions{BatchSize: batch})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				run, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- r.Run(run) }()
				if err := es.WaitTracking(ctx, dr, "Up", last); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				stop()
				<-done
				reportEventsPerSec(b, b.N)
			})
		}
	}
}
