package main

// This file reads and writes the rows of a store's tables with
// database/sql, as they are stored: verify must see rows the library
// would refuse to read, and copy must write them byte for byte with their
// notification IDs, which the library's API does not do. Tables are read
// in pages, so that memory stays constant however large they are.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// pageSize is how many rows a read of a table returns at most.
const pageSize = 1000

// eventRow is a row of an events or snapshots table, as stored.
type eventRow struct {
	ID      int64          // the notification ID (events tables only)
	Origin  sql.NullString // originator_id as text
	Version sql.NullInt64
	Topic   sql.NullString
	State   sql.Null[[]byte]
}

// trackingRow is a row of a tracking table.
type trackingRow struct {
	App sql.NullString
	ID  sql.NullInt64
}

// tableReader reads one store's tables.
type tableReader struct {
	db *sql.DB
	d  es.Dialect
}

// ph returns the i'th placeholder.
func (r tableReader) ph(i int) string { return r.d.Placeholder(i) }

// originColumn selects originator_id as text.
func (r tableReader) originColumn() string {
	if isPostgres(r.d) {
		return "originator_id::text"
	}
	return "originator_id"
}

// originParam casts a placeholder to the originator_id column's type.
func (r tableReader) originParam(i int) string {
	if isPostgres(r.d) {
		return r.ph(i) + "::uuid"
	}
	return r.ph(i)
}

// eventsAfter reads the page of an events table after notification ID
// after, into dst.
func (r tableReader) eventsAfter(ctx context.Context, dst []eventRow, t es.Table, after int64, limit int) ([]eventRow, error) {
	nid := r.d.NotificationIDColumn()
	q := "SELECT " + nid + ", " + r.originColumn() + ", originator_version, topic, state FROM " + t.Quote(r.d) +
		" WHERE " + nid + " > " + r.ph(1) + " ORDER BY " + nid + " LIMIT " + fmt.Sprint(limit)
	return r.queryEvents(ctx, dst, q, true, after)
}

// byOriginAfter reads the page of an events or snapshots table after the
// key (originator ID, version) of after, in key order; a nil after starts
// at the first row. Rows without an originator ID are not read. With
// keysOnly, topics and states are not read (they are NULL in dst).
func (r tableReader) byOriginAfter(ctx context.Context, dst []eventRow, t es.Table, withID, keysOnly bool, after *eventRow, limit int) ([]eventRow, error) {
	cols := r.columns(withID, keysOnly)
	q := "SELECT " + cols + " FROM " + t.Quote(r.d) + " WHERE originator_id IS NOT NULL"
	var args []any
	if after != nil {
		q += " AND (originator_id, originator_version) > (" + r.originParam(1) + ", " + r.ph(2) + ")"
		args = []any{after.Origin.String, after.Version.Int64}
	}
	q += " ORDER BY originator_id, originator_version LIMIT " + fmt.Sprint(limit)
	return r.queryEvents(ctx, dst, q, withID, args...)
}

// eventsWithKeys reads the rows of an events or snapshots table whose
// (originator_id, originator_version) are those of keys, which must hold
// valid originator IDs. With keysOnly, topics and states are not read.
func (r tableReader) eventsWithKeys(ctx context.Context, dst []eventRow, t es.Table, withID, keysOnly bool, keys []eventRow) ([]eventRow, error) {
	if len(keys) == 0 {
		return dst[:0], nil
	}
	cols := r.columns(withID, keysOnly)
	var b strings.Builder
	args := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		id, err := uuid.Parse(k.Origin.String)
		if err != nil {
			return nil, fmt.Errorf("originator_id %q is not a UUID", k.Origin.String)
		}
		fmt.Fprintf(&b, "(%s, %s)", r.originParam(2*i+1), r.ph(2*i+2))
		args = append(args, r.d.UUIDArg(id), k.Version.Int64)
	}
	q := "SELECT " + cols + " FROM " + t.Quote(r.d) + " WHERE (originator_id, originator_version) IN (" + b.String() + ")"
	return r.queryEvents(ctx, dst, q, withID, args...)
}

// columns returns the columns of an events or snapshots row: the
// notification ID if withID, then originator ID, version, topic and
// state (NULL, NULL if keysOnly: an index holds the rest).
func (r tableReader) columns(withID, keysOnly bool) string {
	cols := r.originColumn() + ", originator_version, "
	if keysOnly {
		cols += "NULL, NULL"
	} else {
		cols += "topic, state"
	}
	if withID {
		cols = r.d.NotificationIDColumn() + ", " + cols
	}
	return cols
}

func (r tableReader) queryEvents(ctx context.Context, dst []eventRow, q string, withID bool, args ...any) ([]eventRow, error) {
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dst = dst[:0]
	for rows.Next() {
		var e eventRow
		var err error
		if withID {
			err = rows.Scan(&e.ID, &e.Origin, &e.Version, &e.Topic, &e.State)
		} else {
			err = rows.Scan(&e.Origin, &e.Version, &e.Topic, &e.State)
		}
		if err != nil {
			return nil, err
		}
		dst = append(dst, e)
	}
	return dst, rows.Err()
}

