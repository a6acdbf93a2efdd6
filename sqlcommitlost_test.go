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
)

// faultyConnector wraps pgx's connector so that, while fault is set, a
// transaction's Commit loses the connection: it returns an error wrapping
// driver.ErrBadConn (so database/sql discards the connection), after
// doing what the fault says.
type faultyConnector struct {
	driver.Connector
	fault atomic.Int32
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
				r := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr"),
					MaxGroupDelay: 20 * time.Millisecond, MaxGroupSize: callers})
				if callers == 1 {
					r = newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
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
				if st := r.GroupStats(); callers > 1 && st.Transactions > 1 {
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
	r := newSQLRecorder(t, db, postgres.Dialect{}, schema, es.SQLOptions{Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
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
