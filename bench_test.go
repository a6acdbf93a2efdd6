package eventsourcing_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// benchEvent has about 200 bytes of state: a UUID, a timestamp, strings
// and numbers.
type benchEvent struct {
	es.DomainEvent
	AccountID uuid.UUID `json:"account_id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Amount    int64     `json:"amount"`
	Rate      float64   `json:"rate"`
	Memo      string    `json:"memo"`
}

func newBenchEvent(id uuid.UUID, v int64) *benchEvent {
	return &benchEvent{
		DomainEvent: es.DomainEvent{Originator: id, Version: v, Timestamp: time.Date(2024, 3, 1, 9, 0, 0, 123456000, time.UTC)},
		AccountID:   uuid.MustParse("b2723fe2-c01a-40d2-875e-a3aac6a09ff5"), Name: "Alice Example", Email: "alice@example.com",
		Amount: 12345, Rate: 0.0125, Memo: "monthly transfer",
	}
}

// BenchmarkMapper maps an event to a stored event and back, beside
// encoding/json's Marshal and Unmarshal of the same struct.
func BenchmarkMapper(b *testing.B) {
	e := newBenchEvent(uuid.New(), 1)
	b.Run("eventsourcing", func(b *testing.B) {
		m := es.NewMapper[*benchEvent](nil)
		if err := m.Register(&benchEvent{}); err != nil {
			b.Fatal(err)
		}
		se, _ := m.ToStoredEvent(e)
		b.ReportMetric(float64(len(se.State)), "state-bytes")
		b.ReportAllocs()
		for b.Loop() {
			se, err := m.ToStoredEvent(e)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.FromStoredEvent(se); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(e)
			if err != nil {
				b.Fatal(err)
			}
			var out benchEvent
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// ---- recorder benchmarks, each beside a raw database/sql baseline ----

// benchDB is a database for benchmarks: SQLite file (WAL) or Postgres.
type benchDB struct {
	name   string
	db     *sql.DB
	d      es.Dialect
	schema string
}

func benchDBs(b *testing.B) []benchDB {
	b.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), time.Minute) // the naive baseline waits long for the lock
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	dbs := []benchDB{{"sqlite", db, sqlite.Dialect{}, ""}}
	if os.Getenv(pgtest.EnvDSN) != "" {
		pg := pgtest.DB(b)
		dbs = append(dbs, benchDB{"postgres", pg, postgres.Dialect{}, pgtest.Schema(b, pg)})
	}
	return dbs
}

func (bd benchDB) recorder(b *testing.B, opts es.SQLOptions) *es.SQLRecorder {
	b.Helper()
	opts.Schema = bd.schema
	if opts.Table == "" {
		opts.Table, opts.TrackingTable = pgtest.UniqueName("ev"), pgtest.UniqueName("tr")
	}
	r, err := es.NewSQLRecorder(context.Background(), bd.db, bd.d, &opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		b.Fatal(err)
	}
	return r
}

// rawInsert is the naive hand-written append: one transaction per call,
// the dialect's lock, one multi-row INSERT ... RETURNING, commit.
func (bd benchDB) rawInsert(ctx context.Context, r *es.SQLRecorder, evs []es.StoredEvent) error {
	tx, err := bd.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if bd.name == "postgres" {
		if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '0ms'"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "LOCK TABLE "+r.EventsTable().Quote(bd.d)+" IN EXCLUSIVE MODE"); err != nil {
			return err
		}
	}
	var q strings.Builder
	q.WriteString("INSERT INTO " + r.EventsTable().Quote(bd.d) + " (originator_id, originator_version, topic, state) VALUES ")
	args := make([]any, 0, 4*len(evs))
	for i, e := range evs {
		if i > 0 {
			q.WriteByte(',')
		}
		p := 4*i + 1
		q.WriteString("(" + bd.d.Placeholder(p) + "," + bd.d.Placeholder(p+1) + "," + bd.d.Placeholder(p+2) + "," + bd.d.Placeholder(p+3) + ")")
		args = append(args, bd.d.UUIDArg(e.OriginatorID), e.OriginatorVersion, e.Topic, e.State)
	}
	q.WriteString(" RETURNING " + bd.d.NotificationIDColumn())
	rows, err := tx.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	return tx.Commit()
}

var benchState = bytes.Repeat([]byte("x"), 200)

func benchEvents(id uuid.UUID, from int64, n int) []es.StoredEvent {
	evs := make([]es.StoredEvent, n)
	for i := range evs {
		evs[i] = es.StoredEvent{OriginatorID: id, OriginatorVersion: from + int64(i), Topic: "bench:Event", State: benchState}
	}
	return evs
}

func reportEventsPerSec(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPut appends batches of 1, 10 and 100 events from one goroutine.
func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("memory/%d", n), func(b *testing.B) {
			r := es.NewMemoryRecorder()
			id, v := uuid.New(), int64(1)
			for b.Loop() {
				if _, err := r.InsertEvents(ctx, benchEvents(id, v, n), nil); err != nil {
					b.Fatal(err)
				}
				v += int64(n)
			}
			reportEventsPerSec(b, b.N*n)
		})
	}
	for _, bd := range benchDBs(b) {
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("%s/%d/eventsourcing", bd.name, n), func(b *testing.B) {
				r := bd.recorder(b, es.SQLOptions{})
				id, v := uuid.New(), int64(1)
				for b.Loop() {
					if _, err := r.InsertEvents(ctx, benchEvents(id, v, n), nil); err != nil {
						b.Fatal(err)
					}
					v += int64(n)
				}
				reportEventsPerSec(b, b.N*n)
			})
			b.Run(fmt.Sprintf("%s/%d/raw", bd.name, n), func(b *testing.B) {
				r := bd.recorder(b, es.SQLOptions{})
				id, v := uuid.New(), int64(1)
				for b.Loop() {
					if err := bd.rawInsert(ctx, r, benchEvents(id, v, n)); err != nil {
						b.Fatal(err)
					}
					v += int64(n)
				}
				reportEventsPerSec(b, b.N*n)
			})
		}
	}
}

// rawSelect runs a query and collects rows of (version, topic, state),
// the same work SelectEvents does, by hand.
func rawSelect(ctx context.Context, db *sql.DB, id uuid.UUID, q string, args ...any) (int, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var out []es.StoredEvent
	for rows.Next() {
		e := es.StoredEvent{OriginatorID: id}
		if err := rows.Scan(&e.OriginatorVersion, &e.Topic, &e.State); err != nil {
			return 0, err
		}
		out = append(out, e)
	}
	return len(out), rows.Err()
}

// BenchmarkGet reads the 100 events of one aggregate.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	b.Run("memory", func(b *testing.B) {
		r := es.NewMemoryRecorder()
		id := uuid.New()
		r.InsertEvents(ctx, benchEvents(id, 1, 100), nil)
		for b.Loop() {
			if evs, err := r.SelectEvents(ctx, id, nil); err != nil || len(evs) != 100 {
				b.Fatal(len(evs), err)
			}
		}
		reportEventsPerSec(b, b.N*100)
	})
	for _, bd := range benchDBs(b) {
		r := bd.recorder(b, es.SQLOptions{})
		id := uuid.New()
		if _, err := r.InsertEvents(ctx, benchEvents(id, 1, 100), nil); err != nil {
			b.Fatal(err)
		}
		b.Run(bd.name+"/eventsourcing", func(b *testing.B) {
			for b.Loop() {
				if evs, err := r.SelectEvents(ctx, id, nil); err != nil || len(evs) != 100 {
					b.Fatal(len(evs), err)
				}
			}
			reportEventsPerSec(b, b.N*100)
		})
		b.Run(bd.name+"/raw", func(b *testing.B) {
			q := "SELECT originator_version, topic, state FROM " + r.EventsTable().Quote(bd.d) + " WHERE originator_id = " + bd.d.Placeholder(1) + " ORDER BY originator_version"
			for b.Loop() {
				if n, err := rawSelect(ctx, bd.db, id, q, bd.d.UUIDArg(id)); err != nil || n != 100 {
					b.Fatal(n, err)
				}
			}
			reportEventsPerSec(b, b.N*100)
		})
	}
}

// BenchmarkSelectNotifications reads the notification log in pages of 500.
func BenchmarkSelectNotifications(b *testing.B) {
	ctx := context.Background()
	const total, page = 10000, 500
	fill := func(b *testing.B, r es.AggregateRecorder) {
		for i := 0; i < total; i += 100 {
			if _, err := r.InsertEvents(ctx, benchEvents(uuid.New(), 1, 100), nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) {
		r := es.NewMemoryRecorder()
		fill(b, r)
		start := int64(1)
		for b.Loop() {
			ns, err := r.SelectNotifications(ctx, start, page, nil)
			if err != nil || len(ns) != page {
				b.Fatal(len(ns), err)
			}
			start = (start+page)%(total-page) + 1
		}
		reportEventsPerSec(b, b.N*page)
	})
	for _, bd := range benchDBs(b) {
		r := bd.recorder(b, es.SQLOptions{})
		fill(b, r)
		first, _ := r.SelectNotifications(ctx, 0, 1, nil)
		base := first[0].ID
		b.Run(bd.name+"/eventsourcing", func(b *testing.B) {
			start := base
			for b.Loop() {
				ns, err := r.SelectNotifications(ctx, start, page, nil)
				if err != nil || len(ns) != page {
					b.Fatal(len(ns), err)
				}
				start = base + (start-base+page)%(total-page)
			}
			reportEventsPerSec(b, b.N*page)
		})
		b.Run(bd.name+"/raw", func(b *testing.B) {
			nid := bd.d.NotificationIDColumn()
			q := "SELECT " + nid + ", originator_id, originator_version, topic, state FROM " + r.EventsTable().Quote(bd.d) +
				" WHERE " + nid + " >= " + bd.d.Placeholder(1) + " ORDER BY " + nid + " LIMIT " + bd.d.Placeholder(2)
			start := base
			for b.Loop() {
				rows, err := bd.db.QueryContext(ctx, q, start, page)
				if err != nil {
					b.Fatal(err)
				}
				out := make([]es.Notification, 0, page)
				var oid string
				for rows.Next() {
					var n es.Notification
					if err := rows.Scan(&n.ID, &oid, &n.OriginatorVersion, &n.Topic, &n.State); err != nil {
						b.Fatal(err)
					}
					if n.OriginatorID, err = uuid.Parse(oid); err != nil {
						b.Fatal(err)
					}
					out = append(out, n)
				}
				rows.Close()
				if len(out) != page {
					b.Fatal(len(out))
				}
				start = base + (start-base+page)%(total-page)
			}
			reportEventsPerSec(b, b.N*page)
		})
	}
}

// BenchmarkConcurrentPut has G goroutines appending batches of N events,
// each to its own aggregate: the library's group commit beside the naive
// locked baseline (one transaction per call).
func BenchmarkConcurrentPut(b *testing.B) {
	ctx := context.Background()
	shapes := []struct{ g, n int }{{1, 1}, {8, 1}, {32, 1}, {8, 10}}
	for _, bd := range benchDBs(b) {
		for _, s := range shapes {
			for _, mode := range []string{"eventsourcing", "raw"} {
				b.Run(fmt.Sprintf("%s/g%d/n%d/%s", bd.name, s.g, s.n, mode), func(b *testing.B) {
					r := bd.recorder(b, es.SQLOptions{})
					if bd.name == "postgres" {
						bd.db.SetMaxOpenConns(s.g + 2)
					}
					var next atomic.Int64
					b.ResetTimer()
					var wg sync.WaitGroup
					for range s.g {
						wg.Add(1)
						go func() {
							defer wg.Done()
							id, v := uuid.New(), int64(1)
							for next.Add(1) <= int64(b.N) {
								evs := benchEvents(id, v, s.n)
								v += int64(s.n)
								var err error
								if mode == "raw" {
									err = bd.rawInsert(ctx, r, evs)
								} else {
									_, err = r.InsertEvents(ctx, evs, nil)
								}
								if err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					reportEventsPerSec(b, b.N*s.n)
					if st := r.GroupStats(); mode != "raw" && st.Transactions > 0 {
						b.ReportMetric(float64(st.Calls)/float64(st.Transactions), "calls/tx")
					}
				})
			}
		}
	}
}

// fillStore inserts n events (10,000 aggregates of up to 100 versions) with
// one SQL statement, outside any timing.
func (bd benchDB) fillStore(b *testing.B, r *es.SQLRecorder, n int) {
	b.Helper()
	t := r.EventsTable().Quote(bd.d)
	var q string
	if bd.name == "postgres" {
		q = fmt.Sprintf(`INSERT INTO %s (originator_id, originator_version, topic, state)
			SELECT md5((g / 100)::text)::uuid, g %% 100 + 1, 'bench:Event', convert_to(repeat('x', 200), 'UTF8')
			FROM generate_series(0, %d) g`, t, n-1)
	} else {
		q = fmt.Sprintf(`WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < %d)
			INSERT INTO %s (originator_id, originator_version, topic, state)
			SELECT printf('%%032x', n / 100), n %% 100 + 1, 'bench:Event', zeroblob(200) FROM g`, n-1, t)
	}
	if _, err := bd.db.Exec(q); err != nil {
		b.Fatal(err)
	}
	if bd.name == "postgres" {
		bd.db.Exec("ANALYZE " + t)
	}
}

// BenchmarkStoreSize measures get (100 events of one aggregate), put (a
// batch of 10) and notification paging (a page of 500 from the middle) on
// an empty store and on one holding 1,000,000 events.
func BenchmarkStoreSize(b *testing.B) {
	ctx := context.Background()
	for _, bd := range benchDBs(b) {
		for _, size := range []int{0, 1_000_000} {
			r := bd.recorder(b, es.SQLOptions{})
			if size > 0 {
				bd.fillStore(b, r, size)
			}
			id := uuid.New()
			if _, err := r.InsertEvents(ctx, benchEvents(id, 1, 100), nil); err != nil {
				b.Fatal(err)
			}
			max, _ := r.MaxNotificationID(ctx)
			name := fmt.Sprintf("%s/%devents", bd.name, size)
			b.Run(name+"/get100", func(b *testing.B) {
				for b.Loop() {
					if evs, err := r.SelectEvents(ctx, id, nil); err != nil || len(evs) != 100 {
						b.Fatal(len(evs), err)
					}
				}
				reportEventsPerSec(b, b.N*100)
			})
			b.Run(name+"/put10", func(b *testing.B) {
				pid, v := uuid.New(), int64(1)
				for b.Loop() {
					if _, err := r.InsertEvents(ctx, benchEvents(pid, v, 10), nil); err != nil {
						b.Fatal(err)
					}
					v += 10
				}
				reportEventsPerSec(b, b.N*10)
			})
			b.Run(name+"/page500", func(b *testing.B) {
				start := max/2 - 250
				for b.Loop() {
					if ns, err := r.SelectNotifications(ctx, start, 500, nil); err != nil || len(ns) == 0 {
						b.Fatal(len(ns), err)
					}
				}
				reportEventsPerSec(b, b.N*500)
			})
		}
	}
}

type smallEvent struct {
	es.DomainEvent
	Amount int64 `json:"amount"`
}

// BenchmarkGetLargeAggregate reads one aggregate of 100,000 events through
// EventStore.Get from SQLite and reports the peak heap growth while doing
// so: the stored states are read a page at a time, not all at once.
func BenchmarkGetLargeAggregate(b *testing.B) {
	ctx := context.Background()
	const n = 100_000
	bd := benchDBs(b)[0]
	r := bd.recorder(b, es.SQLOptions{})
	m := es.NewMapper[*smallEvent](nil)
	m.Register(&smallEvent{})
	store := es.NewEventStore(m, r)
	id := uuid.New()
	for v := int64(1); v <= n; v += 1000 {
		evs := make([]*smallEvent, 1000)
		for i := range evs {
			evs[i] = &smallEvent{DomainEvent: es.NewDomainEvent(id, v+int64(i)), Amount: v}
		}
		if _, err := store.Put(ctx, evs...); err != nil {
			b.Fatal(err)
		}
	}
	var peak float64
	for b.Loop() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		var max atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > max.Load() {
					max.Store(ms.HeapAlloc)
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		evs, err := store.Get(ctx, id, nil)
		close(stop)
		<-sampled
		if err != nil || len(evs) != n {
			b.Fatal(len(evs), err)
		}
		if grew := float64(max.Load()-min(max.Load(), base)) / (1 << 20); grew > peak {
			peak = grew
		}
		runtime.KeepAlive(evs)
	}
	b.ReportMetric(peak, "peak-heap-MiB")
	reportEventsPerSec(b, b.N*n)
}
