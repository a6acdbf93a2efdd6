package eventsourcing

// Cipher key rotation: RotateKeys re-encrypts the stored states of a
// recorder (events or snapshots) from previous keys to the current key,
// row by row, through the StateRewriter capability the recorders of this
// package have.

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// StateKey names one stored row of an events or snapshots table: an
// aggregate's ID and version, the table's primary key.
type StateKey struct {
	OriginatorID      uuid.UUID
	OriginatorVersion int64
}

// A StateReplacement asks for one row's state to be replaced: by New, if
// the row still holds Old.
type StateReplacement struct {
	Key      StateKey
	Old, New []byte
}

// A StateRewriter is a recorder whose stored states can be rewritten in
// place, one row at a time, while the recorder is in use: what
// [RotateKeys] needs. [MemoryRecorder], [SQLRecorder] and
// [SQLSnapshotRecorder] are StateRewriters.
//
// Rewriting changes a row's state only: its topic, originator ID and
// version, and notification ID stay as they are, and no subscriber is
// woken. It is for changes that keep the state's meaning (re-encrypting
// the same plaintext under another key), never for editing events.
type StateRewriter interface {
	// ScanStates returns at most limit rows with keys after after, in
	// ascending key order (originator ID, then version), as the recorder
	// orders them. The zero StateKey is before every row (versions start
	// at 1). Limit must be positive (ErrProgramming otherwise).
	ScanStates(ctx context.Context, after StateKey, limit int) ([]StoredEvent, error)
	// ReplaceStates replaces the state of each row that still holds its
	// replacement's Old by New, in one transaction, and returns how many
	// it replaced. A row that is missing or holds another state is left
	// alone (another rotation got there first). Each row is rewritten
	// whole: a reader sees the old state or the new one.
	ReplaceStates(ctx context.Context, replacements []StateReplacement) (int, error)
}

var (
	_ StateRewriter = (*MemoryRecorder)(nil)
	_ StateRewriter = (*SQLRecorder)(nil)
	_ StateRewriter = (*SQLSnapshotRecorder)(nil)
)

// RotateOptions configures [RotateKeys]. The zero value (and nil) rotates
// every row, 100 rows per transaction, reporting no progress.
type RotateOptions struct {
	// BatchSize is how many rows are read, and rewritten in one
	// transaction, at a time. Zero means 100.
	BatchSize int
	// After resumes a rotation after this row: the Last of the progress
	// reported before it stopped. The zero value starts at the first row.
	// Starting again from the first row is always correct too: rows
	// already under the current key are read and left alone.
	After StateKey
	// Progress, if not nil, is called after each batch, and once more
	// with Done set when the table has been read to its end.
	Progress func(RotateProgress)
}

// RotateProgress reports how far a rotation has gone through a table.
type RotateProgress struct {
	// Table names the table rotated ("events" or "snapshots" for a
	// [Store]; the recorder's table name otherwise).
	Table string
	// Scanned is how many rows have been read, Rotated how many of them
	// were re-encrypted (the others were under the current key already).
	Scanned, Rotated int64
	// Last is the key of the last row read: RotateOptions.After to resume.
	Last StateKey
	// Done is set when every row has been read.
	Done bool
}

// RotateKeys re-encrypts the states that rec holds under one of c's
// previous keys with c's current key, in place, a batch of rows at a time,
// and returns the progress at its end. It is how a store moves to a new
// application key: first configure every writer and reader with the new
// key as CIPHER_KEY and the old one in CIPHER_KEY_PREVIOUS (so that they
// read both and write under the new one), then rotate the events and the
// snapshots ([Store.RotateKeys]), then drop the old key.
//
// Only the ciphertext changes: the plaintext bytes (for a compressed
// store, the zlib stream), topics, originator IDs and versions, and
// notification IDs and order stay as they were, so any reader with the
// current key (the Python library among them) reads the rotated store.
// Each row is replaced whole, and only if it still holds the state that
// was read, so the application may keep writing and reading meanwhile.
//
// RotateKeys is idempotent and resumable: a state under the current key is
// left alone, so a rotation that stopped (an error, a cancelled context, a
// killed process) can be run again from the start, or from the Last row
// of its progress (RotateOptions.After). A batch is written in one
// transaction: a rotation stopped mid-batch leaves that batch as it was.
//
// rec must be a [StateRewriter] (ErrProgramming otherwise). A state no key
// of c decrypts (another key, or not encrypted) stops the rotation with an
// error wrapping ErrDecrypt that names the row, before its batch is
// written. Database errors are returned as the recorder reports them.
func RotateKeys(ctx context.Context, rec AggregateRecorder, c KeyRotator, opts *RotateOptions) (RotateProgress, error) {
	return rotateKeys(ctx, rec, c, opts, "")
}

