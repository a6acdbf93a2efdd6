package main

// The tests run the built tool (TestMain builds it once) with os/exec,
// against stores written by the library in SQLite files and, when
// EVENTSOURCING_POSTGRES_DSN names a database, in PostgreSQL schemas of
// their own.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	_ "github.com/seed06b138f8/eventsourcing/dialect/postgres"
	_ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// toolPath is the tool, built by TestMain into tempDir, which is removed
// when the tests end.
var toolPath, tempDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventsourcing-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tempDir = dir
	toolPath = filepath.Join(dir, "eventsourcing")
	if out, err := exec.Command("go", "build", "-o", toolPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a run of the tool gave.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cleanEnv is the environment the tool runs with: the test's, without the
// store configuration variables, plus env.
func cleanEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.Contains(k, "PERSISTENCE_MODULE") || strings.Contains(k, "SQLITE_") || strings.Contains(k, "POSTGRES_") ||
			strings.Contains(k, "CIPHER_") || strings.Contains(k, "COMPRESSOR_") || strings.Contains(k, "TRACKING") {
			if !strings.HasPrefix(k, "EVENTSOURCING_") {
				continue
			}
		}
		out = append(out, kv)
	}
	return append(out, env...)
}

// run runs the tool with args and env (NAME=VALUE), and waits at most 30 s.
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, toolPath, args...)
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return r
}

// mustRun runs the tool and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := run(t, env, args...)
	if r.code != 0 {
		t.Fatalf("eventsourcing %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// jsonLines decodes JSON lines.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// Deposited is the test domain's event.
type Deposited struct {
	es.DomainEvent
	Amount int64  `json:"amount"`
	Note   string `json:"note"`
}

const depositedTopic = "cli_test:Deposited"

// Account is the test domain's snapshot state.
type Account struct {
	Balance int64 `json:"balance"`
}

// pipeline is how a test store's states are written.
type pipeline struct {
	name     string
	compress bool
	key      string // base64, or ""
}

// testKey is the AES key of the encrypted test stores.
const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

var pipelines = []pipeline{
	{name: "plain"},
	{name: "zlib", compress: true},
	{name: "aes", key: testKey},
	{name: "zlib-aes", compress: true, key: testKey},
}

// env returns the pipeline's configuration variables.
func (p pipeline) env() []string {
	var env []string
	if p.compress {
		env = append(env, "COMPRESSOR_TOPIC="+es.ZlibCompressorTopic)
	}
	if p.key != "" {
		env = append(env, "CIPHER_KEY="+p.key)
	}
	return env
}

// testStore is a store the library wrote, and how to reach it.
type testStore struct {
	app string
	// env configures the tool (and the library) for it.
	env []string
	// args are the tool's flags naming it (--app, --db, --schema).
	args   []string
	lookup func(string) (string, bool)
	ids    []uuid.UUID // the aggregates
	events int
}

// config returns the library's configuration of the store.
func (s *testStore) config(t *testing.T) *es.Config {
	t.Helper()
	cfg, err := es.LoadConfig(s.app, s.lookup)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lookupOf returns a lookup of NAME=VALUE pairs.
func lookupOf(env []string) func(string) (string, bool) {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// sqliteStore returns a test store in a new SQLite file.
func sqliteStore(t *testing.T, p pipeline) *testStore {
	t.Helper()
	file := filepath.Join(t.TempDir(), p.name+".db")
	env := append([]string{"PERSISTENCE_MODULE=sqlite", "SQLITE_DBNAME=" + file}, p.env()...)
	return &testStore{app: "Bank", env: env, args: []string{"--app", "Bank"}, lookup: lookupOf(env)}
}

// postgresStore returns a test store in a new PostgreSQL schema, or skips
// the test without a PostgreSQL database.
func postgresStore(t *testing.T, p pipeline) *testStore {
	t.Helper()
	pgtest.DSN(t)
	return postgresStoreIn(t, p, pgtest.Schema(t, pgtest.DB(t)))
}

// postgresStoreIn returns the test store in a PostgreSQL schema.
func postgresStoreIn(t *testing.T, p pipeline, schema string) *testStore {
	t.Helper()
	dsn := pgtest.DSN(t)
	env := append([]string{"POSTGRES_SCHEMA=" + schema}, p.env()...)
	s := &testStore{app: "Bank", env: env, args: []string{"--app", "Bank", "--db", dsn}}
	vars, err := postgresVariables(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	if _, ok := vars[es.EnvPostgresPassword]; !ok {
		env = append(env, es.EnvPostgresPassword+"=")
	}
	s.lookup = lookupOf(env)
	return s
}

// fill writes aggregates aggregates of perAggregate events each, a
// snapshot of the first aggregate at its third version, and tracking
// records of the store's own application and of another.
func (s *testStore) fill(t *testing.T, aggregates, perAggregate int) {
	t.Helper()
	ctx := context.Background()
	cfg := s.config(t)
	st, err := es.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts, err := cfg.MapperOptions()
	if err != nil {
		t.Fatal(err)
	}
	m := es.NewMapper[*Deposited](opts)
	if err := m.RegisterTopic(depositedTopic, &Deposited{}); err != nil {
		t.Fatal(err)
	}
	events := es.NewEventStore(m, st.Recorder)
	for a := 0; a < aggregates; a++ {
		s.ids = append(s.ids, uuid.New())
	}
	// Interleave the aggregates in the log, a batch per round.
	for v := 1; v <= perAggregate; v++ {
		var batch []*Deposited
		for a, id := range s.ids {
			batch = append(batch, &Deposited{DomainEvent: es.NewDomainEvent(id, int64(v)), Amount: int64(100*a + v), Note: fmt.Sprintf("deposit %d of aggregate %d: ünïcødé", v, a)})
		}
		if _, err := events.Put(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		s.events += len(batch)
	}
	snaps, err := es.NewSnapshotStore[Account]("cli_test:Account", opts, st.Snapshots)
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps.Put(ctx, &es.Snapshot[Account]{DomainEvent: es.NewDomainEvent(s.ids[0], 3), State: Account{Balance: 6}}); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []es.Tracking{{ApplicationName: s.app, NotificationID: 2}, {ApplicationName: "Upstream", NotificationID: 7}} {
		if _, err := st.Recorder.InsertEvents(ctx, nil, &tr); err != nil {
			t.Fatal(err)
		}
	}
}

// put writes one more event with the library, as the application would,
// and returns its notification ID.
func (s *testStore) put(t *testing.T, id uuid.UUID, version int64, note string) int64 {
	t.Helper()
	ctx := context.Background()
	cfg := s.config(t)
	st, err := es.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts, err := cfg.MapperOptions()
	if err != nil {
		t.Fatal(err)
	}
	m := es.NewMapper[*Deposited](opts)
	if err := m.RegisterTopic(depositedTopic, &Deposited{}); err != nil {
		t.Fatal(err)
	}
	ids, err := es.NewEventStore(m, st.Recorder).Put(ctx, &Deposited{DomainEvent: es.NewDomainEvent(id, version), Amount: 1, Note: note})
	if err != nil {
		t.Fatal(err)
	}
	// Read it back through the library.
	got, err := es.NewEventStore(m, st.Recorder).Get(ctx, id, &es.Query{GTE: version})
	if err != nil || len(got) != 1 || got[0].Note != note {
		t.Fatalf("read back the event just written: %v, %v", got, err)
	}
	return ids[0]
}
