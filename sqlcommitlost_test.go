package eventsourcing_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// commitFault is what a faultyConnector does to a transaction's COMMIT.
type commitFault int32

const (
	noFault                 commitFault = iota
	commitThenLose                      // the server commits; the reply is lost
	rollbackThenLose                    // the COMMIT never reaches the server
	loseThenCommitLater                 // the COMMIT is still on its way: it lands 300 ms later
	loseThenCommitMuchLater             // the same, 3 s later
	commitThenServerError               // the server commits, then the client gets an error the server sent (FATAL 57P01), not a broken socket
)

// faultyConnector wraps pgx's connector so that, while fault is set, a
// transaction's Commit loses the connection: it returns an error wrapping
// driver.ErrBadConn (so database/sql discards the connection), after
// doing what the fault says.
type faultyConnector struct {
	driver.Connector
	fault atomic.Int32
	// slowInsertInto, if set, names a table: the next INSERT into it
	// waits 300 ms before it is sent.
	slowInsertInto atomic.Pointer[string]
}

func (c *faultyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &faultyConn{Conn: conn, c: c}, nil
}

var errLostInTest = fmt.Errorf("test: connection lost during commit: %w", driver.ErrBadConn)

type faultyConn struct {
	driver.Conn
	c       *faultyConnector
	pending sync.WaitGroup // a commit still on its way
}

func (fc *faultyConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := fc.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &faultyTx{Tx: tx, fc: fc}, nil
}

func (fc *faultyConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if slow := fc.c.slowInsertInto.Load(); slow != nil && strings.HasPrefix(q, "INSERT INTO") && strings.Contains(q, *slow) &&
		fc.c.slowInsertInto.CompareAndSwap(slow, nil) {
		time.Sleep(300 * time.Millisecond)
	}
	return fc.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (fc *faultyConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return fc.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (fc *faultyConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return fc.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

func (fc *faultyConn) CheckNamedValue(nv *driver.NamedValue) error {
	return fc.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

func (fc *faultyConn) ResetSession(ctx context.Context) error {
	return fc.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (fc *faultyConn) Ping(ctx context.Context) error { return fc.Conn.(driver.Pinger).Ping(ctx) }

// Close closes the connection once a commit on its way has landed,
// without waiting for it: database/sql closes a bad connection in the
// caller's goroutine.
func (fc *faultyConn) Close() error {
	go func() {
		fc.pending.Wait()
		fc.Conn.Close()
	}()
	return nil
}

type faultyTx struct {
	driver.Tx
	fc *faultyConn
}

func (tx *faultyTx) Commit() error {
	switch commitFault(tx.fc.c.fault.Load()) {
	case commitThenLose:
		if err := tx.Tx.Commit(); err != nil {
			return err
		}
		return errLostInTest
	case rollbackThenLose:
		tx.Tx.Rollback()
		return errLostInTest
	case commitThenServerError:
		if err := tx.Tx.Commit(); err != nil {
			return err
		}
		return &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command (test)"}
	case loseThenCommitLater, loseThenCommitMuchLater:
		delay := 300 * time.Millisecond
		if commitFault(tx.fc.c.fault.Load()) == loseThenCommitMuchLater {
			delay = 3 * time.Second
		}
		tx.fc.pending.Add(1)
		go func() {
			defer tx.fc.pending.Done()
			time.Sleep(delay)
			tx.Tx.Commit()
		}()
		return errLostInTest
	}
	return tx.Tx.Commit()
}

// faultyPostgres opens the test database through a faultyConnector, with
// a schema of its own for the test.
func faultyPostgres(t *testing.T) (*faultyConnector, *sql.DB, string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	fc := &faultyConnector{Connector: stdlib.GetConnector(*cfg)}
	db := sql.OpenDB(fc)
	t.Cleanup(func() { db.Close() })
	return fc, db, pgtest.Schema(t, pgtest.DB(t))
}

// TestPostgresConnectionLostDuringCommit: when the connection is lost
// during COMMIT, InsertEvents finds out whether the transaction committed
// and says so truly: success with the IDs the events are recorded under if
// it did (also when the COMMIT was still on its way when the connection
// broke), an error that is retryable and says nothing was written if it
// did not. Alone and in group commit.
func TestPostgresConnectionLostDuringCommit(t *testing.T) {
	fc, db, schema := faultyPostgres(t)
	for _, c := range []struct {
		name      string
		fault     commitFault
		committed bool
	}{
		{"CommittedThenLost", commitThenLose, true},
		{"LostBeforeCommit", rollbackThenLose, false},
		{"LostWhileCommitOnItsWay", loseThenCommitLater, true},
	} {
		for _, callers := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/%dcallers", c.name, callers), func(t *testing.T) {
				ctx := context.Background()
				r := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{NoAppendFunction: true, Table: pgtestName("ev"), TrackingTable: pgtestName("tr"),
					MaxGroupDelay: 20 * time.Millisecond, MaxGroupSize: callers})
				if callers == 1 {
					r = newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{NoAppendFunction: true, Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
				}
				fc.fault.Store(int32(c.fault))
				defer fc.fault.Store(int32(noFault))
				ids := make([]uuid.UUID, callers)
				got := make([][]int64, callers)
				errs := make([]error, callers)
				var wg sync.WaitGroup
				for i := range callers {
					ids[i] = uuid.New()
					wg.Add(1)
					go func() {
						defer wg.Done()
						got[i], errs[i] = r.InsertEvents(ctx, []es.StoredEvent{
							{OriginatorID: ids[i], OriginatorVersion: 1, Topic: "t", State: []byte("a")},
							{OriginatorID: ids[i], OriginatorVersion: 2, Topic: "t", State: []byte("b")},
						}, nil)
					}()
				}
				wg.Wait()
				fc.fault.Store(int32(noFault))
				if st := r.Stats(); callers > 1 && st.Transactions > 1 {
					t.Logf("the callers took %d transactions", st.Transactions)
				}
				for i := range callers {
					evs, err := r.SelectEvents(ctx, ids[i], nil)
					if err != nil {
						t.Fatal(err)
					}
					if c.committed {
						if errs[i] != nil || len(got[i]) != 2 {
							t.Fatalf("caller %d: %v, IDs %v; want success: the transaction committed", i, errs[i], got[i])
						}
						ns, err := r.SelectNotifications(ctx, got[i][0], 2, nil)
						if err != nil || len(ns) != 2 || ns[0].OriginatorID != ids[i] || ns[1].ID != got[i][1] || ns[1].OriginatorVersion != 2 {
							t.Errorf("caller %d: IDs %v do not name its events: %+v, %v", i, got[i], ns, err)
						}
						continue
					}
					if errs[i] == nil || !es.IsRetryable(errs[i]) || !strings.Contains(errs[i].Error(), "nothing of it was written") {
						t.Errorf("caller %d: %v; want a retryable error saying nothing was written", i, errs[i])
					}
					if len(evs) != 0 {
						t.Errorf("caller %d: %d events recorded after an error", i, len(evs))
					}
					if _, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: ids[i], OriginatorVersion: 1, Topic: "t"}}, nil); err != nil {
						t.Errorf("caller %d: the retry failed: %v", i, err)
					}
				}
			})
		}
	}
}

