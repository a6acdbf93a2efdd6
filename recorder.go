package eventsourcing

// The recorder interfaces (aggregate, application, process) and the stored
// types they pass (StoredEvent, Notification, Tracking, queries).

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// StoredEvent is an event as recorders store it: the originator columns, the
// topic that names its type, and its serialised (possibly compressed and
// encrypted) state.
type StoredEvent struct {
	OriginatorID      uuid.UUID
	OriginatorVersion int64
	Topic             string
	State             []byte
}

// Notification is a stored event with its position in an application's
// total order of events (notification IDs start at 1 and increase).
type Notification struct {
	ID int64
	StoredEvent
}

// Tracking records that a downstream application has processed an upstream
// application's notification. It is written atomically with the events that
// processing produced, and refused (an *[IntegrityError]) if the
// application's last tracked notification is not before it.
type Tracking struct {
	ApplicationName string
	NotificationID  int64
	// First, if not zero, is the first notification the processing covered:
	// a batch from First to NotificationID. The record is then refused if
	// any notification from First on was tracked already, so that two
	// processes handling overlapping batches cannot both commit (with
	// First zero, only one tracked at or after NotificationID refuses
	// it). It is not stored: the table holds NotificationID alone, as the
	// Python library's does. First after NotificationID, or negative, is
	// an ErrProgramming error.
	First int64
}

// lowest returns the lowest notification ID the record covers.
func (t *Tracking) lowest() int64 {
	if t.First > 0 {
		return t.First
	}
	return t.NotificationID
}

// Query bounds a selection of one aggregate's events by version. The zero
// value (and a nil *Query) selects every event in ascending order. A bound of
// zero is no bound: versions start at 1.
type Query struct {
	GT    int64 // versions greater than GT
	GTE   int64 // versions greater than or equal to GTE
	LT    int64 // versions less than LT
	LTE   int64 // versions less than or equal to LTE
	Desc  bool  // newest first
	Limit int   // at most Limit events; zero or negative is no limit
}

// NotificationQuery refines a selection of notifications. The zero value
// (and nil) selects every topic, from start inclusive, with no upper bound.
type NotificationQuery struct {
	Stop           int64    // IDs up to and including Stop; zero is no bound
	Topics         []string // only these topics; empty is every topic
	ExclusiveStart bool     // IDs greater than start, not greater or equal
}

// AggregateRecorder records sequences of aggregate events, and snapshots.
type AggregateRecorder interface {
	// InsertEvents records events atomically: all or nothing. A duplicate
	// (originator ID, version), within the batch or with a recorded event,
	// fails the whole batch with ErrIntegrity. If tracking is not nil it is
	// recorded in the same transaction (a process recorder); recorders that
	// keep no tracking records return ErrProgramming. It returns the
	// notification IDs assigned to the events, in order, or nil if the
	// recorder assigns none.
	InsertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error)
	// SelectEvents returns an aggregate's events within the query's bounds,
	// ordered by version.
	SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error)
}

// ApplicationRecorder is an AggregateRecorder that also gives every event a
// notification ID in one total order across all aggregates. A reader that has
// seen notification ID n will never later see an event with an ID below n
// appear, however many writers commit concurrently.
type ApplicationRecorder interface {
	AggregateRecorder
	// SelectNotifications returns at most limit notifications with IDs from
	// start (inclusive unless q.ExclusiveStart) up to q.Stop (inclusive),
	// in ascending order. Limit must be positive (ErrProgramming otherwise).
	SelectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error)
	// MaxNotificationID returns the highest notification ID, or 0 if there
	// are no events.
	MaxNotificationID(ctx context.Context) (int64, error)
}

// ProcessRecorder is an ApplicationRecorder that records tracking records
// atomically with events, so that a downstream processor handles each
// upstream notification exactly once.
type ProcessRecorder interface {
	ApplicationRecorder
	// MaxTrackingID returns the highest notification ID recorded for the
	// upstream application, or 0 if there is none.
	MaxTrackingID(ctx context.Context, applicationName string) (int64, error)
	// HasTrackingID reports whether the upstream application's notification
	// ID has been processed: it is at or below the highest one recorded.
	HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error)
}

// checkTrackingRecord refuses a record of the reserved application name,
// or whose First is not before or at its NotificationID.
func checkTrackingRecord(t *Tracking) error {
	if err := checkTrackingName(t.ApplicationName); err != nil {
		return err
	}
	if t.First < 0 || t.First > t.NotificationID {
		return fmt.Errorf("%w: tracking record of %q: First %d is not between 1 and NotificationID %d", ErrProgramming, t.ApplicationName, t.First, t.NotificationID)
	}
	return nil
}

// checkTrackingName refuses the reserved application name.
func checkTrackingName(app string) error {
	if app == MigrationTrackingName {
		return fmt.Errorf("%w: application name %q is reserved for the tracking table's migration row", ErrProgramming, app)
	}
	return nil
}

// lastNotificationID returns the ID of the last notification, or 0.
func lastNotificationID(ns []Notification) int64 {
	if len(ns) == 0 {
		return 0
	}
	return ns[len(ns)-1].ID
}

// MigrationTrackingName is the application name of the row the Python
// library (9.5) keeps in a single-row tracking table to mark it migrated.
// It is not an application: recording or asking for its tracking records is
// ErrProgramming.
const MigrationTrackingName = "__migration__"

// Stats is a snapshot of what an SQL recorder has done, from its Stats
// method: the one set of counters of [SQLRecorder] and
// [ReplicatedRecorder].
type Stats struct {
	// Transactions and Calls count group commit: how many InsertEvents
	// calls were committed in how many transactions (zero with group
	// commit off). Calls counts exactly the calls that were told their
	// events are written.
	Transactions int64
	Calls        int64
	// AppendFunction reports that the recorder appends through the
	// server-side append function (one statement and one round trip per
	// transaction), also with group commit off; false: with BEGIN, lock
	// statements, INSERT and COMMIT. It is decided when the recorder is
	// made (the function exists) or by CreateTables (which creates it if
	// it can).
	AppendFunction bool
	// PrimaryReads, of a ReplicatedRecorder, is how many reads the primary
	// served (no standby was usable, or had replayed what the read asked
	// for, or one failed); zero for an SQLRecorder.
	PrimaryReads int64
}
