package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// shortLock opens b's database with a write lock wait of at most
// timeout (SQLite's busy timeout is the connection's, not the
// recorder's: the file is opened again with it; on PostgreSQL the
// recorder's LockTimeout must be set to it too).
func shortLock(t *testing.T, b lockedBackend, timeout time.Duration) (*sql.DB, es.Dialect, string, func(es.Table) func()) {
	t.Helper()
	db, d, schema, lock := b.open(t)
	if b.name != "SQLiteFile" {
		return db, d, schema, lock
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "short.db")
	db, err := sqlite.Open(ctx, path, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	other, err := sqlite.Open(ctx, path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return db, d, schema, func(es.Table) func() {
		tx, err := other.Begin() // BEGIN IMMEDIATE: the write lock
		if err != nil {
			t.Fatal(err)
		}
		return func() { tx.Rollback() }
	}
}

// TestGroupCommitLockFailureFailsQueuedCalls: while another session holds
// the events table's write lock, a leader and two queued callers insert
// with a short lock timeout. The leader's lock wait times out, then the
// queued calls' transaction's does too, before any of them was claimed:
// every caller must get an error (ErrLockTimeout) and nothing is written.
// (Group commit once closed the queued calls' done channels with neither
// IDs nor an error, which InsertEvents returned as success.)
func TestGroupCommitLockFailureFailsQueuedCalls(t *testing.T) {
	const lockTimeout = 100 * time.Millisecond
	for _, b := range lockedBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, d, schema, lock := shortLock(t, b, lockTimeout)
			opts := es.SQLOptions{AppName: "LockFails", LockTimeout: lockTimeout}
			r := newSQLRecorder(t, db, d, schema, opts)
			release := lock(r.EventsTable())
			ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
			type outcome struct {
				ids []int64
				err error
			}
			out := make([]outcome, len(ids))
			var wg sync.WaitGroup
			put := func(i int) {
				defer wg.Done()
				got, err := r.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: ids[i], OriginatorVersion: 1, Topic: "t"}}, nil)
				out[i] = outcome{got, err}
			}
			wg.Add(1)
			go put(0) // the leader: waits for the lock
			time.Sleep(lockTimeout / 4)
			wg.Add(2)
			go put(1) // queued behind it
			go put(2)
			wg.Wait()
			release()
			for i, o := range out {
				evs, err := r.SelectEvents(ctx, ids[i], nil)
				if err != nil {
					t.Fatal(err)
				}
				if o.err == nil {
					t.Errorf("caller %d: nil error with IDs %v and %d events stored; want ErrLockTimeout, nothing stored", i, o.ids, len(evs))
					continue
				}
				if !errors.Is(o.err, es.ErrLockTimeout) || len(evs) != 0 {
					t.Errorf("caller %d: %v, %d events stored; want ErrLockTimeout, nothing stored", i, o.err, len(evs))
				}
			}
		})
	}
}
