// Package sqlite is the SQLite dialect of the eventsourcing SQL recorder, on
// the pure-Go driver modernc.org/sqlite. Importing it registers the dialect
// for the persistence module "sqlite" (and "eventsourcing.sqlite"):
//
//	import _ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
//
// Tables are the Python library's: stored_events (notification ID = rowid),
// stored_snapshots and tracking, originator IDs as 32 lowercase hex
// characters. SQLite has one writer per database: write transactions begin
// IMMEDIATE (taking the write lock at their start), wait up to the lock
// timeout for it, and file databases use WAL so readers never wait.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	es "github.com/seed06b138f8/eventsourcing"
)

func init() {
	es.RegisterDialect(es.ModuleSQLite, func(ctx context.Context, cfg *es.Config) (*sql.DB, es.Dialect, error) {
		db, err := Open(ctx, cfg.SQLite.DBName, cfg.SQLite.LockTimeout)
		return db, Dialect{}, err
	})
}

// DefaultLockTimeout is how long a writer waits for the write lock when
// Open is given no timeout.
const DefaultLockTimeout = 5 * time.Second

// Open opens (creating if missing) the SQLite database dbname, or a private
// in-memory database for ":memory:", configured for the recorder: write
// transactions BEGIN IMMEDIATE, a busy timeout of lockTimeout (zero means
// DefaultLockTimeout), and WAL for files. An in-memory database lives in one
// connection, which the pool keeps open.
func Open(ctx context.Context, dbname string, lockTimeout time.Duration) (*sql.DB, error) {
	return OpenWith(ctx, dbname, &Options{LockTimeout: lockTimeout})
}

// Options configures a database opened by OpenWith. The zero value is what
// Open uses.
type Options struct {
	// LockTimeout is how long a writer waits for the write lock; zero
	// means DefaultLockTimeout.
	LockTimeout time.Duration
	// SynchronousNormal sets PRAGMA synchronous=NORMAL instead of FULL,
	// the default. In WAL mode, NORMAL does not sync the log at every
	// commit: much faster commits, and the database stays consistent, but
	// the last transactions acknowledged before a power loss or an
	// operating system crash (not a crash of the process) may be lost.
	// Keep FULL where an acknowledged event must survive power loss.
	SynchronousNormal bool
}

// OpenWith is Open with options (nil: the defaults).
func OpenWith(ctx context.Context, dbname string, opts *Options) (*sql.DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	lockTimeout := o.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = DefaultLockTimeout
	}
	q := url.Values{}
	q.Set("_txlock", "immediate")
	// Rounded up: a busy timeout of 0 means "do not wait".
	ms := lockTimeout.Milliseconds()
	if time.Duration(ms)*time.Millisecond < lockTimeout {
		ms++
	}
	q.Set("_busy_timeout", fmt.Sprint(ms))
	memory := dbname == ":memory:" || strings.Contains(dbname, "mode=memory")
	if !memory {
		q.Set("_journal_mode", "WAL")
	}
	if o.SynchronousNormal {
		q.Add("_pragma", "synchronous(NORMAL)")
	} else {
		q.Add("_pragma", "synchronous(FULL)")
	}
	dsn := dbname
	if strings.HasPrefix(dsn, "file:") {
		if strings.Contains(dsn, "?") {
			dsn += "&" + q.Encode()
		} else {
			dsn += "?" + q.Encode()
		}
	} else {
		dsn = "file:" + (&url.URL{Path: dbname}).EscapedPath() + "?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: open sqlite %q: %w", es.ErrOperational, dbname, err)
	}
	if memory {
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, &es.DatabaseError{Kind: es.ErrOperational, Op: "open sqlite " + dbname, Err: err}
	}
	return db, nil
}

// Dialect is the SQLite dialect.
type Dialect struct{}

var (
	_ es.Dialect       = Dialect{}
	_ es.SchemaChecker = Dialect{}
)

// Traits returns SQLite's: one writer per database; with the write lock
// held, the rowids of one multi-row INSERT are max(rowid)+1, +2, ..., and
// last_insert_rowid() is the last of them
// (TestSQLiteNotificationIDsAreTheRowids; only a table whose rowid reached
// 2^63-1 would take random rowids instead, and nothing checks for that);
// at most 32766 parameters in one statement (SQLITE_MAX_VARIABLE_NUMBER).
func (Dialect) Traits() es.Traits {
	return es.Traits{SingleWriter: true, ConsecutiveIDs: true, MaxBindParameters: 32766}
}

