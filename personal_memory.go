package eventsourcing

// The in-memory keys backend of PersonalKeys.

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// NewMemoryPersonalKeys returns data keys kept in memory, with the same
// semantics as in a database: for tests, prototypes and a [MemoryRecorder]
// store. opts.AppName, Schema and Table are not used.
func NewMemoryPersonalKeys(opts *PersonalKeysOptions) *PersonalKeys {
	return newPersonalKeys(&memoryKeys{bySubject: map[uuid.UUID][]*keyRow{}, ids: map[string]*keyRow{}}, opts)
}

type memoryKeys struct {
	mu        sync.RWMutex
	bySubject map[uuid.UUID][]*keyRow // by generation
	ids       map[string]*keyRow
}

func (m *memoryKeys) table() string { return "personal_keys" }

func (m *memoryKeys) createTables(ctx context.Context) error {
	return ctxErr(ctx, "create personal keys table")
}

func (m *memoryKeys) latest(ctx context.Context, subject uuid.UUID) (keyRow, bool, error) {
	if err := ctxErr(ctx, "read data key"); err != nil {
		return keyRow{}, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	rows := m.bySubject[subject]
	if len(rows) == 0 {
		return keyRow{}, false, nil
	}
	return clonedRow(rows[len(rows)-1]), true, nil
}

func clonedRow(r *keyRow) keyRow {
	c := *r
	c.Wrapped = bytes.Clone(r.Wrapped)
	return c
}

func (m *memoryKeys) insert(ctx context.Context, row keyRow) error {
	if err := ctxErr(ctx, "create data key"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.insertLocked(row)
	return nil
}

func (m *memoryKeys) insertLocked(row keyRow) {
	if m.ids[row.ID] != nil {
		return
	}
	rows := m.bySubject[row.Subject]
	for _, r := range rows {
		if r.Generation == row.Generation {
			return
		}
	}
	r := &row
	r.Wrapped = bytes.Clone(row.Wrapped)
	rows = append(rows, r)
	slices.SortFunc(rows, func(a, b *keyRow) int { return int(a.Generation - b.Generation) })
	m.bySubject[row.Subject] = rows
	m.ids[row.ID] = r
}

func (m *memoryKeys) byID(ctx context.Context, id string) (keyRow, bool, error) {
	if err := ctxErr(ctx, "read data key"); err != nil {
		return keyRow{}, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.ids[id]
	if r == nil {
		return keyRow{}, false, nil
	}
	return clonedRow(r), true, nil
}

func (m *memoryKeys) forget(ctx context.Context, subject uuid.UUID, reason string, at time.Time, newID string) error {
	if err := ctxErr(ctx, "forget"); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.insertLocked(keyRow{ID: newID, Subject: subject, Generation: 1, Created: at, Forgotten: at, Reason: reason})
	for _, r := range m.bySubject[subject] {
		if r.Forgotten.IsZero() {
			clear(r.Wrapped) // the bytes too, not only the reference
			r.Wrapped, r.Forgotten, r.Reason = nil, at, reason
		}
	}
	return nil
}

func (m *memoryKeys) rows(ctx context.Context, subject uuid.UUID) ([]keyRow, error) {
	if err := ctxErr(ctx, "read data keys"); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []keyRow
	for _, r := range m.bySubject[subject] {
		c := clonedRow(r)
		c.Wrapped = nil
		out = append(out, c)
	}
	return out, nil
}

func (m *memoryKeys) scan(ctx context.Context, after StateKey, limit int) ([]keyRow, error) {
	if err := ctxErr(ctx, "scan data keys"); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	subjects := make([]uuid.UUID, 0, len(m.bySubject))
	for s := range m.bySubject {
		if bytes.Compare(s[:], after.OriginatorID[:]) >= 0 {
			subjects = append(subjects, s)
		}
	}
	slices.SortFunc(subjects, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	var out []keyRow
	for _, s := range subjects {
		for _, r := range m.bySubject[s] {
			if r.Wrapped == nil || compareKeys(StateKey{s, r.Generation}, after) <= 0 {
				continue
			}
			out = append(out, clonedRow(r))
			if len(out) == limit {
				return out, nil
			}
		}
	}
	return out, nil
}

func (m *memoryKeys) replace(ctx context.Context, replacements []StateReplacement) (int, error) {
	if err := ctxErr(ctx, "replace data keys"); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, rp := range replacements {
		for _, r := range m.bySubject[rp.Key.OriginatorID] {
			if r.Generation == rp.Key.OriginatorVersion && r.Wrapped != nil && bytes.Equal(r.Wrapped, rp.Old) {
				r.Wrapped = bytes.Clone(rp.New)
				n++
			}
		}
	}
	return n, nil
}