// RotatePersonalKeys re-wraps the data keys of keys that are wrapped under
// one of c's previous keys with c's current key, in place, as [RotateKeys]
// re-encrypts stored states (in batches, resumable, idempotent, with
// progress; the table is named by keys.Table()). The data keys themselves
// do not change, so every personal value stays readable, before, during
// and after. Forgotten keys have no material and are skipped. Configure
// keys with a cipher holding the new key and the previous ones (as the
// application cipher is, during a rotation): it unwraps with either.
//
// Keys stored unwrapped (no PersonalKeysOptions.Cipher) have nothing to
// rotate: it is an error wrapping ErrProgramming, as is a nil keys or c.
// [Store.RotateKeys] calls it for the store's Personal keys, if wrapped.
func RotatePersonalKeys(ctx context.Context, keys *PersonalKeys, c KeyRotator, opts *RotateOptions) (RotateProgress, error) {
	if err := keys.check(); err != nil {
		return RotateProgress{}, err
	}
	if keys.wrap == nil {
		return RotateProgress{Table: keys.Table()}, fmt.Errorf("%w: RotatePersonalKeys: the data keys are stored unwrapped (PersonalKeysOptions.Cipher is nil): nothing to rotate", ErrProgramming)
	}
	return rotateStates(ctx, keys, c, opts, keys.Table())
}

func rotateKeys(ctx context.Context, rec AggregateRecorder, c KeyRotator, opts *RotateOptions, table string) (RotateProgress, error) {
	rw, ok := rec.(StateRewriter)
	if !ok {
		return RotateProgress{Table: table}, fmt.Errorf("%w: RotateKeys: %T cannot rewrite stored states (it is no StateRewriter)", ErrProgramming, rec)
	}
	if table == "" {
		table = recorderTable(rec)
	}
	return rotateStates(ctx, rw, c, opts, table)
}

// rotateStates is RotateKeys on any StateRewriter.
func rotateStates(ctx context.Context, rw StateRewriter, c KeyRotator, opts *RotateOptions, table string) (RotateProgress, error) {
	var o RotateOptions
	if opts != nil {
		o = *opts
	}
	p := RotateProgress{Table: table, Last: o.After}
	if c == nil {
		return p, fmt.Errorf("%w: RotateKeys: nil cipher (a store with no cipher has nothing to rotate)", ErrProgramming)
	}
	if o.BatchSize < 0 {
		return p, fmt.Errorf("%w: RotateKeys: negative BatchSize %d", ErrProgramming, o.BatchSize)
	}
	if o.BatchSize == 0 {
		o.BatchSize = 100
	}
	var repl []StateReplacement
	for {
		rows, err := rw.ScanStates(ctx, p.Last, o.BatchSize)
		if err != nil {
			return p, fmt.Errorf("rotate keys of %s: %w", p.Table, err)
		}
		repl = repl[:0]
		for _, row := range rows {
			key := StateKey{row.OriginatorID, row.OriginatorVersion}
			next, changed, err := c.Reencrypt(row.State)
			if err != nil {
				return p, fmt.Errorf("rotate keys of %s: %s: %w", p.Table, key, err)
			}
			if changed {
				repl = append(repl, StateReplacement{Key: key, Old: row.State, New: next})
			}
		}
		if len(repl) > 0 {
			n, err := rw.ReplaceStates(ctx, repl)
			if err != nil {
				return p, fmt.Errorf("rotate keys of %s: %w", p.Table, err)
			}
			p.Rotated += int64(n)
		}
		p.Scanned += int64(len(rows))
		if len(rows) > 0 {
			last := rows[len(rows)-1]
			p.Last = StateKey{last.OriginatorID, last.OriginatorVersion}
		}
		if len(rows) < o.BatchSize {
			p.Done = true
		}
		if o.Progress != nil && (len(rows) > 0 || p.Done) {
			o.Progress(p)
		}
		if p.Done {
			return p, nil
		}
	}
}

