package main

// Benchmarks of verify and copy over a large store (1,000,000 events by
// default; EVENTSOURCING_CLI_BENCH_EVENTS sets another number), run
// through the built tool, with the library's own append rate (100 events
// per transaction, on PostgreSQL) in the same run, for the ratio the issue
// asks of copy. Each reports events/s and the tool's peak resident memory
// (peak-RSS-MB). Run them one iteration each:
//
//	EVENTSOURCING_POSTGRES_DSN=postgres://... go test -run '^$' -bench . -benchtime 1x -timeout 60m ./cmd/eventsourcing/
//
// The store is written once per run, into a temporary SQLite file (removed
// at the end).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

var benchStore struct {
	once   sync.Once
	file   string
	events int
	err    error
}

// benchEvents returns the size of the benchmarks' store.
func benchEvents(b *testing.B) int {
	n := 1_000_000
	if v := os.Getenv("EVENTSOURCING_CLI_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("EVENTSOURCING_CLI_BENCH_EVENTS=%q: want a positive number", v)
		}
	}
	return n
}

// benchState is a stored state of a typical size (about 200 bytes).
var benchState = []byte(`{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T09:00:00.000001+00:00"},"amount":{"_type_":"decimal_str","_data_":"125.50"},"description":"card payment, groceries","counterparty":"ACME Stores Ltd"}`)

// largeStore returns the benchmarks' SQLite store, writing it on first
// use: aggregates of 10 events, in batches of 1000 events.
func largeStore(b *testing.B) (string, int) {
	b.Helper()
	n := benchEvents(b)
	benchStore.once.Do(func() {
		benchStore.file = filepath.Join(tempDir, "large.db")
		benchStore.events = n
		benchStore.err = writeLargeStore(benchStore.file, n)
	})
	if benchStore.err != nil {
		b.Fatal(benchStore.err)
	}
	return benchStore.file, benchStore.events
}

func writeLargeStore(file string, n int) error {
	ctx := context.Background()
	db, err := sqlite.OpenWith(ctx, file, &sqlite.Options{SynchronousNormal: true})
	if err != nil {
		return err
	}
	defer db.Close()
	rec, err := es.NewSQLRecorder(ctx, db, sqlite.Dialect{}, &es.SQLOptions{AppName: "Bench"})
	if err != nil {
		return err
	}
	snaps, err := es.NewSQLSnapshotRecorder(ctx, db, sqlite.Dialect{}, &es.SQLOptions{AppName: "Bench"})
	if err != nil {
		return err
	}
	if err := rec.CreateTables(ctx); err != nil {
		return err
	}
	if err := snaps.CreateTables(ctx); err != nil {
		return err
	}
	batch := make([]es.StoredEvent, 0, 1000)
	var id uuid.UUID
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			id = uuid.New()
		}
		batch = append(batch, es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(i%10 + 1), Topic: "bench:Event", State: benchState})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := rec.InsertEvents(ctx, batch, nil); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	_, err = rec.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: "Upstream", NotificationID: 1})
	return err
}

// runMeasured runs the tool and returns its peak resident memory, in MB.
func runMeasured(b *testing.B, env []string, args ...string) float64 {
	b.Helper()
	cmd := exec.Command(toolPath, args...)
	cmd.Env = cleanEnv(env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("eventsourcing %v: %v\n%s", args, err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

// BenchmarkVerifySQLite verifies the large store.
func BenchmarkVerifySQLite(b *testing.B) {
	file, n := largeStore(b)
	b.ResetTimer()
	var peak float64
	start := time.Now()
	for range b.N {
		peak = max(peak, runMeasured(b, nil, "verify", "--app", "Bench", "--db", file))
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(peak, "peak-RSS-MB")
}

// BenchmarkCopySQLiteToPostgres copies the large store into a new
// PostgreSQL schema per iteration, with the final verification.
func BenchmarkCopySQLiteToPostgres(b *testing.B) {
	file, n := largeStore(b)
	dsn := pgtest.DSN(b)
	db := pgtest.DB(b)
	b.ResetTimer()
	var peak float64
	var elapsed time.Duration
	for range b.N {
		b.StopTimer()
		schema := pgtest.Schema(b, db)
		b.StartTimer()
		start := time.Now()
		peak = max(peak, runMeasured(b, nil, "copy", "--app", "Bench", "--db", file, "--to", dsn, "--to-schema", schema))
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(peak, "peak-RSS-MB")
}

// BenchmarkLibraryAppendPostgres100 is the library's own append rate on
// the same server, 100 events per InsertEvents call (one transaction
// each), one writer: what copy's rate is compared with.
func BenchmarkLibraryAppendPostgres100(b *testing.B) {
	db := pgtest.DB(b)
	schema := pgtest.Schema(b, db)
	ctx := context.Background()
	rec, err := es.NewSQLRecorder(ctx, db, postgres.Dialect{}, &es.SQLOptions{AppName: "Bench", Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	if err := rec.CreateTables(ctx); err != nil {
		b.Fatal(err)
	}
	batch := make([]es.StoredEvent, 100)
	b.ResetTimer()
	for i := range b.N {
		for j := range batch {
			batch[j] = es.StoredEvent{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "bench:Event", State: benchState}
		}
		if _, err := rec.InsertEvents(ctx, batch, nil); err != nil {
			b.Fatalf("append %d: %v", i, err)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "events/s")
}
