// ReplicatedSnapshotRecorder: snapshots recorded on the primary and read
// from a ReplicatedRecorder's standbys.

package eventsourcing

import (
	"context"
	"database/sql"

	"github.com/google/uuid"
)

// ReplicatedSnapshotRecorder reads snapshots from the standbys of a
// [ReplicatedRecorder] (the same checks, lag bound and read-your-writes
// positions) and records them on the primary.
type ReplicatedSnapshotRecorder struct {
	primary *SQLSnapshotRecorder
	r       *ReplicatedRecorder
	recs    []lazyRecorder[*SQLSnapshotRecorder]
}

var _ AggregateRecorder = (*ReplicatedSnapshotRecorder)(nil)

// Snapshots returns a snapshot recorder that records on primary (a
// snapshot recorder on the same primary database) and reads from the
// recorder's standbys.
func (r *ReplicatedRecorder) Snapshots(primary *SQLSnapshotRecorder) *ReplicatedSnapshotRecorder {
	return &ReplicatedSnapshotRecorder{primary: primary, r: r, recs: make([]lazyRecorder[*SQLSnapshotRecorder], len(r.set.sb))}
}

// InsertEvents records snapshots on the primary (and, with ReadYourWrites,
// keeps the position after them, as ReplicatedRecorder.InsertEvents does).
func (s *ReplicatedSnapshotRecorder) InsertEvents(ctx context.Context, snapshots []StoredEvent, tracking *Tracking) ([]int64, error) {
	ids, err := s.primary.InsertEvents(ctx, snapshots, tracking)
	s.r.afterWrite(ctx, err)
	return ids, err
}

// SelectEvents reads snapshots from a standby (or the primary).
func (s *ReplicatedSnapshotRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	var out []StoredEvent
	mk := func(ctx context.Context, db *sql.DB) (*SQLSnapshotRecorder, error) {
		return NewSQLSnapshotRecorder(ctx, db, s.primary.r.d, &SQLOptions{Table: s.primary.r.events.Name, Schema: s.primary.r.events.Schema})
	}
	err := routeRead(ctx, s.r.set, s.r.required(ctx), s.recs, mk, s.primary, &s.r.primReads, func(rec *SQLSnapshotRecorder) (err error) {
		out, err = rec.SelectEvents(ctx, originatorID, q)
		return err
	})
	return out, err
}

// CreateTables creates the snapshots table on the primary.
func (s *ReplicatedSnapshotRecorder) CreateTables(ctx context.Context) error {
	return s.primary.CreateTables(ctx)
}
