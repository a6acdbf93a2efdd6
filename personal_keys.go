package eventsourcing

// PersonalKeys: one data key per data subject, created when the first
// personal value of the subject is written, cached, and destroyed by
// Forget (crypto-shredding). The keys themselves are kept by a backend:
// in memory (personal_memory.go) or in a table of the application's
// database (personal_sql.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults of [PersonalKeysOptions].
const (
	// DefaultPersonalCacheSize is how many data keys PersonalKeys keeps
	// in memory when CacheSize is zero.
	DefaultPersonalCacheSize = 10000
	// DefaultPersonalCacheAge is how long a cached data key is used
	// before it is read again, when CacheAge is zero.
	DefaultPersonalCacheAge = time.Minute
)

// maxReasonLength bounds the reason Forget records, in bytes.
const maxReasonLength = 1000

// PersonalKeysOptions configures [PersonalKeys]. The zero value (and nil)
// stores data keys unwrapped, in the default table, with the default
// cache.
type PersonalKeysOptions struct {
	// Cipher, if not nil, wraps (encrypts) each data key before it is
	// stored: give the application cipher, so that the keys table is no
	// more readable than the events. A [KeyRotator] cipher's keys are
	// rotated by [RotatePersonalKeys] (and [Store.RotateKeys]).
	Cipher Cipher
	// AppName names the table on PostgreSQL: <app>_personal_keys,
	// lower-cased, beside <app>_events. SQLite's is personal_keys.
	AppName string
	// Schema is the PostgreSQL schema of the table; empty means the
	// search path.
	Schema string
	// Table, if not empty, names the table instead.
	Table string
	// CacheSize is how many data keys are kept in memory; zero means
	// DefaultPersonalCacheSize, a negative value none.
	CacheSize int
	// CacheAge is how long a cached key is used before it is read again,
	// so that a Forget made by another process takes effect here within
	// it; zero means DefaultPersonalCacheAge, a negative value for ever.
	// A Forget made through this PersonalKeys takes effect at once.
	CacheAge time.Duration
}

// PersonalKeys holds one random AES-256 data key per data subject (a
// uuid.UUID: a customer's, a person's), the keys that seal [Personal]
// values. Set it as the Personal field of an [EventStore] and a
// [SnapshotStore]. Make it with [NewMemoryPersonalKeys] or
// [NewSQLPersonalKeys]; the methods of a PersonalKeys not made so return
// errors wrapping [ErrProgramming]. It is safe for concurrent use.
//
// A subject's key is created, in a transaction of its own and
// idempotently, when the first personal value of the subject is sealed:
// before the event that uses it is written, so that no stored event can
// reference a key that was never stored. Keys are cached in memory
// (bounded, see PersonalKeysOptions); a key that is not found is never
// cached.
//
// Forget destroys a subject's key material and keeps a row saying when
// and why. Values sealed under it then read back as forgotten: zero, with
// [Personal.Forgotten] reporting true; writing new personal data of the
// subject is refused with [ErrForgotten] unless Renew gives the subject a
// new key.
type PersonalKeys struct {
	backend personalBackend
	wrap    Cipher
	size    int
	age     time.Duration
	now     func() time.Time

	mu        sync.Mutex
	forgets   uint64 // counts Forget calls: a key read before one is not cached after it
	byID      map[string]*personalKey
	bySubject map[uuid.UUID]*personalKey
}

// personalKey is one data key: live (aead set) or forgotten (aead nil).
type personalKey struct {
	id      string
	subject uuid.UUID
	aead    *AESCipher
	loaded  time.Time
}

// keyRow is one row of a keys table.
type keyRow struct {
	ID         string
	Subject    uuid.UUID
	Generation int64
	Wrapped    []byte // nil when forgotten
	Created    time.Time
	Forgotten  time.Time // zero while the key lives
	Reason     string
}

// personalBackend stores key rows. Every method takes ctx and reports
// database failures as errors (never as a missing row).
type personalBackend interface {
	createTables(ctx context.Context) error
	// latest returns the subject's row of the highest generation.
	latest(ctx context.Context, subject uuid.UUID) (keyRow, bool, error)
	// insert adds a row unless one of its ID or (subject, generation)
	// exists.
	insert(ctx context.Context, row keyRow) error
	byID(ctx context.Context, id string) (keyRow, bool, error)
	// forget makes every live row of the subject forgotten, adding a
	// forgotten row of generation 1 if it has none.
	forget(ctx context.Context, subject uuid.UUID, reason string, at time.Time, newID string) error
	rows(ctx context.Context, subject uuid.UUID) ([]keyRow, error)
	scan(ctx context.Context, after StateKey, limit int) ([]keyRow, error)
	replace(ctx context.Context, replacements []StateReplacement) (int, error)
	table() string
}