// RotateKeys re-encrypts the store's events and then its snapshots from
// c's previous keys to its current key, as [RotateKeys] does for one
// recorder, then re-wraps its Personal data keys if it has wrapped ones
// ([RotatePersonalKeys]); progress reports name the table "events",
// "snapshots" or the keys table.
// opts.After applies to the events; a rotation resumed in the snapshots
// starts them again from their first row (rows already rotated cost a
// decryption each).
func (s *Store) RotateKeys(ctx context.Context, c KeyRotator, opts *RotateOptions) error {
	if _, err := rotateKeys(ctx, s.Recorder, c, opts, "events"); err != nil {
		return err
	}
	var o RotateOptions
	if opts != nil {
		o = *opts
	}
	o.After = StateKey{}
	if _, err := rotateKeys(ctx, s.Snapshots, c, &o, "snapshots"); err != nil {
		return err
	}
	if s.Personal != nil && s.Personal.wrap != nil {
		if _, err := RotatePersonalKeys(ctx, s.Personal, c, &o); err != nil {
			return err
		}
	}
	return nil
}

// recorderTable names a recorder's table for progress and errors.
func recorderTable(rec AggregateRecorder) string {
	switch r := rec.(type) {
	case *SQLRecorder:
		return r.events.String()
	case *SQLSnapshotRecorder:
		return r.r.events.String()
	}
	return "events"
}

// compareKeys orders state keys as the SQL tables do: originator ID
// (bytes; the same order as SQLite's hex text and PostgreSQL's uuid),
// then version.
func compareKeys(a, b StateKey) int {
	if c := bytes.Compare(a.OriginatorID[:], b.OriginatorID[:]); c != 0 {
		return c
	}
	switch {
	case a.OriginatorVersion < b.OriginatorVersion:
		return -1
	case a.OriginatorVersion > b.OriginatorVersion:
		return 1
	}
	return 0
}

