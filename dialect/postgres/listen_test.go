package postgres_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
	"time"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

func TestChannelIsPythonChannelName(t *testing.T) {
	// Python 9.5: channel_name = events_table_name.replace(".", "_"), the
	// schema (POSTGRES_SCHEMA) kept apart.
	for _, tc := range []struct {
		table es.Table
		want  string
	}{
		{es.Table{Name: "bankaccounts_events"}, "bankaccounts_events"},
		{es.Table{Schema: "myschema", Name: "bankaccounts_events"}, "bankaccounts_events"},
	} {
		if got := postgres.Channel(tc.table); got != tc.want {
			t.Errorf("Channel(%v) = %q, want %q", tc.table, got, tc.want)
		}
	}
	if got, want := (postgres.Dialect{}).NotifyStatement(es.Table{Schema: "s", Name: "app_events"}), `NOTIFY "app_events"`; got != want {
		t.Errorf("NotifyStatement = %q, want %q", got, want)
	}
}

// wakes counts wake calls on a channel.
func wakes() (chan struct{}, func()) {
	ch := make(chan struct{}, 100)
	return ch, func() { ch <- struct{}{} }
}

func waitWake(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake-up: %s", what)
	}
}

func listenPID(t *testing.T, db *sql.DB, channel string) int {
	t.Helper()
	var pid int
	err := db.QueryRow(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN "' || $1 || '"'`, channel).Scan(&pid)
	if err != nil {
		t.Fatalf("listen session: %v", err)
	}
	return pid
}

func TestListen(t *testing.T) {
	db := pgtest.DB(t)
	table := es.Table{Name: pgtest.UniqueName("ch")}
	channel := postgres.Channel(table)
	inUse := db.Stats().InUse
	ctx, cancel := context.WithCancel(context.Background())
	ch, wake := wakes()
	done := make(chan struct{})
	go func() {
		defer close(done)
		postgres.Dialect{}.Listen(ctx, db, table, wake)
	}()
	waitWake(t, ch, "when LISTEN succeeded")
	if got := db.Stats().InUse; got != inUse+1 {
		t.Errorf("%d connections in use while listening, want %d", got, inUse+1)
	}
	if _, err := db.Exec(`NOTIFY "` + channel + `"`); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "on NOTIFY")

	// Kill the listen session: it listens again on a new one.
	pid := listenPID(t, db, channel)
	if _, err := db.Exec("SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "after reconnecting")
	if again := listenPID(t, db, channel); again == pid {
		t.Fatalf("still listening on the killed session %d", pid)
	}
	if _, err := db.Exec(`NOTIFY "` + channel + `"`); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "on NOTIFY after reconnecting")

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return within 5 s of its context's end")
	}
	if got := db.Stats().InUse; got != inUse {
		t.Errorf("%d connections in use after Listen returned, want %d", got, inUse)
	}
	var n int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN "' || $1 || '"'`, channel).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 || time.Now().After(deadline) {
			break
		}
	}
	if n != 0 {
		t.Errorf("%d sessions still listening after Listen returned: the connection went back to the pool", n)
	}
}

// A database whose driver is not pgx's: Listen gives up at once.
type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return fakeConn{}, nil }

type fakeConn struct{}

func (fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fake") }
func (fakeConn) Close() error                        { return nil }
func (fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fake") }

func TestListenOtherDriver(t *testing.T) {
	sql.Register("es-fake-listen", fakeDriver{})
	db, err := sql.Open("es-fake-listen", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		postgres.Dialect{}.Listen(context.Background(), db, es.Table{Name: "events"}, func() { t.Error("woken") })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Listen kept trying with a driver that is not pgx")
	}
}
