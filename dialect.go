package eventsourcing

// The database contract: Dialect, its Traits, ErrorClass and optional
// capabilities (Notifier, Listener, Replication, AppendFunctioner,
// SchemaChecker, OriginatorIDChecker), Table, and the registry of dialect openers.

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// A Dialect says what differs between SQL databases: the SQL text of table
// definitions and locks, placeholders, how originator IDs are bound, which
// column holds notification IDs, identifier quoting, and how driver errors
// are classified. Everything else (execution, transactions, scanning) is
// done once by [SQLRecorder]. The packages dialect/sqlite and
// dialect/postgres provide dialects.
type Dialect interface {
	// Name is the persistence module the dialect serves, such as "sqlite".
	Name() string
	// DefaultTables returns the Python library's table names for an
	// application: events, snapshots and tracking.
	DefaultTables(appName string) (events, snapshots, tracking string)
	// MaxIdentifierLength is the longest table or schema name, in bytes.
	MaxIdentifierLength() int
	// QuoteIdentifier quotes a (validated) table, index or schema name.
	QuoteIdentifier(name string) string
	// Placeholder returns the SQL for the i'th bind parameter, from 1.
	Placeholder(i int) string
	// UUIDArg returns the value bound for an originator ID.
	UUIDArg(id uuid.UUID) any
	// NotificationIDColumn names the column of notification IDs.
	NotificationIDColumn() string
	// CreateEventsTable returns statements that create an events table
	// (with notification IDs) or, if !notifications, a snapshots table,
	// unless it exists.
	CreateEventsTable(t Table, notifications bool) []string
	// CreateTrackingTable returns statements that create a tracking table
	// with one row per application (singleRow) or per notification, unless
	// it exists.
	CreateTrackingTable(t Table, singleRow bool) []string
	// TrackingKeyColumnsQuery returns a query (with its arguments) whose one
	// row holds the number of primary key columns of a tracking table, or
	// zero (or no row) if the table does not exist.
	TrackingKeyColumnsQuery(t Table) (string, []any)
	// LockForAppend returns the statements that begin every transaction
	// inserting events into an events table, to keep notification order:
	// waiting at most timeout (zero: no limit) for the lock.
	LockForAppend(events Table, timeout time.Duration) []string
	// Traits returns the facts about the database that change how the SQL
	// recorder works.
	Traits() Traits
	// Classify says what a driver error is: the sentinel it matches, and
	// whether the same call may succeed if made again.
	Classify(err error) ErrorClass
}

// Traits are facts about a database that change how the SQL recorder
// works. The zero Traits describe a database with many writers that
// returns notification IDs with RETURNING and binds any number of
// parameters.
type Traits struct {
	// SingleWriter: the database allows one writer at a time (SQLite). The
	// SQL recorder then lets one of its transactions write at a time,
	// instead of making the others wait on the database's lock.
	SingleWriter bool
	// ConsecutiveIDs: with the write lock held (SingleWriter), the
	// notification IDs of one multi-row INSERT are consecutive and end at
	// the driver's LastInsertId (SQLite's rowid), so the SQL recorder needs
	// no RETURNING clause.
	ConsecutiveIDs bool
	// BatchStatements: the driver runs several statements without
	// arguments, joined with "; ", in one round trip (pgx's simple
	// protocol). The SQL recorder then sends its lock statements (and
	// NOTIFY) together.
	BatchStatements bool
	// MaxBindParameters is the most parameters one statement may bind;
	// the SQL recorder refuses a MaxRowsPerStatement that would exceed it.
	// Zero means no limit.
	MaxBindParameters int
}

// An ErrorClass is what a dialect knows of a driver error.
type ErrorClass struct {
	// Kind is the sentinel the error matches: ErrIntegrity,
	// ErrLockTimeout, ErrOperational, ErrProgramming or ErrData; nil if
	// the dialect does not know the error (the recorder then treats it as
	// ErrOperational).
	Kind error
	// Transient: the same call may succeed if made again, such as after a
	// lost connection, a serialization failure, a deadlock or a server
	// shutting down. [IsRetryable] retries only transient errors (and lock
	// timeouts, which always are).
	Transient bool
}

// Notifier is implemented by dialects of databases that can wake
// subscribers in other sessions when events commit (PostgreSQL's NOTIFY).
// The SQL recorder runs NotifyStatement last in every transaction that
// inserts events, so the wake-up is delivered at commit and never for a
// rolled-back transaction.
type Notifier interface {
	// NotifyStatement returns the statement that notifies the events
	// table's channel, or "" for none.
	NotifyStatement(events Table) string
}

