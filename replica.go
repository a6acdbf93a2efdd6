// ReplicatedRecorder: a recorder that writes to a PostgreSQL primary and
// routes reads to its standbys, its options, constructor, Close, Primary
// and Standbys, and the reads and writes it routes.

package eventsourcing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Defaults of [ReplicaOptions].
const (
	// DefaultMaxReplicaLag is how far behind the primary a standby may be
	// and still serve reads, and how long a read that asks for a position
	// waits for a standby before it goes to the primary.
	DefaultMaxReplicaLag = time.Second
	// DefaultReplicaCheckInterval is how often each standby's health and
	// lag are checked.
	DefaultReplicaCheckInterval = time.Second
)

// ReplicaOptions configures a [ReplicatedRecorder]. The zero value (and
// nil) skips standbys more than DefaultMaxReplicaLag behind, checks them
// every DefaultReplicaCheckInterval, and lets reads that do not ask for a
// position (see [ReadAfter] and [ReadYourWrites]) see a standby as it is.
type ReplicaOptions struct {
	// MaxLag is how far behind the primary a standby may be, in time, and
	// still serve reads; a standby further behind is skipped until a later
	// check finds it caught up. It is also the longest a read waits for a
	// standby to replay the position it asks for before it reads from the
	// primary instead, and the longest a write with read-your-writes waits
	// for the primary's position after it. Zero means DefaultMaxReplicaLag
	// (POSTGRES_MAX_REPLICA_LAG).
	MaxLag time.Duration
	// CheckInterval is how often each standby is checked: is it up, is it a
	// standby, how far behind is it. Zero means DefaultReplicaCheckInterval.
	CheckInterval time.Duration
	// ReadYourWrites makes every read wait for every write made through
	// this recorder before the read began (the primary's position after
	// each write): the whole process reads its own writes, at the cost of a
	// query to the primary after each write and of reads waiting for the
	// standby. [ReadYourWrites] does the same for one context's call chain.
	ReadYourWrites bool
}

// ReplicatedRecorder is a [ProcessRecorder] on a PostgreSQL primary and
// its hot standbys: writes, tracking records and tracking queries go to the
// primary, and reads (SelectEvents, SelectNotifications,
// MaxNotificationID, and so subscriptions and runners that follow its log)
// go to a standby, round robin, falling back to the primary.
//
// A standby applies the primary's commits in commit order, and the events
// table lock orders commits by notification ID, so a standby's
// notification log is always a prefix of the primary's (holes from
// rolled-back inserts included). Any mixture of standbys and primary
// therefore serves a subscription's "IDs above the last delivered" without
// skipping or repeating one: a standby that is behind returns fewer, never
// others.
//
// A standby that is down, is not a standby, or was more than MaxLag behind
// at its last check is skipped; a read that fails on a standby is served by
// the primary and the standby is skipped until a check finds it up again.
// Reads see a standby as it is unless they ask for a position
// ([ReadAfter], [ReadYourWrites], ReplicaOptions.ReadYourWrites). Standbys()
// gives each standby's lag and state; a [StandbyObserver] on the primary
// recorder (SQLOptions.Observer) is told them as they are checked.
//
// It checks each standby on a goroutine of its own: Close stops them. It is
// safe for concurrent use.
type ReplicatedRecorder struct {
	primary   *SQLRecorder
	set       *standbySet
	recs      []lazyRecorder[*SQLRecorder]
	ryw       bool
	writes    writePosition // after the recorder's writes, if ryw
	primReads atomic.Int64
	hubs      [2]wakeHub // without and with LISTEN
}

var (
	_ ProcessRecorder      = (*ReplicatedRecorder)(nil)
	_ Waker                = (*ReplicatedRecorder)(nil)
	_ partialEvents        = (*ReplicatedRecorder)(nil)
	_ partialNotifications = (*ReplicatedRecorder)(nil)
	_ partialEvents        = (*SQLRecorder)(nil)
	_ partialNotifications = (*SQLRecorder)(nil)
)

// lazyRecorder makes a standby's recorder when it is first needed (a
// standby down at start has none yet).
type lazyRecorder[T any] struct {
	mu  sync.Mutex
	rec atomic.Pointer[T]
}

