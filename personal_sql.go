package eventsourcing

// The SQL keys backend of PersonalKeys: a table personal_keys (SQLite) or
// <app>_personal_keys (PostgreSQL) in the application's database.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// NewSQLPersonalKeys returns data keys kept in a table of db, whose
// dialect is d: personal_keys on SQLite, <app>_personal_keys (opts.AppName
// lower-cased, as the events table is <app>_events) on PostgreSQL, or
// opts.Table. It validates the names and runs no SQL: call CreateTables
// to create the table. A nil db or d, or an invalid name, is an error
// wrapping ErrProgramming. The dialect must be SQLite's or PostgreSQL's
// (by its Name), whose table definitions it knows.
//
// The table has one row per key: key_id (the random identifier sealed
// values carry), subject, generation (from 1; [PersonalKeys.Renew] adds
// one), wrapped_key (the key, encrypted by opts.Cipher if set; NULL once
// forgotten), created_at, forgotten_at and reason, with (subject,
// generation) unique. Times are UTC, as RFC 3339 text on SQLite.
func NewSQLPersonalKeys(db *sql.DB, d Dialect, opts *PersonalKeysOptions) (*PersonalKeys, error) {
	var o PersonalKeysOptions
	if opts != nil {
		o = *opts
	}
	if db == nil || d == nil {
		return nil, fmt.Errorf("%w: NewSQLPersonalKeys: nil *sql.DB or Dialect", ErrProgramming)
	}
	switch d.Name() {
	case ModuleSQLite, ModulePostgres:
	default:
		return nil, fmt.Errorf("%w: NewSQLPersonalKeys: dialect %q: personal keys tables are defined for %s and %s", ErrProgramming, d.Name(), ModuleSQLite, ModulePostgres)
	}
	name := o.Table
	if name == "" {
		_, _, tracking := d.DefaultTables(o.AppName)
		name = strings.TrimSuffix(tracking, "tracking") + "personal_keys"
	}
	if err := ValidateIdentifier(name, d.MaxIdentifierLength()); err != nil {
		return nil, fmt.Errorf("personal keys table name: %w", err)
	}
	if o.Schema != "" {
		if err := ValidateIdentifier(o.Schema, d.MaxIdentifierLength()); err != nil {
			return nil, fmt.Errorf("schema name: %w", err)
		}
	}
	s := &sqlKeys{db: db, d: d, t: Table{o.Schema, name}, pg: d.Name() == ModulePostgres}
	s.q = s.t.Quote(d)
	return newPersonalKeys(s, &o), nil
}

type sqlKeys struct {
	db *sql.DB
	d  Dialect
	t  Table
	q  string // quoted table
	pg bool
}

const keyColumns = "key_id, subject, generation, wrapped_key, created_at, forgotten_at, reason"

func (s *sqlKeys) table() string { return s.t.String() }

func (s *sqlKeys) p(i int) string { return s.d.Placeholder(i) }

func (s *sqlKeys) err(ctx context.Context, op string, err error) error {
	var de *DatabaseError
	if errors.As(err, &de) {
		return err
	}
	kind, transient := classifyDriverError(s.d, err)
	if ctx.Err() != nil || kind == nil || kind == ErrIntegrity {
		kind = ErrOperational
	}
	return &DatabaseError{Kind: kind, Op: op, Table: s.t.String(), Err: err,
		Transient: transient || kind == ErrLockTimeout || connectionLost(err)}
}

// classifyDriverError returns the sentinel the dialect classifies err as,
// and whether it knows it to be transient.
func classifyDriverError(d Dialect, err error) (kind error, transient bool) {
	c := d.Classify(err)
	return c.Kind, c.Transient
}

