package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// The interop vectors are the stores the Python library wrote (see
// shared/interop/README.md): EVENTSOURCING_INTEROP_DIR lists the sets, as
// for the library's own interop tests; without it, shared/interop beside
// the repository and its subdirectories holding a manifest.json (py96).
const (
	envInteropDir     = "EVENTSOURCING_INTEROP_DIR"
	envRequireInterop = "EVENTSOURCING_REQUIRE_INTEROP"
)

func interopDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for _, dir := range filepath.SplitList(os.Getenv(envInteropDir)) {
		if dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
				t.Fatalf("%s names %s, which holds no vector set: %v", envInteropDir, dir, err)
			}
			dirs = append(dirs, dir)
		}
	}
	if len(dirs) > 0 {
		return dirs
	}
	base := "../../../shared/interop"
	if _, err := os.Stat(filepath.Join(base, "manifest.json")); err == nil {
		dirs = append(dirs, base)
		subs, _ := os.ReadDir(base)
		for _, sub := range subs {
			if _, err := os.Stat(filepath.Join(base, sub.Name(), "manifest.json")); sub.IsDir() && err == nil {
				dirs = append(dirs, filepath.Join(base, sub.Name()))
			}
		}
		return dirs
	}
	msg := "interop vectors not found: set " + envInteropDir + " to the shared/interop folder"
	if os.Getenv(envRequireInterop) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return nil
}

// manifest is what the tests read of a vector set's manifest.json.
type manifest struct {
	Files map[string]struct {
		Env          map[string]string `json:"env"`
		StoredEvents []struct {
			NotificationID int64  `json:"notification_id"`
			OriginatorID   string `json:"originator_id"`
			Version        int64  `json:"originator_version"`
			Topic          string `json:"topic"`
			State          string `json:"state_base64"`
		} `json:"stored_events"`
		Snapshots []struct {
			OriginatorID string `json:"originator_id"`
			Version      int64  `json:"originator_version"`
			Topic        string `json:"topic"`
			State        string `json:"state_base64"`
		} `json:"stored_snapshots"`
		Tracking []struct {
			App string `json:"application_name"`
			ID  int64  `json:"notification_id"`
		} `json:"tracking"`
	} `json:"files"`
	Postgres struct {
		Path     string `json:"path"`
		Tracking []struct {
			App string `json:"application_name"`
		} `json:"tracking"`
	} `json:"postgres"`
	// Events holds each event's and snapshot's plaintext state, by
	// "event:<id>:<version>" and "snapshot:<id>:<version>".
	Events map[string]struct {
		Plaintext string `json:"plaintext_state_base64"`
	} `json:"events"`
}

func loadManifest(t *testing.T, dir string) *manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return &m
}

// vectorEnv returns a vector file's environment, for the file at path.
func vectorEnv(env map[string]string, path string) []string {
	var out []string
	for k, v := range env {
		if k == "SQLITE_DBNAME" {
			v = path
		}
		out = append(out, k+"="+v)
	}
	return out
}

