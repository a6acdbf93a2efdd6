package eventsourcing

// SQLSnapshotRecorder: an aggregate recorder on a snapshots table.

import (
	"context"
	"database/sql"

	"github.com/google/uuid"
)

// SQLSnapshotRecorder records snapshots in an SQL table (the Python
// library's stored_snapshots, or <app>_snapshots on PostgreSQL): an
// [AggregateRecorder] with no notification log and no tracking records.
// It is a type of its own so that the compiler refuses one where an
// application or process recorder is needed. It is safe for concurrent
// use.
type SQLSnapshotRecorder struct {
	r *SQLRecorder
}

var _ AggregateRecorder = (*SQLSnapshotRecorder)(nil)

// NewSQLSnapshotRecorder returns a snapshot recorder on db with dialect d.
// opts are those of [NewSQLRecorder]: AppName and Schema choose the
// default table, Table overrides it, and the tracking options are ignored.
// It does not create the table: call CreateTables.
func NewSQLSnapshotRecorder(ctx context.Context, db *sql.DB, d Dialect, opts *SQLOptions) (*SQLSnapshotRecorder, error) {
	r, err := newSQLRecorder(ctx, db, d, opts, true)
	if err != nil {
		return nil, err
	}
	return &SQLSnapshotRecorder{r: r}, nil
}

// InsertEvents records snapshots atomically; two snapshots of one
// aggregate version are an *[IntegrityError]. A tracking record is
// ErrProgramming. The context is honoured as [SQLRecorder.InsertEvents]
// honours it. It returns no notification IDs.
func (s *SQLSnapshotRecorder) InsertEvents(ctx context.Context, snapshots []StoredEvent, tracking *Tracking) ([]int64, error) {
	return s.r.insertEvents(ctx, snapshots, tracking)
}

// SelectEvents returns an aggregate's snapshots within the query's bounds.
func (s *SQLSnapshotRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	return s.r.SelectEvents(ctx, originatorID, q)
}

// CreateTables creates the snapshots table if it does not exist.
func (s *SQLSnapshotRecorder) CreateTables(ctx context.Context) error { return s.r.CreateTables(ctx) }

// Table returns the snapshots table.
func (s *SQLSnapshotRecorder) Table() Table { return s.r.events }

// DB returns the recorder's database.
func (s *SQLSnapshotRecorder) DB() *sql.DB { return s.r.db }
