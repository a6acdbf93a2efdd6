package eventsourcing_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// TestContextErrorOneLine: an error of a call whose context ended prints
// on one line, naming the cause once, and still matches both the cause
// and ErrOperational. (It printed "...: context deadline exceeded\ncontext
// deadline exceeded", from errors.Join.)
func TestContextErrorOneLine(t *testing.T) {
	db, d, _ := sqliteFile(t)
	r := newSQLRecorder(t, db, d, "", es.SQLOptions{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := r.SelectEvents(ctx, uuid.New(), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, es.ErrOperational) {
		t.Fatalf("expired deadline: %v, want ErrOperational and context.DeadlineExceeded", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || strings.Count(msg, "context deadline exceeded") != 1 {
		t.Errorf("expired deadline: %q, want one line naming the deadline once", msg)
	}

	cause := errors.New("shutting down")
	cctx, ccancel := context.WithCancelCause(context.Background())
	ccancel(cause)
	_, err = r.SelectEvents(cctx, uuid.New(), nil)
	if !errors.Is(err, cause) || !errors.Is(err, context.Canceled) || !errors.Is(err, es.ErrOperational) {
		t.Fatalf("cancelled with a cause: %v, want ErrOperational, the cause and context.Canceled", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "shutting down") {
		t.Errorf("cancelled with a cause: %q, want one line naming the cause", msg)
	}
}

// TestScanErrorAfterContextEnds: a row scan that fails once the caller's
// context has ended reports the context's error (ErrOperational, matching
// context.DeadlineExceeded), not ErrData: the row is not known to be bad,
// the caller's deadline is what ended the read. (Every Scan error was
// ErrData.) The fault driver ends the context while it hands a row over
// and spoils the row's first column, so the Scan fails either way.
func TestScanErrorAfterContextEnds(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "scan.db")
	plain, err := sqlite.Open(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	setup := newSQLRecorder(t, plain, sqlite.Dialect{}, "", es.SQLOptions{})
	id := uuid.New()
	if _, err := setup.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: "t", State: []byte("{}")}}, nil); err != nil {
		t.Fatal(err)
	}
	fc := &scanFaultConnector{drv: plain.Driver(), dsn: "file:" + path}
	db := sql.OpenDB(fc)
	defer db.Close()
	r, err := es.NewSQLRecorder(ctx, db, sqlite.Dialect{}, &es.SQLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, read := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"SelectEvents", func(ctx context.Context) error { _, err := r.SelectEvents(ctx, id, nil); return err }},
		{"SelectNotifications", func(ctx context.Context) error {
			_, err := r.SelectNotifications(ctx, 1, 10, nil)
			return err
		}},
	} {
		t.Run(read.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			fc.cancel.Store(&cancel)
			defer fc.cancel.Store(nil)
			err := read.fn(ctx)
			if ctx.Err() == nil {
				t.Fatal("the fault driver did not end the context")
			}
			if errors.Is(err, es.ErrData) || !errors.Is(err, context.Canceled) || !errors.Is(err, es.ErrOperational) {
				t.Errorf("scan after the context ended: %v, want ErrOperational matching context.Canceled, not ErrData", err)
			}
		})
	}
	// The fault driver, unarmed, reads the row.
	if evs, err := r.SelectEvents(ctx, id, nil); err != nil || len(evs) != 1 {
		t.Errorf("unarmed: %v, %v", evs, err)
	}
}

// scanFaultConnector opens connections of drv whose query rows, while a
// cancel function is armed, call it on handing over a row and put a
// string in the row's first column (an integer column: the Scan fails).
type scanFaultConnector struct {
	drv    driver.Driver
	dsn    string
	cancel atomic.Pointer[context.CancelFunc]
}

func (c *scanFaultConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &scanFaultConn{Conn: conn, c: c}, nil
}

func (c *scanFaultConnector) Driver() driver.Driver { return c.drv }

type scanFaultConn struct {
	driver.Conn
	c *scanFaultConnector
}

func (fc *scanFaultConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return fc.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (fc *scanFaultConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return fc.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (fc *scanFaultConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := fc.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
	if err != nil {
		return nil, err
	}
	return &scanFaultRows{Rows: rows, c: fc.c}, nil
}

func (fc *scanFaultConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	s, err := fc.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &scanFaultStmt{Stmt: s, c: fc.c}, nil
}

type scanFaultStmt struct {
	driver.Stmt
	c *scanFaultConnector
}

func (s *scanFaultStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (s *scanFaultStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	return &scanFaultRows{Rows: rows, c: s.c}, nil
}

type scanFaultRows struct {
	driver.Rows
	c *scanFaultConnector
}

func (r *scanFaultRows) Next(dest []driver.Value) error {
	if err := r.Rows.Next(dest); err != nil {
		return err
	}
	if cancel := r.c.cancel.Load(); cancel != nil {
		(*cancel)()
		dest[0] = "not a number"
	}
	return nil
}
