package eventsourcing

// SQLRecorder: the recorder for every SQL database, parameterised by a
// Dialect; every exported method of it is here.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// SQLOptions configures an [SQLRecorder]. The zero value (and nil) records
// events in the dialect's default tables for an unnamed application, with
// single-row tracking.
type SQLOptions struct {
	// AppName names the application; the default table names derive from
	// it as the Python library's do (Postgres: bankaccounts_events).
	AppName string
	// Table overrides the events table name (the snapshots table name,
	// for NewSQLSnapshotRecorder).
	Table string
	// TrackingTable overrides the tracking table name.
	TrackingTable string
	// Schema is the schema of the tables (Postgres); empty means the
	// default search path.
	Schema string
	// MultiRowTracking keeps one tracking row per processed notification
	// (Python eventsourcing before 9.5, and the tables in its interop
	// vectors) instead of one row per upstream application.
	MultiRowTracking bool
	// LockTimeout bounds the wait for the events table lock when inserting
	// (Postgres lock_timeout); zero means no limit.
	LockTimeout time.Duration
	// MaxRowsPerStatement caps the rows of one multi-row INSERT; bigger
	// batches use several statements in the same transaction. Zero means
	// 1000. It may not exceed what the dialect can bind in one statement
	// (PostgreSQL: 16383 rows of 4 parameters; SQLite: 8191).
	MaxRowsPerStatement int
	// MaxGroupSize is how many concurrent InsertEvents calls group commit
	// may combine into one transaction. Zero means 100; 1 turns group
	// commit off (one transaction per call).
	MaxGroupSize int
	// Observer, if not nil, is told about every page of the notification
	// log read (OpSelectNotifications) and every insert transaction
	// (OpGroupCommit, with the number of calls it holds).
	Observer Observer
	// NoNotify turns off the wake-up a dialect sends to subscribers in
	// other sessions when events commit (PostgreSQL NOTIFY). Subscribers
	// still find the events by polling, later.
	NoNotify bool
	// MaxGroupDelay is how long a group's leader waits for more calls to
	// join before committing, when fewer than MaxGroupSize are queued. Zero
	// (the default) means no wait: a group is whatever queued while the
	// previous one committed (or while a caller that found none running
	// waited for the lock), so a caller alone pays no delay.
	MaxGroupDelay time.Duration
	// NoAppendFunction turns off the server-side append function
	// (PostgreSQL): each transaction is then BEGIN, the lock statements,
	// INSERT and COMMIT, as where the function does not exist. See
	// [Stats.AppendFunction].
	NoAppendFunction bool
}

// SQLRecorder records events in an SQL database through database/sql and a
// [Dialect]. It is a [ProcessRecorder] on an events table and a tracking
// table ([SQLSnapshotRecorder] records snapshots). It is safe for
// concurrent use.
//
// One database per application: the Python library's SQLite tables have
// fixed names (stored_events, tracking), so two applications opened on one
// SQLite file would share one notification log. Give each application its
// own SQLite file (on PostgreSQL, tables are named after the application).
type SQLRecorder struct {
	db        *sql.DB
	d         Dialect
	events    Table
	tracking  Table
	snapshots bool
	multiRow  bool
	lockTO    time.Duration
	maxRows   int
	writeMu   chan struct{} // a one-slot semaphore, for single-writer databases
	// lastInsertID: notification IDs of one INSERT are consecutive and end
	// at the driver's LastInsertId (no RETURNING needed).
	lastInsertID bool
	group        *groupCommitter
	fn           funcPath // the append function, if any

	qEvents      string // quoted table names
	qTracking    string
	nid          string
	insertSQL    sync.Map     // rows -> string
	selectSQL    sync.Map     // query shape -> string
	lockSQL      []string     // begin each insert transaction with events
	checkLockSQL []string     // the lock statements of a lost COMMIT's check, with its own timeout
	notifySQL    string       // wakes other sessions' subscribers, if not ""
	notifyLock   bool         // notifySQL is sent with lockSQL
	commits      commitSignal // broadcast after each commit of events or tracking
	stmts        stmtCache
	observer     Observer
	maxNotifSQL  string
	maxTrackSQL  string
	trackSQL     string
}