func (s *sqlKeys) createTables(ctx context.Context) error {
	var ddl string
	if s.pg {
		ddl = "CREATE TABLE IF NOT EXISTS " + s.q + " (key_id text PRIMARY KEY, subject uuid NOT NULL, generation bigint NOT NULL," +
			" wrapped_key bytea, created_at timestamptz NOT NULL, forgotten_at timestamptz, reason text, UNIQUE (subject, generation))"
	} else {
		ddl = "CREATE TABLE IF NOT EXISTS " + s.q + " (key_id TEXT PRIMARY KEY, subject TEXT NOT NULL, generation INTEGER NOT NULL," +
			" wrapped_key BLOB, created_at TEXT NOT NULL, forgotten_at TEXT, reason TEXT, UNIQUE (subject, generation))"
	}
	if _, err := s.db.ExecContext(ctx, ddl); err != nil {
		if kind, _ := classifyDriverError(s.d, err); s.pg && kind == ErrOperational { // two sessions creating it at once
			if _, err2 := s.db.ExecContext(ctx, ddl); err2 == nil {
				return nil
			}
		}
		return s.err(ctx, "create personal keys table", err)
	}
	return nil
}

// timeArg is how a time is bound.
func (s *sqlKeys) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if s.pg {
		return t.UTC()
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseKeyTime(ns sql.NullString) (time.Time, error) {
	if !ns.Valid {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, ns.String)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q: %w", ErrData, ns.String, err)
	}
	return t.UTC(), nil
}

type rowScanner interface{ Scan(...any) error }

func (s *sqlKeys) scanRow(sc rowScanner) (keyRow, error) {
	var r keyRow
	var subject, wrapped rawColumn
	var created, forgotten, reason sql.NullString
	if err := sc.Scan(&r.ID, &subject, &r.Generation, &wrapped, &created, &forgotten, &reason); err != nil {
		return r, err
	}
	var err error
	if r.Subject, err = uuid.ParseBytes(subject.b); err != nil {
		return r, fmt.Errorf("%w: subject %q of key %s: %w", ErrData, subject.b, r.ID, err)
	}
	if !wrapped.null {
		r.Wrapped = slices.Clone(wrapped.b)
		if r.Wrapped == nil {
			r.Wrapped = []byte{}
		}
	}
	if r.Created, err = parseKeyTime(created); err != nil {
		return r, err
	}
	if r.Forgotten, err = parseKeyTime(forgotten); err != nil {
		return r, err
	}
	r.Reason = reason.String
	return r, nil
}