// TestInteropVectors: verify passes on every store the Python library
// wrote (SQLite files and the PostgreSQL dumps, both tracking layouts);
// a copy of each SQLite store to PostgreSQL holds the manifest's rows,
// reads through the library exactly as the original does, and verifies.
func TestInteropVectors(t *testing.T) {
	for _, dir := range interopDirs(t) {
		m := loadManifest(t, dir)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			for name, file := range m.Files {
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(dir, name)
					env := vectorEnv(file.Env, path)
					r := mustRun(t, env, "verify", "--app", "BankAccounts")
					if !strings.Contains(r.stdout, "verify: OK: 10 events of 3 aggregates, 1 snapshots") {
						t.Errorf("verify:\n%s", r)
					}
					if os.Getenv(pgtest.EnvDSN) == "" && os.Getenv(pgtest.EnvRequire) != "1" {
						return // the copies need PostgreSQL
					}
					testInteropCopy(t, env, path, file.Env, m, name)
				})
			}
			t.Run("postgres", func(t *testing.T) {
				dsn := pgtest.DSN(t)
				db := pgtest.DB(t)
				schema := pgtest.Schema(t, db)
				loadDump(t, db, filepath.Join(dir, m.Postgres.Path), schema)
				r := mustRun(t, nil, "verify", "--app", "BankAccounts", "--db", dsn, "--schema", schema)
				if !strings.Contains(r.stdout, "verify: OK: 10 events of 3 aggregates, 1 snapshots") {
					t.Errorf("verify:\n%s", r)
				}
				// A copy to another schema carries the sequence on: Python's
				// failed duplicate insert used 11, so the next ID is 12.
				copySchema := pgtest.Schema(t, db)
				mustRun(t, nil, "copy", "--app", "BankAccounts", "--db", dsn, "--schema", schema, "--to", dsn, "--to-schema", copySchema)
				ctx := context.Background()
				multiRow := true // without the migration row of single-row tracking
				for _, tr := range m.Postgres.Tracking {
					multiRow = multiRow && tr.App != es.MigrationTrackingName
				}
				rec, err := es.NewSQLRecorder(ctx, db, postgres.Dialect{}, &es.SQLOptions{AppName: "BankAccounts", Schema: copySchema, MultiRowTracking: multiRow})
				if err != nil {
					t.Fatal(err)
				}
				ids, err := rec.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil)
				if err != nil || len(ids) != 1 || ids[0] != 12 {
					t.Errorf("the first insert into the copy: IDs %v, %v; want [12]", ids, err)
				}
			})
		})
	}
}

