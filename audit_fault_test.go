package eventsourcing_test

// The acknowledgement audit's fault injection: a database/sql/driver
// wrapper (auditConnector) that makes chosen statements fail by a seeded
// schedule, and the real faults a PostgreSQL server can be put through from
// a side session (terminated backends, a table lock held elsewhere).

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// auditFault is a point of the write path where the audit injects a
// fault.
type auditFault int

const (
	faultConnect           auditFault = iota // opening a connection
	faultCheckout                            // reusing a pooled connection (ResetSession, IsValid)
	faultBegin                               // BEGIN
	faultLock                                // the lock statements (PostgreSQL: SET LOCAL lock_timeout; LOCK TABLE; NOTIFY)
	faultInsert                              // the INSERT into the events table
	faultTracking                            // the tracking insert or upsert
	faultNotify                              // NOTIFY sent alone (a tracking-only transaction)
	faultSavepoint                           // SAVEPOINT, RELEASE, ROLLBACK TO (the redo after a conflict)
	faultCommitUnsent                        // COMMIT fails before it is sent: rolled back
	faultCommitLost                          // COMMIT sent, the connection lost: rolled back
	faultCommitReplyLost                     // COMMIT done, the reply lost with the connection
	faultCommitServerError                   // COMMIT done, then the server's FATAL error (PostgreSQL 57P01)
	faultTerminate                           // PostgreSQL: pg_terminate_backend from a side session
	faultTableLock                           // PostgreSQL: the events table locked by a side session
	faultCall                                // the append function's call refused, not run (lock timeout, a server error, a bad connection)
	faultCallLost                            // the call sent, the connection lost before the server ran it
	faultCallReplyLost                       // the call run and committed, its reply lost with the connection
	faultCallCancelled                       // the call run under a context that ends 0-3 ms in: the driver drops the connection mid-call
	numFaults
)

var faultNames = [numFaults]string{
	"connect", "checkout", "begin", "lock", "insert", "tracking", "notify", "savepoint",
	"commit-unsent", "commit-lost", "commit-reply-lost", "commit-server-error", "terminate", "table-lock",
	"call", "call-lost", "call-reply-lost", "call-cancelled",
}

func (f auditFault) String() string { return faultNames[f] }

// faultSchedule decides, from a seed, which opportunities to fault: the
// nth opportunity at a point faults if a hash of (seed, point, n) falls
// under the point's rate, as SQLite's ioerr tests fail the Nth I/O. Which
// call meets the nth opportunity depends on scheduling, so a seed replays
// the schedule, not the interleaving.
type faultSchedule struct {
	seed     uint64
	rate     [numFaults]float64 // chance that an opportunity faults; 0: never
	armed    atomic.Bool
	seen     [numFaults]atomic.Uint64
	injected [numFaults]atomic.Int64
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// draw reports whether this opportunity at f faults, and a hash to choose
// the fault's error with.
func (s *faultSchedule) draw(f auditFault) (bool, uint64) {
	if s == nil || s.rate[f] == 0 || !s.armed.Load() {
		return false, 0
	}
	n := s.seen[f].Add(1)
	h := mix64(s.seed ^ mix64(uint64(f)<<48^n))
	if float64(h>>11)/(1<<53) >= s.rate[f] {
		return false, 0
	}
	s.injected[f].Add(1)
	return true, mix64(h)
}

// count adds n real faults (made from a side session) at f.
func (s *faultSchedule) count(f auditFault, n int) { s.injected[f].Add(int64(n)) }

// total returns the faults injected so far.
func (s *faultSchedule) total() int64 {
	var n int64
	for f := range numFaults {
		n += s.injected[f].Load()
	}
	return n
}

// breakdown describes the faults injected so far, by point.
func (s *faultSchedule) breakdown() string {
	var parts []string
	for f := range numFaults {
		if n := s.injected[f].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f, n))
		}
	}
	return strings.Join(parts, ", ")
}

// injected is an error a fault returns; breaks marks the connection lost
// from then on (every later use fails with driver.ErrBadConn).
type injected struct {
	err    error
	breaks bool
}

// faultErrors lists, per fault point, the errors a fault there may return;
// a point with none returns a plain error.
type faultErrors map[auditFault][]injected

func (e faultErrors) pick(f auditFault, h uint64) injected {
	list := e[f]
	if len(list) == 0 {
		return injected{err: fmt.Errorf("audit: injected %s failure", f)}
	}
	return list[h%uint64(len(list))]
}

// badConn is an injected connection loss, which database/sql and the
// recorder recognise by driver.ErrBadConn.
func badConn(what string) injected {
	return injected{err: fmt.Errorf("audit: injected %s: %w", what, driver.ErrBadConn), breaks: true}
}