func (s *sqlKeys) queryRows(ctx context.Context, op, q string, args ...any) ([]keyRow, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.err(ctx, op, err)
	}
	defer rows.Close()
	var out []keyRow
	for rows.Next() {
		r, err := s.scanRow(rows)
		if err != nil {
			return nil, s.err(ctx, op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.err(ctx, op, err)
	}
	return out, nil
}

func (s *sqlKeys) latest(ctx context.Context, subject uuid.UUID) (keyRow, bool, error) {
	rows, err := s.queryRows(ctx, "read data key", "SELECT "+keyColumns+" FROM "+s.q+" WHERE subject = "+s.p(1)+
		" ORDER BY generation DESC LIMIT 1", s.d.UUIDArg(subject))
	if err != nil || len(rows) == 0 {
		return keyRow{}, false, err
	}
	return rows[0], true, nil
}

func (s *sqlKeys) byID(ctx context.Context, id string) (keyRow, bool, error) {
	rows, err := s.queryRows(ctx, "read data key", "SELECT "+keyColumns+" FROM "+s.q+" WHERE key_id = "+s.p(1), id)
	if err != nil || len(rows) == 0 {
		return keyRow{}, false, err
	}
	return rows[0], true, nil
}

func (s *sqlKeys) rows(ctx context.Context, subject uuid.UUID) ([]keyRow, error) {
	rows, err := s.queryRows(ctx, "read data keys", "SELECT "+keyColumns+" FROM "+s.q+" WHERE subject = "+s.p(1)+
		" ORDER BY generation", s.d.UUIDArg(subject))
	for i := range rows {
		rows[i].Wrapped = nil
	}
	return rows, err
}

func (s *sqlKeys) insertSQL() string {
	return "INSERT INTO " + s.q + " (" + keyColumns + ") VALUES (" + s.p(1) + ", " + s.p(2) + ", " + s.p(3) + ", " + s.p(4) + ", " +
		s.p(5) + ", " + s.p(6) + ", " + s.p(7) + ") ON CONFLICT DO NOTHING"
}

func (s *sqlKeys) insertArgs(r keyRow) []any {
	var wrapped any
	if r.Wrapped != nil {
		wrapped = r.Wrapped
	}
	var reason any
	if r.Reason != "" || !r.Forgotten.IsZero() {
		reason = r.Reason
	}
	return []any{r.ID, s.d.UUIDArg(r.Subject), r.Generation, wrapped, s.timeArg(r.Created), s.timeArg(r.Forgotten), reason}
}

func (s *sqlKeys) insert(ctx context.Context, r keyRow) error {
	if _, err := s.db.ExecContext(ctx, s.insertSQL(), s.insertArgs(r)...); err != nil {
		return s.err(ctx, "create data key", err)
	}
	return nil
}

// forget runs in one transaction on a connection of its own: on SQLite
// with secure_delete on, then a WAL checkpoint; on PostgreSQL followed by
// VACUUM of the table.
func (s *sqlKeys) forget(ctx context.Context, subject uuid.UUID, reason string, at time.Time, newID string) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.err(ctx, "forget", err)
	}
	defer conn.Close()
	restore := ""
	if !s.pg {
		var was int64
		if err := conn.QueryRowContext(ctx, "PRAGMA secure_delete").Scan(&was); err != nil {
			return s.err(ctx, "forget: read secure_delete", err)
		}
		if was == 0 {
			if _, err := conn.ExecContext(ctx, "PRAGMA secure_delete = ON"); err != nil {
				return s.err(ctx, "forget: secure_delete", err)
			}
			restore = "PRAGMA secure_delete = OFF"
		}
	}
	err = s.forgetTx(ctx, conn, subject, reason, at, newID)
	if err == nil {
		err = s.scrub(ctx, conn)
	}
	if restore != "" {
		// The connection goes back to the pool as it came.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), restore); rerr != nil && err == nil {
			err = s.err(ctx, "forget: restore secure_delete", rerr)
		}
	}
	return err
}

func (s *sqlKeys) forgetTx(ctx context.Context, conn *sql.Conn, subject uuid.UUID, reason string, at time.Time, newID string) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return s.err(ctx, "forget: begin", err)
	}
	defer tx.Rollback()
	// A subject with no key gets a forgotten one: its writers are refused.
	row := keyRow{ID: newID, Subject: subject, Generation: 1, Created: at, Forgotten: at, Reason: reason}
	if _, err := tx.ExecContext(ctx, s.insertSQL(), s.insertArgs(row)...); err != nil {
		return s.err(ctx, "forget", err)
	}
	q := "UPDATE " + s.q + " SET wrapped_key = NULL, forgotten_at = " + s.p(1) + ", reason = " + s.p(2) +
		" WHERE subject = " + s.p(3) + " AND forgotten_at IS NULL"
	if _, err := tx.ExecContext(ctx, q, s.timeArg(at), reason, s.d.UUIDArg(subject)); err != nil {
		return s.err(ctx, "forget", err)
	}
	if err := tx.Commit(); err != nil {
		return s.err(ctx, "forget: commit (run Forget again: it is idempotent)", err)
	}
	return nil
}

