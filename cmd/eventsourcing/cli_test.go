package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// backends makes a test store per backend: SQLite always, PostgreSQL when
// configured.
var backends = []struct {
	name string
	make func(*testing.T, pipeline) *testStore
}{{"sqlite", sqliteStore}, {"postgres", postgresStore}}

// TestReadCommands runs info, log, events and verify on stores the library
// wrote, plain, compressed, encrypted and both, in SQLite and PostgreSQL.
func TestReadCommands(t *testing.T) {
	for _, b := range backends {
		for _, p := range pipelines {
			t.Run(b.name+"/"+p.name, func(t *testing.T) {
				s := b.make(t, p)
				s.fill(t, 3, 4)
				testReadCommands(t, s)
			})
		}
	}
}

func testReadCommands(t *testing.T, s *testStore) {
	args := func(more ...string) []string { return append(append([]string{}, more...), s.args...) }

	// info
	var info infoReport
	r := mustRun(t, s.env, args("info", "--json")...)
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, r)
	}
	if info.Events != 12 || info.Aggregates != 3 || info.MaxID != 12 || info.Snapshots != 1 || !info.PythonCompat {
		t.Errorf("info: %+v, want 12 events of 3 aggregates, max ID 12, 1 snapshot, Python-compatible", info)
	}
	if !strings.HasPrefix(info.StatesRead, "yes") || !strings.Contains(info.Tracking, "single-row") {
		t.Errorf("info: states read %q, tracking %q", info.StatesRead, info.Tracking)
	}
	wantRecs := []trackingRecord{{Upstream: "Bank", Position: 2, Rows: 1, Lag: 10}, {Upstream: "Upstream", Position: 7, Rows: 1, Lag: -1}}
	if fmt.Sprint(info.Records) != fmt.Sprint(wantRecs) {
		t.Errorf("info tracking records %+v, want %+v", info.Records, wantRecs)
	}
	r = mustRun(t, s.env, args("info")...)
	for _, want := range []string{"events             12", "Bank at 2 (1 rows), lag 10 events behind", "Upstream at 7"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("info does not say %q:\n%s", want, r.stdout)
		}
	}

	// log, in pages, after an ID, with a limit, by topic
	r = mustRun(t, s.env, args("log", "--json")...)
	lines := jsonLines(t, r.stdout)
	if len(lines) != 12 {
		t.Fatalf("log: %d lines, want 12:\n%s", len(lines), r)
	}
	for i, l := range lines {
		if l["id"] != float64(i+1) || l["topic"] != depositedTopic {
			t.Errorf("log line %d: %v", i, l)
		}
		state, _ := l["state"].(map[string]any)
		if !strings.HasPrefix(fmt.Sprint(state["note"]), "deposit ") {
			t.Errorf("log line %d: state %v, want the plaintext JSON", i, l["state"])
		}
	}
	r = mustRun(t, s.env, args("log", "--after", "4", "--limit", "3")...)
	if got := strings.Count(r.stdout, "\n"); got != 3 || !strings.HasPrefix(r.stdout, "5\t") {
		t.Errorf("log --after 4 --limit 3:\n%s", r.stdout)
	}
	if r = mustRun(t, s.env, args("log", "--topic", "other:Topic")...); r.stdout != "" {
		t.Errorf("log --topic other:Topic: %q, want nothing", r.stdout)
	}

	// events, with bounds, and the latest snapshot
	id := s.ids[0].String()
	r = mustRun(t, s.env, args("events", id, "--json")...)
	lines = jsonLines(t, r.stdout)
	if len(lines) != 5 || lines[4]["snapshot"] != true || lines[4]["originator_version"] != float64(3) || lines[4]["topic"] != es.SnapshotTopic {
		t.Fatalf("events %s: want 4 events and the snapshot at v3:\n%s", id, r)
	}
	if state, _ := lines[4]["state"].(map[string]any); fmt.Sprint(state["state"]) != "map[balance:6]" {
		t.Errorf("snapshot state %v", lines[4]["state"])
	}
	r = mustRun(t, s.env, args("events", id, "--after", "1", "--to", "2")...)
	if got := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(got) != 1 || !strings.HasPrefix(got[0], "event\t"+id+"\tv2\t") {
		t.Errorf("events --after 1 --to 2: want v2 alone (the snapshot is at v3), got:\n%s", r.stdout)
	}

	// verify
	r = mustRun(t, s.env, args("verify")...)
	if !strings.Contains(r.stdout, "verify: OK: 12 events of 3 aggregates, 1 snapshots, 3 tracking rows read") {
		t.Errorf("verify:\n%s", r)
	}
}

