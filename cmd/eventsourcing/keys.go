package main

// This file reads, copies, checks and sums the rows of the personal data
// keys table (personal_keys on SQLite, <app>_personal_keys on
// PostgreSQL) as they are stored: the table the library's PersonalKeys
// keep the data keys of Personal values in, one row per key.

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// keyRecord is a row of a keys table, as stored.
type keyRecord struct {
	ID         sql.NullString
	Subject    sql.NullString // as text
	Generation sql.NullInt64
	Wrapped    sql.Null[[]byte] // NULL once forgotten
	Created    keyTime
	Forgotten  keyTime
	Reason     sql.NullString
}

// keyTime is a time column of a keys table: RFC 3339 text on SQLite,
// timestamptz on PostgreSQL.
type keyTime struct {
	Valid bool      // not NULL
	Raw   string    // the stored text (on PostgreSQL, the time in RFC 3339)
	T     time.Time // the time, UTC, if it parses
	OK    bool      // it parses
}

// Scan reads a time column, whatever the database gives for it.
func (kt *keyTime) Scan(v any) error {
	*kt = keyTime{}
	switch x := v.(type) {
	case nil:
	case time.Time:
		kt.Valid, kt.T, kt.OK = true, x.UTC(), true
		kt.Raw = kt.T.Format(time.RFC3339Nano)
	case string:
		kt.setText(x)
	case []byte:
		kt.setText(string(x))
	default:
		kt.setText(fmt.Sprint(x))
	}
	return nil
}

func (kt *keyTime) setText(s string) {
	kt.Valid, kt.Raw = true, s
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		kt.T, kt.OK = t.UTC(), true
	}
}

// micro is the time to the microsecond, PostgreSQL's precision, which
// both sides of a copy are compared at.
func (kt keyTime) micro() int64 { return kt.T.Truncate(time.Microsecond).UnixMicro() }

// same reports whether two times are equal, to the microsecond.
func (kt keyTime) same(o keyTime) bool {
	switch {
	case kt.Valid != o.Valid:
		return false
	case !kt.Valid:
		return true
	case kt.OK && o.OK:
		return kt.micro() == o.micro()
	}
	return !kt.OK && !o.OK && kt.Raw == o.Raw
}

// sumBytes is the time's part of a row's checksum.
func (kt keyTime) sumBytes() []byte {
	switch {
	case !kt.Valid:
		return nil
	case kt.OK:
		return append([]byte{'t'}, int64Bytes(kt.micro())...)
	}
	return append([]byte{'x'}, kt.Raw...)
}

// subjectUUID returns the row's subject, if it is a UUID.
func (k keyRecord) subjectUUID() (uuid.UUID, bool) {
	if !k.Subject.Valid {
		return uuid.UUID{}, false
	}
	id, err := uuid.Parse(k.Subject.String)
	return id, err == nil
}

// forgotten reports whether the key's material is gone.
func (k keyRecord) forgotten() bool { return !k.Wrapped.Valid }

// keysTableOf returns the keys table of an application in a database, as
// the library names it (es.NewSQLPersonalKeys, Store.OpenPersonalKeys),
// and the library's PersonalKeys on it.
func keysTableOf(db *sql.DB, d es.Dialect, app, schema string) (es.Table, *es.PersonalKeys, error) {
	_, _, tracking := d.DefaultTables(app)
	t := es.Table{Schema: schema, Name: strings.TrimSuffix(tracking, "tracking") + "personal_keys"}
	keys, err := es.NewSQLPersonalKeys(db, d, &es.PersonalKeysOptions{AppName: app, Schema: schema})
	if err != nil {
		return t, nil, fmt.Errorf("personal keys table: %w", err)
	}
	if keys.Table() != t.String() {
		return t, nil, fmt.Errorf("the library names the personal keys table %s, this tool %s: rebuild the tool from the library's version", keys.Table(), t)
	}
	return t, keys, nil
}

// keysTableExists reports whether a keys table exists.
func keysTableExists(ctx context.Context, db *sql.DB, d es.Dialect, t es.Table) (bool, error) {
	var exists bool
	var err error
	if isPostgres(d) {
		err = db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", sanitizedTable(t)).Scan(&exists)
	} else {
		err = db.QueryRowContext(ctx, "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND lower(name) = lower(?)", t.Name).Scan(&exists)
	}
	if err != nil {
		return false, fmt.Errorf("look for table %s: %w", t, err)
	}
	return exists, nil
}