var _ ProcessRecorder = (*SQLRecorder)(nil)

// NewSQLRecorder returns a recorder on db with dialect d. It validates the
// table names before any SQL runs (an error wrapping ErrProgramming names a
// bad one) and, if the tracking table exists, checks that its layout is the
// configured one (single or multi-row). It does not create tables: call
// CreateTables.
func NewSQLRecorder(ctx context.Context, db *sql.DB, d Dialect, opts *SQLOptions) (*SQLRecorder, error) {
	return newSQLRecorder(ctx, db, d, opts, false)
}

func newSQLRecorder(ctx context.Context, db *sql.DB, d Dialect, opts *SQLOptions, snapshotsTable bool) (*SQLRecorder, error) {
	var o SQLOptions
	if opts != nil {
		o = *opts
	}
	if d == nil {
		return nil, fmt.Errorf("%w: nil Dialect", ErrProgramming)
	}
	events, snapshots, tracking := d.DefaultTables(o.AppName)
	if snapshotsTable {
		events = snapshots
	}
	if o.Table != "" {
		events = o.Table
	}
	if o.TrackingTable != "" {
		tracking = o.TrackingTable
	}
	maxLen := d.MaxIdentifierLength()
	for _, name := range []string{events, tracking} {
		if err := ValidateIdentifier(name, maxLen); err != nil {
			return nil, fmt.Errorf("table name: %w", err)
		}
	}
	if o.Schema != "" {
		if err := ValidateIdentifier(o.Schema, maxLen); err != nil {
			return nil, fmt.Errorf("schema name: %w", err)
		}
	}
	if db == nil {
		return nil, fmt.Errorf("%w: NewSQLRecorder: nil *sql.DB", ErrProgramming)
	}
	if o.MaxRowsPerStatement <= 0 {
		o.MaxRowsPerStatement = 1000
	}
	traits := d.Traits()
	if n := traits.MaxBindParameters; n > 0 && 4*o.MaxRowsPerStatement > n {
		return nil, fmt.Errorf("%w: MaxRowsPerStatement %d: %s binds at most %d parameters in a statement, 4 per row: at most %d rows",
			ErrProgramming, o.MaxRowsPerStatement, d.Name(), n, n/4)
	}
	if o.LockTimeout < 0 {
		return nil, fmt.Errorf("%w: negative LockTimeout %v", ErrProgramming, o.LockTimeout)
	}
	r := &SQLRecorder{
		db: db, d: d,
		events:    Table{o.Schema, events},
		tracking:  Table{o.Schema, tracking},
		snapshots: snapshotsTable,
		multiRow:  o.MultiRowTracking,
		lockTO:    o.LockTimeout,
		maxRows:   o.MaxRowsPerStatement,
		nid:       d.NotificationIDColumn(),
	}
	if traits.SingleWriter {
		r.writeMu = make(chan struct{}, 1)
		r.stmts.enabled = true
		r.lastInsertID = traits.ConsecutiveIDs
	}
	if o.MaxGroupSize == 0 {
		o.MaxGroupSize = 100
	}
	r.group = &groupCommitter{tx: r, maxSize: o.MaxGroupSize, maxDelay: o.MaxGroupDelay}
	if n, ok := d.(Notifier); ok && !r.snapshots && !o.NoNotify {
		r.notifySQL = n.NotifyStatement(r.events)
	}
	r.observer = o.Observer
	r.lockSQL = d.LockForAppend(r.events, r.lockTO)
	r.checkLockSQL = d.LockForAppend(r.events, commitCheckTimeout)
	if traits.BatchStatements && len(r.lockSQL) > 0 {
		// One round trip for the lock statements and the NOTIFY. NOTIFY
		// takes effect at COMMIT wherever it is sent in the transaction
		// (and not at all if it rolls back), and its commit-time lock is
		// the same, so sending it with the lock costs nothing and saves a
		// round trip on every append.
		stmts := r.lockSQL
		if r.notifySQL != "" {
			stmts = append(stmts[:len(stmts):len(stmts)], r.notifySQL)
			r.notifyLock = true
		}
		r.lockSQL = []string{strings.Join(stmts, "; ")}
	}
	r.qEvents = r.events.Quote(d)
	r.qTracking = r.tracking.Quote(d)
	r.maxNotifSQL = "SELECT MAX(" + r.nid + ") FROM " + r.qEvents
	r.maxTrackSQL = "SELECT MAX(notification_id) FROM " + r.qTracking + " WHERE application_name = " + d.Placeholder(1)
	if r.multiRow {
		r.trackSQL = "INSERT INTO " + r.qTracking + " (application_name, notification_id) VALUES (" + d.Placeholder(1) + ", " + d.Placeholder(2) + ")"
	} else {
		r.trackSQL = "INSERT INTO " + r.qTracking + " (application_name, notification_id) VALUES (" + d.Placeholder(1) + ", " + d.Placeholder(2) +
			") ON CONFLICT (application_name) DO UPDATE SET notification_id = EXCLUDED.notification_id WHERE " +
			r.qTracking + ".notification_id < " + d.Placeholder(3)
	}
	if err := r.checkTables(ctx); err != nil {
		return nil, err
	}
	if err := r.initAppendFunction(ctx, o.NoAppendFunction); err != nil {
		return nil, err
	}
	return r, nil
}