func plain(what string) injected { return injected{err: errors.New("audit: injected " + what)} }

// pgError is an injected error as the PostgreSQL server sends it.
func pgError(severity, code, msg string, breaks bool) injected {
	return injected{err: &pgconn.PgError{Severity: severity, Code: code, Message: "audit: injected: " + msg}, breaks: breaks}
}

// postgresFaultErrors returns the errors the audit injects on PostgreSQL:
// what the server sends at each step (lock_not_available, serialization
// failures, terminated sessions), plain errors, and lost connections.
func postgresFaultErrors() faultErrors {
	terminated := pgError("FATAL", "57P01", "terminating connection due to administrator command", true)
	statement := []injected{
		pgError("ERROR", "40001", "could not serialize access due to concurrent update", false),
		pgError("ERROR", "57014", "canceling statement due to user request", false),
		pgError("FATAL", "08006", "connection failure", true),
		terminated, plain("statement failure"), badConn("connection reset"),
	}
	return faultErrors{
		faultConnect: {pgError("FATAL", "57P03", "the database system is starting up", false), pgError("FATAL", "53300", "too many connections", false), badConn("connection refused")},
		faultBegin:   {terminated, pgError("FATAL", "08006", "connection failure", true), plain("BEGIN failure"), badConn("connection reset")},
		faultLock: append([]injected{
			pgError("ERROR", "55P03", "canceling statement due to lock timeout", false),
			pgError("ERROR", "40P01", "deadlock detected", false),
		}, statement...),
		faultInsert:    append([]injected{pgError("ERROR", "23505", "duplicate key value violates unique constraint", false)}, statement...),
		faultTracking:  append([]injected{pgError("ERROR", "23505", "duplicate key value violates unique constraint", false)}, statement...),
		faultNotify:    statement,
		faultSavepoint: statement,
		faultCommitUnsent: {
			pgError("ERROR", "40001", "could not serialize access due to read/write dependencies among transactions", false),
			plain("COMMIT failure before it was sent"),
		},
		faultCommitLost:      {badConn("connection lost during COMMIT"), {err: fmt.Errorf("audit: injected COMMIT: %w", io.ErrUnexpectedEOF), breaks: true}},
		faultCommitReplyLost: {badConn("COMMIT reply lost"), {err: fmt.Errorf("audit: injected COMMIT reply: %w", io.ErrUnexpectedEOF), breaks: true}},
		faultCommitServerError: {
			terminated,
			pgError("FATAL", "08P01", "server closed the connection (proxy)", true),
		},
		faultCall: {
			pgError("ERROR", "55P03", "canceling statement due to lock timeout", false),
			pgError("ERROR", "40P01", "deadlock detected", false),
			pgError("ERROR", "57014", "canceling statement due to user request", false),
			terminated, plain("call failure"), badConn("connection reset before the call was sent"),
		},
		faultCallLost: {
			{err: fmt.Errorf("audit: injected call lost: %w", io.ErrUnexpectedEOF), breaks: true},
			{err: &net.OpError{Op: "write", Net: "tcp", Err: errors.New("audit: injected: connection reset by peer")}, breaks: true},
		},
		faultCallReplyLost: {
			{err: fmt.Errorf("audit: injected call reply lost: %w", io.ErrUnexpectedEOF), breaks: true},
			terminated,
			pgError("FATAL", "08P01", "server closed the connection (proxy)", true),
		},
	}
}

// sqliteFaultErrors returns the errors the audit injects on SQLite: real
// *sqlite.Error values (busy, constraint, full), so that the dialect
// classifies them as it would the driver's own, plain errors, and lost
// connections.
func sqliteFaultErrors(t *testing.T) faultErrors {
	busy, constraint, full := sqliteErrors(t)
	statement := []injected{{err: busy}, {err: full}, plain("statement failure"), badConn("connection reset")}
	return faultErrors{
		faultConnect:         {{err: busy}, plain("unable to open database file"), badConn("connection refused")},
		faultBegin:           {{err: busy}, plain("BEGIN failure"), badConn("connection reset")},
		faultInsert:          append([]injected{{err: constraint}}, statement...),
		faultTracking:        append([]injected{{err: constraint}}, statement...),
		faultSavepoint:       statement,
		faultCommitUnsent:    {{err: busy}, plain("COMMIT failure before it was sent")},
		faultCommitLost:      {badConn("connection lost during COMMIT")},
		faultCommitReplyLost: {badConn("COMMIT reply lost")},
	}
}