// keysSelect selects a keys table's columns, subject as text.
func (r tableReader) keysSelect(t es.Table) string {
	subject := "subject"
	if isPostgres(r.d) {
		subject = "subject::text"
	}
	return "SELECT key_id, " + subject + ", generation, wrapped_key, created_at, forgotten_at, reason FROM " + t.Quote(r.d)
}

// keysAfter reads the page of a keys table after the key ID after (from
// the first with ""), in key ID order. Rows without a key ID are not read.
func (r tableReader) keysAfter(ctx context.Context, dst []keyRecord, t es.Table, after string, limit int) ([]keyRecord, error) {
	q := r.keysSelect(t) + " WHERE key_id IS NOT NULL AND key_id > " + r.ph(1) + " ORDER BY key_id LIMIT " + fmt.Sprint(limit)
	return r.queryKeys(ctx, dst, q, after)
}

// keysWithIDs reads the rows of a keys table with the key IDs of keys.
func (r tableReader) keysWithIDs(ctx context.Context, dst []keyRecord, t es.Table, keys []keyRecord) ([]keyRecord, error) {
	if len(keys) == 0 {
		return dst[:0], nil
	}
	var b strings.Builder
	args := make([]any, len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.ph(i + 1))
		args[i] = k.ID.String
	}
	return r.queryKeys(ctx, dst, r.keysSelect(t)+" WHERE key_id IN ("+b.String()+")", args...)
}

func (r tableReader) queryKeys(ctx context.Context, dst []keyRecord, q string, args ...any) ([]keyRecord, error) {
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dst = dst[:0]
	for rows.Next() {
		var k keyRecord
		if err := rows.Scan(&k.ID, &k.Subject, &k.Generation, &k.Wrapped, &k.Created, &k.Forgotten, &k.Reason); err != nil {
			return nil, err
		}
		dst = append(dst, k)
	}
	return dst, rows.Err()
}

// keyIDsNull counts the rows of a keys table without a key ID (SQLite
// allows a NULL in a TEXT primary key).
func (r tableReader) keyIDsNull(ctx context.Context, t es.Table) (int64, error) {
	var n int64
	err := r.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t.Quote(r.d)+" WHERE key_id IS NULL").Scan(&n)
	return n, err
}

// addKey adds a keys table's row: subjects compared as UUIDs, times to
// the microsecond.
func (c *checksum) addKey(k keyRecord) {
	var id, subject, generation, wrapped, reason []byte
	if k.ID.Valid {
		id = append([]byte{}, k.ID.String...)
	}
	if k.Subject.Valid {
		if u, ok := k.subjectUUID(); ok {
			subject = append([]byte{}, u[:]...)
		} else {
			subject = append([]byte("text:"), k.Subject.String...)
		}
	}
	if k.Generation.Valid {
		generation = int64Bytes(k.Generation.Int64)
	}
	if k.Wrapped.Valid {
		wrapped = k.Wrapped.V
		if wrapped == nil {
			wrapped = []byte{}
		}
	}
	if k.Reason.Valid {
		reason = append([]byte{}, k.Reason.String...)
	}
	c.add(id, subject, generation, wrapped, k.Created.sumBytes(), k.Forgotten.sumBytes(), reason)
}

