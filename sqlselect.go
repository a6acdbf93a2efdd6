package eventsourcing

// Reads of the SQL recorder: notifications and an aggregate's events, the
// row slab and bad-row errors.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// selectNotificationsPartial is SelectNotifications that returns the
// notifications before a bad row together with the bad row's error (see
// [partialNotifications]).
func (r *SQLRecorder) selectNotificationsPartial(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	return r.observeSelectNotifications(ctx, nil, start, limit, q, true)
}

// observeSelectNotifications runs selectNotifications, told to the
// observer if there is one. Unless partial, the good rows before a bad one
// are returned without its error.
func (r *SQLRecorder) observeSelectNotifications(ctx context.Context, dst []Notification, start int64, limit int, q *NotificationQuery, partial bool) ([]Notification, error) {
	var end func(OpResult)
	if r.observer != nil {
		ctx, end = observe(ctx, r.observer, Op{Kind: OpSelectNotifications, Table: r.events.String(), Start: start, Limit: limit})
	}
	out, err := r.selectNotifications(ctx, dst, start, limit, q)
	if err != nil && len(out) > 0 && !partial {
		err = nil // the next page starts at the bad row, and fails
	}
	if end != nil {
		end(OpResult{Rows: len(out), LastID: lastNotificationID(out), Err: err})
	}
	return out, err
}

