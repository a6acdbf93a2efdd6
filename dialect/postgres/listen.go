package postgres

// LISTEN: the Listener of the PostgreSQL dialect.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	es "github.com/seed06b138f8/eventsourcing"
)

var _ es.Listener = Dialect{}

// Backoff between attempts to (re)establish a listen connection.
const (
	listenMinBackoff = 50 * time.Millisecond
	listenMaxBackoff = 5 * time.Second
)

var errNotPgx = errors.New("not a pgx stdlib connection")

// Listen holds one connection of db with LISTEN on the events table's
// channel (see [Channel]), calling wake for each notification and each time
// LISTEN succeeds, until ctx ends. The connection is taken from db's pool
// with (*sql.Conn).Raw, which reaches pgx's connection and its
// WaitForNotification, so it counts against db's open connection limit
// while it is held; it is closed, never returned to the pool, when Listen
// stops using it. A failed or killed connection is replaced after a backoff
// from 50 ms doubling to 5 s. Listen returns at once if db's driver is not
// pgx's stdlib.
//
// LISTEN needs a session: behind a pooler in transaction mode it may never
// hear anything, and subscribers then find events by polling.
func (d Dialect) Listen(ctx context.Context, db *sql.DB, events es.Table, wake func()) {
	stmt := "LISTEN " + d.QuoteIdentifier(Channel(events))
	backoff := listenMinBackoff
	for ctx.Err() == nil {
		listened, err := listenOnce(ctx, db, stmt, wake)
		if ctx.Err() != nil || errors.Is(err, errNotPgx) {
			return
		}
		if listened {
			backoff = listenMinBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

// listenOnce listens on one connection until it fails or ctx ends,
// reporting whether LISTEN succeeded.
func listenOnce(ctx context.Context, db *sql.DB, stmt string, wake func()) (listened bool, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("%w (%T)", errNotPgx, dc)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, stmt); err != nil {
			// The connection may be good, but it may not: discard it.
			return errors.Join(err, driver.ErrBadConn)
		}
		listened = true
		wake()
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				// Never hand a listening session back to the pool.
				return errors.Join(err, driver.ErrBadConn)
			}
			wake()
		}
	})
	return listened, err
}