// transient reports the errors after which the same call may succeed: the
// database was busy or locked by another connection.
func transient(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// Name returns "sqlite".
func (Dialect) Name() string { return es.ModuleSQLite }

// DefaultTables returns the Python library's SQLite tables, which do not
// depend on the application name: stored_events, stored_snapshots, tracking.
func (Dialect) DefaultTables(string) (string, string, string) {
	return "stored_events", "stored_snapshots", "tracking"
}

// MaxIdentifierLength returns 63, the limit the Python library applies.
func (Dialect) MaxIdentifierLength() int { return 63 }

// QuoteIdentifier returns a validated name as it is, unquoted, as the
// Python library writes it (so that sqlite_master holds the same DDL);
// names are validated to letters, digits and underscores before use.
func (Dialect) QuoteIdentifier(name string) string { return name }

// Placeholder returns "?".
func (Dialect) Placeholder(int) string { return "?" }

// UUIDArg returns the ID as 32 lowercase hex characters, as Python stores it.
func (Dialect) UUIDArg(id uuid.UUID) any {
	var b [32]byte
	const hex = "0123456789abcdef"
	for i, c := range id {
		b[2*i], b[2*i+1] = hex[c>>4], hex[c&0xf]
	}
	return string(b[:])
}

// NotificationIDColumn returns "rowid".
func (Dialect) NotificationIDColumn() string { return "rowid" }

// CreateEventsTable returns the Python library's DDL.
func (d Dialect) CreateEventsTable(t es.Table, notifications bool) []string {
	s := "CREATE TABLE IF NOT EXISTS " + t.Quote(d) +
		" (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
	if !notifications {
		s += " WITHOUT ROWID"
	}
	return []string{s}
}

// CreateTrackingTable returns the Python library's DDL: primary key
// application_name (single row) or (application_name, notification_id).
func (d Dialect) CreateTrackingTable(t es.Table, singleRow bool) []string {
	key := "application_name, notification_id"
	if singleRow {
		key = "application_name"
	}
	return []string{"CREATE TABLE IF NOT EXISTS " + t.Quote(d) +
		" (application_name TEXT, notification_id INTEGER, PRIMARY KEY (" + key + ")) WITHOUT ROWID"}
}

// TrackingKeyColumnsQuery counts the table's primary key columns.
func (Dialect) TrackingKeyColumnsQuery(t es.Table) (string, []any) {
	q, args := tableInfo(t)
	return "SELECT COUNT(*) FROM " + q + " WHERE pk > 0", args
}

// EventsTableObjects returns the table, the one object CreateEventsTable
// makes, found by its columns.
func (d Dialect) EventsTableObjects(t es.Table, notifications bool) []es.SchemaObject {
	q, args := tableInfo(t)
	return []es.SchemaObject{{Exists: "SELECT COUNT(*) > 0 FROM " + q, Args: args, Create: d.CreateEventsTable(t, notifications)}}
}

// tableInfo returns the table-valued pragma that lists a table's columns
// (none if the table does not exist), in its schema if it has one (an
// attached database).
func tableInfo(t es.Table) (string, []any) {
	if t.Schema != "" {
		return "pragma_table_info(?, ?)", []any{t.Name, t.Schema}
	}
	return "pragma_table_info(?)", []any{t.Name}
}

// LockForAppend returns nothing: transactions begin IMMEDIATE.
func (Dialect) LockForAppend(es.Table, time.Duration) []string { return nil }

// Classify maps SQLite result codes to the eventsourcing sentinels; busy
// and locked are transient.
func (Dialect) Classify(err error) es.ErrorClass {
	return es.ErrorClass{Kind: kind(err), Transient: transient(err)}
}

// kind returns the sentinel a driver error matches, or nil.
func kind(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT:
		return es.ErrIntegrity
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return es.ErrLockTimeout
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_INTERRUPT:
		return es.ErrOperational
	case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
		return es.ErrData
	case sqlite3.SQLITE_ERROR:
		return es.ErrProgramming // no such table, syntax errors
	}
	return es.ErrOperational
}