// selectNotifications reads a page of notifications. A row that does not
// fit ends it: the rows before it are returned with its error (ErrData).
// Any other error comes alone.
func (r *SQLRecorder) selectNotifications(ctx context.Context, dst []Notification, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	if r.snapshots {
		return nil, &DatabaseError{Kind: ErrProgramming, Op: "select notifications", Table: r.events.String(), Err: errors.New("a snapshots table has no notification log")}
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: notification limit %d, want > 0", ErrProgramming, limit)
	}
	if q == nil {
		q = &NotificationQuery{}
	}
	var b strings.Builder
	b.WriteString("SELECT " + r.nid + ", originator_id, originator_version, topic, state FROM " + r.qEvents + " WHERE " + r.nid)
	if q.ExclusiveStart {
		b.WriteString(" > ")
	} else {
		b.WriteString(" >= ")
	}
	b.WriteString(r.d.Placeholder(1))
	args := []any{start}
	if q.Stop > 0 {
		args = append(args, q.Stop)
		b.WriteString(" AND " + r.nid + " <= " + r.d.Placeholder(len(args)))
	}
	if len(q.Topics) > 0 {
		b.WriteString(" AND topic IN (")
		for i, t := range q.Topics {
			if i > 0 {
				b.WriteByte(',')
			}
			args = append(args, t)
			b.WriteString(r.d.Placeholder(len(args)))
		}
		b.WriteByte(')')
	}
	args = append(args, limit)
	b.WriteString(" ORDER BY " + r.nid + " LIMIT " + r.d.Placeholder(len(args)))
	rows, err := r.query(ctx, b.String(), args...)
	if err != nil {
		return nil, r.dbError(ctx, "select notifications", r.events, err)
	}
	defer rows.Close()
	out := dst[:0]
	if cap(out) == 0 {
		out = make([]Notification, 0, min(limit, 1000))
	}
	// Scanned into variables outside the loop (a row's fields passed to
	// Scan would escape, one allocation per row); new states are copied
	// into shared chunks.
	var nid, version int64
	var id, topic, state rawColumn
	var states slab
	var lastTopic string
	for rows.Next() {
		var n Notification
		if len(out) < cap(out) {
			n = out[:len(out)+1][len(out)] // reuse the entry's buffers
		}
		nid, version = 0, 0
		if err := rows.Scan(&nid, &id, &version, &topic, &state); err != nil {
			if ctx.Err() != nil {
				// The caller's context ended the read (database/sql
				// closes the rows): the row is not known to be bad.
				return nil, r.dbError(ctx, "select notifications", r.events, err)
			}
			// A column that does not fit (NULL, not an integer): the row
			// is bad, and reading it again will not help.
			return out, r.badNotification(nid, err)
		}
		n.ID, n.OriginatorVersion = nid, version
		if id.null {
			return out, r.badNotification(n.ID, errors.New("NULL originator_id"))
		}
		if n.OriginatorID, err = uuid.ParseBytes(id.b); err != nil {
			return out, r.badNotification(n.ID, fmt.Errorf("originator_id %q: %w", id.b, err))
		}
		switch {
		case topic.null:
			return out, r.badNotification(n.ID, errors.New("NULL topic"))
		case string(topic.b) == lastTopic: // no allocation
			n.Topic = lastTopic
		case string(topic.b) != n.Topic:
			n.Topic = string(topic.b)
		}
		lastTopic = n.Topic
		switch {
		case state.null:
			n.State = nil
		case cap(n.State) >= len(state.b) && n.State != nil:
			n.State = append(n.State[:0], state.b...)
		default:
			n.State = states.copy(state.b)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, r.dbError(ctx, "select notifications", r.events, err)
	}
	return out, nil
}

// badNotification is the ErrData of a notification row that does not fit.
func (r *SQLRecorder) badNotification(id int64, err error) error {
	return &DatabaseError{Kind: ErrData, Op: "select notifications", Table: r.events.String(), Err: fmt.Errorf("notification %d: %w", id, err)}
}

// query shape bits for cached SELECT statements
const (
	qGT = 1 << iota
	qGTE
	qLT
	qLTE
	qDesc
	qLimit
)

// selectEventsPartial is SelectEvents that returns the events before a bad
// row together with the bad row's error (see [partialEvents]).
func (r *SQLRecorder) selectEventsPartial(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	return r.selectEvents(ctx, originatorID, q)
}

// selectEvents reads an aggregate's events. A row that does not fit ends
// them: the rows before it are returned with its error (ErrData). Any
// other error comes alone.
func (r *SQLRecorder) selectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	if q == nil {
		q = &Query{}
	}
	shape := 0
	args := []any{r.d.UUIDArg(originatorID)}
	for _, b := range []struct {
		bit int
		v   int64
	}{{qGT, q.GT}, {qGTE, q.GTE}, {qLT, q.LT}, {qLTE, q.LTE}} {
		if b.v != 0 {
			shape |= b.bit
			args = append(args, b.v)
		}
	}
	if q.Desc {
		shape |= qDesc
	}
	if q.Limit > 0 {
		shape |= qLimit
		args = append(args, q.Limit)
	}
	stmt, ok := r.selectSQL.Load(shape)
	if !ok {
		stmt = r.selectStatement(shape)
		r.selectSQL.Store(shape, stmt)
	}
	rows, err := r.query(ctx, stmt.(string), args...)
	if err != nil {
		return nil, r.dbError(ctx, "select events", r.events, err)
	}
	defer rows.Close()
	var out []StoredEvent
	if q.Limit > 0 {
		out = make([]StoredEvent, 0, min(q.Limit, 1000))
	}
	// Scanned into variables outside the loop (a row's fields passed to
	// Scan would escape, one allocation per row), states copied into
	// shared chunks, and a topic that repeats shared.
	var version int64
	var topic, state rawColumn
	var states slab
	var lastTopic string
	for rows.Next() {
		version = 0
		if err := rows.Scan(&version, &topic, &state); err != nil {
			if ctx.Err() != nil {
				// The caller's context ended the read (database/sql
				// closes the rows): the row is not known to be bad.
				return nil, r.dbError(ctx, "select events", r.events, err)
			}
			// A column that does not fit (NULL, not an integer): the row
			// is bad, and reading it again will not help.
			return out, r.badEvent(originatorID, version, len(out), err)
		}
		if topic.null {
			return out, r.badEvent(originatorID, version, len(out), errors.New("NULL topic"))
		}
		if string(topic.b) != lastTopic {
			lastTopic = string(topic.b)
		}
		e := StoredEvent{OriginatorID: originatorID, OriginatorVersion: version, Topic: lastTopic}
		if !state.null {
			e.State = states.copy(state.b)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, r.dbError(ctx, "select events", r.events, err)
	}
	return out, nil
}

// badEvent is the ErrData of an aggregate's row that does not fit.
func (r *SQLRecorder) badEvent(originatorID uuid.UUID, version int64, good int, err error) error {
	row := fmt.Sprintf("aggregate %s version %d", originatorID, version)
	if version == 0 {
		row = fmt.Sprintf("aggregate %s, the row after %d good ones", originatorID, good)
	}
	return &DatabaseError{Kind: ErrData, Op: "select events", Table: r.events.String(), Err: fmt.Errorf("%s: %w", row, err)}
}

func (r *SQLRecorder) selectStatement(shape int) string {
	var b strings.Builder
	b.WriteString("SELECT originator_version, topic, state FROM ")
	b.WriteString(r.qEvents)
	b.WriteString(" WHERE originator_id = " + r.d.Placeholder(1))
	p := 2
	for _, c := range []struct {
		bit int
		op  string
	}{{qGT, ">"}, {qGTE, ">="}, {qLT, "<"}, {qLTE, "<="}} {
		if shape&c.bit != 0 {
			b.WriteString(" AND originator_version " + c.op + " " + r.d.Placeholder(p))
			p++
		}
	}
	b.WriteString(" ORDER BY originator_version")
	if shape&qDesc != 0 {
		b.WriteString(" DESC")
	}
	if shape&qLimit != 0 {
		b.WriteString(" LIMIT " + r.d.Placeholder(p))
	}
	return b.String()
}

// slab copies byte slices into shared chunks, so that a page of small
// states costs a few allocations rather than one each. Each copy has its
// capacity cut to its length (appending to it reallocates), and a big one
// gets an allocation of its own; keeping one state keeps at most its chunk.
type slab struct{ buf []byte }

const (
	slabFirst = 4 << 10  // the first chunk; each next is twice the last
	slabChunk = 32 << 10 // up to this
	slabMax   = 2 << 10  // bigger copies get their own allocation
)

// copy returns a copy of b (non-nil, even if empty).
func (s *slab) copy(b []byte) []byte {
	if len(b) > slabMax {
		return append(make([]byte, 0, len(b)), b...)
	}
	if cap(s.buf)-len(s.buf) < len(b) || s.buf == nil {
		s.buf = make([]byte, 0, min(max(2*cap(s.buf), slabFirst), slabChunk))
	}
	i := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[i:len(s.buf):len(s.buf)]
}

// rawColumn scans a text or bytes column and notes NULL. b is valid until
// the next row is scanned: bytes are the driver's own (database/sql lets a
// Scanner use them until the next call to Scan), text is copied into a
// buffer the column reuses.
type rawColumn struct {
	b    []byte
	buf  []byte // owned: never the driver's memory
	null bool
}

// Scan implements sql.Scanner.
func (c *rawColumn) Scan(v any) error {
	c.null = false
	switch v := v.(type) {
	case nil:
		c.b, c.null = nil, true
	case []byte:
		c.b = v
	case string:
		c.buf = append(c.buf[:0], v...)
		c.b = c.buf
	default:
		return fmt.Errorf("unexpected %T", v)
	}
	return nil
}