// TestEventsSnapshotBound: with --to below the snapshot, events shows no
// snapshot (the latest at or before --to).
func TestEventsSnapshotBound(t *testing.T) {
	s := sqliteStore(t, pipelines[0])
	s.fill(t, 1, 4)
	r := mustRun(t, s.env, append([]string{"events", s.ids[0].String(), "--to", "2"}, s.args...)...)
	if strings.Contains(r.stdout, "snapshot") || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("events --to 2:\n%s", r.stdout)
	}
}

// TestErrorsNameTheFix: each mistake is an error that says what is wrong
// and what to do.
func TestErrorsNameTheFix(t *testing.T) {
	s := sqliteStore(t, pipeline{name: "aes", key: testKey})
	s.fill(t, 2, 2)
	file := strings.TrimPrefix(s.env[1], "SQLITE_DBNAME=")
	otherKey := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh0="
	empty := t.TempDir() + "/empty.db"
	db, err := sqlite.Open(context.Background(), empty, 0)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"no app", s.env, []string{"info"}, exitUsage, []string{"--app NAME is required"}},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`}},
		{"bad flag", s.env, []string{"log", "--app", "Bank", "--nope"}, exitUsage, []string{"flag provided but not defined: -nope"}},
		{"bad aggregate ID", s.env, []string{"events", "nope", "--app", "Bank"}, exitUsage, []string{`"nope" is not a UUID`}},
		{"wrong key", []string{"PERSISTENCE_MODULE=sqlite", "SQLITE_DBNAME=" + file}, []string{"verify", "--app", "Bank", "-e", "CIPHER_KEY=" + otherKey}, exitFail,
			[]string{"CIPHER_KEY is not the key the state was written with"}},
		{"no key", []string{"PERSISTENCE_MODULE=sqlite", "SQLITE_DBNAME=" + file}, []string{"log", "--app", "Bank"}, exitFail,
			[]string{"the state looks encrypted (set CIPHER_KEY"}},
		{"bad key", nil, []string{"info", "--app", "Bank", "--db", file, "-e", "BANK_CIPHER_KEY=short"}, exitFail,
			[]string{"BANK_CIPHER_KEY", "not standard base64"}},
		{"missing file", nil, []string{"info", "--app", "Bank", "--db", t.TempDir() + "/nope.db"}, exitFail,
			[]string{"no such file", "SQLITE_DBNAME"}},
		{"missing table", nil, []string{"verify", "--app", "Bank", "--db", empty}, exitFail,
			[]string{"table stored_events does not exist", "CREATE_TABLE"}},
		{"memory", []string{"PERSISTENCE_MODULE=memory"}, []string{"info", "--app", "Bank"}, exitFail,
			[]string{"in memory lives in its process only", "--db"}},
		{"missing variable", []string{"PERSISTENCE_MODULE=sqlite"}, []string{"info", "--app", "Bank"}, exitFail,
			[]string{"SQLITE_DBNAME: required"}},
		{"copy without --to", s.env, []string{"copy", "--app", "Bank"}, exitUsage, []string{"--to URL|PATH is required"}},
		{"copy onto itself", s.env, []string{"copy", "--app", "Bank", "--to", file}, exitFail, []string{"is the source itself"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, c.args...)
			if r.code != c.code {
				t.Errorf("exit status %d, want %d: %s", r.code, c.code, r)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q: %s", w, r)
				}
			}
		})
	}
}

// TestMissingPostgresTable: the error names the table and how to create
// it, and that tables are named after --app.
func TestMissingPostgresTable(t *testing.T) {
	s := postgresStore(t, pipelines[0])
	r := run(t, s.env, append([]string{"info"}, s.args...)...)
	if r.code != exitFail || !strings.Contains(r.stderr, "bank_events does not exist") || !strings.Contains(r.stderr, "--app") {
		t.Errorf("info on an empty schema: %s", r)
	}
}

// corrupt damages three rows of the store's events table: notification 3
// gets a damaged state (one byte flipped), notification 5 a NULL topic,
// notification 7 a state cut short (a truncated ciphertext); and its
// snapshot a state that is not JSON.
func corrupt(t *testing.T, db *sql.DB, d es.Dialect, events, snapshots es.Table) {
	t.Helper()
	nid, ph := d.NotificationIDColumn(), d.Placeholder
	for _, q := range []string{
		"UPDATE " + events.Quote(d) + " SET state = " + ph(1) + " WHERE " + nid + " = 3",
		"UPDATE " + events.Quote(d) + " SET topic = NULL WHERE " + nid + " = 5",
	} {
		var args []any
		if strings.Contains(q, ph(1)) {
			var state []byte
			if err := db.QueryRow("SELECT state FROM " + events.Quote(d) + " WHERE " + nid + " = 3").Scan(&state); err != nil {
				t.Fatal(err)
			}
			state[len(state)/2] ^= 0x40
			args = append(args, state)
		}
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	var state []byte
	if err := db.QueryRow("SELECT state FROM " + events.Quote(d) + " WHERE " + nid + " = 7").Scan(&state); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE "+events.Quote(d)+" SET state = "+ph(1)+" WHERE "+nid+" = 7", state[:20]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE "+snapshots.Quote(d)+" SET state = "+ph(1), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyBadRows: verify names each bad row, by table and ID, with the
// reason, and exits 1.
func TestVerifyBadRows(t *testing.T) {
	p := pipeline{name: "zlib-aes", compress: true, key: testKey}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.make(t, p)
			s.fill(t, 3, 4)
			cfg := s.config(t)
			var db *sql.DB
			var d es.Dialect
			events, snapshots := es.Table{Name: "stored_events"}, es.Table{Name: "stored_snapshots"}
			if b.name == "sqlite" {
				var err error
				if db, err = sqlite.Open(context.Background(), cfg.SQLite.DBName, 0); err != nil {
					t.Fatal(err)
				}
				d = sqlite.Dialect{}
			} else {
				var err error
				if db, err = postgres.OpenConfig(context.Background(), &cfg.Postgres); err != nil {
					t.Fatal(err)
				}
				d = postgres.Dialect{}
				events, snapshots = es.Table{Schema: cfg.Postgres.Schema, Name: "bank_events"}, es.Table{Schema: cfg.Postgres.Schema, Name: "bank_snapshots"}
			}
			defer db.Close()
			corrupt(t, db, d, events, snapshots)
			r := run(t, s.env, append([]string{"verify"}, s.args...)...)
			if r.code != exitFail {
				t.Fatalf("verify of a damaged store: %s", r)
			}
			for _, want := range []string{
				events.String() + " notification 3, aggregate ", "v1: state: cannot decrypt: CIPHER_KEY is not the key the state was written with, or the ciphertext is damaged or truncated",
				events.String() + " notification 5, aggregate ", "v2: topic is NULL",
				events.String() + " notification 7, aggregate ", "v3: state: cannot decrypt",
				snapshots.String() + " aggregate " + rawID(d, s.ids[0].String()) + " v3: state: cannot decrypt",
				"verify: 4 BAD ROWS: 12 events of 3 aggregates, 1 snapshots",
			} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("verify does not say %q:\n%s", want, r)
				}
			}
			r = run(t, s.env, append([]string{"verify", "--json"}, s.args...)...)
			var bad []int64
			for _, l := range jsonLines(t, r.stdout) {
				if id, ok := l["notification_id"].(float64); ok {
					bad = append(bad, int64(id))
				}
				if l["ok"] == true {
					t.Errorf("verify --json summary says ok: %v", l)
				}
			}
			if fmt.Sprint(bad) != "[3 5 7]" {
				t.Errorf("verify --json: bad notifications %v, want [3 5 7]:\n%s", bad, r.stdout)
			}
		})
	}
}

// rawID returns an originator ID as the dialect stores it (as verify
// prints it).
func rawID(d es.Dialect, id string) string {
	if d.Name() == es.ModuleSQLite {
		return strings.ReplaceAll(id, "-", "")
	}
	return id
}