func newPersonalKeys(b personalBackend, opts *PersonalKeysOptions) *PersonalKeys {
	var o PersonalKeysOptions
	if opts != nil {
		o = *opts
	}
	k := &PersonalKeys{backend: b, wrap: o.Cipher, size: o.CacheSize, age: o.CacheAge, now: time.Now,
		byID: map[string]*personalKey{}, bySubject: map[uuid.UUID]*personalKey{}}
	if k.size == 0 {
		k.size = DefaultPersonalCacheSize
	}
	if k.age == 0 {
		k.age = DefaultPersonalCacheAge
	}
	return k
}

func (k *PersonalKeys) check() error {
	if k == nil || k.backend == nil {
		return fmt.Errorf("%w: PersonalKeys not made with NewMemoryPersonalKeys or NewSQLPersonalKeys", ErrProgramming)
	}
	return nil
}

// CreateTables creates the keys table unless it exists (nothing in
// memory). It is idempotent.
func (k *PersonalKeys) CreateTables(ctx context.Context) error {
	if err := k.check(); err != nil {
		return err
	}
	return k.backend.createTables(ctx)
}

// Table names the keys table ("personal_keys" in memory).
func (k *PersonalKeys) Table() string {
	if k.check() != nil {
		return ""
	}
	return k.backend.table()
}

// WithCipher returns keys on the same storage (table, or memory) that
// wrap and unwrap with c (nil: unwrapped), with the same cache options
// and an empty cache: the keys as an application configured with another
// cipher sees them, such as during a key rotation.
func (k *PersonalKeys) WithCipher(c Cipher) *PersonalKeys {
	if k.check() != nil {
		return k
	}
	return newPersonalKeys(k.backend, &PersonalKeysOptions{Cipher: c, CacheSize: k.size, CacheAge: k.age})
}

// newKeyID returns a random key identifier: 32 hexadecimal digits.
func newKeyID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("%w: random key identifier: %w", ErrOperational, err)
	}
	return hex.EncodeToString(b[:]), nil
}

// validKeyID reports whether id is what newKeyID makes.
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

// fresh reports whether a cached key may still be used.
func (k *PersonalKeys) fresh(e *personalKey) bool {
	return k.age < 0 || k.now().Sub(e.loaded) < k.age
}

// cached returns the cached key of a subject or an ID, if fresh.
func (k *PersonalKeys) cachedSubject(subject uuid.UUID) *personalKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.bySubject[subject]; e != nil && k.fresh(e) {
		return e
	}
	return nil
}

func (k *PersonalKeys) cachedID(id string) (*personalKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.byID[id]
	if e == nil {
		return nil, false
	}
	if e.aead == nil { // forgotten: for good
		return e, true
	}
	return e, k.fresh(e)
}

// remember caches e (as the subject's current key if current), unless a
// Forget started since the read began (forgets != seen).
func (k *PersonalKeys) remember(e *personalKey, current bool, seen uint64) {
	if k.size < 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.forgets != seen {
		return
	}
	for len(k.byID) >= k.size && len(k.byID) > 0 {
		for id, old := range k.byID { // any one: the map's order is random
			delete(k.byID, id)
			if k.bySubject[old.subject] == old {
				delete(k.bySubject, old.subject)
			}
			break
		}
	}
	if k.size == 0 {
		return
	}
	k.byID[e.id] = e
	if current {
		k.bySubject[e.subject] = e
	}
}

func (k *PersonalKeys) forgetsSeen() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.forgets
}

// subjectKey returns the subject's current key, creating it if the subject
// has none. A forgotten subject is ErrForgotten.
func (k *PersonalKeys) subjectKey(ctx context.Context, subject uuid.UUID) (*personalKey, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	if e := k.cachedSubject(subject); e != nil {
		return e, nil
	}
	seen := k.forgetsSeen()
	row, ok, err := k.backend.latest(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("data key of subject %s: %w", subject, err)
	}
	if !ok {
		if row, err = k.create(ctx, subject, 1); err != nil {
			return nil, err
		}
	}
	if row.Wrapped == nil {
		return nil, &ForgottenError{Subject: subject, At: row.Forgotten, Reason: row.Reason}
	}
	e, err := k.unwrap(row)
	if err != nil {
		return nil, err
	}
	k.remember(e, true, seen)
	return e, nil
}