// sqliteErrors makes SQLite fail in three ways on a scratch database and
// returns the driver's errors: SQLITE_BUSY, SQLITE_CONSTRAINT and
// SQLITE_FULL (modernc's *sqlite.Error cannot be built outside its
// package).
func sqliteErrors(t *testing.T) (busy, constraint, full error) {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "errors.db") + "?_txlock=immediate&_busy_timeout=0"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1, NULL)"); err != nil {
		t.Fatal(err)
	}
	_, constraint = db.ExecContext(ctx, "INSERT INTO t VALUES (1, NULL)")
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, busy = db.BeginTx(ctx, nil)
	tx.Rollback()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA max_page_count = 3"); err != nil {
		t.Fatal(err)
	}
	_, full = conn.ExecContext(ctx, "INSERT INTO t VALUES (2, zeroblob(100000))")
	for _, err := range []error{busy, constraint, full} {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			t.Fatalf("scratch SQLite error %v (%T) is not a *sqlite.Error", err, err)
		}
	}
	return busy, constraint, full
}

// statementFault returns the fault point of a statement the recorder
// sends, if it is one.
func statementFault(query string) (auditFault, bool) {
	switch {
	case strings.Contains(query, "LOCK TABLE"):
		return faultLock, true
	case strings.HasPrefix(query, "INSERT INTO") && strings.Contains(query, "(originator_id, originator_version, topic, state)"):
		return faultInsert, true
	case strings.HasPrefix(query, "INSERT INTO") && strings.Contains(query, "(application_name, notification_id)"):
		return faultTracking, true
	case strings.HasPrefix(query, "NOTIFY"):
		return faultNotify, true
	case strings.Contains(query, "SAVEPOINT"):
		return faultSavepoint, true
	}
	return 0, false
}

// auditConnector is a driver.Connector around the real driver's that
// injects faults by its schedule into the connections it opens.
type auditConnector struct {
	inner driver.Connector
	s     *faultSchedule
	errs  faultErrors
	stmts atomic.Int64 // statements sent (BEGIN, each query, COMMIT, ROLLBACK, PREPARE): round trips
}

var _ driver.Connector = (*auditConnector)(nil)

// Connect opens a connection, unless the schedule fails it.
func (c *auditConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if hit, h := c.s.draw(faultConnect); hit {
		return nil, c.errs.pick(faultConnect, h).err
	}
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &auditConn{inner: conn, c: c}, nil
}

// Driver returns the real driver.
func (c *auditConnector) Driver() driver.Driver { return c.inner.Driver() }

// auditConn is a connection whose statements, transactions and checkouts
// the schedule may fail. Once a fault breaks it, every use fails with
// driver.ErrBadConn (and a transaction still open on it is rolled back),
// as a lost connection does.
type auditConn struct {
	inner  driver.Conn
	c      *auditConnector
	broken atomic.Bool
}

var (
	_ driver.ConnBeginTx        = (*auditConn)(nil)
	_ driver.ExecerContext      = (*auditConn)(nil)
	_ driver.QueryerContext     = (*auditConn)(nil)
	_ driver.ConnPrepareContext = (*auditConn)(nil)
	_ driver.NamedValueChecker  = (*auditConn)(nil)
	_ driver.SessionResetter    = (*auditConn)(nil)
	_ driver.Validator          = (*auditConn)(nil)
	_ driver.Pinger             = (*auditConn)(nil)
	_ driver.StmtExecContext    = (*auditStmt)(nil)
	_ driver.StmtQueryContext   = (*auditStmt)(nil)
	_ driver.Tx                 = (*auditTx)(nil)
)

var errAuditLost = fmt.Errorf("audit: connection lost by an earlier fault: %w", driver.ErrBadConn)

// inject draws at f and returns the fault's error, or nil; an error that
// breaks the connection marks it broken.
func (cn *auditConn) inject(f auditFault) error {
	hit, h := cn.c.s.draw(f)
	if !hit {
		return nil
	}
	e := cn.c.errs.pick(f, h)
	if e.breaks {
		cn.broken.Store(true)
	}
	return e.err
}

// statement returns the error to fail query with: the connection's loss,
// or a fault at the query's point.
func (cn *auditConn) statement(query string) error {
	if cn.broken.Load() {
		return errAuditLost
	}
	if f, ok := statementFault(query); ok {
		return cn.inject(f)
	}
	return nil
}

func (cn *auditConn) Prepare(query string) (driver.Stmt, error) {
	return cn.PrepareContext(context.Background(), query)
}

func (cn *auditConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if cn.broken.Load() {
		return nil, errAuditLost
	}
	var st driver.Stmt
	var err error
	cn.c.stmts.Add(1)
	if p, ok := cn.inner.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = cn.inner.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &auditStmt{inner: st, cn: cn, query: query}, nil
}

