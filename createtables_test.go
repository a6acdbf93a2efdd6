package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// TestCreateTablesSQLiteTablesExist: a process that starts while another
// writes the same SQLite file, with a short busy timeout, opens the store:
// CreateTables on existing tables reads, and takes no write lock.
func TestCreateTablesSQLiteTablesExist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	writer, err := sqlite.Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	newSQLRecorder(t, writer, sqlite.Dialect{}, "", es.SQLOptions{})
	newSQLSnapshotRecorder(t, writer, sqlite.Dialect{}, "", es.SQLOptions{})

	// The other process is in the middle of a write transaction.
	tx, err := writer.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO stored_events VALUES (?, 1, 't', x'7b7d')", strings.ReplaceAll(uuid.NewString(), "-", "")); err != nil {
		t.Fatal(err)
	}

	starter, err := sqlite.Open(ctx, path, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer starter.Close()
	rec, err := es.NewSQLRecorder(ctx, starter, sqlite.Dialect{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.CreateTables(ctx); err != nil {
		t.Fatalf("CreateTables on existing tables while another connection holds the write lock: %v", err)
	}
	snaps, err := es.NewSQLSnapshotRecorder(ctx, starter, sqlite.Dialect{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps.CreateTables(ctx); err != nil {
		t.Fatalf("snapshot CreateTables on existing tables while another connection holds the write lock: %v", err)
	}
	// What is missing is still created, and that needs the lock.
	other, err := es.NewSQLRecorder(ctx, starter, sqlite.Dialect{}, &es.SQLOptions{TrackingTable: "other_tracking"})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.CreateTables(ctx); !errors.Is(err, es.ErrLockTimeout) {
		t.Errorf("CreateTables of a missing table while another connection holds the write lock: %v, want ErrLockTimeout", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateTables(ctx); err != nil {
		t.Fatalf("CreateTables of a missing table: %v", err)
	}
	var n int
	if err := starter.QueryRow("SELECT COUNT(*) FROM other_tracking WHERE application_name = '__migration__'").Scan(&n); err != nil || n != 1 {
		t.Errorf("new tracking table: %d migration rows, %v", n, err)
	}
}

// TestCreateTablesPostgresTablesExist: CreateTables on existing tables
// neither waits for writers holding the append lock nor for another
// process creating tables (the DDL lock): it only reads.
func TestCreateTablesPostgresTablesExist(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	opts := es.SQLOptions{AppName: "Busy"}
	rec := newSQLRecorder(t, db, d, schema, opts)
	snaps := newSQLSnapshotRecorder(t, db, d, schema, opts)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, s := range []string{
		"LOCK TABLE " + rec.EventsTable().Quote(d) + " IN EXCLUSIVE MODE", // a writer appending
		"LOCK TABLE " + snaps.Table().Quote(d) + " IN EXCLUSIVE MODE",
		"LOCK TABLE " + rec.TrackingTable().Quote(d) + " IN EXCLUSIVE MODE",
		"SELECT pg_advisory_xact_lock(hashtext('eventsourcing: create tables'))", // a process creating tables
	} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}

	starter := pgtest.DB(t)
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	opts.Schema = schema
	rec2, err := es.NewSQLRecorder(tctx, starter, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec2.CreateTables(tctx); err != nil {
		t.Fatalf("CreateTables on existing tables while they are locked: %v", err)
	}
	snaps2, err := es.NewSQLSnapshotRecorder(tctx, starter, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := snaps2.CreateTables(tctx); err != nil {
		t.Fatalf("snapshot CreateTables on existing tables while they are locked: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	// A store made before the composite type existed (by an earlier version
	// of this library, or Python 9.3): CreateTables creates the type alone,
	// without waiting for the writers holding the append lock.
	if _, err := db.Exec("DROP TYPE " + schema + ".stored_event_uuid"); err != nil {
		t.Fatal(err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, table := range []es.Table{rec.EventsTable(), snaps.Table(), rec.TrackingTable()} {
		if _, err := tx.ExecContext(ctx, "LOCK TABLE "+table.Quote(d)+" IN EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec2.CreateTables(tctx); err != nil {
		t.Fatalf("CreateTables of the missing type while the tables are locked: %v", err)
	}
	if got := compositeType(t, db, schema, "stored_event_uuid"); got != pythonTypeColumns {
		t.Errorf("type stored_event_uuid (%s), want (%s)", got, pythonTypeColumns)
	}
}

// pythonTypeColumns is Python 9.6's composite type stored_event_uuid, as
// its postgres.py defines it (and py96/postgres-dump.sql holds it).
const pythonTypeColumns = "originator_id uuid, originator_version bigint, topic text, state bytea"

// compositeType returns the columns of a composite type ("" if there is
// none), as "name type, ...".
func compositeType(t *testing.T, db *sql.DB, schema, name string) string {
	t.Helper()
	var cols sql.NullString
	err := db.QueryRow(`SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace JOIN pg_attribute a ON a.attrelid = ty.typrelid
		WHERE n.nspname = $1 AND ty.typname = $2 AND ty.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped`, schema, name).Scan(&cols)
	if err != nil {
		t.Fatal(err)
	}
	return cols.String
}

// pythonInsert appends one event as Python 9.6 does by default: lock the
// table, then INSERT ... SELECT * FROM unnest($1::<schema>.stored_event_uuid[])
// (RETURNING notification_id, into an events table).
func pythonInsert(ctx context.Context, db *sql.DB, events es.Table, notifications bool, id uuid.UUID) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	d := postgres.Dialect{}
	if _, err := tx.ExecContext(ctx, "LOCK TABLE "+events.Quote(d)+" IN EXCLUSIVE MODE"); err != nil {
		return 0, err
	}
	typ := es.Table{Schema: events.Schema, Name: "stored_event_uuid"}.Quote(d)
	insert := "INSERT INTO " + events.Quote(d) + " (originator_id, originator_version, topic, state)" +
		" SELECT * FROM unnest($1::" + typ + "[])"
	rows := `{"(` + id.String() + `,1,python:Event,\"\\\\x7b7d\")"}`
	var nid int64
	if notifications {
		err = tx.QueryRowContext(ctx, insert+" RETURNING notification_id", rows).Scan(&nid)
	} else {
		_, err = tx.ExecContext(ctx, insert, rows)
	}
	if err != nil {
		return 0, err
	}
	return nid, tx.Commit()
}

// TestCreateTablesPostgresPythonType: the tables this library creates hold
// what a Python 9.6 writer needs to append (the composite type
// stored_event_uuid in the tables' schema) and Python 9.6's single-row
// tracking table (notification_id nullable), and a Python-style insert
// works on them.
func TestCreateTablesPostgresPythonType(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	snaps := newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{AppName: "Py"})
	if got := compositeType(t, db, schema, "stored_event_uuid"); got != pythonTypeColumns {
		t.Errorf("after the snapshots table: type stored_event_uuid (%s), want (%s)", got, pythonTypeColumns)
	}
	rec := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Py"})
	if got := compositeType(t, db, schema, "stored_event_uuid"); got != pythonTypeColumns {
		t.Errorf("type stored_event_uuid (%s), want (%s)", got, pythonTypeColumns)
	}
	var nullable string
	if err := db.QueryRow(`SELECT is_nullable FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = 'notification_id'`,
		schema, rec.TrackingTable().Name).Scan(&nullable); err != nil {
		t.Fatal(err)
	}
	if nullable != "YES" {
		t.Errorf("single-row tracking notification_id is_nullable = %s, want YES (Python 9.6)", nullable)
	}
	id := uuid.New()
	nid, err := pythonInsert(ctx, db, rec.EventsTable(), true, id)
	if err != nil {
		t.Fatalf("Python 9.6's insert into a store this library created: %v", err)
	}
	if _, err := pythonInsert(ctx, db, snaps.Table(), false, id); err != nil {
		t.Fatalf("Python 9.6's insert into a snapshots table this library created: %v", err)
	}
	notes, err := rec.SelectNotifications(ctx, nid, 1, nil)
	if err != nil || len(notes) != 1 || notes[0].OriginatorID != id || string(notes[0].State) != "{}" {
		t.Fatalf("the Python-style row read back: %+v, %v", notes, err)
	}
}

// TestCreateTablesPostgresTypeRace: a Python process creating the type at
// the same time (its CREATE TYPE not yet committed) and a type that exists
// before the tables do are both tolerated.
func TestCreateTablesPostgresTypeRace(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	python := pgtest.DB(t)
	tx, err := python.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "CREATE TYPE "+schema+".stored_event_uuid AS ("+pythonTypeColumns+")"); err != nil {
		t.Fatal(err)
	}
	rec, err := es.NewSQLRecorder(ctx, db, d, &es.SQLOptions{AppName: "Race", Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rec.CreateTables(ctx) }()
	// Commit Python's type once CreateTables waits for it (or has ended).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := db.QueryRow(`SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%stored_event_uuid%' AND pid <> pg_backend_pid()`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 || len(done) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("CreateTables while another session creates the type: %v", err)
	}
	// The type exists, another application's tables do not.
	if err := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Second"}).CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	if got := compositeType(t, db, schema, "stored_event_uuid"); got != pythonTypeColumns {
		t.Errorf("type stored_event_uuid (%s), want (%s)", got, pythonTypeColumns)
	}
}

// TestInteropPostgresTextOriginatorIDs: a PostgreSQL table written by Python
// 9.6 with ORIGINATOR_ID_TYPE=text (originator_id text) is refused when the
// recorder opens it, with an error saying why.
func TestInteropPostgresTextOriginatorIDs(t *testing.T) {
	ctx := context.Background()
	db, d, schema := postgresSchema(t)
	for _, s := range []string{
		"CREATE TABLE " + schema + ".txt_events (originator_id text NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))",
		"CREATE TABLE " + schema + ".txt_snapshots (originator_id text NOT NULL, originator_version bigint NOT NULL, topic text, state bytea, PRIMARY KEY (originator_id, originator_version))",
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	opts := &es.SQLOptions{AppName: "Txt", Schema: schema}
	_, err := es.NewSQLRecorder(ctx, db, d, opts)
	if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "ORIGINATOR_ID_TYPE") {
		t.Errorf("events table with text originator IDs: %v, want ErrProgramming naming ORIGINATOR_ID_TYPE", err)
	}
	_, err = es.NewSQLSnapshotRecorder(ctx, db, d, opts)
	if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "ORIGINATOR_ID_TYPE") {
		t.Errorf("snapshots table with text originator IDs: %v, want ErrProgramming naming ORIGINATOR_ID_TYPE", err)
	}
}

// TestCreateTablesPostgresNewSchema: CreateTables in a schema that does not
// exist yet creates it, the tables and the type; again, it finds them all.
func TestCreateTablesPostgresNewSchema(t *testing.T) {
	db := pgtest.DB(t)
	schema := pgtestName("esnew")
	t.Cleanup(func() { db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE") })
	for range 2 {
		rec := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{AppName: "New"})
		newSQLSnapshotRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{AppName: "New"})
		if _, err := rec.InsertEvents(context.Background(), []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := compositeType(t, db, schema, "stored_event_uuid"); got != pythonTypeColumns {
		t.Errorf("type stored_event_uuid (%s), want (%s)", got, pythonTypeColumns)
	}
}