// create stores a new key of the subject at a generation, unless another
// writer stored one first, and returns the subject's latest row.
func (k *PersonalKeys) create(ctx context.Context, subject uuid.UUID, generation int64) (keyRow, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return keyRow{}, fmt.Errorf("%w: random data key: %w", ErrOperational, err)
	}
	id, err := newKeyID()
	if err != nil {
		return keyRow{}, err
	}
	wrapped := raw
	if k.wrap != nil {
		if wrapped, err = k.wrap.Encrypt(raw); err != nil {
			return keyRow{}, fmt.Errorf("wrap the data key of subject %s: %w", subject, err)
		}
	}
	row := keyRow{ID: id, Subject: subject, Generation: generation, Wrapped: wrapped, Created: k.now().UTC()}
	if err := k.backend.insert(ctx, row); err != nil {
		return keyRow{}, fmt.Errorf("create the data key of subject %s: %w", subject, err)
	}
	latest, ok, err := k.backend.latest(ctx, subject)
	if err != nil {
		return keyRow{}, fmt.Errorf("data key of subject %s: %w", subject, err)
	}
	if !ok {
		return keyRow{}, fmt.Errorf("%w: data key of subject %s: not found after it was created", ErrOperational, subject)
	}
	return latest, nil
}

// unwrap returns the usable key of a live row.
func (k *PersonalKeys) unwrap(row keyRow) (*personalKey, error) {
	raw := row.Wrapped
	if k.wrap != nil {
		var err error
		if raw, err = k.wrap.Decrypt(row.Wrapped); err != nil {
			return nil, fmt.Errorf("unwrap data key %s: %w", row.ID, err)
		}
	}
	aead, err := NewAESCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: data key %s: %w", ErrDecrypt, row.ID, err)
	}
	return &personalKey{id: row.ID, subject: row.Subject, aead: aead, loaded: k.now()}, nil
}

// keyByID returns the key of an ID, or nil if it was forgotten (or is not
// stored: then it is not cached).
func (k *PersonalKeys) keyByID(ctx context.Context, id string) (*personalKey, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	if e, ok := k.cachedID(id); ok {
		if e.aead == nil {
			return nil, nil
		}
		return e, nil
	}
	seen := k.forgetsSeen()
	row, ok, err := k.backend.byID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", id, err)
	}
	if !ok {
		return nil, nil // reads as forgotten; never cached
	}
	if row.Wrapped == nil {
		k.remember(&personalKey{id: id, subject: row.Subject}, false, seen)
		return nil, nil
	}
	e, err := k.unwrap(row)
	if err != nil {
		return nil, err
	}
	k.remember(e, false, seen)
	return e, nil
}

// Forget destroys the data key material of a subject for good, so that
// every personal value sealed under it reads back as forgotten, and
// records when and why (reason: an audit trail; put no personal data in
// it). A subject with no key yet gets a forgotten one, so that its
// personal data is refused from then on ([ErrForgotten]). Forgetting a
// subject again changes nothing.
//
// On SQLite the key bytes are overwritten on disk: Forget runs with
// secure_delete on and checkpoints the WAL (TRUNCATE) after it; if
// readers keep the checkpoint from completing it returns an error wrapping
// ErrOperational after the key is destroyed in the table: call it again.
// On PostgreSQL it runs VACUUM on the keys table after it, which removes
// the old row versions (see the README for what it does not remove).
//
// A zero subject or a reason over 1000 bytes is an error wrapping
// ErrProgramming; database failures are returned as such.
func (k *PersonalKeys) Forget(ctx context.Context, subject uuid.UUID, reason string) error {
	if err := k.check(); err != nil {
		return err
	}
	if subject == (uuid.UUID{}) {
		return fmt.Errorf("%w: Forget: zero subject", ErrProgramming)
	}
	if len(reason) > maxReasonLength {
		return fmt.Errorf("%w: Forget %s: reason of %d bytes, at most %d", ErrProgramming, subject, len(reason), maxReasonLength)
	}
	id, err := newKeyID()
	if err != nil {
		return err
	}
	k.evict(subject) // before: a writer's read from now on is not cached
	err = k.backend.forget(ctx, subject, reason, k.now().UTC(), id)
	k.evict(subject) // and after: nothing read before it is used
	if err != nil {
		return fmt.Errorf("forget subject %s: %w", subject, err)
	}
	return nil
}

