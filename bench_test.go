package eventsourcing_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

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

// rawStmts caches prepared statements for the raw baselines, as a careful
// hand-written program prepares each statement once (database/sql then
// prepares it once per connection).
var rawStmts sync.Map // SQL text -> *sql.Stmt

func rawStmt(db *sql.DB, q string) (*sql.Stmt, error) {
	if s, ok := rawStmts.Load(q); ok {
		return s.(*sql.Stmt), nil
	}
	s, err := db.Prepare(q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := rawStmts.LoadOrStore(q, s); loaded {
		s.Close()
		return prev.(*sql.Stmt), nil
	}
	return s, nil
}

// rawInsert is the append as one would write it by hand with database/sql
// at its best: one transaction per call; on PostgreSQL the lock statements
// the library needs for order (SET LOCAL lock_timeout, LOCK TABLE) sent
// together in one round trip, then a prepared multi-row INSERT ...
// RETURNING; on SQLite (one writer, BEGIN IMMEDIATE) a prepared multi-row
// INSERT whose IDs end at LastInsertId; then COMMIT.
func (bd benchDB) rawInsert(ctx context.Context, r *es.SQLRecorder, evs []es.StoredEvent) error {
	pg := bd.name == "postgres"
	q, args := bd.rawValues(r, evs)
	if pg {
		q.WriteString(" RETURNING " + bd.d.NotificationIDColumn())
	}
	// Prepared before the transaction: preparing an INSERT takes a lock on
	// the table that the transaction's LOCK TABLE would block.
	stmt, err := rawStmt(bd.db, q.String())
	if err != nil {
		return err
	}
	tx, err := bd.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if pg {
		if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '0ms'; LOCK TABLE "+r.EventsTable().Quote(bd.d)+" IN EXCLUSIVE MODE"); err != nil {
			return err
		}
	}
	st := tx.StmtContext(ctx, stmt)
	ids := make([]int64, 0, len(evs))
	if pg {
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
	} else {
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		last, err := res.LastInsertId()
		if err != nil {
			return err
		}
		for i := range int64(len(evs)) {
			ids = append(ids, last-int64(len(evs))+1+i)
		}
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

// benchAB times ours and raw alternately, b.N times each, in the order
// ours, raw, raw, ours, ... so that neither always runs second (on a
// warmer cache, a fuller WAL), and reports each one's time per op (ops per
// call of the function) and the ratio of raw's time to ours: 1.0 is the
// raw database/sql ceiling, above 1 the library is faster. The two are
// measured in the same run, interleaved, as issue 12 asks.
func benchAB(b *testing.B, ops int, ours, raw func() error) {
	b.Helper()
	var tOurs, tRaw time.Duration
	run := func(f func() error, acc *time.Duration) {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*acc += time.Since(t0)
	}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			run(ours, &tOurs)
			run(raw, &tRaw)
		} else {
			run(raw, &tRaw)
			run(ours, &tOurs)
		}
		i++
	}
	n := float64(b.N * ops)
	b.ReportMetric(0, "ns/op") // the sum of both: not a figure of either
	b.ReportMetric(float64(tOurs.Nanoseconds())/n, "es-ns/op")
	b.ReportMetric(float64(tRaw.Nanoseconds())/n, "raw-ns/op")
	b.ReportMetric(float64(tRaw)/float64(tOurs), "raw/es")
}

// BenchmarkPut appends batches of 1, 10 and 100 events from one goroutine,
// the library beside hand-written database/sql (benchAB), each to a table
// of its own in the same database.
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
			b.Run(fmt.Sprintf("%s/%d", bd.name, n), func(b *testing.B) {
				r, rr := bd.recorder(b, es.SQLOptions{}), bd.recorder(b, es.SQLOptions{})
				id, v, rv := uuid.New(), int64(1), int64(1)
				benchAB(b, 1, func() error {
					_, err := r.InsertEvents(ctx, benchEvents(id, v, n), nil)
					v += int64(n)
					return err
				}, func() error {
					err := bd.rawInsert(ctx, rr, benchEvents(id, rv, n))
					rv += int64(n)
					return err
				})
			})
		}
	}
}