func sumKeys(ctx context.Context, r tableReader, t es.Table, sum *checksum) error {
	var page []keyRecord
	after := ""
	for {
		var err error
		if page, err = r.keysAfter(ctx, page, t, after, pageSize); err != nil {
			return err
		}
		for _, k := range page {
			sum.addKey(k)
			after = k.ID.String
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// keyProblems says what is wrong with a keys table's row, or "". With
// cipher, a live key must unwrap under it.
func keyProblems(k keyRecord, cipher es.Cipher) string {
	var problems []string
	if !validKeyID(k.ID.String) {
		problems = append(problems, fmt.Sprintf("key_id %q is not 32 lower-case hexadecimal digits (as the library makes them, and as sealed values name them)", k.ID.String))
	}
	switch _, ok := k.subjectUUID(); {
	case !k.Subject.Valid:
		problems = append(problems, "subject is NULL")
	case !ok:
		problems = append(problems, fmt.Sprintf("subject %q is not a UUID", k.Subject.String))
	}
	switch {
	case !k.Generation.Valid:
		problems = append(problems, "generation is NULL")
	case k.Generation.Int64 < 1:
		problems = append(problems, fmt.Sprintf("generation %d is not positive", k.Generation.Int64))
	}
	switch {
	case !k.Created.Valid:
		problems = append(problems, "created_at is NULL")
	case !k.Created.OK:
		problems = append(problems, fmt.Sprintf("created_at %q is not an RFC 3339 time", k.Created.Raw))
	}
	if k.Forgotten.Valid && !k.Forgotten.OK {
		problems = append(problems, fmt.Sprintf("forgotten_at %q is not an RFC 3339 time", k.Forgotten.Raw))
	}
	switch {
	case k.forgotten() && !k.Forgotten.Valid:
		problems = append(problems, "wrapped_key is NULL but forgotten_at is not set: the key is destroyed without a record of when")
	case !k.forgotten() && k.Forgotten.Valid:
		problems = append(problems, "forgotten_at is set but wrapped_key still holds the key material: the Forget did not complete (run Forget again)")
	}
	if !k.forgotten() {
		if reason := unwrapProblem(k.Wrapped.V, cipher); reason != "" {
			problems = append(problems, reason)
		}
	}
	return strings.Join(problems, "; ")
}

// unwrapProblem says why a wrapped key is not usable as the library uses
// it (decrypted by the application cipher, if set, into an AES key), or
// "". It never shows key material.
func unwrapProblem(wrapped []byte, cipher es.Cipher) string {
	raw := wrapped
	if cipher != nil {
		var err error
		if raw, err = cipher.Decrypt(wrapped); err != nil {
			if _, plain := es.NewAESCipher(wrapped); plain == nil {
				return "wrapped_key does not unwrap under the configured cipher: it is a bare key, not wrapped (unset CIPHER_KEY if the keys table is not wrapped)"
			}
			return "wrapped_key does not unwrap under the configured cipher: CIPHER_KEY is not the key it was wrapped with, or the wrapped key is damaged"
		}
	}
	if _, err := es.NewAESCipher(raw); err != nil {
		if cipher == nil {
			return fmt.Sprintf("wrapped_key is %d bytes, not an AES key: set CIPHER_KEY if the keys are wrapped under the application cipher", len(raw))
		}
		return fmt.Sprintf("wrapped_key unwraps to %d bytes, not an AES key", len(raw))
	}
	return ""
}

// validKeyID reports whether id is what the library makes: 32 lower-case
// hexadecimal digits.
func validKeyID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// personalKeys reads every row of the keys table, reporting each bad one.
func (v *verifier) personalKeys(ctx context.Context) error {
	s := v.s
	table := s.keys.String()
	n, err := v.r.keyIDsNull(ctx, s.keys)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	if n > 0 {
		v.sum.Keys += n
		v.bad(badRow{Table: table, Reason: fmt.Sprintf("%d rows with a NULL key_id: no sealed value can name them", n)})
	}
	var page []keyRecord
	after := ""
	for {
		if page, err = v.r.keysAfter(ctx, page, s.keys, after, pageSize); err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		for _, k := range page {
			v.sum.Keys++
			if k.forgotten() {
				v.sum.ForgottenKeys++
			}
			after = k.ID.String
			if reason := keyProblems(k, s.dec.cipher); reason != "" {
				v.bad(badRow{Table: table, KeyID: k.ID.String, Reason: reason})
			}
		}
		v.prog.show("verify %s: %d rows", table, v.sum.Keys)
		if len(page) < pageSize {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// keyCounts returns how many keys a keys table holds, and how many of
// them are forgotten.
func keyCounts(ctx context.Context, db *sql.DB, d es.Dialect, t es.Table) (keys, forgotten int64, err error) {
	q := "SELECT COUNT(*), COUNT(*) - COUNT(wrapped_key) FROM " + t.Quote(d)
	if err := db.QueryRowContext(ctx, q).Scan(&keys, &forgotten); err != nil {
		return 0, 0, fmt.Errorf("count keys in %s: %w", t, err)
	}
	return keys, forgotten, nil
}

// Copying. A key is copied unless the destination has it; a key the
// source has forgotten since it was copied is forgotten in the
// destination too (its material set to NULL, then, on PostgreSQL, VACUUM
// of the table, as Forget does; on SQLite with secure_delete and a WAL
// checkpoint). A forgotten key is never given material back, and a
// destination key that is not the source's is other data: copy refuses.

// keyAction is what a copy does with a key the destination holds.
type keyAction int

const (
	keySame   keyAction = iota // nothing
	keyForget                  // the source forgot it since: forget it
	keyOther                   // another key: refuse
)

// compareKeys says what to do with the destination's row dst of the
// source's row src (same key ID), and, for keyOther, why.
func compareKeys(src, dst keyRecord) (keyAction, string) {
	su, sok := src.subjectUUID()
	du, dok := dst.subjectUUID()
	switch {
	case sok != dok || su != du || (!sok && src.Subject != dst.Subject):
		return keyOther, fmt.Sprintf("key %s is of another subject", dst.ID.String)
	case src.Generation != dst.Generation:
		return keyOther, fmt.Sprintf("key %s is of another generation", dst.ID.String)
	case !src.Created.same(dst.Created):
		return keyOther, fmt.Sprintf("key %s was created at another time", dst.ID.String)
	case !src.forgotten() && dst.forgotten():
		return keyOther, fmt.Sprintf("key %s is forgotten in the destination, not in the source (copy never gives a forgotten key its material back: forget the subject in the source too, or copy into an empty store)", dst.ID.String)
	case src.forgotten() && !dst.forgotten():
		return keyForget, ""
	case !src.forgotten() && string(src.Wrapped.V) != string(dst.Wrapped.V):
		return keyOther, fmt.Sprintf("key %s holds other key material (were the source's keys re-wrapped under another cipher since? copy into an empty store)", dst.ID.String)
	case !src.Forgotten.same(dst.Forgotten) || src.Reason != dst.Reason:
		return keyOther, fmt.Sprintf("key %s was forgotten at another time or for another reason", dst.ID.String)
	}
	return keySame, ""
}

// keysCopy is the state of the copy of a keys table.
type keysCopy struct {
	src, dst es.Table
	lib      *es.PersonalKeys // the destination's, whose CreateTables makes the table
	exists   bool             // the destination's table exists
}

// prepareKeys finds the keys tables of both sides and refuses a
// destination whose keys table holds keys the source does not (or holds
// them otherwise), before anything is written. It returns nil if neither
// side has a keys table.
func (cp *copier) prepareKeys(ctx context.Context) (*keysCopy, error) {
	dstT, lib, err := keysTableOf(cp.dst.db, cp.dst.d, cp.dst.cfg.Name, cp.dst.events.Schema)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", cp.dst.where, err)
	}
	kc := &keysCopy{src: cp.src.keys, dst: dstT, lib: lib}
	cp.dst.keys = dstT
	if kc.exists, err = keysTableExists(ctx, cp.dst.db, cp.dst.d, dstT); err != nil {
		return nil, fmt.Errorf("destination %s: %w", cp.dst.where, err)
	}
	if !cp.src.keysExists {
		if kc.exists {
			var n int64
			if err := cp.dst.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+dstT.Quote(cp.dst.d)).Scan(&n); err != nil {
				return nil, fmt.Errorf("read the destination's %s: %w", dstT, err)
			}
			if n > 0 {
				return nil, cp.differs(dstT, fmt.Sprintf("%d personal data keys, where the source has no keys table (%s)", n, cp.src.keys))
			}
		}
		return nil, nil
	}
	if n, err := cp.sr.keyIDsNull(ctx, kc.src); err != nil {
		return nil, fmt.Errorf("read %s: %w", kc.src, err)
	} else if n > 0 {
		return nil, fmt.Errorf("%s: %d rows with a NULL key_id, which cannot be copied (run 'eventsourcing verify')", kc.src, n)
	}
	if !kc.exists {
		return kc, nil
	}
	if n, err := cp.dr.keyIDsNull(ctx, dstT); err != nil {
		return nil, fmt.Errorf("read the destination's %s: %w", dstT, err)
	} else if n > 0 {
		return nil, cp.differs(dstT, fmt.Sprintf("%d rows with a NULL key_id", n))
	}
	var page, found []keyRecord
	after := ""
	for {
		if page, err = cp.dr.keysAfter(ctx, page, dstT, after, cp.batch); err != nil {
			return nil, fmt.Errorf("read the destination's %s: %w", dstT, err)
		}
		if len(page) == 0 {
			return kc, nil
		}
		after = page[len(page)-1].ID.String
		if found, err = cp.sr.keysWithIDs(ctx, found, kc.src, page); err != nil {
			return nil, fmt.Errorf("read %s: %w", kc.src, err)
		}
		have := make(map[string]keyRecord, len(found))
		for _, k := range found {
			have[k.ID.String] = k
		}
		for _, d := range page {
			s, ok := have[d.ID.String]
			if !ok {
				return nil, cp.differs(dstT, fmt.Sprintf("key %s (subject %s, generation %d) is not in the source's %s", d.ID.String, d.Subject.String, d.Generation.Int64, kc.src))
			}
			if action, why := compareKeys(s, d); action == keyOther {
				return nil, cp.differs(dstT, why)
			}
		}
	}
}

// checkSourceKey refuses a source row that cannot be written as the
// destination's columns take it.
func checkSourceKey(t es.Table, k keyRecord) error {
	var problem string
	switch {
	case !k.ID.Valid:
		problem = "key_id is NULL"
	case !k.Subject.Valid:
		problem = "subject is NULL"
	case !k.Generation.Valid:
		problem = "generation is NULL"
	case !k.Created.OK:
		problem = fmt.Sprintf("created_at %q is not an RFC 3339 time", k.Created.Raw)
	case k.Forgotten.Valid && !k.Forgotten.OK:
		problem = fmt.Sprintf("forgotten_at %q is not an RFC 3339 time", k.Forgotten.Raw)
	default:
		if _, ok := k.subjectUUID(); !ok {
			problem = fmt.Sprintf("subject %q is not a UUID", k.Subject.String)
		}
	}
	if problem != "" {
		return fmt.Errorf("%s: key %q: %s, which cannot be copied (run 'eventsourcing verify')", t, k.ID.String, problem)
	}
	return nil
}

// keySubjectArg is the value written for a key's subject: the stored text
// itself between SQLite files, else the destination's form of the UUID.
func (cp *copier) keySubjectArg(k keyRecord) any {
	if !isPostgres(cp.src.d) && !isPostgres(cp.dst.d) {
		return k.Subject.String
	}
	id, _ := k.subjectUUID()
	return cp.dst.d.UUIDArg(id)
}

// keyTimeArg is the value written for a key's time: the stored text
// itself between SQLite files, RFC 3339 (as the library writes it) into
// SQLite, the time to the microsecond into PostgreSQL.
func (cp *copier) keyTimeArg(kt keyTime) any {
	switch {
	case !kt.Valid:
		return nil
	case isPostgres(cp.dst.d):
		return kt.T.Truncate(time.Microsecond)
	case !isPostgres(cp.src.d):
		return kt.Raw
	}
	return kt.T.Format(time.RFC3339Nano)
}

func nullString(s sql.NullString) any {
	if s.Valid {
		return s.String
	}
	return nil
}

// copyKeys creates the destination's keys table, as the library does, and
// copies the source's keys into it, page by page in key ID order: the
// keys it lacks, and the forgetting of those the source has forgotten
// since they were copied.
func (cp *copier) copyKeys(ctx context.Context, kc *keysCopy, res *copyResult) error {
	if err := kc.lib.CreateTables(ctx); err != nil {
		return fmt.Errorf("destination %s: %w", cp.dst.where, err)
	}
	conn, err := cp.dst.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("destination %s: %w", cp.dst.where, err)
	}
	defer conn.Close()
	pg := isPostgres(cp.dst.d)
	if !pg {
		// A forgotten key's bytes are overwritten where its row was, as
		// Forget does; the connection goes back to the pool as it came.
		var was int64
		if err := conn.QueryRowContext(ctx, "PRAGMA secure_delete").Scan(&was); err != nil {
			return fmt.Errorf("destination %s: read secure_delete: %w", cp.dst.where, err)
		}
		if was == 0 {
			if _, err := conn.ExecContext(ctx, "PRAGMA secure_delete = ON"); err != nil {
				return fmt.Errorf("destination %s: secure_delete: %w", cp.dst.where, err)
			}
			defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA secure_delete = OFF")
		}
	}
	d, q := cp.dst.d, kc.dst.Quote(cp.dst.d)
	subjectParam := func(i int) string {
		if pg {
			return d.Placeholder(i) + "::uuid"
		}
		return d.Placeholder(i)
	}
	update := "UPDATE " + q + " SET wrapped_key = NULL, forgotten_at = " + d.Placeholder(1) + ", reason = " + d.Placeholder(2) +
		" WHERE key_id = " + d.Placeholder(3) + " AND wrapped_key IS NOT NULL"
	var page, found []keyRecord
	after := ""
	for {
		if page, err = cp.sr.keysAfter(ctx, page, kc.src, after, cp.batch); err != nil {
			return fmt.Errorf("read %s: %w", kc.src, err)
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID.String
		for _, k := range page {
			if err := checkSourceKey(kc.src, k); err != nil {
				return err
			}
		}
		if found, err = cp.dr.keysWithIDs(ctx, found, kc.dst, page); err != nil {
			return fmt.Errorf("read the destination's %s: %w", kc.dst, err)
		}
		have := make(map[string]keyRecord, len(found))
		for _, k := range found {
			have[k.ID.String] = k
		}
		var b strings.Builder
		var args []any
		var forget []keyRecord
		n := 0
		for _, k := range page {
			if old, ok := have[k.ID.String]; ok {
				switch action, why := compareKeys(k, old); action {
				case keyOther:
					return cp.differs(kc.dst, why)
				case keyForget:
					forget = append(forget, k)
				}
				continue
			}
			if n > 0 {
				b.WriteString(", ")
			}
			p := 7 * n
			fmt.Fprintf(&b, "(%s, %s, %s, %s, %s, %s, %s)", d.Placeholder(p+1), subjectParam(p+2), d.Placeholder(p+3), d.Placeholder(p+4),
				d.Placeholder(p+5), d.Placeholder(p+6), d.Placeholder(p+7))
			var wrapped any
			if k.Wrapped.Valid {
				w := k.Wrapped.V
				if w == nil {
					w = []byte{}
				}
				wrapped = w
			}
			args = append(args, k.ID.String, cp.keySubjectArg(k), k.Generation.Int64, wrapped,
				cp.keyTimeArg(k.Created), cp.keyTimeArg(k.Forgotten), nullString(k.Reason))
			n++
		}
		if n > 0 || len(forget) > 0 {
			if err := cp.writeKeys(ctx, conn, kc.dst, b.String(), args, update, forget); err != nil {
				return err
			}
			res.Copied += int64(n)
			res.Forgotten += int64(len(forget))
		}
		cp.p.record(copyProgress{Table: kc.src.String(), Copied: res.Copied})
		cp.p.flush()
		cp.prog.show("copy %s: %d rows", kc.src, res.Copied)
		if err := cp.pace(ctx, n+len(forget)); err != nil {
			return err
		}
	}
	return cp.scrubKeys(ctx, conn, kc.dst)
}

// writeKeys inserts a page's new keys and forgets its keys forgotten
// since, in one transaction.
func (cp *copier) writeKeys(ctx context.Context, conn *sql.Conn, t es.Table, values string, args []any, update string, forget []keyRecord) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("copy keys into %s: %w", t, err)
	}
	defer tx.Rollback()
	if values != "" {
		q := "INSERT INTO " + t.Quote(cp.dst.d) + " (key_id, subject, generation, wrapped_key, created_at, forgotten_at, reason) VALUES " + values
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("copy keys into %s: %w", t, err)
		}
	}
	for _, k := range forget {
		r, err := tx.ExecContext(ctx, update, cp.keyTimeArg(k.Forgotten), nullString(k.Reason), k.ID.String)
		if err != nil {
			return fmt.Errorf("forget key %s in %s: %w", k.ID.String, t, err)
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("forget key %s in %s: %d rows changed (%v): was the destination written during the copy? Run copy again", k.ID.String, t, n, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("copy keys into %s: commit: %w", t, err)
	}
	return nil
}

// scrubKeys removes from disk the old versions of the destination's
// forgotten rows, as Forget does, if it has any (this run's, or those of
// an earlier run interrupted before it got here): VACUUM on PostgreSQL,
// a WAL checkpoint on SQLite (secure_delete zeroed the freed space).
func (cp *copier) scrubKeys(ctx context.Context, conn *sql.Conn, t es.Table) error {
	var forgotten int64
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t.Quote(cp.dst.d)+" WHERE wrapped_key IS NULL").Scan(&forgotten); err != nil {
		return fmt.Errorf("read the destination's %s: %w", t, err)
	}
	if forgotten == 0 {
		return nil
	}
	if isPostgres(cp.dst.d) {
		if _, err := conn.ExecContext(ctx, "VACUUM "+t.Quote(cp.dst.d)); err != nil {
			return fmt.Errorf("VACUUM %s, which removes the forgotten keys' old row versions: %w (run copy again, or VACUUM the table)", t, err)
		}
		return nil
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("destination %s: journal mode: %w", cp.dst.where, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil
	}
	for attempt := 0; ; attempt++ {
		var busy, logFrames, checkpointed int64
		if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
			return fmt.Errorf("destination %s: WAL checkpoint: %w", cp.dst.where, err)
		}
		if busy == 0 {
			return nil
		}
		if attempt == 20 {
			return fmt.Errorf("destination %s: readers kept the WAL checkpoint from completing, so the WAL file may still hold forgotten keys: run copy again", cp.dst.where)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