// evict drops the subject's cached keys and counts a Forget.
func (k *PersonalKeys) evict(subject uuid.UUID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgets++
	delete(k.bySubject, subject)
	for id, e := range k.byID {
		if e.subject == subject {
			delete(k.byID, id)
		}
	}
}

// Renew gives a forgotten subject a new data key, so that new personal
// data of the subject can be written again (values sealed under the
// forgotten key stay forgotten): the explicit way past [ErrForgotten]. A
// subject whose key lives, or who has none yet, is left as it is.
func (k *PersonalKeys) Renew(ctx context.Context, subject uuid.UUID) error {
	if err := k.check(); err != nil {
		return err
	}
	if subject == (uuid.UUID{}) {
		return fmt.Errorf("%w: Renew: zero subject", ErrProgramming)
	}
	row, ok, err := k.backend.latest(ctx, subject)
	if err != nil {
		return fmt.Errorf("renew subject %s: %w", subject, err)
	}
	if !ok || row.Wrapped != nil {
		return nil
	}
	if _, err := k.create(ctx, subject, row.Generation+1); err != nil {
		return fmt.Errorf("renew subject %s: %w", subject, err)
	}
	k.evict(subject)
	return nil
}

// PersonalKeyRecord describes one data key of a subject, without its
// material: the audit trail Forget leaves.
type PersonalKeyRecord struct {
	// KeyID is the key's identifier, as stored in sealed values.
	KeyID string
	// Generation counts the subject's keys from 1 (Renew adds one).
	Generation int64
	// Created is when the key was stored.
	Created time.Time
	// Forgotten is when it was forgotten, or zero while it lives; Reason
	// is what Forget was given.
	Forgotten time.Time
	Reason    string
}

// Records returns the subject's keys, oldest first, or none if the
// subject has none.
func (k *PersonalKeys) Records(ctx context.Context, subject uuid.UUID) ([]PersonalKeyRecord, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	rows, err := k.backend.rows(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("data keys of subject %s: %w", subject, err)
	}
	out := make([]PersonalKeyRecord, len(rows))
	for i, r := range rows {
		out[i] = PersonalKeyRecord{KeyID: r.ID, Generation: r.Generation, Created: r.Created, Forgotten: r.Forgotten, Reason: r.Reason}
	}
	return out, nil
}

// ScanStates returns at most limit live keys after the key after, in
// (subject, generation) order, as StoredEvents whose OriginatorID is the
// subject, OriginatorVersion the generation and State the wrapped key:
// the [StateRewriter] that [RotatePersonalKeys] uses. Forgotten keys
// have no material and are not returned.
func (k *PersonalKeys) ScanStates(ctx context.Context, after StateKey, limit int) ([]StoredEvent, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: scan keys: limit %d, want > 0", ErrProgramming, limit)
	}
	rows, err := k.backend.scan(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]StoredEvent, len(rows))
	for i, r := range rows {
		out[i] = StoredEvent{OriginatorID: r.Subject, OriginatorVersion: r.Generation, State: r.Wrapped}
	}
	return out, nil
}

// ReplaceStates replaces, in one transaction, the wrapped key of each
// (subject, generation) that still holds its replacement's Old (see
// [StateRewriter]). A forgotten key is never given material back.
func (k *PersonalKeys) ReplaceStates(ctx context.Context, replacements []StateReplacement) (int, error) {
	if err := k.check(); err != nil {
		return 0, err
	}
	return k.backend.replace(ctx, replacements)
}

var _ StateRewriter = (*PersonalKeys)(nil)

// ForgottenError reports personal data of a forgotten subject that was to
// be written. It matches [ErrForgotten].
type ForgottenError struct {
	Subject uuid.UUID
	// At and Reason are when and why the subject was forgotten.
	At     time.Time
	Reason string
}

// Error says which subject was forgotten, and when (not why: the reason
// stays in the keys table).
func (e *ForgottenError) Error() string {
	return fmt.Sprintf("eventsourcing: subject %s was forgotten at %s: its personal data cannot be written (PersonalKeys.Renew gives it a new key)",
		e.Subject, e.At.Format(time.RFC3339))
}

// Is reports whether target is ErrForgotten.
func (e *ForgottenError) Is(target error) bool { return target == ErrForgotten }