// BenchmarkPutTyped appends one typed event per transaction to SQLite
// through an EventStore: zlib at the default level (6) and at
// zlib.BestSpeed (1), each with AES-GCM, interleaved with plain typed JSON
// ("raw/es" is then the ratio to the typed figure; the target is >= 0.8).
func BenchmarkPutTyped(b *testing.B) {
	ctx := context.Background()
	key, _ := es.CreateKey(32)
	cipher, err := es.NewAESCipherBase64(key)
	if err != nil {
		b.Fatal(err)
	}
	bd := benchDBs(b)[0]
	store := func(b *testing.B, opts *es.MapperOptions) *es.EventStore[*benchEvent] {
		m := es.NewMapper[*benchEvent](opts)
		if err := m.Register(&benchEvent{}); err != nil {
			b.Fatal(err)
		}
		return es.NewEventStore(m, es.ProcessRecorder(bd.recorder(b, es.SQLOptions{})))
	}
	for _, c := range []struct {
		name string
		opts *es.MapperOptions
	}{
		{"zlib6+aes", &es.MapperOptions{Compressor: es.ZlibCompressor{}, Cipher: cipher}},
		{"zlib1+aes", &es.MapperOptions{Compressor: es.ZlibCompressor{Level: zlib.BestSpeed}, Cipher: cipher}},
	} {
		b.Run("sqlite/"+c.name, func(b *testing.B) {
			s, typed := store(b, c.opts), store(b, nil)
			id, v, tv := uuid.New(), int64(1), int64(1)
			benchAB(b, 1, func() error {
				_, err := s.Put(ctx, newBenchEvent(id, v))
				v++
				return err
			}, func() error {
				_, err := typed.Put(ctx, newBenchEvent(id, tv))
				tv++
				return err
			})
		})
	}
}

// rawSelect runs a query and collects rows of (version, topic, state),
// the same work SelectEvents does, by hand.
func rawSelect(ctx context.Context, db *sql.DB, id uuid.UUID, q string, args ...any) (int, error) {
	stmt, err := rawStmt(db, q)
	if err != nil {
		return 0, err
	}
	rows, err := stmt.QueryContext(ctx, args...)
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
		b.Run(bd.name, func(b *testing.B) {
			q := "SELECT originator_version, topic, state FROM " + r.EventsTable().Quote(bd.d) + " WHERE originator_id = " + bd.d.Placeholder(1) + " ORDER BY originator_version"
			benchAB(b, 1, func() error {
				if evs, err := r.SelectEvents(ctx, id, nil); err != nil || len(evs) != 100 {
					return fmt.Errorf("%d events, %v", len(evs), err)
				}
				return nil
			}, func() error {
				if n, err := rawSelect(ctx, bd.db, id, q, bd.d.UUIDArg(id)); err != nil || n != 100 {
					return fmt.Errorf("%d events, %v", n, err)
				}
				return nil
			})
		})
	}
}

// BenchmarkSelectNotifications reads the notification log in pages of 500:
// SelectNotifications, and SelectNotificationsInto reusing one slice, each
// beside the same page read by hand.
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
		next := func(start int64) int64 { return base + (start-base+page)%(total-page) }
		nid := bd.d.NotificationIDColumn()
		q := "SELECT " + nid + ", originator_id, originator_version, topic, state FROM " + r.EventsTable().Quote(bd.d) +
			" WHERE " + nid + " >= " + bd.d.Placeholder(1) + " ORDER BY " + nid + " LIMIT " + bd.d.Placeholder(2)
		raw := func(start int64) error {
			stmt, err := rawStmt(bd.db, q)
			if err != nil {
				return err
			}
			rows, err := stmt.QueryContext(ctx, start, page)
			if err != nil {
				return err
			}
			defer rows.Close()
			out := make([]es.Notification, 0, page)
			var oid string
			for rows.Next() {
				var n es.Notification
				if err := rows.Scan(&n.ID, &oid, &n.OriginatorVersion, &n.Topic, &n.State); err != nil {
					return err
				}
				if n.OriginatorID, err = uuid.Parse(oid); err != nil {
					return err
				}
				out = append(out, n)
			}
			if len(out) != page {
				return fmt.Errorf("%d notifications, %v", len(out), rows.Err())
			}
			return rows.Err()
		}
		// pages runs read (one page from start) beside raw, each paging
		// through the log.
		pages := func(b *testing.B, read func(start int64) ([]es.Notification, error)) {
			start, rstart := base, base
			benchAB(b, 1, func() error {
				ns, err := read(start)
				if err != nil || len(ns) != page {
					return fmt.Errorf("%d notifications, %v", len(ns), err)
				}
				start = next(start)
				return nil
			}, func() error {
				err := raw(rstart)
				rstart = next(rstart)
				return err
			})
		}
		b.Run(bd.name, func(b *testing.B) {
			pages(b, func(start int64) ([]es.Notification, error) { return r.SelectNotifications(ctx, start, page, nil) })
		})
		b.Run(bd.name+"/reuse", func(b *testing.B) {
			var buf []es.Notification
			pages(b, func(start int64) (ns []es.Notification, err error) {
				buf, err = r.SelectNotificationsInto(ctx, buf, start, page, nil)
				return buf, err
			})
		})
	}
}