// EventsTable returns the events (or snapshots) table.
func (r *SQLRecorder) EventsTable() Table { return r.events }

// TrackingTable returns the tracking table.
func (r *SQLRecorder) TrackingTable() Table { return r.tracking }

// DB returns the recorder's database.
func (r *SQLRecorder) DB() *sql.DB { return r.db }

// checkTables refuses existing tables the recorder cannot use: originator
// IDs that are not UUIDs, or a tracking table of the other layout.
func (r *SQLRecorder) checkTables(ctx context.Context) error {
	if err := r.checkOriginatorIDs(ctx); err != nil {
		return err
	}
	if r.snapshots {
		return nil
	}
	return r.checkTracking(ctx)
}

// checkOriginatorIDs refuses an existing table whose originator_id column
// is not of the type the dialect writes, as the dialect reports it (see
// [OriginatorIDChecker]): Python 9.6's ORIGINATOR_ID_TYPE=text tables.
func (r *SQLRecorder) checkOriginatorIDs(ctx context.Context) error {
	oc, ok := r.d.(OriginatorIDChecker)
	if !ok {
		return nil
	}
	q, args := oc.OriginatorIDTypeQuery(r.events)
	var typ string
	if err := r.db.QueryRowContext(ctx, q, args...).Scan(&typ); err != nil {
		return r.dbError(ctx, "check originator IDs", r.events, err)
	}
	if typ != "" {
		return &DatabaseError{Kind: ErrProgramming, Op: "check originator IDs", Table: r.events.String(),
			Err: fmt.Errorf("the originator_id column is %s, as Python eventsourcing 9.6 makes it with ORIGINATOR_ID_TYPE=text: this library's originator IDs are UUIDs", typ)}
	}
	return nil
}

// checkTracking refuses a tracking table whose layout is not the configured
// one.
func (r *SQLRecorder) checkTracking(ctx context.Context) error {
	n, err := r.trackingKeyColumns(ctx)
	if err != nil {
		return err
	}
	return r.checkTrackingLayout(n)
}