// testInteropCopy copies a vector's SQLite store to PostgreSQL, and
// compares the copy with the manifest and with the original, both read
// through the library.
func testInteropCopy(t *testing.T, env []string, path string, fileEnv map[string]string, m *manifest, name string) {
	dsn := pgtest.DSN(t)
	db := pgtest.DB(t)
	schema := pgtest.Schema(t, db)
	r := mustRun(t, env, "copy", "--app", "BankAccounts", "--to", dsn, "--to-schema", schema)
	if !strings.Contains(r.stdout, "verified") {
		t.Errorf("copy:\n%s", r)
	}
	file := m.Files[name]
	pgt := postgresTables(db, schema, "BankAccounts")
	// The copy's rows are the manifest's, byte for byte.
	rows, err := db.Query("SELECT notification_id, originator_id::text, originator_version, topic, state FROM " + pgt.events.Quote(pgt.d) + " ORDER BY notification_id")
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		var id, version int64
		var origin, topic string
		var state []byte
		if err := rows.Scan(&id, &origin, &version, &topic, &state); err != nil {
			t.Fatal(err)
		}
		if i >= len(file.StoredEvents) {
			t.Fatalf("the copy has more events than the manifest's %d", len(file.StoredEvents))
		}
		w := file.StoredEvents[i]
		if id != w.NotificationID || origin != w.OriginatorID || version != w.Version || topic != w.Topic || base64.StdEncoding.EncodeToString(state) != w.State {
			t.Errorf("the copy's notification %d (%s v%d %s) is not the manifest's %d (%s v%d %s), or its state differs", id, origin, version, topic, w.NotificationID, w.OriginatorID, w.Version, w.Topic)
		}
		i++
	}
	rows.Close()
	if i != len(file.StoredEvents) {
		t.Errorf("the copy has %d events, the manifest %d", i, len(file.StoredEvents))
	}

	// Read through the library, the original and the copy are the same.
	ctx := context.Background()
	multiRow := true
	for _, tr := range file.Tracking {
		multiRow = multiRow && tr.App != es.MigrationTrackingName
	}
	orig := openVector(t, path, fileEnv, multiRow)
	copyRec, err := es.NewSQLRecorder(ctx, db, postgres.Dialect{}, &es.SQLOptions{AppName: "BankAccounts", Schema: schema, MultiRowTracking: multiRow})
	if err != nil {
		t.Fatal(err)
	}
	copySnaps, err := es.NewSQLSnapshotRecorder(ctx, db, postgres.Dialect{}, &es.SQLOptions{AppName: "BankAccounts", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	a, err := orig.rec.SelectNotifications(ctx, 1, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := copyRec.SelectNotifications(ctx, 1, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) || len(a) != 10 {
		t.Errorf("the copy's notification log (%d) is not the original's (%d)", len(b), len(a))
	}
	ids := map[uuid.UUID]bool{}
	for _, n := range a {
		ids[n.OriginatorID] = true
	}
	for id := range ids {
		ea, err1 := orig.rec.SelectEvents(ctx, id, nil)
		eb, err2 := copyRec.SelectEvents(ctx, id, nil)
		sa, err3 := orig.snaps.SelectEvents(ctx, id, &es.Query{Desc: true, Limit: 1})
		sb, err4 := copySnaps.SelectEvents(ctx, id, &es.Query{Desc: true, Limit: 1})
		if err := firstErr(err1, err2, err3, err4); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ea, eb) || !reflect.DeepEqual(sa, sb) {
			t.Errorf("aggregate %s: the copy's events or snapshot differ from the original's", id)
		}
	}
	for _, tr := range file.Tracking {
		if tr.App == es.MigrationTrackingName {
			continue
		}
		pa, err1 := orig.rec.MaxTrackingID(ctx, tr.App)
		pb, err2 := copyRec.MaxTrackingID(ctx, tr.App)
		if err := firstErr(err1, err2); err != nil {
			t.Fatal(err)
		}
		if pa != tr.ID || pb != tr.ID {
			t.Errorf("tracking of %s: original %d, copy %d, manifest %d", tr.App, pa, pb, tr.ID)
		}
	}
	// The copy's states open, with the original's configuration, to the
	// manifest's plaintexts.
	opts, err := orig.cfg.MapperOptions()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range b {
		plain := n.State
		if opts.Cipher != nil {
			if plain, err = opts.Cipher.Decrypt(plain); err != nil {
				t.Fatal(err)
			}
		}
		if opts.Compressor != nil {
			if plain, err = opts.Compressor.Decompress(plain); err != nil {
				t.Fatal(err)
			}
		}
		want := m.Events[fmt.Sprintf("event:%s:%d", n.OriginatorID, n.OriginatorVersion)].Plaintext
		if got := base64.StdEncoding.EncodeToString(plain); got != want || want == "" {
			t.Errorf("the copy's notification %d opens to another plaintext than the manifest's", n.ID)
		}
	}
	mustRun(t, env, "verify", "--app", "BankAccounts", "--db", dsn, "--schema", schema)
}

// vector is a vector's SQLite store opened through the library.
type vector struct {
	cfg   *es.Config
	rec   *es.SQLRecorder
	snaps *es.SQLSnapshotRecorder
}

func openVector(t *testing.T, path string, env map[string]string, multiRow bool) *vector {
	t.Helper()
	ctx := context.Background()
	cfg, err := es.LoadConfig("BankAccounts", lookupOf(vectorEnv(env, path)))
	if err != nil {
		t.Fatal(err)
	}
	db, err := openSQLiteReadOnly(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := sqlite.Dialect{}
	rec, err := es.NewSQLRecorder(ctx, db, d, &es.SQLOptions{AppName: "BankAccounts", MultiRowTracking: multiRow})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := es.NewSQLSnapshotRecorder(ctx, db, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &vector{cfg, rec, snaps}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// loadDump restores a vector set's postgres-dump.sql into schema, without
// its psql meta-commands, as the library's interop tests do.
func loadDump(t *testing.T, db *sql.DB, path, schema string) {
	t.Helper()
	dump, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(dump), "\n") {
		if strings.HasPrefix(l, `\restrict`) || strings.HasPrefix(l, `\unrestrict`) || strings.Contains(l, "set_config('search_path'") {
			continue
		}
		l = strings.ReplaceAll(l, "public.", schema+".")
		lines = append(lines, strings.ReplaceAll(l, `"public".`, `"`+schema+`".`))
	}
	if _, err := db.Exec(strings.Join(lines, "\n")); err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
}