// BenchmarkConcurrentPut has G goroutines appending batches of N events,
// each to its own aggregate: the library's group commit beside the naive
// locked baseline (one transaction per call). The two alternate in blocks
// of 32 calls per goroutine (benchAB); es-ns/op and raw-ns/op are per call.
//
// On PostgreSQL it runs twice: with the append function (postgres/...)
// and without (postgres-tx/..., NoAppendFunction), the before and after of
// issue 22.
func BenchmarkConcurrentPut(b *testing.B) {
	ctx := context.Background()
	shapes := []struct{ g, n int }{{1, 1}, {8, 1}, {32, 1}, {8, 10}}
	for _, bd := range benchDBs(b) {
		paths := []string{""}
		if bd.name == "postgres" {
			paths = append(paths, "-tx")
		}
		for _, path := range paths {
			for _, s := range shapes {
				b.Run(fmt.Sprintf("%s%s/g%d/n%d", bd.name, path, s.g, s.n), func(b *testing.B) {
					benchConcurrentPut(ctx, b, bd, s.g, s.n, es.SQLOptions{NoAppendFunction: path == "-tx"})
				})
			}
		}
	}
}

// benchConcurrentPut is one shape of BenchmarkConcurrentPut: g goroutines
// appending n events at a time, through a recorder with opts.
func benchConcurrentPut(ctx context.Context, b *testing.B, bd benchDB, g, n int, opts es.SQLOptions) {
	s := struct{ g, n int }{g, n}
	r, rr := bd.recorder(b, opts), bd.recorder(b, es.SQLOptions{})
	if bd.name == "postgres" {
		bd.db.SetMaxOpenConns(s.g + 2)
	}
	calls := 32 * s.g
	type writer struct {
		id uuid.UUID
		v  int64
	}
	block := func(put func(w *writer) error) func() error {
		ws := make([]writer, s.g)
		for i := range ws {
			ws[i] = writer{uuid.New(), 1}
		}
		return func() error {
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, s.g)
			for i := range ws {
				wg.Add(1)
				go func(w *writer) {
					defer wg.Done()
					for next.Add(1) <= int64(calls) {
						if err := put(w); err != nil {
							errs <- err
							return
						}
						w.v += int64(s.n)
					}
				}(&ws[i])
			}
			wg.Wait()
			close(errs)
			return <-errs
		}
	}
	benchAB(b, calls, block(func(w *writer) error {
		_, err := r.InsertEvents(ctx, benchEvents(w.id, w.v, s.n), nil)
		return err
	}), block(func(w *writer) error {
		return bd.rawInsert(ctx, rr, benchEvents(w.id, w.v, s.n))
	}))
	if st := r.Stats(); st.Transactions > 0 {
		b.ReportMetric(float64(st.Calls)/float64(st.Transactions), "calls/tx")
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

// BenchmarkPutVsRaw (issue 22) appends batches of 1, 10 and 100 events
// from one goroutine on PostgreSQL, interleaving five ways to do it on
// one pool of connections that counts the statements sent (each a round
// trip), each to a table of its own:
//
//   - es: the library (the append function: one call per transaction);
//   - es-tx: the library with NoAppendFunction (BEGIN, the lock
//     statements with NOTIFY, INSERT ... RETURNING, COMMIT);
//   - raw: hand-written BEGIN; a prepared multi-row INSERT; COMMIT, with
//     no lock and no IDs returned (the baseline of the targets);
//   - raw-locked: rawInsert, what the library did by hand (lock, IDs);
//   - ceiling: a prepared INSERT in autocommit mode (one round trip, no
//     lock, no IDs).
//
// Each reports <way>-ns/op and <way>-rt/op (round trips per transaction);
// raw/es, raw/es-tx and ceiling/es are the ratios of their times (above 1,
// the library is faster); es-p50-us and es-p99-us (and es-tx's) are the
// latencies of a single Put of the library, in microseconds.
func BenchmarkPutVsRaw(b *testing.B) {
	if os.Getenv(pgtest.EnvDSN) == "" {
		b.Skip("PostgreSQL only: set " + pgtest.EnvDSN)
	}
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(pgtest.DSN(b))
	if err != nil {
		b.Fatal(err)
	}
	conn := &auditConnector{inner: stdlib.GetConnector(*cfg)} // no schedule: it only counts
	db := sql.OpenDB(conn)
	b.Cleanup(func() { db.Close() })
	bd := benchDB{"postgres", db, postgres.Dialect{}, pgtest.Schema(b, pgtest.DB(b))}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("postgres/%d", n), func(b *testing.B) {
			r := bd.recorder(b, es.SQLOptions{})
			rt := bd.recorder(b, es.SQLOptions{NoAppendFunction: true})
			rr, rl, rc := bd.recorder(b, es.SQLOptions{}), bd.recorder(b, es.SQLOptions{}), bd.recorder(b, es.SQLOptions{})
			if !r.Stats().AppendFunction || rt.Stats().AppendFunction {
				b.Fatalf("append function: es %v, es-tx %v", r.Stats().AppendFunction, rt.Stats().AppendFunction)
			}
			ways := []benchWay{
				{name: "es", lat: true, put: seqPut(func(evs []es.StoredEvent) error { _, err := r.InsertEvents(ctx, evs, nil); return err }, n)},
				{name: "es-tx", lat: true, put: seqPut(func(evs []es.StoredEvent) error { _, err := rt.InsertEvents(ctx, evs, nil); return err }, n)},
				{name: "raw", put: seqPut(func(evs []es.StoredEvent) error { return bd.rawInsertPlain(ctx, rr, evs, true) }, n)},
				{name: "raw-locked", put: seqPut(func(evs []es.StoredEvent) error { return bd.rawInsert(ctx, rl, evs) }, n)},
				{name: "ceiling", put: seqPut(func(evs []es.StoredEvent) error { return bd.rawInsertPlain(ctx, rc, evs, false) }, n)},
			}
			benchWays(b, &conn.stmts, ways)
			b.ReportMetric(ways[2].mean()/ways[0].mean(), "raw/es")
			b.ReportMetric(ways[2].mean()/ways[1].mean(), "raw/es-tx")
			b.ReportMetric(ways[4].mean()/ways[0].mean(), "ceiling/es")
		})
	}
}