// trackingKeyColumns returns the number of primary key columns of the
// tracking table: 0 if it does not exist, 1 for single-row tracking, 2 for
// multi-row.
func (r *SQLRecorder) trackingKeyColumns(ctx context.Context) (int64, error) {
	q, args := r.d.TrackingKeyColumnsQuery(r.tracking)
	var n sql.NullInt64
	err := r.db.QueryRowContext(ctx, q, args...).Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, r.dbError(ctx, "check tracking table", r.tracking, err)
	}
	return n.Int64, nil
}

// checkTrackingLayout refuses a tracking table with n primary key columns
// if that is not the configured layout.
func (r *SQLRecorder) checkTrackingLayout(n int64) error {
	switch {
	case n == 1 && r.multiRow:
		return &DatabaseError{Kind: ErrProgramming, Op: "check tracking table", Table: r.tracking.String(),
			Err: errors.New("the table has one row per application (single-row tracking), but multi-row tracking is configured (SINGLE_ROW_TRACKING)")}
	case n == 2 && !r.multiRow:
		return &DatabaseError{Kind: ErrProgramming, Op: "check tracking table", Table: r.tracking.String(),
			Err: errors.New("the table has one row per notification (Python eventsourcing before 9.5), but single-row tracking is configured: set SINGLE_ROW_TRACKING=false (SQLOptions.MultiRowTracking)")}
	}
	return nil
}

// CreateTables creates what is missing of the recorder's tables, and is
// idempotent. It reads first: when everything exists, it writes nothing and
// waits for no lock, so that a process can start while others write (on
// SQLite, with a short busy timeout). What is missing is created in one
// transaction, on PostgreSQL under an advisory lock so that processes
// creating the same tables at once do not collide.
//
// On PostgreSQL, "everything" includes the unique index of notification
// IDs and Python 9.6's composite type stored_event_uuid in the tables'
// schema, which a Python 9.6 writer needs to append. A single-row tracking
// table gets the row ("__migration__", 1) that the Python library (9.5 and
// later) writes when it creates one, so that Python treats the table as its
// own. An existing tracking table of the other layout is refused with
// ErrProgramming.
//
// On PostgreSQL it also creates the append function (see
// [SQLRecorder.appendFunction]), unless SQLOptions.NoAppendFunction,
// replacing one of an older version, in the same transaction. Where it
// cannot (no CREATE privilege on the schema, a read-only session), the
// tables are created all the same and the recorder appends without it.
func (r *SQLRecorder) CreateTables(ctx context.Context) error {
	stmts, err := r.missingDDL(ctx)
	if err != nil {
		return err
	}
	fnStmts, err := r.missingAppendFunction(ctx)
	if err != nil || len(stmts)+len(fnStmts) == 0 {
		return err
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return r.dbError(ctx, "create tables", r.events, err)
	}
	defer tx.Rollback()
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return r.ddlError(ctx, err)
		}
	}
	fnMade, err := r.createAppendFunction(ctx, tx, fnStmts)
	if err != nil {
		return r.ddlError(ctx, err)
	}
	if err := tx.Commit(); err != nil {
		return r.ddlError(ctx, err)
	}
	if fnMade {
		r.fn.on.Store(r.fn.spec)
	}
	if !r.snapshots {
		return r.checkTracking(ctx) // made meanwhile by another process?
	}
	return nil
}

