package eventsourcing

// Prepared statements of the SQL recorder (single-writer databases).

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps prepared statements for the recorder's common query
// shapes (INSERTs of 1 to n rows, SELECTs), so that a statement is
// prepared once per connection rather than on every call: database/sql
// prepares a *sql.Stmt on each connection it runs on and keeps it there.
// It holds at most maxStmts statements; other shapes run unprepared.
//
// Statements are prepared outside transactions only: preparing takes a
// pool connection (SQLite in memory has one, which a transaction holds),
// and preparing an INSERT takes a lock on its table that the transaction's
// own LOCK TABLE would block (PostgreSQL). So the insert path prepares
// what it will need before it begins (prepareInserts), and inside the
// transaction only looks statements up.
//
// It is used on single-writer databases (SQLite), whose driver prepares
// every statement anew otherwise. pgx caches prepared statements per
// connection by itself; and on PostgreSQL, preparing an INSERT on another
// connection waits for the table lock (a session holding LOCK TABLE would
// block it without any lock_timeout).
type stmtCache struct {
	enabled bool
	mu      sync.RWMutex
	stmts   map[string]*sql.Stmt
}

const maxStmts = 64

// lookup returns the prepared statement for query, or nil.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stmts[query]
}

// prepare returns the prepared statement for query, preparing it if there
// is room, or nil (run the query unprepared). It must not be called in a
// transaction.
func (c *stmtCache) prepare(ctx context.Context, db *sql.DB, query string) *sql.Stmt {
	if !c.enabled {
		return nil
	}
	if s := c.lookup(query); s != nil {
		return s
	}
	c.mu.RLock()
	full := len(c.stmts) >= maxStmts
	c.mu.RUnlock()
	if full {
		return nil
	}
	s, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the query reports the error when it runs
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.stmts[query]; prev != nil {
		s.Close()
		return prev
	}
	if len(c.stmts) >= maxStmts {
		s.Close()
		return nil
	}
	if c.stmts == nil {
		c.stmts = map[string]*sql.Stmt{}
	}
	c.stmts[query] = s
	return s
}

// prepareInserts prepares, outside any transaction, the statements an
// insert of n events (and a tracking record) will run.
func (r *SQLRecorder) prepareInserts(ctx context.Context, n int, tracking bool) {
	if !r.stmts.enabled {
		return
	}
	if n > 0 {
		r.stmts.prepare(ctx, r.db, r.insertStatement(min(n, r.maxRows)))
	}
	if n > r.maxRows && n%r.maxRows != 0 {
		r.stmts.prepare(ctx, r.db, r.insertStatement(n%r.maxRows))
	}
	if tracking {
		r.stmts.prepare(ctx, r.db, r.trackSQL)
	}
}

// txExec runs a statement in tx, prepared if it was.
func (r *SQLRecorder) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if s := r.stmts.lookup(query); s != nil {
		return tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQuery runs a query in tx, prepared if it was.
func (r *SQLRecorder) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if s := r.stmts.lookup(query); s != nil {
		return tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// query runs a query outside a transaction, prepared if it can be.
func (r *SQLRecorder) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := r.stmts.prepare(ctx, r.db, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return r.db.QueryContext(ctx, query, args...)
}