// seqPut returns a put of n new events at a time to one aggregate.
func seqPut(put func([]es.StoredEvent) error, n int) func() error {
	id, v := uuid.New(), int64(1)
	return func() error {
		err := put(benchEvents(id, v, n))
		v += int64(n)
		return err
	}
}

// benchWay is one way of appending that benchWays times.
type benchWay struct {
	name  string
	lat   bool // report its latency percentiles
	put   func() error
	times []time.Duration
	stmts int64
}

func (w *benchWay) mean() float64 {
	var sum time.Duration
	for _, d := range w.times {
		sum += d
	}
	return float64(sum) / float64(max(1, len(w.times)))
}

// benchWays runs each way b.N times, interleaved in a rotating order (so
// that none always runs first or last), counting the statements stmts
// counts during each, and reports <way>-ns/op, <way>-rt/op, and for
// those that ask, <way>-p50-us and <way>-p99-us.
func benchWays(b *testing.B, stmts *atomic.Int64, ways []benchWay) {
	b.Helper()
	i := 0
	for b.Loop() {
		for k := range ways {
			w := &ways[(i+k)%len(ways)]
			s0, t0 := stmts.Load(), time.Now()
			if err := w.put(); err != nil {
				b.Fatalf("%s: %v", w.name, err)
			}
			w.times = append(w.times, time.Since(t0))
			w.stmts += stmts.Load() - s0
		}
		i++
	}
	b.ReportMetric(0, "ns/op") // the sum of all: not a figure of any
	for k := range ways {
		w := &ways[k]
		b.ReportMetric(w.mean(), w.name+"-ns/op")
		b.ReportMetric(float64(w.stmts)/float64(max(1, len(w.times))), w.name+"-rt/op")
		if w.lat {
			sorted := slices.Clone(w.times)
			slices.Sort(sorted)
			pct := func(p float64) float64 {
				return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds())
			}
			b.ReportMetric(pct(0.50), w.name+"-p50-us")
			b.ReportMetric(pct(0.99), w.name+"-p99-us")
		}
	}
}

// rawValues returns the multi-row INSERT of evs into r's events table
// that both raw baselines send, and its arguments.
func (bd benchDB) rawValues(r *es.SQLRecorder, evs []es.StoredEvent) (*strings.Builder, []any) {
	q := new(strings.Builder)
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
	return q, args
}

// rawInsertPlain is the baseline of issue 22 written by hand: a prepared
// multi-row INSERT with no lock and no RETURNING, in BEGIN ... COMMIT
// (tx) or in autocommit mode (the ceiling: one round trip).
func (bd benchDB) rawInsertPlain(ctx context.Context, r *es.SQLRecorder, evs []es.StoredEvent, tx bool) error {
	q, args := bd.rawValues(r, evs)
	stmt, err := rawStmt(bd.db, q.String())
	if err != nil {
		return err
	}
	if !tx {
		_, err := stmt.ExecContext(ctx, args...)
		return err
	}
	t, err := bd.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	if _, err := t.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
		return err
	}
	return t.Commit()
}
