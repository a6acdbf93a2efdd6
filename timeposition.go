package eventsourcing

// Versions that are times: TimeVersion, VersionTime, TimeRange.

import (
	"time"

	"github.com/google/uuid"
)

// Sequences positioned by time: some sequences are ordered by when things
// happened rather than by a counter (a sensor's readings, the audit trail
// of one account). Their events are positioned by time: the originator
// version is the event's time in Unix nanoseconds, so that the recorder's
// unique (originator ID, version) makes two events at the same instant an
// integrity error, and a Query on versions is a time range.

// TimeVersion returns the originator version that positions an event at t
// in a sequence ordered by time: t in Unix nanoseconds. t must be after the
// Unix epoch (whose position, 0, means "no bound" in a [Query]) and before
// the year 2262 (the last nanosecond an int64 holds).
func TimeVersion(t time.Time) int64 { return t.UnixNano() }

// VersionTime returns the time, in UTC, that a version made by
// [TimeVersion] positions an event at.
func VersionTime(version int64) time.Time { return time.Unix(0, version).UTC() }

// DomainEventAt returns a DomainEvent of the originator's time-positioned
// sequence at t: its version is TimeVersion(t), its timestamp t in UTC
// truncated to microseconds (the precision stored timestamps keep; the
// version keeps the nanoseconds).
func DomainEventAt(originatorID uuid.UUID, t time.Time) DomainEvent {
	return DomainEvent{Originator: originatorID, Version: TimeVersion(t), Timestamp: t.UTC().Truncate(time.Microsecond)}
}

// TimeRange returns the query of a time-positioned sequence's events at or
// after from and before until, oldest first; a zero time is no bound. Set
// Desc and Limit on it for the latest events: TimeRange(time.Time{},
// until) with Desc and Limit 1 is the last event before until.
func TimeRange(from, until time.Time) *Query {
	q := &Query{}
	if !from.IsZero() {
		q.GTE = TimeVersion(from)
	}
	if !until.IsZero() {
		q.LT = TimeVersion(until)
	}
	return q
}