// A Listener is a [Dialect] of a database that can wake sessions when
// another session commits events: PostgreSQL's LISTEN, the other half of
// [Notifier]. The SQL recorder's Wake uses it.
type Listener interface {
	// Listen holds one connection of db listening on the events table's
	// channel, and calls wake (which must not block) for each notification,
	// and each time it starts listening (notifications may have been
	// missed before), until ctx ends; then it closes the connection and
	// returns. A lost connection is replaced, after a backoff. It gives up
	// early only when listening can never work (a driver that is not the
	// dialect's).
	Listen(ctx context.Context, db *sql.DB, events Table, wake func())
}

// Replication is implemented by dialects of databases that stream their
// write-ahead log to read-only standbys (PostgreSQL hot standbys), which
// [ReplicatedRecorder] reads from.
type Replication interface {
	// PositionQuery returns a query whose one row holds the primary's
	// current WAL position as an integer, at or past the end of every
	// commit acknowledged before it ran, also one not yet flushed (as with
	// PostgreSQL's synchronous_commit off), and reached by ReplicaQuery's
	// replayed position once a standby has replayed those commits. It must
	// fail on a standby.
	PositionQuery() string
	// ReplicaQuery returns a query whose one row holds: whether the
	// database is a standby (in recovery), the WAL position it has
	// replayed as an integer (0 if none), and the seconds since it replayed
	// its last commit (NULL if none).
	ReplicaQuery() string
}

// AppendFunctioner is implemented by dialects whose databases can append
// a group of InsertEvents calls in one statement that is its own
// transaction, through a server-side function. The SQL recorder creates
// the function in CreateTables (unless SQLOptions.NoAppendFunction), uses
// it once it exists, and otherwise appends with BEGIN, the lock
// statements, INSERT and COMMIT.
//
// A call of the function whose reply is lost leaves its outcome open. The
// recorder then waits for the call's server process to end (it ends it),
// after which the call has committed or never will, and looks its rows up.
type AppendFunctioner interface {
	// CurrentSchemaQuery returns a query whose one row is the schema
	// tables named without one are created in (NULL if none).
	CurrentSchemaQuery() string
	// AppendFunction returns the function of an events table whose
	// tracking records are in tracking, of the layout multiRow; both
	// tables are schema-qualified.
	AppendFunction(events, tracking Table, multiRow bool) AppendFunction
	// AppendRolledBack reports whether err, the error of a call of the
	// function, proves that its transaction was rolled back (an error
	// the server sent before it could commit).
	AppendRolledBack(err error) bool
	// AppendTrackingConflict reports whether err, the error of a call of
	// the function for one InsertEvents call, is the conflict of its
	// tracking record (in tracking): last is the highest notification ID
	// recorded for its application, as the check of multi-row tracking
	// found it, or -1 if the error does not say.
	AppendTrackingConflict(err error, tracking Table) (last int64, ok bool)
}

// AppendFunction is a dialect's append function of one events table: what
// shows it exists, what creates it, and the statements that call it and
// check a call whose reply was lost.
type AppendFunction struct {
	// Name is the function's schema-qualified name, for messages.
	Name string
	// Exists, with its arguments Args, is a query whose one row and
	// column is true when the function exists as this version of the
	// dialect makes it (of this signature, for these tables).
	Exists string
	Args   []any
	// Create holds the statements that create the function, replacing
	// one of another version; CreateTables runs them in the transaction
	// (under the DDL lock) that creates the tables.
	Create []string
	// Call calls the function, with the arguments: the lock timeout in
	// milliseconds (int64, 0 for none); the events' originator IDs
	// ([]string), versions ([]int64), topics ([]string) and states
	// ([][]byte) in call order; per call, its number of events
	// ([]int32), whether it has a tracking record ([]bool), and the
	// record's application name ([]string), notification ID and lowest
	// notification ID ([]int64); and whether to notify (bool). Its rows
	// are (status, call, notification ID, detail): status 0 with a
	// notification ID, one per event in order (call NULL: every call
	// written, the IDs in call order), or with a call index from 1 and a
	// NULL ID for a call without events; or, for a call that conflicted
	// (the others written): 1 (its events: detail is the server's
	// message), 2 (its tracking record is not after the last recorded:
	// the ID is the last, NULL if not known) or 3 (a unique violation on
	// the tracking table: detail).
	Call string
	// Lookup, with the arguments originator IDs ([]string) and versions
	// ([]int64), returns for each stored event among them its position
	// in the arguments (from 1), topic, state and notification ID.
	Lookup string
	// BackendPIDQuery returns the session's server process ID, as the
	// server knows it (the ID a driver got when it connected may be a
	// pooler's). The recorder asks it once per connection.
	BackendPIDQuery string
	// EndBackend ends the server process $1 (not the session's own) and
	// the transaction it runs; BackendAlive, with $1, returns whether it
	// still runs.
	EndBackend   string
	BackendAlive string
}