// ScanStates returns at most limit stored rows after the key after, in
// key order (see [StateRewriter]).
func (r *MemoryRecorder) ScanStates(ctx context.Context, after StateKey, limit int) ([]StoredEvent, error) {
	if err := ctxErr(ctx, "scan states"); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: scan states: limit %d, want > 0", ErrProgramming, limit)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]uuid.UUID, 0, len(r.aggregates))
	for id := range r.aggregates {
		if bytes.Compare(id[:], after.OriginatorID[:]) >= 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	var out []StoredEvent
	for _, id := range ids {
		for _, nid := range r.aggregates[id] {
			e := r.at(nid).StoredEvent
			if compareKeys(StateKey{e.OriginatorID, e.OriginatorVersion}, after) <= 0 {
				continue
			}
			e.State = slices.Clone(e.State)
			out = append(out, e)
			if len(out) == limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// ReplaceStates replaces, all at once, the state of each row that still
// holds its replacement's Old (see [StateRewriter]).
func (r *MemoryRecorder) ReplaceStates(ctx context.Context, replacements []StateReplacement) (int, error) {
	if err := ctxErr(ctx, "replace states"); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rp := range replacements {
		nid := r.find(rp.Key.OriginatorID, rp.Key.OriginatorVersion)
		if nid < 0 {
			continue
		}
		e := r.at(nid)
		if !bytes.Equal(e.State, rp.Old) {
			continue
		}
		// A new slice: readers were given clones, and the old one is
		// not written to.
		e.State = slices.Clone(rp.New)
		n++
	}
	return n, nil
}

// ScanStates returns at most limit rows of the events table after the key
// after, in primary key order (see [StateRewriter]).
func (r *SQLRecorder) ScanStates(ctx context.Context, after StateKey, limit int) ([]StoredEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: scan states: limit %d, want > 0", ErrProgramming, limit)
	}
	d := r.d
	q := "SELECT originator_id, originator_version, topic, state FROM " + r.qEvents +
		" WHERE (originator_id, originator_version) > (" + d.Placeholder(1) + ", " + d.Placeholder(2) + ")" +
		" ORDER BY originator_id, originator_version LIMIT " + d.Placeholder(3)
	rows, err := r.db.QueryContext(ctx, q, d.UUIDArg(after.OriginatorID), after.OriginatorVersion, limit)
	if err != nil {
		return nil, r.dbError(ctx, "scan states", r.events, err)
	}
	defer rows.Close()
	var out []StoredEvent
	var id, topic, state rawColumn
	for rows.Next() {
		var e StoredEvent
		if err := rows.Scan(&id, &e.OriginatorVersion, &topic, &state); err != nil {
			return nil, r.dbError(ctx, "scan states", r.events, err)
		}
		if e.OriginatorID, err = uuid.ParseBytes(id.b); err != nil {
			return nil, &DatabaseError{Kind: ErrData, Op: "scan states", Table: r.events.String(),
				Err: fmt.Errorf("originator_id %q after %s: %w", id.b, after, err)}
		}
		e.Topic = string(topic.b)
		e.State = slices.Clone(state.b)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, r.dbError(ctx, "scan states", r.events, err)
	}
	return out, nil
}

// ReplaceStates replaces, in one transaction, the state of each row that
// still holds its replacement's Old (see [StateRewriter]). On SQLite it
// takes the recorder's writer turn, as inserts do; on PostgreSQL it does
// not take the append lock (an UPDATE adds no notification ID), and waits
// only for writers' transactions that hold it.
func (r *SQLRecorder) ReplaceStates(ctx context.Context, replacements []StateReplacement) (int, error) {
	if len(replacements) == 0 {
		return 0, nil
	}
	d := r.d
	q := "UPDATE " + r.qEvents + " SET state = " + d.Placeholder(1) +
		" WHERE originator_id = " + d.Placeholder(2) + " AND originator_version = " + d.Placeholder(3) +
		" AND state = " + d.Placeholder(4)
	if err := r.acquireWriter(ctx); err != nil {
		return 0, &DatabaseError{Kind: ErrOperational, Op: "replace states", Table: r.events.String(), Err: err}
	}
	defer r.releaseWriter()
	tx, err := r.begin(ctx)
	if err != nil {
		return 0, r.dbError(ctx, "replace states", r.events, err)
	}
	defer tx.Rollback()
	n := 0
	for _, rp := range replacements {
		res, err := tx.ExecContext(ctx, q, rp.New, d.UUIDArg(rp.Key.OriginatorID), rp.Key.OriginatorVersion, rp.Old)
		if err != nil {
			return 0, r.dbError(ctx, "replace states", r.events, err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, r.dbError(ctx, "replace states", r.events, err)
		}
		n += int(k)
	}
	if err := tx.Commit(); err != nil {
		// Whether it committed or not, running the rotation again is
		// right: a replaced row no longer holds Old.
		return 0, r.dbError(ctx, "replace states: commit (the batch may or may not be written: run the rotation again)", r.events, err)
	}
	return n, nil
}

// ScanStates returns at most limit snapshots after the key after, in
// primary key order (see [StateRewriter]).
func (s *SQLSnapshotRecorder) ScanStates(ctx context.Context, after StateKey, limit int) ([]StoredEvent, error) {
	return s.r.ScanStates(ctx, after, limit)
}

// ReplaceStates replaces, in one transaction, the state of each snapshot
// that still holds its replacement's Old (see [StateRewriter]).
func (s *SQLSnapshotRecorder) ReplaceStates(ctx context.Context, replacements []StateReplacement) (int, error) {
	return s.r.ReplaceStates(ctx, replacements)
}

// String returns the key as errors print it: "aggregate <id> version <n>".
func (k StateKey) String() string {
	return fmt.Sprintf("aggregate %s version %d", k.OriginatorID, k.OriginatorVersion)
}