func (l *lazyRecorder[T]) get(ctx context.Context, db *sql.DB, make func(context.Context, *sql.DB) (T, error)) (T, error) {
	if r := l.rec.Load(); r != nil {
		return *r, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rec.Load(); r != nil {
		return *r, nil
	}
	r, err := make(ctx, db)
	if err != nil {
		return r, err
	}
	l.rec.Store(&r)
	return r, nil
}

// NewReplicatedRecorder returns a recorder that writes to primary and reads
// from the standbys, each read through a recorder made by NewSQLRecorder on
// the standby's database with the primary's tables. It checks every
// standby once before it returns: a primary that is in recovery (a
// standby, which cannot take writes), or a "standby" that is not one, is
// an error matching ErrProgramming; a standby that is down is not an error
// (it is skipped until it is up), nor is an empty list (every read goes to
// the primary). The primary's dialect must be a [Replication]
// (PostgreSQL's is). Close stops the standbys' checks.
func NewReplicatedRecorder(ctx context.Context, primary *SQLRecorder, standbys []Standby, opts *ReplicaOptions) (*ReplicatedRecorder, error) {
	if primary == nil {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: nil primary", ErrProgramming)
	}
	if primary.snapshots {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: the primary records snapshots: use a recorder of events, and ReplicatedRecorder.Snapshots", ErrProgramming)
	}
	repl, ok := primary.d.(Replication)
	if !ok {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: the %s dialect has no standbys (it is not a Replication)", ErrProgramming, primary.d.Name())
	}
	// The primary must take writes.
	inRecovery, _, _, err := (&standbySet{repl: repl}).replicaState(ctx, primary.db)
	if err != nil {
		return nil, primary.dbError(ctx, "check primary", primary.events, err)
	}
	if inRecovery {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: the primary database is a standby (pg_is_in_recovery() is true) and cannot take writes: give the primary's *sql.DB as primary, and standbys as Standby", ErrProgramming)
	}
	set, err := newStandbySet(primary.db, repl, standbys, opts)
	if err != nil {
		return nil, err
	}
	set.observer = primary.observer
	r := &ReplicatedRecorder{primary: primary, set: set, recs: make([]lazyRecorder[*SQLRecorder], len(set.sb)), ryw: set.o.ReadYourWrites}
	if err := set.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// standbyOptions returns the options that make a recorder of the same
// tables as r.
func standbyOptions(r *SQLRecorder) *SQLOptions {
	return &SQLOptions{Table: r.events.Name, TrackingTable: r.tracking.Name, Schema: r.events.Schema,
		MultiRowTracking: r.multiRow, NoNotify: true, LockTimeout: r.lockTO, MaxRowsPerStatement: r.maxRows, Observer: r.observer}
}

// Primary returns the recorder on the primary.
func (r *ReplicatedRecorder) Primary() *SQLRecorder { return r.primary }

// Close stops checking the standbys and closes the databases it opened
// (Standby.Open); it closes neither the primary nor a Standby.DB. Reads
// after Close go to standbys as they were last found.
func (r *ReplicatedRecorder) Close() error {
	r.set.close()
	return nil
}

// Standbys returns each standby's status, in the order given.
func (r *ReplicatedRecorder) Standbys() []StandbyStatus {
	out := make([]StandbyStatus, len(r.set.sb))
	for i, sb := range r.set.sb {
		out[i] = sb.status()
	}
	return out
}

// Stats returns the primary recorder's counters (its writes) with
// PrimaryReads, how many reads the primary has served. Standbys gives
// each standby's.
func (r *ReplicatedRecorder) Stats() Stats {
	s := r.primary.Stats()
	s.PrimaryReads = r.primReads.Load()
	return s
}

// routeRead runs read on a standby's recorder, chosen for ctx's required
// position, and on the primary's if no standby can serve it or the
// standby's read fails (the standby is then skipped until a check finds it
// up).
func routeRead[T any](ctx context.Context, set *standbySet, need LSN, recs []lazyRecorder[T], make func(context.Context, *sql.DB) (T, error), primary T, primReads *atomic.Int64, read func(T) error) error {
	var tries []*standby
	if need == 0 {
		tries = set.usable()
	} else {
		sb, err := set.ready(ctx, need)
		if err != nil {
			return fmt.Errorf("eventsourcing: wait for a standby to replay %v: %w", need, err)
		}
		if sb != nil {
			tries = []*standby{sb}
		}
	}
	for _, sb := range tries {
		i := set.index(sb)
		rec, err := recs[i].get(ctx, sb.db.Load(), make)
		if err == nil {
			if err = read(rec); err == nil {
				sb.reads.Add(1)
				return nil
			}
		}
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, ErrOperational) {
			sb.down(err)
			continue
		}
		// Not the standby's health (a table the standby has not replayed
		// yet, say): the primary answers this one.
		break
	}
	primReads.Add(1)
	return read(primary)
}

func (r *ReplicatedRecorder) makeStandby(ctx context.Context, db *sql.DB) (*SQLRecorder, error) {
	return NewSQLRecorder(ctx, db, r.primary.d, standbyOptions(r.primary))
}

func (r *ReplicatedRecorder) read(ctx context.Context, read func(*SQLRecorder) error) error {
	return routeRead(ctx, r.set, r.required(ctx), r.recs, r.makeStandby, r.primary, &r.primReads, read)
}

// InsertEvents records events (and the tracking record) on the primary.
// With ReadYourWrites (the option, or a context from [ReadYourWrites]), it
// then reads the primary's position for the reads that follow, for at most
// MaxLag and within ctx: if it cannot, the write is still committed (the IDs
// and no error are returned), and the reads that must see it go to the
// primary until a later write's position covers it. After an error
// matching ErrOutcomeUnknown (the events may be recorded), those reads go
// to the primary too, where reading the events back tells.
func (r *ReplicatedRecorder) InsertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	ids, err := r.primary.InsertEvents(ctx, events, tracking)
	r.afterWrite(ctx, err)
	return ids, err
}