// SchemaChecker is implemented by dialects that can tell with reads which
// of the objects CreateEventsTable makes for an events (or snapshots) table
// exist. [SQLRecorder.CreateTables] then creates only the missing ones, so
// that opening a store whose tables exist writes nothing and waits for no
// lock (SQLite's write lock; on PostgreSQL the DDL lock of a process
// creating tables, or a writer's append lock), and adding one object to an
// existing store touches nothing else. Without it, CreateTables runs
// CreateEventsTable's statements every time. Tracking tables are checked
// with TrackingKeyColumnsQuery.
type SchemaChecker interface {
	// EventsTableObjects returns what CreateEventsTable(t, notifications)
	// makes, object by object.
	EventsTableObjects(t Table, notifications bool) []SchemaObject
}

// A SchemaObject is one thing CreateTables makes: a table, an index, a type.
type SchemaObject struct {
	// Exists is a query, with its arguments Args, whose one row and column
	// is true when the object exists.
	Exists string
	Args   []any
	// Create holds the statements that create the object, tolerating one
	// that another session creates meanwhile. A statement several missing
	// objects share (a lock, CREATE SCHEMA IF NOT EXISTS) runs once.
	Create []string
}

// OriginatorIDChecker is implemented by dialects whose existing tables may
// hold originator IDs of another type than the dialect writes (Python 9.6's
// ORIGINATOR_ID_TYPE=text makes a PostgreSQL originator_id column text).
// The SQL recorder runs the query when it opens a table and refuses one of
// another type with ErrProgramming, rather than failing later on a value.
type OriginatorIDChecker interface {
	// OriginatorIDTypeQuery returns a query (with its arguments) whose one
	// row holds the type of the table's originator_id column if it is not
	// the type the dialect writes, and "" otherwise (also when the table
	// does not exist).
	OriginatorIDTypeQuery(t Table) (string, []any)
}

// Table is a table name, optionally in a schema.
type Table struct {
	Schema string
	Name   string
}

// String returns the table's name as schema.name.
func (t Table) String() string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// Quote returns the table's name quoted by the dialect.
func (t Table) Quote(d Dialect) string {
	if t.Schema == "" {
		return d.QuoteIdentifier(t.Name)
	}
	return d.QuoteIdentifier(t.Schema) + "." + d.QuoteIdentifier(t.Name)
}

// ValidateIdentifier checks a table or schema name: ASCII letters, digits
// and underscores, not starting with a digit, at most max bytes. It returns
// an error wrapping ErrProgramming that names the problem.
func ValidateIdentifier(name string, max int) error {
	if err := validIdentifier(name, max); err != nil {
		return fmt.Errorf("%w: invalid name %q: %w", ErrProgramming, name, err)
	}
	return nil
}

// An Opener opens the database a configuration names, for [Open]. Dialect
// packages register one with [RegisterDialect] when they are imported.
type Opener func(ctx context.Context, cfg *Config) (*sql.DB, Dialect, error)

var (
	openersMu sync.RWMutex
	openers   = map[string]Opener{}
)

// RegisterDialect makes an opener available to [Open] for a persistence
// module ("sqlite", "postgres"). Dialect packages call it from init, as
// database/sql drivers register themselves; it panics if the module is
// registered twice.
func RegisterDialect(module string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	if _, dup := openers[module]; dup {
		panic("eventsourcing: RegisterDialect called twice for " + module)
	}
	openers[module] = open
}

// Dialects returns the persistence modules with registered dialects.
func Dialects() []string {
	openersMu.RLock()
	defer openersMu.RUnlock()
	var names []string
	for n := range openers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupOpener(module string) (Opener, error) {
	openersMu.RLock()
	o, ok := openers[module]
	openersMu.RUnlock()
	if ok {
		return o, nil
	}
	return nil, fmt.Errorf("%w: no dialect registered for persistence module %q: add\n\timport _ \"github.com/seed06b138f8/eventsourcing/dialect/%s\"\nto your program (registered: %s)",
		ErrProgramming, module, module, strings.Join(append([]string{"memory"}, Dialects()...), ", "))
}

// validIdentifier checks an SQL identifier as the Python library would
// accept it: letters, digits and underscores, not starting with a digit, at
// most max bytes.
func validIdentifier(s string, max int) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	if len(s) > max {
		return fmt.Errorf("name is %d bytes, longer than %d", len(s), max)
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("invalid character %q at byte %d (letters, digits and underscores only)", r, i)
		}
	}
	return nil
}