// TestPostgresConnectionLostDuringCommitHonoursContext: the check after a
// lost COMMIT waits for the append lock, which a COMMIT still on its way
// holds; a caller whose context ends meanwhile leaves with an error saying
// the outcome could not be checked (retryable), not after the check's own
// timeout.
func TestPostgresConnectionLostDuringCommitHonoursContext(t *testing.T) {
	fc, db, schema := faultyPostgres(t)
	r := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{NoAppendFunction: true, Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	fc.fault.Store(int32(loseThenCommitMuchLater))
	start := time.Now()
	_, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: "t"}}, nil)
	took := time.Since(start)
	fc.fault.Store(int32(noFault))
	if took > 2*time.Second {
		t.Errorf("InsertEvents returned after %v, its context ended after 700 ms", took)
	}
	switch {
	case err != nil && strings.Contains(err.Error(), "could not be checked") && strings.Contains(err.Error(), "deadline exceeded") && es.IsRetryable(err):
	case errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "COMMIT"):
		t.Skipf("the deadline ended the call before its COMMIT (a loaded machine): %v", err)
	default:
		t.Errorf("InsertEvents: %v; want a retryable error saying the outcome could not be checked", err)
	}
}

// TestPostgresCommitErrorsAreChecked: a COMMIT whose outcome is open is
// checked, whatever its error looks like and whatever was written:
//   - an error sent by the server (a terminated backend's FATAL 57P01, as
//     pgx returns a *pgconn.PgError) after the server committed is not a
//     "nothing written" error: the check finds the events;
//   - with a short LockTimeout, the check still waits for the lock that a
//     COMMIT on its way holds (its own bound, not LockTimeout);
//   - a transaction of tracking records alone (single- and multi-row) is
//     checked by its tracking record, not reported unknown.
func TestPostgresCommitErrorsAreChecked(t *testing.T) {
	fc, db, schema := faultyPostgres(t)
	ctx := context.Background()
	newRec := func(t *testing.T, opts es.SQLOptions) *es.SQLRecorder {
		opts.Table, opts.TrackingTable = pgtestName("ev"), pgtestName("tr")
		opts.NoAppendFunction = true // COMMIT's faults: the transaction path
		return newSQLRecorder(t, db, postgres.Dialect{}, schema, opts)
	}
	fault := func(t *testing.T, f commitFault) {
		fc.fault.Store(int32(f))
		t.Cleanup(func() { fc.fault.Store(int32(noFault)) })
	}
	events := func(id uuid.UUID) []es.StoredEvent {
		return []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: "t", State: []byte("x")}}
	}
	for _, c := range []struct {
		name  string
		opts  es.SQLOptions
		fault commitFault
	}{
		{"ServerErrorAfterCommit", es.SQLOptions{}, commitThenServerError},
		{"ServerErrorAfterCommit/NoGroup", es.SQLOptions{MaxGroupSize: 1}, commitThenServerError},
		{"ShortLockTimeout", es.SQLOptions{LockTimeout: 5 * time.Millisecond}, loseThenCommitLater},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRec(t, c.opts)
			fault(t, c.fault)
			id := uuid.New()
			got, err := r.InsertEvents(ctx, events(id), nil)
			fc.fault.Store(int32(noFault))
			evs, serr := r.SelectEvents(ctx, id, nil)
			if serr != nil {
				t.Fatal(serr)
			}
			if err != nil || len(got) != 1 || len(evs) != 1 {
				t.Errorf("InsertEvents: IDs %v, %v, %d events stored; want success: the transaction committed", got, err, len(evs))
			}
		})
	}
	for _, multi := range []bool{false, true} {
		for _, f := range []commitFault{commitThenLose, rollbackThenLose} {
			t.Run(fmt.Sprintf("TrackingOnly/MultiRow=%v/%v", multi, f == commitThenLose), func(t *testing.T) {
				r := newRec(t, es.SQLOptions{MultiRowTracking: multi})
				if _, err := r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: "up", NotificationID: 3}); err != nil {
					t.Fatal(err)
				}
				fault(t, f)
				_, err := r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: "up", NotificationID: 5})
				fc.fault.Store(int32(noFault))
				max, merr := r.MaxTrackingID(ctx, "up")
				if merr != nil {
					t.Fatal(merr)
				}
				if f == commitThenLose {
					if err != nil || max != 5 {
						t.Errorf("tracking record committed, reply lost: %v, tracked up to %d; want success, 5", err, max)
					}
					return
				}
				if err == nil || errors.Is(err, es.ErrOutcomeUnknown) || !strings.Contains(err.Error(), "nothing of it was written") || max != 3 {
					t.Errorf("tracking record rolled back, reply lost: %v, tracked up to %d; want an error saying nothing was written, 3", err, max)
				}
			})
		}
	}
}

