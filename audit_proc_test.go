package eventsourcing_test

// The acknowledgement audit across processes: the test binary re-executed
// as writer processes on one SQLite file or one PostgreSQL table, with short
// lock timeouts and injected faults, each writing its history as JSON
// lines; the parent audits the histories of them all against the table.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// envAuditWriter holds a writer process's configuration (JSON): set, it
// makes TestAuditWriterProcess a writer.
const envAuditWriter = "EVENTSOURCING_AUDIT_WRITER"

// writerConfig is what a writer process does.
type writerConfig struct {
	Backend   string        // "sqlite" or "postgres"
	Path      string        // the SQLite file
	DSN       string        // the PostgreSQL database
	App       string        // its PostgreSQL connections' application_name
	Options   es.SQLOptions // the recorder's tables, lock timeout, group commit
	Proc      int           // its number, in its events' states and tracking names
	Workers   int
	Calls     int // per worker
	Seed      uint64
	Deadline  time.Duration // the bound of a short caller deadline
	BusyLimit time.Duration // SQLite's busy timeout
	Out       string        // where it writes its history
}

// writerLine is a line of a writer's output: a call, or (last) the
// writer's fault count and the violations it found itself.
type writerLine struct {
	Call       *auditCall `json:",omitempty"`
	Done       bool       `json:",omitempty"`
	Faults     int64      `json:",omitempty"`
	Violations []string   `json:",omitempty"`
}

// TestAuditWriterProcess is a writer process of the multi-process audit,
// run only by the audit (with EVENTSOURCING_AUDIT_WRITER set).
func TestAuditWriterProcess(t *testing.T) {
	spec := os.Getenv(envAuditWriter)
	if spec == "" {
		t.Skip("a writer process of TestAudit*MultiProcess, which runs it")
	}
	var cfg writerConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		t.Fatal(err)
	}
	s := &faultSchedule{seed: cfg.Seed}
	obs := &auditObserver{}
	opts := cfg.Options
	opts.Observer = obs
	db := openWriterDB(t, cfg, s)
	r := newWriterRecorder(t, db, writerDialect(cfg.Backend), opts)
	tg := &auditTarget{rec: r, db: db}
	if opts.MaxGroupSize != 1 {
		tg.stats = r.Stats
	}
	goroutines := runtime.NumGoroutine()
	s.armed.Store(true)
	hist, bad := drive(r, cfg.Proc, auditRun{seed: cfg.Seed, workers: cfg.Workers, calls: cfg.Calls, deadline: cfg.Deadline})
	s.armed.Store(false)
	checkCounters(&bad, tg, obs, hist)
	checkResources(&bad, tg, goroutines)
	checkLateness(&bad, hist)
	for i, v := range bad {
		bad[i] = fmt.Sprintf("process %d: %s", cfg.Proc, v)
	}
	if err := writeHistory(cfg.Out, hist, s.total(), bad); err != nil {
		t.Fatal(err)
	}
}

// openWriterDB opens a writer's faulted pool, faulting every point of its
// database at once (the real PostgreSQL faults are the parent's).
func openWriterDB(t *testing.T, cfg writerConfig, s *faultSchedule) *sql.DB {
	t.Helper()
	if cfg.Backend == "sqlite" {
		s.rate = mixedRates(sqliteFaults)
		return faultedSQLite(t, cfg.Path, cfg.BusyLimit, s, sqliteFaultErrors(t))
	}
	s.rate = mixedRates(postgresFaults)
	return faultedPostgres(t, cfg.DSN, cfg.App, s, postgresFaultErrors())
}

// newWriterRecorder makes a writer's recorder, trying again while the
// parent's real faults (terminated sessions) fail it.
func newWriterRecorder(t *testing.T, db *sql.DB, d es.Dialect, opts es.SQLOptions) *es.SQLRecorder {
	t.Helper()
	for try := 1; ; try++ {
		r, err := es.NewSQLRecorder(context.Background(), db, d, &opts)
		if err == nil {
			return r
		}
		if try == 20 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writerDialect(backend string) es.Dialect {
	if backend == "sqlite" {
		return sqlite.Dialect{}
	}
	return postgres.Dialect{}
}

// writeHistory writes a writer's history to path as JSON lines, then its
// summary line.
func writeHistory(path string, hist []*auditCall, faults int64, bad violations) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, c := range hist {
		if err := enc.Encode(writerLine{Call: c}); err != nil {
			f.Close()
			return err
		}
	}
	if err := enc.Encode(writerLine{Done: true, Faults: faults, Violations: bad}); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readHistory reads a writer's output: its calls, fault count and
// violations; output without its summary line is a violation.
func readHistory(path string) ([]*auditCall, int64, violations, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, err
	}
	defer f.Close()
	var hist []*auditCall
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l writerLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", path, err)
		}
		if l.Done {
			return hist, l.Faults, l.Violations, nil
		}
		hist = append(hist, l.Call)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, nil, err
	}
	return hist, 0, violations{path + ": the writer's history ends without its summary line"}, nil
}

// procAudit is a multi-process audit on one database.
type procAudit struct {
	name    string // the summary line's backend
	procs   int
	workers int // per process
	calls   int // per worker
	base    writerConfig
	modes   []auditMode // process i runs modes[i%len(modes)]
	view    auditView
	disrupt func(context.Context, uint64) // real faults during the run (given its seed), or nil
	s       *faultSchedule                // counts the real faults
}