// afterWrite keeps what the reads that must see a write need to know,
// after a write that ended with err.
func (r *ReplicatedRecorder) afterWrite(ctx context.Context, err error) {
	switch {
	case err == nil:
		r.wrote(ctx)
	case errors.Is(err, ErrOutcomeUnknown):
		r.mayHaveWritten(ctx)
	}
}

// SelectEvents reads an aggregate's events from a standby (or the primary).
func (r *ReplicatedRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	var out []StoredEvent
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.SelectEvents(ctx, originatorID, q)
		return err
	})
	return out, err
}

// SelectNotifications reads notifications from a standby (or the primary):
// a prefix of the primary's log, so a page may end earlier than the
// primary's would, never differ.
func (r *ReplicatedRecorder) SelectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	var out []Notification
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.SelectNotifications(ctx, start, limit, q)
		return err
	})
	return out, err
}

// SelectNotificationsInto is SelectNotifications reusing dst, as
// [SQLRecorder.SelectNotificationsInto] does.
func (r *ReplicatedRecorder) SelectNotificationsInto(ctx context.Context, dst []Notification, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	var out []Notification
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.SelectNotificationsInto(ctx, dst, start, limit, q)
		return err
	})
	return out, err
}

// selectEventsPartial is SelectEvents that returns the events before a
// bad row with its error, as [SQLRecorder]'s does.
func (r *ReplicatedRecorder) selectEventsPartial(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	var out []StoredEvent
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.selectEventsPartial(ctx, originatorID, q)
		return err
	})
	return out, err
}

// selectNotificationsPartial is SelectNotifications that returns the
// notifications before a bad row with its error, as [SQLRecorder]'s does.
func (r *ReplicatedRecorder) selectNotificationsPartial(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	var out []Notification
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.selectNotificationsPartial(ctx, start, limit, q)
		return err
	})
	return out, err
}

// MaxNotificationID reads the highest notification ID from a standby (or
// the primary): the standby's, which may be below the primary's.
func (r *ReplicatedRecorder) MaxNotificationID(ctx context.Context) (int64, error) {
	var out int64
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.MaxNotificationID(ctx)
		return err
	})
	return out, err
}

// MaxTrackingID asks the primary: tracking records decide what a runner
// does next, so they are never read stale.
func (r *ReplicatedRecorder) MaxTrackingID(ctx context.Context, applicationName string) (int64, error) {
	return r.primary.MaxTrackingID(ctx, applicationName)
}

// HasTrackingID asks the primary, as MaxTrackingID does.
func (r *ReplicatedRecorder) HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error) {
	return r.primary.HasTrackingID(ctx, applicationName, notificationID)
}

// CreateTables creates the tables on the primary; standbys get them by
// replication.
func (r *ReplicatedRecorder) CreateTables(ctx context.Context) error {
	return r.primary.CreateTables(ctx)
}