// scrub removes the old versions of forgotten rows from disk, as far as
// the database can: SQLite's WAL checkpoint (secure_delete has zeroed the
// freed space of the pages it writes back), PostgreSQL's VACUUM.
func (s *sqlKeys) scrub(ctx context.Context, conn *sql.Conn) error {
	if s.pg {
		if _, err := conn.ExecContext(ctx, "VACUUM "+s.q); err != nil {
			return s.err(ctx, "forget: the key is destroyed, but VACUUM of the keys table failed (run Forget again, or VACUUM the table)", err)
		}
		return nil
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return s.err(ctx, "forget: journal mode", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil // the rollback journal is deleted (or truncated) at commit
	}
	for attempt := 0; ; attempt++ {
		var busy, logFrames, checkpointed int64
		if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
			return s.err(ctx, "forget: WAL checkpoint", err)
		}
		if busy == 0 {
			return nil
		}
		if attempt == 20 {
			return &DatabaseError{Kind: ErrOperational, Op: "forget: the key is destroyed in the table, but readers kept the WAL checkpoint from completing, " +
				"so the WAL file may still hold it: call Forget again", Table: s.t.String(), Transient: true}
		}
		select {
		case <-ctx.Done():
			return s.err(ctx, "forget: WAL checkpoint", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *sqlKeys) scan(ctx context.Context, after StateKey, limit int) ([]keyRow, error) {
	q := "SELECT " + keyColumns + " FROM " + s.q +
		" WHERE (subject, generation) > (" + s.p(1) + ", " + s.p(2) + ") AND wrapped_key IS NOT NULL" +
		" ORDER BY subject, generation LIMIT " + s.p(3)
	return s.queryRows(ctx, "scan data keys", q, s.d.UUIDArg(after.OriginatorID), after.OriginatorVersion, limit)
}

func (s *sqlKeys) replace(ctx context.Context, replacements []StateReplacement) (int, error) {
	if len(replacements) == 0 {
		return 0, nil
	}
	q := "UPDATE " + s.q + " SET wrapped_key = " + s.p(1) + " WHERE subject = " + s.p(2) + " AND generation = " + s.p(3) +
		" AND wrapped_key = " + s.p(4)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.err(ctx, "replace data keys", err)
	}
	defer tx.Rollback()
	n := 0
	for _, rp := range replacements {
		res, err := tx.ExecContext(ctx, q, rp.New, s.d.UUIDArg(rp.Key.OriginatorID), rp.Key.OriginatorVersion, rp.Old)
		if err != nil {
			return 0, s.err(ctx, "replace data keys", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, s.err(ctx, "replace data keys", err)
		}
		n += int(k)
	}
	if err := tx.Commit(); err != nil {
		return 0, s.err(ctx, "replace data keys: commit (run the rotation again)", err)
	}
	return n, nil
}

// OpenPersonalKeys sets s.Personal to the data keys of the store, and
// returns them: a keys table in the store's database (named as
// [NewSQLPersonalKeys] names it for cfg.Name, in cfg's PostgreSQL schema),
// created unless cfg.SkipCreateTable, or keys in memory for a memory
// store. c, if not nil, wraps the keys: give the application cipher.
// [OpenApp] calls it when AppOptions.PersonalData is set. A store whose
// events recorder is not an [SQLRecorder] (a replicated store) is an
// error wrapping ErrProgramming: make its keys with NewSQLPersonalKeys on
// the primary.
func (s *Store) OpenPersonalKeys(ctx context.Context, cfg *Config, c Cipher) (*PersonalKeys, error) {
	if s == nil || cfg == nil {
		return nil, fmt.Errorf("%w: OpenPersonalKeys: nil Store or Config", ErrProgramming)
	}
	opts := &PersonalKeysOptions{Cipher: c, AppName: cfg.Name}
	if s.DB == nil {
		s.Personal = NewMemoryPersonalKeys(opts)
		return s.Personal, nil
	}
	r, ok := s.Recorder.(*SQLRecorder)
	if !ok {
		return nil, fmt.Errorf("%w: OpenPersonalKeys: the store's events recorder is a %T, not an SQLRecorder: make the keys with NewSQLPersonalKeys", ErrProgramming, s.Recorder)
	}
	if cfg.Module() == ModulePostgres {
		opts.Schema = cfg.Postgres.Schema
	}
	keys, err := NewSQLPersonalKeys(s.DB, r.d, opts)
	if err != nil {
		return nil, err
	}
	if !cfg.SkipCreateTable {
		if err := keys.CreateTables(ctx); err != nil {
			return nil, err
		}
	}
	s.Personal = keys
	return keys, nil
}