var procModes = []auditMode{modeGroup, modeNoGroup, modeDelay}

// run starts the writer processes, waits for them, and audits their
// histories together; it prints the summary line whatever happens.
func (a procAudit) run(t *testing.T) {
	seed := auditSeed(t)
	var calls, bad = 0, violations{}
	var faults int64
	defer func() {
		fmt.Printf("audit %s: %d calls, %d faults injected, %d violations\n", a.name, calls, faults, len(bad))
	}()
	t.Logf("audit %s: seed %d (re-run with %s=%d)", a.name, seed, envAuditSeed, seed)
	ctx, stop := context.WithCancel(context.Background())
	var side sync.WaitGroup
	if a.disrupt != nil {
		side.Go(func() { a.disrupt(ctx, seed) })
	}
	outs := a.startWriters(t, seed)
	stop()
	side.Wait()
	var hist []*auditCall
	for _, out := range outs {
		h, n, v, err := readHistory(out)
		if err != nil {
			t.Fatal(err)
		}
		hist, faults, bad = append(hist, h...), faults+n, append(bad, v...)
	}
	faults += a.s.total()
	calls = len(hist)
	bad = append(bad, checkHistory(context.Background(), a.view, hist)...)
	t.Logf("%d calls (%s) by %d processes; faults: %d; commonest errors: %s", calls, outcomes(hist), a.procs, faults, commonErrors(hist, 3))
	reportViolations(t, bad, seed)
}

// startWriters runs the writer processes at once and returns their output
// files once all have exited.
func (a procAudit) startWriters(t *testing.T, seed uint64) []string {
	t.Helper()
	dir := t.TempDir()
	outs := make([]string, a.procs)
	errs := make([]error, a.procs)
	var wg sync.WaitGroup
	for p := range a.procs {
		cfg := a.base
		cfg.Proc, cfg.Workers, cfg.Calls = p+1, a.workers, a.calls
		cfg.Seed = mix64(seed ^ uint64(p+1))
		m := a.modes[p%len(a.modes)]
		cfg.Options.MaxGroupSize, cfg.Options.MaxGroupDelay = m.opts.MaxGroupSize, m.opts.MaxGroupDelay
		cfg.Out = filepath.Join(dir, fmt.Sprintf("writer%d.jsonl", p+1))
		outs[p] = cfg.Out
		spec, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestAuditWriterProcess$", "-test.count=1", "-test.timeout=5m")
		cmd.Env = append(os.Environ(), envAuditWriter+"="+string(spec))
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[p] = fmt.Errorf("writer %d (%s): %v\n%s", p+1, m.name, err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return outs
}

// procCounts returns the processes, workers per process and calls per
// worker of a multi-process audit, fewer under the race detector.
func procCounts(procs, workers, calls int) (int, int, int) {
	if raceEnabled {
		return procs, workers, max(calls/4, 4)
	}
	return procs, workers, calls
}

// TestAuditSQLiteMultiProcess: four writer processes on one SQLite file
// with a busy timeout of 2 ms, every point faulted; the parent audits all.
func TestAuditSQLiteMultiProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	view := viewSQLite(t, path)
	r, err := es.NewSQLRecorder(context.Background(), view, sqlite.Dialect{}, &es.SQLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	procs, workers, calls := procCounts(4, 4, 150)
	procAudit{
		name: "sqlite-multiprocess", procs: procs, workers: workers, calls: calls, modes: procModes,
		base: writerConfig{Backend: "sqlite", Path: path, Deadline: 3 * time.Millisecond, BusyLimit: 2 * time.Millisecond},
		view: sqlView(t, view, sqlite.Dialect{}, es.SQLOptions{}),
		s:    &faultSchedule{},
	}.run(t)
}

// TestAuditPostgresMultiProcess: three writer processes on one PostgreSQL
// table with a lock timeout of 5 ms, every point faulted, while the parent
// terminates their sessions and locks their table from another session;
// the parent audits all.
func TestAuditPostgresMultiProcess(t *testing.T) {
	dsn := pgtest.DSN(t)
	side := pgtest.DB(t)
	opts := es.SQLOptions{Schema: pgtest.Schema(t, side), Table: pgtest.UniqueName("audit_ev"),
		TrackingTable: pgtest.UniqueName("audit_tr"), LockTimeout: 5 * time.Millisecond}
	r, err := es.NewSQLRecorder(context.Background(), side, postgres.Dialect{}, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	app := pgtest.UniqueName("auditmp")
	table := r.EventsTable().Quote(postgres.Dialect{})
	s := &faultSchedule{}
	s.rate[faultTerminate], s.rate[faultTableLock] = 0.25, 0.1
	procs, workers, calls := procCounts(3, 8, 30)
	procAudit{
		name: "postgres-multiprocess", procs: procs, workers: workers, calls: calls, modes: procModes,
		base:    writerConfig{Backend: "postgres", DSN: dsn, App: app, Options: opts, Deadline: 20 * time.Millisecond},
		view:    sqlView(t, side, postgres.Dialect{}, opts),
		disrupt: func(ctx context.Context, seed uint64) { postgresDisruptor(side, app, table, seed, s)(ctx) },
		s:       s,
	}.run(t)
}
