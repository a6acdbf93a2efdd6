package eventsourcing

// MemoryRecorder: a process recorder in memory, with the SQL recorders'
// semantics.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/google/uuid"
)

// MemoryRecorder is a process recorder that keeps everything in memory,
// with exactly the semantics of the SQL recorders: for tests, prototypes and
// applications whose events need not outlive the process. It is safe for
// concurrent use. The zero value is an empty recorder, ready to use, as
// is one from NewMemoryRecorder.
type MemoryRecorder struct {
	// Observer, if not nil, is told about every insert (OpGroupCommit, one
	// call each) and every page of the notification log read
	// (OpSelectNotifications). Set it before the recorder is first used.
	Observer Observer

	mu         sync.RWMutex
	log        [][]Notification // chunks of logChunk notifications, IDs from 1
	n          int64            // notifications recorded
	aggregates map[uuid.UUID][]int64
	tracking   map[string]int64
	commits    commitSignal // broadcast after each insert
}

func (r *MemoryRecorder) obs() Observer { return r.Observer }

const logChunk = 4096

var _ ProcessRecorder = (*MemoryRecorder)(nil)

// NewMemoryRecorder returns an empty memory recorder.
func NewMemoryRecorder() *MemoryRecorder {
	return new(MemoryRecorder)
}

func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return &DatabaseError{Kind: ErrOperational, Op: op, Err: err}
	}
	return nil
}

func (r *MemoryRecorder) at(id int64) *Notification {
	i := id - 1
	return &r.log[i/logChunk][i%logChunk]
}

// InsertEvents records the events and, if tracking is not nil, the tracking
// record, atomically. A duplicate (originator ID, version) is an
// *[IntegrityError]; so is a tracking record whose notification ID is not
// higher than the last one recorded for its application. On error nothing
// is recorded.
func (r *MemoryRecorder) InsertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	o := r.obs()
	if o == nil {
		return r.insertChecked(ctx, events, tracking)
	}
	ctx, end := observe(ctx, o, Op{Kind: OpGroupCommit, Table: "events", Calls: 1, Events: len(events)})
	ids, err := r.insertChecked(ctx, events, tracking)
	res := OpResult{Err: err}
	if err == nil {
		res.Calls, res.Rows = 1, len(ids)
		if len(ids) > 0 {
			res.LastID = ids[len(ids)-1]
		}
	}
	end(res)
	return ids, err
}

func (r *MemoryRecorder) insertChecked(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	ids, err := r.insertEvents(ctx, events, tracking)
	if err != nil {
		return nil, err
	}
	return checkIDs("events", ids, len(events))
}

func (r *MemoryRecorder) insertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	if err := ctxErr(ctx, "insert events"); err != nil {
		return nil, err
	}
	if tracking != nil {
		if err := checkTrackingRecord(tracking); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.aggregates == nil { // a zero MemoryRecorder
		r.aggregates, r.tracking = map[uuid.UUID][]int64{}, map[string]int64{}
	}
	if tracking != nil {
		if last, ok := r.tracking[tracking.ApplicationName]; ok && tracking.lowest() <= last {
			tr := *tracking
			return nil, &IntegrityError{Table: "tracking", Tracking: &tr,
				Err: fmt.Errorf("notification %d of %q is not after the last tracked, %d", tracking.lowest(), tracking.ApplicationName, last)}
		}
	}
	// Duplicates within the batch: a set once the batch is big enough for
	// the quadratic scan to cost more than the map.
	type key struct {
		id uuid.UUID
		v  int64
	}
	var seen map[key]struct{}
	if len(events) > 16 {
		seen = make(map[key]struct{}, len(events))
	}
	for i, e := range events {
		dup := r.find(e.OriginatorID, e.OriginatorVersion) >= 0
		if !dup && seen != nil {
			k := key{e.OriginatorID, e.OriginatorVersion}
			_, dup = seen[k]
			seen[k] = struct{}{}
		} else if !dup {
			dup = slices.ContainsFunc(events[:i], func(o StoredEvent) bool {
				return o.OriginatorID == e.OriginatorID && o.OriginatorVersion == e.OriginatorVersion
			})
		}
		if dup {
			return nil, &IntegrityError{Table: "events", OriginatorID: e.OriginatorID, Version: e.OriginatorVersion}
		}
	}
	ids := make([]int64, len(events))
	for i, e := range events {
		r.n++
		id := r.n
		if (id-1)%logChunk == 0 {
			r.log = append(r.log, make([]Notification, 0, logChunk))
		}
		c := &r.log[len(r.log)-1]
		e.State = slices.Clone(e.State)
		*c = append(*c, Notification{ID: id, StoredEvent: e})
		seq := r.aggregates[e.OriginatorID]
		// Keep each aggregate's IDs sorted by version.
		j := sort.Search(len(seq), func(k int) bool { return r.at(seq[k]).OriginatorVersion > e.OriginatorVersion })
		r.aggregates[e.OriginatorID] = slices.Insert(seq, j, id)
		ids[i] = id
	}
	if tracking != nil {
		r.tracking[tracking.ApplicationName] = tracking.NotificationID
	}
	r.commits.broadcast()
	return ids, nil
}