// missingDDL returns the statements that create what is missing of the
// recorder's tables, found with reads: the events (or snapshots) table and
// what the dialect makes with it, object by object (all of it, every time,
// if the dialect is no [SchemaChecker]), the tracking table, and the
// migration row of a single-row tracking table.
func (r *SQLRecorder) missingDDL(ctx context.Context) ([]string, error) {
	var stmts []string
	if sc, ok := r.d.(SchemaChecker); ok {
		for _, o := range sc.EventsTableObjects(r.events, !r.snapshots) {
			var exists bool
			if err := r.db.QueryRowContext(ctx, o.Exists, o.Args...).Scan(&exists); err != nil {
				return nil, r.dbError(ctx, "check tables", r.events, err)
			}
			if !exists {
				stmts = appendNew(stmts, o.Create...)
			}
		}
	} else {
		stmts = r.d.CreateEventsTable(r.events, !r.snapshots)
	}
	if r.snapshots {
		return stmts, nil
	}
	n, err := r.trackingKeyColumns(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.checkTrackingLayout(n); err != nil {
		return nil, err
	}
	if n == 0 {
		stmts = appendNew(stmts, r.d.CreateTrackingTable(r.tracking, !r.multiRow)...)
	}
	if r.multiRow {
		return stmts, nil
	}
	var marks int64
	if n != 0 {
		q := "SELECT COUNT(*) FROM " + r.qTracking + " WHERE application_name = " + r.d.Placeholder(1)
		if err := r.db.QueryRowContext(ctx, q, MigrationTrackingName).Scan(&marks); err != nil {
			return nil, r.dbError(ctx, "check tracking table", r.tracking, err)
		}
	}
	if marks == 0 {
		stmts = append(stmts, "INSERT INTO "+r.qTracking+" (application_name, notification_id) VALUES ('"+MigrationTrackingName+"', 1) ON CONFLICT (application_name) DO NOTHING")
	}
	return stmts, nil
}

// appendNew appends to stmts those of more it does not hold yet: a lock or
// a CREATE SCHEMA IF NOT EXISTS that several objects' DDL begins with runs
// once.
func appendNew(stmts []string, more ...string) []string {
	for _, s := range more {
		if !slices.Contains(stmts, s) {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

// ddlError classifies an error creating tables: a unique violation there
// is a collision in the database's catalog with another session creating
// the same table, not a conflict between events, and is worth retrying.
func (r *SQLRecorder) ddlError(ctx context.Context, err error) error {
	if ctx.Err() == nil && r.kind(err) == ErrIntegrity {
		return &DatabaseError{Kind: ErrOperational, Op: "create tables", Table: r.events.String(), Err: err, Transient: true}
	}
	return r.dbError(ctx, "create tables", r.events, err)
}

// MaxNotificationID returns the highest notification ID, or 0.
func (r *SQLRecorder) MaxNotificationID(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := r.db.QueryRowContext(ctx, r.maxNotifSQL).Scan(&n); err != nil {
		return 0, r.dbError(ctx, "max notification id", r.events, err)
	}
	return n.Int64, nil
}

// MaxTrackingID returns the highest notification ID tracked for the
// upstream application, or 0.
func (r *SQLRecorder) MaxTrackingID(ctx context.Context, applicationName string) (int64, error) {
	if err := checkTrackingName(applicationName); err != nil {
		return 0, err
	}
	var n sql.NullInt64
	if err := r.db.QueryRowContext(ctx, r.maxTrackSQL, applicationName).Scan(&n); err != nil {
		return 0, r.dbError(ctx, "max tracking id", r.tracking, err)
	}
	return n.Int64, nil
}

// HasTrackingID reports whether the upstream notification was processed:
// its ID is at or below the highest tracked for the application.
func (r *SQLRecorder) HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error) {
	if err := checkTrackingName(applicationName); err != nil {
		return false, err
	}
	var n sql.NullInt64
	if err := r.db.QueryRowContext(ctx, r.maxTrackSQL, applicationName).Scan(&n); err != nil {
		return false, r.dbError(ctx, "has tracking id", r.tracking, err)
	}
	return n.Valid && notificationID <= n.Int64, nil
}

// InsertEvents records the events and, if tracking is not nil, the tracking
// record in one transaction, returning the events' notification IDs.
//
// What its result means:
//   - A nil error: every event is recorded, under the returned IDs (one per
//     event, in order), and the tracking record with them.
//   - An error matching ErrOutcomeUnknown (also ErrOperational, retryable):
//     the COMMIT was sent, its reply was lost, and whether it committed
//     could not be found out (the check below failed). Either every event
//     is recorded, under the IDs the transaction was given, or none is;
//     a retry may meet ErrIntegrity against the first attempt's events.
//   - Any other error: nothing of the call is written, then or later. A
//     duplicate (originator ID, version), or a tracking record not after
//     the last recorded for its application, is an *[IntegrityError];
//     a caller whose context ended before its rows were claimed gets an
//     error wrapping the context's error.
//
// The context bounds every wait: for the recorder's turn to write, for the
// database's write lock and for the statements. Once the call's rows are
// in a transaction that other calls share (group commit), the call waits
// for that shared outcome, at most an INSERT and a COMMIT away. COMMIT
// itself is never cancelled.
//
// A COMMIT that fails with an error that does not prove a rollback (a lost
// connection, a terminated backend, a pooler's error) is checked on
// another connection: under the append lock (which the lost transaction
// holds until it has ended; on SQLite, the write lock), with a bound of its
// own of 10 s, the recorder looks for the first row written, or for
// tracking records alone, their row. It reports what it found. Only if
// that check fails too (the database unreachable for 10 s, or the context
// of a call alone in its transaction ending first) is the outcome unknown.
func (r *SQLRecorder) InsertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	return r.insertEvents(ctx, events, tracking)
}

// SelectNotifications returns at most limit notifications from start.
//
// A stored row that does not fit (a NULL topic, an originator ID that is
// not a UUID) fails only itself: a page ends just before it, with no error,
// and the page that starts at it is an error matching ErrData that names
// its notification ID. A reader thus gets every notification before it,
// and can resume at the next ID on purpose.
func (r *SQLRecorder) SelectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	return r.SelectNotificationsInto(ctx, nil, start, limit, q)
}

// SelectNotificationsInto is SelectNotifications reusing dst: the
// notifications are written over dst[:0], reusing the entries' State
// buffers and, where they are the same, their Topic strings, so that a
// reader paging through the log with one slice allocates almost nothing
// per page. The States of dst are overwritten: do not keep them. A bad
// stored row ends a page as it ends SelectNotifications'.
func (r *SQLRecorder) SelectNotificationsInto(ctx context.Context, dst []Notification, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	return r.observeSelectNotifications(ctx, dst, start, limit, q, false)
}

// SelectEvents returns an aggregate's events within the query's bounds. A
// stored row that does not fit (a NULL topic, a version that is not an
// integer) is an error matching ErrData that names the aggregate and the
// row, returned alone. ([EventStore.Events] yields the events before it
// first.)
func (r *SQLRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	out, err := r.selectEvents(ctx, originatorID, q)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Stats returns the recorder's counters: group commit's calls and
// transactions, and whether it appends through the append function.
func (r *SQLRecorder) Stats() Stats {
	s := Stats{AppendFunction: r.appendFunction()}
	if r.group.grouping() {
		s.Transactions, s.Calls = r.group.groups.Load(), r.group.calls.Load()
	}
	return s
}

// WithTracking runs fn in a new transaction of the recorder's database and
// records the tracking record t in the same transaction, then commits: the
// writes fn makes through tx and the tracking record are committed
// together or not at all. It is what a [Projection] runs for each batch,
// and what to use to keep a read model in the database's own tables
// exactly once by hand (Python eventsourcing's insert_tracking, inside the
// view's transaction).
//
// The tracking record is written first, before fn runs: a record that is
// not after the last one recorded for its application (see [Tracking].First)
// fails with an *[IntegrityError] naming it, and fn is not called. On
// PostgreSQL the record's row (single-row tracking) or the append lock
// (multi-row tracking, LOCK TABLE on the events table, as inserts of events
// take it) is held until the transaction ends, so a second copy of the
// same projection waits there, before touching the caller's tables, and is
// then refused. If fn returns an error the transaction is rolled back and
// that error is returned as it is. fn must not commit or roll back tx, and
// must not write through this recorder (InsertEvents would wait for the
// transaction fn is in: on SQLite, the one writer; on PostgreSQL with
// multi-row tracking, the append lock).
//
// After the commit, WaitTracking callers are woken: in this process, and
// on PostgreSQL by a NOTIFY on the events table's channel. A COMMIT whose
// outcome is open (a lost connection) is checked as InsertEvents checks a
// tracking record alone; an error matching ErrOutcomeUnknown means it
// could not be told.
func (r *SQLRecorder) WithTracking(ctx context.Context, t Tracking, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := r.checkTrackingTx("with tracking"); err != nil {
		return err
	}
	if err := checkTrackingRecord(&t); err != nil {
		return err
	}
	if t.ApplicationName == "" {
		return fmt.Errorf("%w: tracking record with an empty application name", ErrProgramming)
	}
	if fn == nil {
		return fmt.Errorf("%w: WithTracking: nil function", ErrProgramming)
	}
	r.prepareInserts(ctx, 0, true)
	tx, locked, err := r.beginTracking(ctx)
	if err != nil {
		return err
	}
	ended := false
	defer func() {
		if !ended {
			tx.Rollback()
			r.releaseWriter()
		}
	}()
	if err := r.insertTracking(ctx, tx, t); err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if r.notifySQL != "" && !(locked && r.notifyLock) {
		if _, err := tx.ExecContext(ctx, r.notifySQL); err != nil {
			return r.dbError(ctx, "notify", r.events, err)
		}
	}
	ended = true
	err = tx.Commit()
	r.releaseWriter()
	if err != nil {
		if errors.Is(err, sql.ErrTxDone) || r.kind(err) == ErrIntegrity {
			return r.dbError(context.Background(), "commit", r.tracking, err)
		}
		committed, checkErr := r.commitOutcome(commitProbe{ctx: ctx, tracking: &t}, locked)
		if !committed {
			return r.commitLost(err, checkErr)
		}
	}
	r.committed()
	return nil
}

// ResetTracking deletes the tracking records of applicationName and runs
// reset (if not nil) in the same transaction, then commits: the way to
// rebuild a projection from the beginning in place, reset emptying the
// tables it writes. Stop every copy of the projection first: one still
// running would go on from where it was, onto the emptied tables. (To
// rebuild beside the old view instead, run the projection under a new
// name into new tables.) An error from reset rolls everything back and is
// returned as it is.
func (r *SQLRecorder) ResetTracking(ctx context.Context, applicationName string, reset func(ctx context.Context, tx *sql.Tx) error) error {
	if err := r.checkTrackingTx("reset tracking"); err != nil {
		return err
	}
	if err := checkTrackingName(applicationName); err != nil {
		return err
	}
	tx, _, err := r.beginTracking(ctx)
	if err != nil {
		return err
	}
	defer r.releaseWriter()
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+r.qTracking+" WHERE application_name = "+r.d.Placeholder(1), applicationName); err != nil {
		return r.dbError(ctx, "reset tracking", r.tracking, err)
	}
	if reset != nil {
		if err := reset(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return r.dbError(context.Background(), "reset tracking", r.tracking, err)
	}
	r.committed()
	return nil
}

// Wake calls wake after each commit of events or tracking records by this
// recorder, in this process; and, if listen is true and the dialect is a
// [Listener], whenever another session commits events into the table
// (PostgreSQL LISTEN, on a connection of the recorder's database held until
// ctx ends).
func (r *SQLRecorder) Wake(ctx context.Context, listen bool, wake func()) {
	if l, ok := r.d.(Listener); ok && listen && !r.snapshots {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Listen(ctx, r.db, r.events, wake)
		}()
		defer wg.Wait()
	}
	followSignal(ctx, &r.commits, wake)
}