// TestPostgresMultiRowTrackingSerialised: two writers of one application
// name's multi-row tracking records, each a batch (First..NotificationID)
// overlapping the other's, with tracking records alone: the first is slow
// between its check of First and its INSERT. Exactly one commits; the
// other is ErrIntegrity. (Under READ COMMITTED with no lock, both
// committed.)
func TestPostgresMultiRowTrackingSerialised(t *testing.T) {
	fc, db, schema := faultyPostgres(t)
	ctx := context.Background()
	tracking := pgtestName("tr")
	r := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{NoAppendFunction: true, Table: pgtestName("ev"), TrackingTable: tracking, MultiRowTracking: true, MaxGroupSize: 1})
	fc.slowInsertInto.Store(&tracking)
	defer fc.slowInsertInto.Store(nil)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, errs[0] = r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: "up", First: 1, NotificationID: 5})
	}()
	time.Sleep(100 * time.Millisecond) // the first is past its check, before its INSERT
	go func() {
		defer wg.Done()
		_, errs[1] = r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: "up", First: 3, NotificationID: 7})
	}()
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, es.ErrIntegrity):
			t.Errorf("writer %d: %v; want success or ErrIntegrity", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 2 overlapping tracking batches committed (%v), want exactly 1", ok, errs)
	}
}