// trackingAfter reads the page of a tracking table after the key of after
// (application_name, and with multiRow notification_id), in key order; a
// nil after starts at the first row.
func (r tableReader) trackingAfter(ctx context.Context, dst []trackingRow, t es.Table, multiRow bool, after *trackingRow, limit int) ([]trackingRow, error) {
	q := "SELECT application_name, notification_id FROM " + t.Quote(r.d)
	var args []any
	switch {
	case after == nil:
	case multiRow:
		q += " WHERE (application_name, notification_id) > (" + r.ph(1) + ", " + r.ph(2) + ")"
		args = []any{after.App.String, after.ID.Int64}
	default:
		q += " WHERE application_name > " + r.ph(1)
		args = []any{after.App.String}
	}
	q += " ORDER BY application_name"
	if multiRow {
		q += ", notification_id"
	}
	q += " LIMIT " + fmt.Sprint(limit)
	return r.trackingRows(ctx, dst, q, args)
}

// trackingRows runs q, which selects application_name and
// notification_id, into dst.
func (r tableReader) trackingRows(ctx context.Context, dst []trackingRow, q string, args []any) ([]trackingRow, error) {
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dst = dst[:0]
	for rows.Next() {
		var tr trackingRow
		if err := rows.Scan(&tr.App, &tr.ID); err != nil {
			return nil, err
		}
		dst = append(dst, tr)
	}
	return dst, rows.Err()
}

// trackingWithKeys reads the rows of a tracking table with the keys of
// keys (application_name, and with multiRow notification_id).
func (r tableReader) trackingWithKeys(ctx context.Context, dst []trackingRow, t es.Table, multiRow bool, keys []trackingRow) ([]trackingRow, error) {
	if len(keys) == 0 {
		return dst[:0], nil
	}
	var b strings.Builder
	var args []any
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if multiRow {
			fmt.Fprintf(&b, "(%s, %s)", r.ph(2*i+1), r.ph(2*i+2))
			args = append(args, k.App.String, k.ID.Int64)
		} else {
			b.WriteString(r.ph(i + 1))
			args = append(args, k.App.String)
		}
	}
	q := "SELECT application_name, notification_id FROM " + t.Quote(r.d) + " WHERE "
	if multiRow {
		q += "(application_name, notification_id) IN (" + b.String() + ")"
	} else {
		q += "application_name IN (" + b.String() + ")"
	}
	return r.trackingRows(ctx, dst, q, args)
}

// eventKey is an events or snapshots row's key, for maps: the originator
// ID (parsed, so that the text forms of SQLite and PostgreSQL compare
// equal) and the version.
type eventKey struct {
	id      uuid.UUID
	version int64
}

func keyOf(e eventRow) eventKey {
	id, _ := uuid.Parse(e.Origin.String)
	return eventKey{id, e.Version.Int64}
}

// sameEvent reports whether two rows hold the same values, comparing
// originator IDs as UUIDs (SQLite stores them as 32 hex digits,
// PostgreSQL as uuid).
func sameEvent(a, b eventRow) bool {
	return a.ID == b.ID && keyOf(a) == keyOf(b) && a.Origin.Valid == b.Origin.Valid &&
		a.Version == b.Version && a.Topic == b.Topic &&
		a.State.Valid == b.State.Valid && string(a.State.V) == string(b.State.V)
}

// checksum is an order-independent digest of a table's rows: the sum,
// lane by lane, of the SHA-256 of each row's values. Two tables with the
// same rows have the same checksum, whichever order each database reads
// them in (PostgreSQL and SQLite sort text differently).
type checksum struct {
	rows  int64
	lanes [4]uint64
}

func (c *checksum) add(parts ...[]byte) {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		if p == nil {
			h.Write([]byte{0})
			continue
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write([]byte{1})
		h.Write(n[:])
		h.Write(p)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	for i := range c.lanes {
		c.lanes[i] += binary.BigEndian.Uint64(sum[8*i:])
	}
	c.rows++
}

func int64Bytes(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// addEvent adds an events or snapshots row.
func (c *checksum) addEvent(e eventRow) {
	var origin, version, topic, state []byte
	if e.Origin.Valid {
		if id, err := uuid.Parse(e.Origin.String); err == nil {
			origin = id[:]
		} else {
			origin = append([]byte("text:"), e.Origin.String...)
		}
	}
	if e.Version.Valid {
		version = int64Bytes(e.Version.Int64)
	}
	if e.Topic.Valid {
		topic = append([]byte{}, e.Topic.String...)
	}
	if e.State.Valid {
		state = e.State.V
		if state == nil {
			state = []byte{}
		}
	}
	c.add(int64Bytes(e.ID), origin, version, topic, state)
}

// addTracking adds a tracking row.
func (c *checksum) addTracking(t trackingRow) {
	var app, id []byte
	if t.App.Valid {
		app = append([]byte{}, t.App.String...)
	}
	if t.ID.Valid {
		id = int64Bytes(t.ID.Int64)
	}
	c.add(app, id)
}

func (c checksum) String() string {
	var b []byte
	for _, l := range c.lanes {
		b = binary.BigEndian.AppendUint64(b, l)
	}
	return hex.EncodeToString(b)
}