func (cn *auditConn) Close() error { return cn.inner.Close() }

func (cn *auditConn) Begin() (driver.Tx, error) {
	return cn.BeginTx(context.Background(), driver.TxOptions{})
}

func (cn *auditConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if cn.broken.Load() {
		return nil, errAuditLost
	}
	if err := cn.inject(faultBegin); err != nil {
		return nil, err
	}
	cn.c.stmts.Add(1)
	tx, err := cn.inner.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &auditTx{inner: tx, cn: cn}, nil
}

func (cn *auditConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := cn.statement(query); err != nil {
		return nil, err
	}
	cn.c.stmts.Add(1)
	if e, ok := cn.inner.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (cn *auditConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if isAppendCall(query) {
		return cn.appendCall(ctx, query, args)
	}
	if err := cn.statement(query); err != nil {
		return nil, err
	}
	cn.c.stmts.Add(1)
	if q, ok := cn.inner.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

// isAppendCall reports a call of the PostgreSQL append function.
func isAppendCall(query string) bool {
	return strings.HasPrefix(query, "SELECT r_status, r_call, r_id, r_detail FROM ")
}

// callFaults are drawn in this order at a call of the append function;
// the first that hits is the call's fault.
var callFaults = [...]auditFault{faultCall, faultCallLost, faultCallReplyLost, faultCallCancelled}

// appendCall runs a call of the append function, unless the schedule
// fails it: refused without running, lost before it ran, run with its
// reply lost, or run under a context that ends within 3 ms (pgx then
// drops the connection, wherever the call is: the outcome is open).
func (cn *auditConn) appendCall(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if cn.broken.Load() {
		return nil, errAuditLost
	}
	q := cn.inner.(driver.QueryerContext)
	cn.c.stmts.Add(1)
	for _, f := range callFaults {
		hit, h := cn.c.s.draw(f)
		if !hit {
			continue
		}
		switch f {
		case faultCall, faultCallLost:
			e := cn.c.errs.pick(f, h)
			if e.breaks {
				cn.broken.Store(true)
			}
			return nil, e.err
		case faultCallReplyLost:
			if rows, err := q.QueryContext(ctx, query, args); err == nil {
				drainRows(rows)
			}
			cn.broken.Store(true)
			return nil, cn.c.errs.pick(f, h).err
		default: // faultCallCancelled
			cctx, cancel := context.WithCancel(ctx)
			stop := time.AfterFunc(time.Duration(h%3000)*time.Microsecond, cancel)
			rows, err := q.QueryContext(cctx, query, args)
			if err == nil {
				err = drainRows(rows)
			}
			stop.Stop()
			cancel()
			cn.broken.Store(true)
			if err == nil {
				err = fmt.Errorf("audit: injected: the call's context ended as its reply came: %w", io.ErrUnexpectedEOF)
			}
			return nil, err
		}
	}
	return q.QueryContext(ctx, query, args)
}

// drainRows reads rows to the end and closes them, returning the first
// error.
func drainRows(rows driver.Rows) error {
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(dest); err != nil {
			cerr := rows.Close()
			if errors.Is(err, io.EOF) {
				return cerr
			}
			return err
		}
	}
}

func (cn *auditConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := cn.inner.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// ResetSession fails a checkout when the connection is lost or the
// schedule says so (database/sql then discards it and takes another).
func (cn *auditConn) ResetSession(ctx context.Context) error {
	if cn.broken.Load() {
		return driver.ErrBadConn
	}
	if hit, _ := cn.c.s.draw(faultCheckout); hit {
		cn.broken.Store(true)
		return driver.ErrBadConn
	}
	if r, ok := cn.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid keeps a lost connection out of the pool.
func (cn *auditConn) IsValid() bool {
	if cn.broken.Load() {
		return false
	}
	if v, ok := cn.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cn *auditConn) Ping(ctx context.Context) error {
	if cn.broken.Load() {
		return driver.ErrBadConn
	}
	if p, ok := cn.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// auditStmt is a prepared statement whose executions the schedule may
// fail (the SQLite recorder runs its INSERTs prepared).
type auditStmt struct {
	inner driver.Stmt
	cn    *auditConn
	query string
}

func (s *auditStmt) Close() error  { return s.inner.Close() }
func (s *auditStmt) NumInput() int { return s.inner.NumInput() }

// Exec and Query are driver.Stmt's methods before contexts: database/sql
// calls the Context forms, which they run.
func (s *auditStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *auditStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func (s *auditStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if err := s.cn.statement(s.query); err != nil {
		return nil, err
	}
	s.cn.c.stmts.Add(1)
	if e, ok := s.inner.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	return s.inner.Exec(values(args))
}

func (s *auditStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if err := s.cn.statement(s.query); err != nil {
		return nil, err
	}
	s.cn.c.stmts.Add(1)
	if q, ok := s.inner.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	return s.inner.Query(values(args))
}

// values and named convert arguments between the two forms of a driver's
// methods.
func values(args []driver.NamedValue) []driver.Value {
	v := make([]driver.Value, len(args))
	for i, a := range args {
		v[i] = a.Value
	}
	return v
}

func named(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return nv
}

// auditTx is a transaction whose COMMIT the schedule may fail: before it
// is sent (rolled back), sent and lost (rolled back, the connection lost),
// or done and its reply lost (committed, the connection lost).
type auditTx struct {
	inner driver.Tx
	cn    *auditConn
}

// commitFaults are drawn in this order; the first that hits is the
// COMMIT's fault.
var commitFaults = [...]auditFault{faultCommitUnsent, faultCommitLost, faultCommitReplyLost, faultCommitServerError}

func (tx *auditTx) Commit() error {
	cn := tx.cn
	cn.c.stmts.Add(1)
	if cn.broken.Load() {
		tx.inner.Rollback()
		return errAuditLost
	}
	for _, f := range commitFaults {
		hit, h := cn.c.s.draw(f)
		if !hit {
			continue
		}
		e := cn.c.errs.pick(f, h)
		switch f {
		case faultCommitUnsent, faultCommitLost:
			tx.inner.Rollback()
		default:
			if err := tx.inner.Commit(); err != nil {
				return err
			}
		}
		if f != faultCommitUnsent {
			cn.broken.Store(true)
		}
		return e.err
	}
	return tx.inner.Commit()
}

// Rollback rolls the transaction back; on a lost connection it says so
// (database/sql then discards the connection).
func (tx *auditTx) Rollback() error {
	tx.cn.c.stmts.Add(1)
	err := tx.inner.Rollback()
	if tx.cn.broken.Load() {
		return errAuditLost
	}
	return err
}

// sqliteConnector returns modernc's connector on the SQLite file path,
// configured as the recorder needs it (auditSQLiteDSN).
func sqliteConnector(t *testing.T, path string, busy time.Duration) driver.Connector {
	t.Helper()
	c, err := sqlite.NewConnector(auditSQLiteDSN(path, busy))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// auditSQLiteDSN is the DSN dialect/sqlite's OpenWith builds for a file
// (BEGIN IMMEDIATE, a busy timeout, WAL), with synchronous=NORMAL: the
// audit checks acknowledgements, not durability across power loss.
func auditSQLiteDSN(path string, busy time.Duration) string {
	return fmt.Sprintf("file:%s?_txlock=immediate&_busy_timeout=%d&_journal_mode=WAL&_pragma=synchronous(NORMAL)",
		path, max(1, busy.Milliseconds()))
}

// pause returns a random pause between real faults: 10 to 40 ms at rate
// 1, longer at a lower rate.
func pause(rng *rand.Rand, rate float64) time.Duration {
	return time.Duration(float64(10+rng.IntN(30)) / rate * float64(time.Millisecond))
}

// runTerminator terminates one of the backends whose application_name is
// app, from the side session db, at random pauses (see pause) until ctx
// ends.
func runTerminator(ctx context.Context, db *sql.DB, app string, s *faultSchedule, rng *rand.Rand) {
	const q = `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1) t WHERE done`
	for sleepCtx(ctx, pause(rng, s.rate[faultTerminate])) {
		var n int
		if err := db.QueryRowContext(ctx, q, app).Scan(&n); err == nil {
			s.count(faultTerminate, n)
		}
	}
}

// runTableLocker holds table locked IN EXCLUSIVE MODE from the side
// session db, for hold to twice that at a time, at random pauses until ctx
// ends, so that the recorder's lock_timeout fires.
func runTableLocker(ctx context.Context, db *sql.DB, table string, hold time.Duration, s *faultSchedule, rng *rand.Rand) {
	for sleepCtx(ctx, pause(rng, s.rate[faultTableLock])) {
		tx, err := db.BeginTx(context.WithoutCancel(ctx), nil)
		if err != nil {
			continue
		}
		if _, err := tx.Exec("LOCK TABLE " + table + " IN EXCLUSIVE MODE"); err == nil {
			s.count(faultTableLock, 1)
			time.Sleep(hold + time.Duration(rng.Int64N(int64(hold))))
		}
		tx.Rollback()
	}
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