// find returns the notification ID of an aggregate's version, or -1.
func (r *MemoryRecorder) find(id uuid.UUID, version int64) int64 {
	seq := r.aggregates[id]
	j := sort.Search(len(seq), func(k int) bool { return r.at(seq[k]).OriginatorVersion >= version })
	if j < len(seq) && r.at(seq[j]).OriginatorVersion == version {
		return seq[j]
	}
	return -1
}

// SelectEvents returns an aggregate's events within the query's bounds.
func (r *MemoryRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	if err := ctxErr(ctx, "select events"); err != nil {
		return nil, err
	}
	if q == nil {
		q = &Query{}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	seq := r.aggregates[originatorID]
	lo := sort.Search(len(seq), func(k int) bool {
		v := r.at(seq[k]).OriginatorVersion
		return (q.GT == 0 || v > q.GT) && (q.GTE == 0 || v >= q.GTE)
	})
	hi := sort.Search(len(seq), func(k int) bool {
		v := r.at(seq[k]).OriginatorVersion
		return (q.LT != 0 && v >= q.LT) || (q.LTE != 0 && v > q.LTE)
	})
	if hi < lo {
		hi = lo
	}
	n := hi - lo
	if q.Limit > 0 && q.Limit < n {
		n = q.Limit
	}
	out := make([]StoredEvent, n)
	for i := range n {
		k := lo + i
		if q.Desc {
			k = hi - 1 - i
		}
		e := r.at(seq[k]).StoredEvent
		e.State = slices.Clone(e.State)
		out[i] = e
	}
	return out, nil
}

// SelectNotifications returns at most limit notifications from start.
func (r *MemoryRecorder) SelectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	o := r.obs()
	if o == nil {
		return r.selectNotifications(ctx, start, limit, q)
	}
	ctx, end := observe(ctx, o, Op{Kind: OpSelectNotifications, Table: "events", Start: start, Limit: limit})
	out, err := r.selectNotifications(ctx, start, limit, q)
	end(OpResult{Rows: len(out), LastID: lastNotificationID(out), Err: err})
	return out, err
}

func (r *MemoryRecorder) selectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	if err := ctxErr(ctx, "select notifications"); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: notification limit %d, want > 0", ErrProgramming, limit)
	}
	if q == nil {
		q = &NotificationQuery{}
	}
	if q.ExclusiveStart {
		start++
	}
	start = max(start, 1)
	r.mu.RLock()
	defer r.mu.RUnlock()
	end := r.n
	if q.Stop > 0 {
		end = min(end, q.Stop)
	}
	var out []Notification
	for id := start; id <= end && len(out) < limit; id++ {
		n := *r.at(id)
		if len(q.Topics) > 0 && !slices.Contains(q.Topics, n.Topic) {
			continue
		}
		n.State = slices.Clone(n.State)
		out = append(out, n)
	}
	return out, nil
}

// MaxNotificationID returns the highest notification ID, or 0.
func (r *MemoryRecorder) MaxNotificationID(ctx context.Context) (int64, error) {
	if err := ctxErr(ctx, "max notification id"); err != nil {
		return 0, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n, nil
}

// MaxTrackingID returns the highest notification ID tracked for the
// upstream application, or 0.
func (r *MemoryRecorder) MaxTrackingID(ctx context.Context, applicationName string) (int64, error) {
	if err := ctxErr(ctx, "max tracking id"); err != nil {
		return 0, err
	}
	if err := checkTrackingName(applicationName); err != nil {
		return 0, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tracking[applicationName], nil
}

// HasTrackingID reports whether the upstream notification was processed.
func (r *MemoryRecorder) HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error) {
	last, err := r.MaxTrackingID(ctx, applicationName)
	if err != nil {
		return false, err
	}
	_, tracked := r.trackingOf(applicationName)
	return tracked && notificationID <= last, nil
}

func (r *MemoryRecorder) trackingOf(app string) (int64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	id, ok := r.tracking[app]
	return id, ok
}

// Wake calls wake after each commit of events or tracking records by this
// recorder. The recorder is in memory, so listen changes nothing.
func (r *MemoryRecorder) Wake(ctx context.Context, listen bool, wake func()) {
	followSignal(ctx, &r.commits, wake)
}
