package eventsourcing

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
type stmtCache struct {
	mu      sync.RWMutex
	stmts   map[string]*sql.Stmt
	pending map[string]bool
}

const maxStmts = 64

// get returns the prepared statement for query, or nil (run the query
// unprepared). On a miss it prepares the statement in the background, if
// there is room: the caller may hold the pool's only connection in a
// transaction (SQLite in memory), so it must not wait for one.
func (c *stmtCache) get(db *sql.DB, query string) *sql.Stmt {
	c.mu.RLock()
	s := c.stmts[query]
	c.mu.RUnlock()
	if s != nil {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.stmts[query]; s != nil || c.pending[query] || len(c.stmts)+len(c.pending) >= maxStmts {
		return s
	}
	if c.pending == nil {
		c.pending, c.stmts = map[string]bool{}, map[string]*sql.Stmt{}
	}
	c.pending[query] = true
	go func() {
		s, err := db.Prepare(query)
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.pending, query)
		if err == nil {
			c.stmts[query] = s
		}
		// On error (a closed database, a missing table) the query reports
		// the error when it runs; a later call prepares again.
	}()
	return nil
}

// txExec runs a statement in tx, prepared if it can be.
func (r *SQLRecorder) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if s := r.stmts.get(r.db, query); s != nil {
		return tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQuery runs a query in tx, prepared if it can be.
func (r *SQLRecorder) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if s := r.stmts.get(r.db, query); s != nil {
		return tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// query runs a query outside a transaction, prepared if it can be.
func (r *SQLRecorder) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := r.stmts.get(r.db, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return r.db.QueryContext(ctx, query, args...)
}
