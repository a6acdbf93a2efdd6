package eventsourcing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// SelectNotifications returns at most limit notifications from start.
func (r *SQLRecorder) SelectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	return r.SelectNotificationsInto(ctx, nil, start, limit, q)
}

// SelectNotificationsInto is SelectNotifications reusing dst: the
// notifications are written over dst[:0], reusing the entries' State
// buffers and, where they are the same, their Topic strings, so that a
// reader paging through the log with one slice allocates almost nothing
// per page. The States of dst are overwritten: do not keep them.
func (r *SQLRecorder) SelectNotificationsInto(ctx context.Context, dst []Notification, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	if r.observer == nil {
		return r.selectNotifications(ctx, dst, start, limit, q)
	}
	ctx, end := Observe(ctx, r.observer, Op{Kind: OpSelectNotifications, Table: r.events.String(), Start: start, Limit: limit})
	out, err := r.selectNotifications(ctx, dst, start, limit, q)
	end(OpResult{Rows: len(out), LastID: lastNotificationID(out), Err: err})
	return out, err
}

// lastNotificationID returns the ID of the last notification, or 0.
func lastNotificationID(ns []Notification) int64 {
	if len(ns) == 0 {
		return 0
	}
	return ns[len(ns)-1].ID
}

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
	var id, topic, state rawColumn
	var lastTopic string
	for rows.Next() {
		var n Notification
		if len(out) < cap(out) {
			n = out[:len(out)+1][len(out)] // reuse the entry's buffers
		}
		if err := rows.Scan(&n.ID, &id, &n.OriginatorVersion, &topic, &state); err != nil {
			// A column that does not fit (NULL, not an integer): the row
			// is bad, and reading it again will not help.
			return nil, &DatabaseError{Kind: ErrData, Op: "select notifications", Table: r.events.String(),
				Err: fmt.Errorf("notification %d: %w", n.ID, err)}
		}
		if id.null {
			return nil, &DatabaseError{Kind: ErrData, Op: "select notifications", Table: r.events.String(),
				Err: fmt.Errorf("notification %d: NULL originator_id", n.ID)}
		}
		if n.OriginatorID, err = uuid.ParseBytes(id.b); err != nil {
			return nil, &DatabaseError{Kind: ErrData, Op: "select notifications", Table: r.events.String(),
				Err: fmt.Errorf("notification %d: originator_id %q: %w", n.ID, id.b, err)}
		}
		switch {
		case topic.null:
			return nil, &DatabaseError{Kind: ErrData, Op: "select notifications", Table: r.events.String(),
				Err: fmt.Errorf("notification %d: NULL topic", n.ID)}
		case string(topic.b) == lastTopic: // no allocation
			n.Topic = lastTopic
		case string(topic.b) != n.Topic:
			n.Topic = string(topic.b)
		}
		lastTopic = n.Topic
		if state.null {
			n.State = nil
		} else {
			n.State = append(n.State[:0], state.b...)
			if n.State == nil {
				n.State = []byte{}
			}
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, r.dbError(ctx, "select notifications", r.events, err)
	}
	return out, nil
}

// rawColumn scans a text or bytes column without copying it (valid until
// the next row), and notes NULL.
type rawColumn struct {
	b    []byte
	null bool
}

// Scan implements sql.Scanner.
func (c *rawColumn) Scan(v any) error {
	c.null = false
	switch v := v.(type) {
	case nil:
		c.b, c.null = c.b[:0], true
	case []byte:
		c.b = append(c.b[:0], v...)
	case string:
		c.b = append(c.b[:0], v...)
	default:
		return fmt.Errorf("unexpected %T", v)
	}
	return nil
}
