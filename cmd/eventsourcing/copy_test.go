package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// tables names a store's tables, for the row by row comparisons.
type tables struct {
	db                          *sql.DB
	d                           es.Dialect
	events, snapshots, tracking es.Table
}

func sqliteTables(t *testing.T, file string) tables {
	t.Helper()
	db, err := openSQLiteReadOnly(file, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return tables{db, sqlite.Dialect{}, es.Table{Name: "stored_events"}, es.Table{Name: "stored_snapshots"}, es.Table{Name: "tracking"}}
}

func postgresTables(db *sql.DB, schema, app string) tables {
	d := postgres.Dialect{}
	e, s, tr := d.DefaultTables(app)
	return tables{db, d, es.Table{Schema: schema, Name: e}, es.Table{Schema: schema, Name: s}, es.Table{Schema: schema, Name: tr}}
}

// dump returns every row of the store's tables as text, events in
// notification order, snapshots and tracking records sorted; originator
// IDs as stored if raw, else as UUIDs.
func (tb tables) dump(t *testing.T, raw bool) (events, snapshots, tracking []string) {
	t.Helper()
	origin := "originator_id"
	if tb.d.Name() == es.ModulePostgres {
		origin = "originator_id::text"
	}
	id := func(s string) string {
		if raw {
			return s
		}
		u, err := uuid.Parse(s)
		if err != nil {
			return "bad:" + s
		}
		return u.String()
	}
	query := func(q string, scan func(*sql.Rows) string) []string {
		rows, err := tb.db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			out = append(out, scan(rows))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	nid := tb.d.NotificationIDColumn()
	events = query("SELECT "+nid+", "+origin+", originator_version, topic, state FROM "+tb.events.Quote(tb.d)+" ORDER BY "+nid, func(r *sql.Rows) string {
		var n, v int64
		var o, topic string
		var state []byte
		if err := r.Scan(&n, &o, &v, &topic, &state); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d %s v%d %s %x", n, id(o), v, topic, state)
	})
	snapshots = query("SELECT "+origin+", originator_version, topic, state FROM "+tb.snapshots.Quote(tb.d), func(r *sql.Rows) string {
		var v int64
		var o, topic string
		var state []byte
		if err := r.Scan(&o, &v, &topic, &state); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s v%d %s %x", id(o), v, topic, state)
	})
	tracking = query("SELECT application_name, notification_id FROM "+tb.tracking.Quote(tb.d), func(r *sql.Rows) string {
		var app string
		var n int64
		if err := r.Scan(&app, &n); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s %d", app, n)
	})
	slices.Sort(snapshots)
	slices.Sort(tracking)
	return events, snapshots, tracking
}

// sameRows fails the test unless both stores hold the same rows.
func sameRows(t *testing.T, what string, a, b tables, raw bool) {
	t.Helper()
	ae, as, at := a.dump(t, raw)
	be, bs, bt := b.dump(t, raw)
	for _, c := range []struct {
		table string
		a, b  []string
	}{{"events", ae, be}, {"snapshots", as, bs}, {"tracking", at, bt}} {
		if len(c.a) == 0 {
			t.Errorf("%s: no %s rows in the source", what, c.table)
		}
		if !slices.Equal(c.a, c.b) {
			t.Errorf("%s: %s differ: %d rows and %d rows", what, c.table, len(c.a), len(c.b))
			for i := range min(len(c.a), len(c.b)) {
				if c.a[i] != c.b[i] {
					t.Errorf("first difference, row %d:\n%.200s\n%.200s", i, c.a[i], c.b[i])
					break
				}
			}
		}
	}
}

// copyKilled starts a copy with a rate limit, kills it (SIGKILL) once it
// has committed at least min events, and returns how many it had
// reported.
func copyKilled(t *testing.T, env []string, args []string, minimum int64) int64 {
	t.Helper()
	return copyKilledWhen(t, env, args, func(p copyProgress) bool { return p.Through > 0 && p.Copied >= minimum })
}

// copyKilledWhen is copyKilled, killing the copy at the first progress
// line for which kill reports true.
func copyKilledWhen(t *testing.T, env []string, args []string, kill func(copyProgress) bool) int64 {
	t.Helper()
	cmd := exec.Command(toolPath, append(args, "--json", "--batch", "100", "--max-rate", "2000")...)
	cmd.Env = cleanEnv(env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		var p copyProgress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("copy --json: %q: %v", sc.Text(), err)
		}
		if kill(p) {
			cmd.Process.Kill()
			return p.Copied
		}
	}
	cmd.Wait()
	t.Fatalf("copy ended before it was killed: %s", stderr.String())
	return 0
}

// TestCopySQLitePostgresSQLite moves a store from SQLite to PostgreSQL and
// back, each copy killed in the middle and resumed; the copies are
// compared row by row with the original, and the application writes to
// each afterwards.
func TestCopySQLitePostgresSQLite(t *testing.T) {
	dsn := pgtest.DSN(t)
	pg := pgtest.DB(t)
	schema := pgtest.Schema(t, pg)
	p := pipeline{name: "zlib-aes", compress: true, key: testKey}
	src := sqliteStore(t, p)
	src.fill(t, 40, 60) // 2400 events
	srcFile := strings.TrimPrefix(src.env[1], "SQLITE_DBNAME=")
	orig := sqliteTables(t, srcFile)
	pgTables := postgresTables(pg, schema, "Bank")

	// SQLite -> PostgreSQL, killed, resumed.
	toPG := append([]string{"copy", "--to", dsn, "--to-schema", schema}, src.args...)
	killedAt := copyKilled(t, src.env, toPG, 300)
	var n int64
	if err := pg.QueryRow("SELECT COUNT(*) FROM " + pgTables.events.Quote(pgTables.d)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < killedAt || n >= int64(src.events) {
		t.Fatalf("after the kill the destination holds %d events: want from %d (reported) to fewer than %d", n, killedAt, src.events)
	}
	r := mustRun(t, src.env, toPG...)
	if !strings.Contains(r.stdout, fmt.Sprintf("stored_events -> %s.bank_events: 2400 rows (%d copied now)", schema, 2400-n)) || !strings.Contains(r.stdout, "verified") {
		t.Errorf("resumed copy:\n%s", r)
	}
	sameRows(t, "SQLite -> PostgreSQL", orig, pgTables, false)
	// Run again: nothing to copy, still verified.
	if r := mustRun(t, src.env, toPG...); !strings.Contains(r.stdout, "(0 copied now)") {
		t.Errorf("copy run again:\n%s", r)
	}

	// PostgreSQL -> SQLite, killed, resumed.
	pgStore := postgresStoreIn(t, p, schema)
	back := filepath.Join(t.TempDir(), "back.db")
	toSQLite := append([]string{"copy", "--to", back}, pgStore.args...)
	copyKilled(t, pgStore.env, toSQLite, 300)
	mustRun(t, pgStore.env, toSQLite...)
	backTables := sqliteTables(t, back)
	sameRows(t, "SQLite -> PostgreSQL -> SQLite", orig, backTables, true)
	mustRun(t, nil, "verify", "--app", "Bank", "--db", back, "-e", "CIPHER_KEY="+testKey, "-e", "COMPRESSOR_TOPIC=zlib")

	// The application writes to both copies: the next notification ID is
	// the one after the copied ones.
	if id := pgStore.put(t, src.ids[0], 61, "after the move to PostgreSQL"); id != 2401 {
		t.Errorf("the application's first write to the PostgreSQL copy got notification ID %d, want 2401", id)
	}
	backStore := &testStore{app: "Bank", env: append([]string{"PERSISTENCE_MODULE=sqlite", "SQLITE_DBNAME=" + back}, p.env()...)}
	backStore.lookup = lookupOf(backStore.env)
	if id := backStore.put(t, uuid.New(), 1, "after the move back"); id != 2401 {
		t.Errorf("the application's first write to the SQLite copy got notification ID %d, want 2401", id)
	}

	// A destination that holds other data is refused, and left alone.
	other := sqliteStore(t, p)
	other.fill(t, 2, 2)
	r = run(t, other.env, append([]string{"copy", "--to", dsn, "--to-schema", schema}, other.args...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, "holds data the source does not") {
		t.Errorf("copy onto another store's copy: %s", r)
	}
	if err := pg.QueryRow("SELECT COUNT(*) FROM " + pgTables.events.Quote(pgTables.d)).Scan(&n); err != nil || n != 2401 {
		t.Errorf("the refused destination holds %d events (%v), want 2401", n, err)
	}
}

// TestCopyRefusesOtherSQLiteStore: a copy into an SQLite file holding
// another store fails, naming the table, and writes nothing.
func TestCopyRefusesOtherSQLiteStore(t *testing.T) {
	a, b := sqliteStore(t, pipelines[1]), sqliteStore(t, pipelines[1])
	a.fill(t, 2, 3)
	b.fill(t, 2, 2)
	bFile := strings.TrimPrefix(b.env[1], "SQLITE_DBNAME=")
	before := sqliteTables(t, bFile)
	be, _, _ := before.dump(t, true)
	r := run(t, a.env, append([]string{"copy", "--to", bFile}, a.args...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, "table stored_events") || !strings.Contains(r.stderr, "holds data the source does not") {
		t.Errorf("copy onto another store: %s", r)
	}
	if ae, _, _ := sqliteTables(t, bFile).dump(t, true); !slices.Equal(ae, be) {
		t.Errorf("the refused destination changed")
	}
}
