package eventsourcing_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// The personal data domain: a customer registers (name, email, birth
// date: personal), visits (nothing personal), and refers a friend (the
// friend's name: the friend's personal data, in the customer's event).
type pRegistered struct {
	es.DomainEvent
	Name    es.Personal[string]    `json:"name"`
	Email   es.Personal[string]    `json:"email"`
	Born    es.Personal[time.Time] `json:"born"`
	Country string                 `json:"country"`
}

type pVisited struct {
	es.DomainEvent
	Amount int64 `json:"amount"`
}

type pReferred struct {
	es.DomainEvent
	FriendID   uuid.UUID           `json:"friend_id"`
	FriendName es.Personal[string] `json:"friend_name" personal:"FriendID"`
	// Contacts are people of their own: each one's name is sealed under
	// the contact's ID.
	Contacts []pContact `json:"contacts"`
}

type pContact struct {
	ID   uuid.UUID           `json:"id"`
	Name es.Personal[string] `json:"name" personal:"ID"`
}

type pCustomer struct {
	es.Root
	Name    es.Personal[string] `json:"name"`
	Email   es.Personal[string] `json:"email"`
	Country string              `json:"country"`
	Visits  int64               `json:"visits"`
	Friends []uuid.UUID         `json:"friends"` // IDs: a name here would not be forgotten
}

func (c *pCustomer) Apply(e es.Event) {
	switch e := e.(type) {
	case *pRegistered:
		c.Name, c.Email, c.Country = e.Name, e.Email, e.Country
	case *pVisited:
		c.Visits += e.Amount
	case *pReferred:
		c.Friends = append(c.Friends, e.FriendID)
	}
}

func personalMapper(t testing.TB) *es.Mapper[es.Event] {
	t.Helper()
	m := es.NewMapper[es.Event](nil)
	for topic, e := range map[string]es.Event{"crm:Registered": &pRegistered{}, "crm:Visited": &pVisited{}, "crm:Referred": &pReferred{}} {
		if err := m.RegisterTopic(topic, e); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// personalBackend is one kind of store with personal keys.
type personalBackend struct {
	name string
	// open returns events and snapshots recorders and keys (wrapped with
	// c if not nil), and the SQLite file, if any.
	open func(t *testing.T, c es.Cipher) (es.ProcessRecorder, es.AggregateRecorder, *es.PersonalKeys, *sql.DB, string)
}

func personalBackends() []personalBackend {
	bs := []personalBackend{{"Memory", func(t *testing.T, c es.Cipher) (es.ProcessRecorder, es.AggregateRecorder, *es.PersonalKeys, *sql.DB, string) {
		return es.NewMemoryRecorder(), es.NewMemoryRecorder(), es.NewMemoryPersonalKeys(&es.PersonalKeysOptions{Cipher: c}), nil, ""
	}}}
	for _, b := range backends {
		bs = append(bs, personalBackend{b.name, func(t *testing.T, c es.Cipher) (es.ProcessRecorder, es.AggregateRecorder, *es.PersonalKeys, *sql.DB, string) {
			var file string
			var db *sql.DB
			var d es.Dialect
			var schema string
			if b.name == "SQLiteFile" {
				file = filepath.Join(t.TempDir(), "personal.db")
				var err error
				if db, err = sqlite.Open(context.Background(), file, 0); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				d = sqlite.Dialect{}
			} else {
				db, d, schema = b.open(t)
			}
			events := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bank"})
			snaps := newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bank"})
			keys, err := es.NewSQLPersonalKeys(db, d, &es.PersonalKeysOptions{Cipher: c, AppName: "Bank", Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			if err := keys.CreateTables(context.Background()); err != nil {
				t.Fatal(err)
			}
			return events, snaps, keys, db, file
		}})
	}
	return bs
}

type personalFixture struct {
	events    *es.EventStore[es.Event]
	snapshots *es.SnapshotStore[*pCustomer]
	repo      *es.Repository[*pCustomer]
	keys      *es.PersonalKeys
	db        *sql.DB
	file      string
	rec       es.ProcessRecorder
	snapRec   es.AggregateRecorder
	pg        bool
}

func newPersonalFixture(t *testing.T, b personalBackend, c es.Cipher) *personalFixture {
	t.Helper()
	rec, snapRec, keys, db, file := b.open(t, c)
	var mo *es.MapperOptions
	if c != nil {
		mo = &es.MapperOptions{Cipher: c}
	}
	m := es.NewMapper[es.Event](mo)
	for topic, e := range map[string]es.Event{"crm:Registered": &pRegistered{}, "crm:Visited": &pVisited{}, "crm:Referred": &pReferred{}} {
		if err := m.RegisterTopic(topic, e); err != nil {
			t.Fatal(err)
		}
	}
	events := es.NewEventStore(m, rec)
	events.Personal = keys
	snaps, err := es.NewSnapshotStore[*pCustomer]("crm:Customer", mo, snapRec)
	if err != nil {
		t.Fatal(err)
	}
	snaps.Personal = keys
	repo, err := es.NewRepository(events, snaps, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &personalFixture{events: events, snapshots: snaps, repo: repo, keys: keys, db: db, file: file, rec: rec, snapRec: snapRec, pg: b.name == "Postgres"}
}

var (
	aliceName, aliceEmail = "Alice Liddell", "alice@wonderland.example"
	bobName, carolName    = "Bob Bobbington", "Carol Carolsdottir"
	aliceBorn             = time.Date(1852, 5, 4, 0, 0, 0, 0, time.UTC)
)

func register(id uuid.UUID, name, email, country string) *pRegistered {
	e := &pRegistered{Name: es.NewPersonal(name), Email: es.NewPersonal(email), Born: es.NewPersonal(aliceBorn), Country: country}
	e.SetOriginator(id, 1)
	e.Timestamp = es.Now()
	return e
}

// TestPersonalForget forgets a subject with events, a snapshot and events
// shared with other subjects, on every backend, with and without an
// application cipher.
func TestPersonalForget(t *testing.T) {
	for _, b := range personalBackends() {
		for _, withCipher := range []bool{false, true} {
			name := b.name + "/Plain"
			if withCipher {
				name = b.name + "/Cipher"
			}
			t.Run(name, func(t *testing.T) {
				var c *es.AESCipher
				if withCipher {
					key, _ := es.CreateKey(32)
					c, _ = es.NewAESCipherBase64(key)
				}
				testPersonalForget(t, b, c)
			})
		}
	}
}

func testPersonalForget(t *testing.T, b personalBackend, c *es.AESCipher) {
	ctx := context.Background()
	var cipher es.Cipher
	if c != nil {
		cipher = c
	}
	f := newPersonalFixture(t, b, cipher)
	alice, bob, carol := uuid.New(), uuid.New(), uuid.New()

	// Alice registers, visits, refers Bob (Bob's name, in Alice's event)
	// and lists Carol; Bob registers and refers Alice.
	aliceReg := register(alice, aliceName, aliceEmail, "UK")
	visit := &pVisited{Amount: 3}
	visit.SetOriginator(alice, 2)
	ref := &pReferred{FriendID: bob, FriendName: es.NewPersonal(bobName), Contacts: []pContact{{carol, es.NewPersonal(carolName)}, {alice, es.NewPersonal(aliceName)}}}
	ref.SetOriginator(alice, 3)
	if _, err := f.events.Put(ctx, aliceReg, visit, ref); err != nil {
		t.Fatal(err)
	}
	if f.pg && !strings.HasSuffix(f.keys.Table(), ".bank_personal_keys") {
		t.Errorf("PostgreSQL keys table %q, want <schema>.bank_personal_keys", f.keys.Table())
	}
	if got := aliceReg.Name.KeyID(); got != "" {
		t.Errorf("Put changed the caller's event: key ID %q", got)
	}
	bobReg := register(bob, bobName, "bob@example.com", "FR")
	bobRef := &pReferred{FriendID: alice, FriendName: es.NewPersonal(aliceName)}
	bobRef.SetOriginator(bob, 2)
	if _, err := f.events.Put(ctx, bobReg, bobRef); err != nil {
		t.Fatal(err)
	}
	cust, err := f.repo.Load(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if cust.Name.Value() != aliceName || cust.Visits != 3 || !slices.Equal(cust.Friends, []uuid.UUID{bob}) {
		t.Fatalf("loaded %+v", cust)
	}
	if err := f.repo.TakeSnapshot(ctx, cust); err != nil {
		t.Fatal(err)
	}

	// Before Forget: read back whole; stored encrypted.
	evs, err := f.events.Get(ctx, alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := evs[0].(*pRegistered)
	if reg.Name.Value() != aliceName || reg.Email.Value() != aliceEmail || !reg.Born.Value().Equal(aliceBorn) || !reg.Name.Valid() || reg.Name.Forgotten() {
		t.Fatalf("read back %+v", reg)
	}
	plaintexts := [][]byte{[]byte(aliceName), []byte(aliceEmail), []byte(bobName), []byte(carolName)}
	checkNoPlaintext(t, f, alice, plaintexts)
	checkNoPlaintext(t, f, bob, plaintexts)

	keyBytes := personalKeyBytes(t, f, c)
	recs, err := f.keys.Records(ctx, alice)
	if err != nil || len(recs) != 1 || !recs[0].Forgotten.IsZero() || recs[0].KeyID != reg.Name.KeyID() {
		t.Fatalf("records before Forget: %+v, %v", recs, err)
	}

	// Forget Alice.
	if err := f.keys.Forget(ctx, alice, "erasure request #42"); err != nil {
		t.Fatal(err)
	}
	if err := f.keys.Forget(ctx, alice, "again"); err != nil {
		t.Fatalf("Forget again: %v", err)
	}
	recs, err = f.keys.Records(ctx, alice)
	if err != nil || len(recs) != 1 || recs[0].Forgotten.IsZero() || recs[0].Reason != "erasure request #42" {
		t.Fatalf("records after Forget: %+v, %v", recs, err)
	}

	evs, err = f.events.Get(ctx, alice, nil)
	if err != nil {
		t.Fatalf("read after Forget: %v", err)
	}
	reg = evs[0].(*pRegistered)
	if reg.Name.Value() != "" || reg.Email.Value() != "" || !reg.Born.Value().IsZero() || !reg.Name.Forgotten() || !reg.Born.Forgotten() || reg.Name.Valid() {
		t.Errorf("Alice's registration after Forget: %+v", reg)
	}
	if reg.Country != "UK" {
		t.Errorf("non-personal field: %q", reg.Country)
	}
	if got := es.ForgottenFields(reg); !slices.Equal(got, []string{"Name", "Email", "Born"}) {
		t.Errorf("ForgottenFields = %q", got)
	}
	if evs[1].(*pVisited).Amount != 3 {
		t.Errorf("visit after Forget: %+v", evs[1])
	}
	r := evs[2].(*pReferred)
	if r.FriendName.Value() != bobName || r.Contacts[0].Name.Value() != carolName || !r.Contacts[1].Name.Forgotten() {
		t.Errorf("Alice's referral after Forget: Bob %q, Carol %q, Alice forgotten %v", r.FriendName.Value(), r.Contacts[0].Name.Value(), r.Contacts[1].Name.Forgotten())
	}
	if got := es.ForgottenFields(r); !slices.Equal(got, []string{"Contacts[1].Name"}) {
		t.Errorf("ForgottenFields(referral) = %q", got)
	}
	bevs, err := f.events.Get(ctx, bob, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bevs[0].(*pRegistered).Name.Value() != bobName || !bevs[1].(*pReferred).FriendName.Forgotten() {
		t.Errorf("Bob's events after Forget: %+v %+v", bevs[0], bevs[1])
	}

	// The snapshot and the repository.
	snap, err := f.snapshots.Latest(ctx, alice, 0)
	if err != nil || snap == nil {
		t.Fatalf("snapshot after Forget: %v, %v", snap, err)
	}
	if !snap.State.Name.Forgotten() || snap.State.Country != "UK" || snap.State.Visits != 3 {
		t.Errorf("snapshot after Forget: %+v", snap.State)
	}
	cust, err = f.repo.Load(ctx, alice)
	if err != nil {
		t.Fatalf("load after Forget: %v", err)
	}
	if !cust.Name.Forgotten() || cust.Visits != 3 || cust.Version() != 3 {
		t.Errorf("loaded after Forget: %+v", cust)
	}

	// Writing: non-personal events go on; personal data is refused.
	if _, err := f.repo.Update(ctx, alice, func(c *pCustomer) error { return es.Trigger(c, &pVisited{Amount: 1}) }); err != nil {
		t.Errorf("non-personal event after Forget: %v", err)
	}
	cust, _ = f.repo.Load(ctx, alice)
	if err := f.repo.TakeSnapshot(ctx, cust); err != nil {
		t.Errorf("snapshot of a forgotten aggregate: %v", err)
	}
	again := register(alice, "Alice Again", "again@example.com", "UK")
	again.SetOriginator(alice, cust.Version()+1)
	_, err = f.events.Put(ctx, again)
	var fe *es.ForgottenError
	if !errors.Is(err, es.ErrForgotten) || !errors.As(err, &fe) || fe.Subject != alice {
		t.Fatalf("personal data after Forget: %v, want ErrForgotten", err)
	}
	if got, _ := f.events.Get(ctx, alice, &es.Query{GT: cust.Version()}); len(got) != 0 {
		t.Errorf("refused put wrote %d events", len(got))
	}
	recs, _ = f.keys.Records(ctx, alice)
	if len(recs) != 1 {
		t.Errorf("a refused put created a key: %+v", recs)
	}

	// The bytes: no plaintext, and no key material, anywhere.
	checkNoPlaintext(t, f, alice, plaintexts)
	checkNoKeyBytes(t, f, keyBytes[alice])

	// Renew: the explicit way back.
	if err := f.keys.Renew(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := f.events.Put(ctx, again); err != nil {
		t.Fatalf("put after Renew: %v", err)
	}
	evs, err = f.events.Get(ctx, alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !evs[0].(*pRegistered).Name.Forgotten() || evs[len(evs)-1].(*pRegistered).Name.Value() != "Alice Again" {
		t.Errorf("after Renew: first %+v, last %+v", evs[0], evs[len(evs)-1])
	}
	if recs, _ := f.keys.Records(ctx, alice); len(recs) != 2 || recs[1].Generation != 2 || !recs[1].Forgotten.IsZero() {
		t.Errorf("records after Renew: %+v", recs)
	}
}

// checkNoPlaintext fails if a stored state of the aggregate (events and
// snapshots, as the recorders return them) or the SQLite files hold one of
// the plaintexts.
func checkNoPlaintext(t *testing.T, f *personalFixture, id uuid.UUID, plaintexts [][]byte) {
	t.Helper()
	ctx := context.Background()
	var states [][]byte
	for _, rec := range []es.AggregateRecorder{f.rec, f.snapRec} {
		stored, err := rec.SelectEvents(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stored {
			states = append(states, s.State)
		}
	}
	states = append(states, sqliteFiles(t, f)...)
	for _, s := range states {
		for _, p := range plaintexts {
			if bytes.Contains(s, p) {
				t.Errorf("stored bytes hold the plaintext %q", p)
			}
		}
	}
}

// sqliteFiles returns the SQLite database and WAL files' bytes.
func sqliteFiles(t *testing.T, f *personalFixture) [][]byte {
	t.Helper()
	if f.file == "" {
		return nil
	}
	var out [][]byte
	for _, name := range []string{f.file, f.file + "-wal", f.file + "-journal"} {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		t.Fatal("no SQLite files")
	}
	return out
}

// personalKeyBytes reads every subject's wrapped key, and its raw key
// (unwrapped with c), from the keys table.
func personalKeyBytes(t *testing.T, f *personalFixture, c *es.AESCipher) map[uuid.UUID][][]byte {
	t.Helper()
	out := map[uuid.UUID][][]byte{}
	if f.db == nil {
		return out
	}
	rows, err := f.db.Query("SELECT subject, wrapped_key FROM " + f.keys.Table())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var subject string
		var wrapped []byte
		if err := rows.Scan(&subject, &wrapped); err != nil {
			t.Fatal(err)
		}
		id := uuid.MustParse(subject)
		raw := wrapped
		if c != nil {
			if raw, err = c.Decrypt(wrapped); err != nil {
				t.Fatal(err)
			}
			out[id] = append(out[id], wrapped)
		}
		if len(raw) != 32 {
			t.Fatalf("data key of %d bytes", len(raw))
		}
		out[id] = append(out[id], raw)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNoKeyBytes fails if the keys table (as SQL reads it) or the SQLite
// files hold any of the key bytes.
func checkNoKeyBytes(t *testing.T, f *personalFixture, keys [][]byte) {
	t.Helper()
	if f.db == nil {
		return
	}
	if len(keys) == 0 {
		t.Fatal("no key bytes to look for")
	}
	var blobs [][]byte
	rows, err := f.db.Query("SELECT key_id, wrapped_key FROM " + f.keys.Table())
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var wrapped []byte
		if err := rows.Scan(&id, &wrapped); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, wrapped)
	}
	rows.Close()
	blobs = append(blobs, sqliteFiles(t, f)...)
	if f.pg {
		blobs = append(blobs, pgTableFileVacuumed(t, f.db, f.keys.Table(), keys))
	}
	for _, b := range blobs {
		for _, k := range keys {
			if bytes.Contains(b, k) {
				t.Errorf("key bytes found after Forget (%d-byte key, in %d bytes)", len(k), len(b))
			}
		}
	}
}

// TestPersonalReadErrors: a key store that cannot be reached is an error,
// never "forgotten"; personal data without a key store is refused.
func TestPersonalReadErrors(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := es.NewSQLPersonalKeys(db, sqlite.Dialect{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	events := es.NewEventStore(personalMapper(t), es.NewMemoryRecorder())
	events.Personal = keys
	id := uuid.New()
	if _, err := events.Put(ctx, register(id, aliceName, aliceEmail, "UK")); err != nil {
		t.Fatal(err)
	}
	// A fresh PersonalKeys (nothing cached) on a closed database.
	cold, _ := es.NewSQLPersonalKeys(db, sqlite.Dialect{}, nil)
	events.Personal = cold
	db.Close()
	if _, err := events.Get(ctx, id, nil); err == nil || !errors.Is(err, es.ErrOperational) && !errors.Is(err, es.ErrProgramming) {
		t.Errorf("read with the keys unreachable: %v, want a database error", err)
	}
	if _, err := events.Put(ctx, register(uuid.New(), bobName, "b@example.com", "FR")); err == nil {
		t.Error("put with the keys unreachable: no error")
	}

	events.Personal = nil
	if _, err := events.Put(ctx, register(uuid.New(), bobName, "b@example.com", "FR")); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("personal data without keys: %v, want ErrProgramming", err)
	}
	if _, err := events.Get(ctx, id, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("read personal data without keys: %v, want ErrProgramming", err)
	}

	mem := es.NewMemoryPersonalKeys(nil)
	if err := mem.Forget(ctx, uuid.UUID{}, "x"); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Forget(zero): %v", err)
	}
	if err := mem.Forget(ctx, uuid.New(), strings.Repeat("x", 1001)); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Forget(long reason): %v", err)
	}
	var zero es.PersonalKeys
	if err := zero.Forget(ctx, uuid.New(), ""); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("zero PersonalKeys: %v", err)
	}
	if _, err := es.NewSQLPersonalKeys(nil, sqlite.Dialect{}, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil db: %v", err)
	}
	if _, err := es.NewSQLPersonalKeys(db, sqlite.Dialect{}, &es.PersonalKeysOptions{Table: "bad name"}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("bad table name: %v", err)
	}
}

type pBadTag struct {
	es.DomainEvent
	Name es.Personal[string] `json:"name" personal:"Nobody"`
}

type pBadTagType struct {
	es.DomainEvent
	Who  string              `json:"who"`
	Name es.Personal[string] `json:"name" personal:"Who"`
}

type pInMap struct {
	es.DomainEvent
	Names map[string]es.Personal[string] `json:"names"`
}

type pUnexportedSubject struct {
	es.DomainEvent
	who  uuid.UUID
	Name es.Personal[string] `json:"name" personal:"who"`
}

type pZeroSubject struct {
	es.DomainEvent
	Who  uuid.UUID           `json:"who"`
	Name es.Personal[string] `json:"name" personal:"Who"`
}

// TestPersonalRefused: events whose personal data cannot be sealed are
// errors, not panics, and write nothing.
func TestPersonalRefused(t *testing.T) {
	ctx := context.Background()
	m := es.NewMapper[es.Event](nil)
	for topic, e := range map[string]es.Event{"t:BadTag": &pBadTag{}, "t:BadTagType": &pBadTagType{}, "t:InMap": &pInMap{}, "t:Zero": &pZeroSubject{}, "t:Unexported": &pUnexportedSubject{}} {
		if err := m.RegisterTopic(topic, e); err != nil {
			t.Fatal(err)
		}
	}
	rec := es.NewMemoryRecorder()
	events := es.NewEventStore(m, rec)
	events.Personal = es.NewMemoryPersonalKeys(nil)
	id := uuid.New()
	for _, c := range []struct {
		e    es.Event
		want error
	}{
		{&pBadTag{Name: es.NewPersonal("x")}, es.ErrProgramming},
		{&pBadTagType{Name: es.NewPersonal("x")}, es.ErrProgramming},
		{&pInMap{Names: map[string]es.Personal[string]{"a": es.NewPersonal("x")}}, es.ErrUnsupportedType},
		{&pZeroSubject{Name: es.NewPersonal("x")}, es.ErrProgramming},
		{&pUnexportedSubject{Name: es.NewPersonal("x")}, es.ErrProgramming},
	} {
		c.e.(interface{ SetOriginator(uuid.UUID, int64) }).SetOriginator(id, 1)
		if _, err := events.Put(ctx, c.e); !errors.Is(err, c.want) {
			t.Errorf("%T: %v, want %v", c.e, err, c.want)
		}
	}
	if n, _ := rec.MaxNotificationID(ctx); n != 0 {
		t.Errorf("%d events written", n)
	}
	// A zero subject with no value to seal is fine (an optional friend).
	e := &pZeroSubject{}
	e.SetOriginator(id, 1)
	if _, err := events.Put(ctx, e); err != nil {
		t.Errorf("zero subject, no value: %v", err)
	}
}

// TestPersonalStoredForm: the stored state holds {"k": ..., "c": ...} in
// the field's place, the rest as before; the value's plaintext is the
// transcoder's JSON (datetime_iso inside).
func TestPersonalStoredForm(t *testing.T) {
	ctx := context.Background()
	rec := es.NewMemoryRecorder()
	events := es.NewEventStore(personalMapper(t), rec)
	events.Personal = es.NewMemoryPersonalKeys(nil)
	id := uuid.New()
	e := register(id, aliceName, aliceEmail, "UK")
	e.Email = es.Personal[string]{} // none
	if _, err := events.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	stored, _ := rec.SelectEvents(ctx, id, nil)
	var state map[string]any
	if err := es.NewTranscoder().Decode(stored[0].State, &state); err != nil {
		t.Fatal(err)
	}
	name, _ := state["name"].(map[string]any)
	k, _ := name["k"].(string)
	c, _ := name["c"].(string)
	if len(k) != 32 || c == "" || len(name) != 2 {
		t.Errorf("stored name %v", state["name"])
	}
	if email, _ := state["email"].(map[string]any); email == nil || len(email) != 0 {
		t.Errorf("stored empty email %v, want {}", state["email"])
	}
	if state["country"] != "UK" {
		t.Errorf("country %v", state["country"])
	}
	if strings.Contains(k, strings.ReplaceAll(id.String(), "-", "")[:8]) {
		t.Errorf("key ID %s looks like the subject %s", k, id)
	}
	got, err := events.Get(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := got[0].(*pRegistered)
	if g.Email.Valid() || g.Email.Forgotten() || !g.Born.Value().Equal(aliceBorn) {
		t.Errorf("read back %+v", g)
	}
	if s := g.Name.String(); strings.Contains(s, aliceName) {
		t.Errorf("String prints the value: %s", s)
	}
}

// TestPersonalRunnerAcrossForget: a runner following the log keeps going
// across a Forget, seeing the forgotten values as such; a subscription
// too.
func TestPersonalRunnerAcrossForget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys := es.NewMemoryPersonalKeys(nil)
	up := es.NewEventStore(personalMapper(t), es.NewMemoryRecorder())
	up.Personal = keys
	down := es.NewEventStore(personalMapper(t), es.NewMemoryRecorder())
	var mu sync.Mutex
	var seen []string
	r, err := es.NewRunner("crm", up, down, func(ctx context.Context, n es.Recorded[es.Event]) ([]es.Event, error) {
		if reg, ok := n.Event.(*pRegistered); ok {
			mu.Lock()
			s := reg.Name.Value()
			if reg.Name.Forgotten() {
				s = "(forgotten)"
			}
			seen = append(seen, s)
			mu.Unlock()
		}
		return nil, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	alice, bob := uuid.New(), uuid.New()
	ids, err := up.Put(ctx, register(alice, aliceName, aliceEmail, "UK"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := keys.Forget(ctx, alice, "test"); err != nil {
		t.Fatal(err)
	}
	// Alice's event processed again elsewhere reads as forgotten; the
	// runner goes on with Bob's.
	ids, err = up.Put(ctx, register(bob, bobName, "b@example.com", "FR"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	if !slices.Equal(seen, []string{aliceName, bobName}) {
		t.Errorf("runner saw %q", seen)
	}
	mu.Unlock()
	var subscribed []string
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	for n, err := range up.Subscribe(sctx, 0, nil) {
		if err != nil {
			t.Fatal(err)
		}
		reg := n.Event.(*pRegistered)
		subscribed = append(subscribed, reg.Name.Value()+"/"+strings.Join(es.ForgottenFields(reg), ","))
		if len(subscribed) == 2 {
			break
		}
	}
	if !slices.Equal(subscribed, []string{"/Name,Email,Born", bobName + "/"}) {
		t.Errorf("subscription read %q", subscribed)
	}
}

// TestPersonalForgetConcurrent: Forget while writers append personal
// data of the same subject. Every put either succeeds under the one key
// (and then reads as forgotten) or is refused with ErrForgotten; no key
// is created after Forget; no event references a missing key.
func TestPersonalForgetConcurrent(t *testing.T) {
	for _, b := range personalBackends() {
		if b.name == "SQLiteMemory" {
			continue // one connection: nothing runs concurrently
		}
		for _, created := range []bool{true, false} {
			name := b.name + "/KeyExists"
			if !created {
				name = b.name + "/KeyBeingCreated"
			}
			t.Run(name, func(t *testing.T) { testPersonalForgetConcurrent(t, b, created) })
		}
	}
}

// testPersonalForgetConcurrent forgets the subject once writers have
// written 20 events (created), or as they start, while its key is being
// created.
func testPersonalForgetConcurrent(t *testing.T, b personalBackend, created bool) {
	ctx := context.Background()
	f := newPersonalFixture(t, b, nil)
	subject := uuid.New()
	const writers = 4
	var wg sync.WaitGroup
	var written, refused atomic.Int64
	forgotten := make(chan struct{})
	var firstAfter atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agg := uuid.New()
			for v := int64(1); v <= 200; v++ {
				after := false
				select {
				case <-forgotten:
					after = true
				default:
				}
				e := &pReferred{FriendID: subject, FriendName: es.NewPersonal("friend")}
				e.SetOriginator(agg, v)
				_, err := f.events.Put(ctx, e)
				switch {
				case err == nil:
					written.Add(1)
					if after {
						firstAfter.Add(1)
					}
				case errors.Is(err, es.ErrForgotten):
					refused.Add(1)
					return
				default:
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	for created && written.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	if err := f.keys.Forget(ctx, subject, "concurrent"); err != nil {
		t.Fatal(err)
	}
	close(forgotten)
	wg.Wait()
	if firstAfter.Load() != 0 {
		t.Errorf("%d puts started after Forget returned succeeded", firstAfter.Load())
	}
	recs, err := f.keys.Records(ctx, subject)
	if err != nil || len(recs) != 1 || recs[0].Forgotten.IsZero() {
		t.Fatalf("records: %+v, %v (a key created after Forget?)", recs, err)
	}
	rec := f.rec.(es.ApplicationRecorder)
	ns, err := rec.SelectNotifications(ctx, 1, 1_000_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(ns)) != written.Load() {
		t.Errorf("%d events stored, %d puts succeeded", len(ns), written.Load())
	}
	for _, n := range ns {
		evs, err := f.events.Get(ctx, n.OriginatorID, &es.Query{GTE: n.OriginatorVersion, LTE: n.OriginatorVersion})
		if err != nil {
			t.Fatal(err)
		}
		p := evs[0].(*pReferred).FriendName
		if !p.Forgotten() || p.KeyID() != recs[0].KeyID {
			t.Fatalf("event %d: forgotten %v key %s, want forgotten under %s", n.ID, p.Forgotten(), p.KeyID(), recs[0].KeyID)
		}
	}
	t.Logf("%d written, %d writers refused", written.Load(), refused.Load())
}

// pgTableFile returns the bytes of a PostgreSQL table's file on disk, as
// they are after a CHECKPOINT (the test database's user is a superuser).
// pgTableFileVacuumed is pgTableFile once VACUUM has removed the row
// versions that hold any of keys, as the README says it does once no
// transaction older than the Forget is open: the test packages that run
// at the same time on the same server (go test ./...) hold such
// transactions for moments, so VACUUM is run again, for up to 20 s, while
// the file still holds a key. A key that stays is then reported.
func pgTableFileVacuumed(t *testing.T, db *sql.DB, table string, keys [][]byte) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b := pgTableFile(t, db, table)
		found := false
		for _, k := range keys {
			found = found || bytes.Contains(b, k)
		}
		if !found || time.Now().After(deadline) {
			return b
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := db.Exec("VACUUM " + table); err != nil {
			t.Fatal(err)
		}
	}
}

func pgTableFile(t *testing.T, db *sql.DB, table string) []byte {
	t.Helper()
	if _, err := db.Exec("CHECKPOINT"); err != nil {
		t.Skipf("CHECKPOINT (needs a superuser): %v", err)
	}
	var b []byte
	if err := db.QueryRow("SELECT pg_read_binary_file(pg_relation_filepath($1))", table).Scan(&b); err != nil {
		t.Skipf("read the table's file (needs a superuser): %v", err)
	}
	if len(b) == 0 {
		t.Fatalf("table %s: empty file", table)
	}
	return b
}

// TestPersonalProjectionOneConnection: a projection whose view, upstream
// log and keys share one in-memory SQLite database (one connection) reads
// personal values: the keys are read before the projection's transaction
// holds the connection.
func TestPersonalProjectionOneConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, d, _ := sqliteMemory(t)
	rec := newSQLRecorder(t, db, d, "", es.SQLOptions{})
	keys, err := es.NewSQLPersonalKeys(db, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	up := es.NewEventStore(personalMapper(t), rec)
	up.Personal = keys
	alice := uuid.New()
	if _, err := up.Put(ctx, register(alice, aliceName, aliceEmail, "UK")); err != nil {
		t.Fatal(err)
	}
	// Another PersonalKeys: nothing cached, so the projection reads the key.
	up.Personal = keys.WithCipher(nil)
	var names []string
	p, err := es.NewProjection("crm", up, rec, func(ctx context.Context, tx *sql.Tx, n es.Recorded[es.Event]) error {
		names = append(names, n.Event.(*pRegistered).Name.Value())
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunUntilCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{aliceName}) {
		t.Errorf("projection saw %q", names)
	}
}

// TestPersonalMissingKeyAndCacheAge: a key identifier that is not in the
// keys table reads as forgotten (and is not cached: it reads once the key
// is there); a Forget made through another PersonalKeys on the same table
// takes effect here once the cached key is older than CacheAge.
func TestPersonalMissingKeyAndCacheAge(t *testing.T) {
	ctx := context.Background()
	db, d, _ := sqliteFile(t)
	open := func(age time.Duration) *es.PersonalKeys {
		k, err := es.NewSQLPersonalKeys(db, d, &es.PersonalKeysOptions{CacheAge: age})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.CreateTables(ctx); err != nil {
			t.Fatal(err)
		}
		return k
	}
	rec := es.NewMemoryRecorder()
	writer := es.NewEventStore(personalMapper(t), rec)
	writer.Personal = es.NewMemoryPersonalKeys(nil) // keys elsewhere
	alice := uuid.New()
	if _, err := writer.Put(ctx, register(alice, aliceName, aliceEmail, "UK")); err != nil {
		t.Fatal(err)
	}
	reader := es.NewEventStore(personalMapper(t), rec)
	reader.Personal = open(0)
	evs, err := reader.Get(ctx, alice, nil)
	if err != nil || !evs[0].(*pRegistered).Name.Forgotten() {
		t.Fatalf("unknown key: %v, %v; want forgotten, no error", evs, err)
	}

	// Two processes' keys on one table.
	bob := uuid.New()
	here, there := open(50*time.Millisecond), open(0)
	reader.Personal = here
	writer.Personal = here
	if _, err := writer.Put(ctx, register(bob, bobName, "b@example.com", "FR")); err != nil {
		t.Fatal(err)
	}
	if evs, err := reader.Get(ctx, bob, nil); err != nil || evs[0].(*pRegistered).Name.Value() != bobName {
		t.Fatalf("read: %v", err)
	}
	if err := there.Forget(ctx, bob, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if evs, err := reader.Get(ctx, bob, nil); err != nil || !evs[0].(*pRegistered).Name.Forgotten() {
		t.Errorf("after CacheAge: %v, %v, want forgotten", evs, err)
	}
	again := register(bob, "Bob again", "b@example.com", "FR")
	again.SetOriginator(bob, 2)
	if _, err := writer.Put(ctx, again); !errors.Is(err, es.ErrForgotten) {
		t.Errorf("write after CacheAge: %v, want ErrForgotten", err)
	}
}

type pAddress struct {
	Street es.Personal[string] `json:"street"`
	City   string              `json:"city"`
}

type pInner struct {
	Phone es.Personal[string] `json:"phone"`
}

type pShapes struct {
	es.DomainEvent
	pInner                            // embedded, unexported: its Phone is promoted
	Home      *pAddress               `json:"home"`
	Previous  []pAddress              `json:"previous"`
	Nicknames [2]es.Personal[string]  `json:"nicknames"`
	Tags      []es.Personal[[]string] `json:"tags"`
	Other     uuid.UUID               `json:"other"`
	ForOther  *pAddress               `json:"for_other" personal:"Other"`
	Born      es.Personal[time.Time]  `json:"born"`
	Skipped   es.Personal[string]     `json:"-"`
}

// TestPersonalShapes: Personal values in embedded structs, pointers,
// slices and arrays are sealed in a copy (the caller's event is not
// changed), read back, and forgotten by subject.
func TestPersonalShapes(t *testing.T) {
	ctx := context.Background()
	m := es.NewMapper[es.Event](nil)
	if err := m.RegisterTopic("t:Shapes", &pShapes{}); err != nil {
		t.Fatal(err)
	}
	rec := es.NewMemoryRecorder()
	events := es.NewEventStore(m, rec)
	events.Personal = es.NewMemoryPersonalKeys(nil)
	id, other := uuid.New(), uuid.New()
	born := time.Date(1990, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &pShapes{
		pInner:    pInner{Phone: es.NewPersonal("+44 1")},
		Home:      &pAddress{Street: es.NewPersonal("1 Home St"), City: "Oxford"},
		Previous:  []pAddress{{es.NewPersonal("2 Old Rd"), "Bath"}},
		Nicknames: [2]es.Personal[string]{es.NewPersonal("Ally-the-nickname"), {}},
		Tags:      []es.Personal[[]string]{es.NewPersonal([]string{"a", "b"})},
		Other:     other,
		ForOther:  &pAddress{Street: es.NewPersonal("3 Other Ave"), City: "York"},
		Born:      es.NewPersonal(born),
		Skipped:   es.NewPersonal("not written"),
	}
	e.SetOriginator(id, 1)
	if _, err := events.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	if e.Home.Street.KeyID() != "" || e.Previous[0].Street.KeyID() != "" || e.Nicknames[0].KeyID() != "" || e.Phone.KeyID() != "" || e.ForOther.Street.KeyID() != "" {
		t.Fatal("Put changed the caller's event")
	}
	stored, _ := rec.SelectEvents(ctx, id, nil)
	for _, p := range []string{"+44 1", "1 Home St", "2 Old Rd", "Ally-the-nickname", "3 Other Ave", "not written", "1990-01"} {
		if bytes.Contains(stored[0].State, []byte(p)) {
			t.Errorf("stored state holds %q", p)
		}
	}
	read := func() *pShapes {
		t.Helper()
		evs, err := events.Get(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		return evs[0].(*pShapes)
	}
	g := read()
	if g.Phone.Value() != "+44 1" || g.Home.Street.Value() != "1 Home St" || g.Home.City != "Oxford" || g.Previous[0].Street.Value() != "2 Old Rd" ||
		g.Nicknames[0].Value() != "Ally-the-nickname" || g.Nicknames[1].Valid() || !slices.Equal(g.Tags[0].Value(), []string{"a", "b"}) ||
		g.ForOther.Street.Value() != "3 Other Ave" || !g.Born.Value().Equal(born) || g.Skipped.Valid() {
		t.Errorf("read back %+v", g)
	}
	if err := events.Personal.Forget(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	g = read()
	want := []string{"Phone", "Home.Street", "Previous[0].Street", "Nicknames[0]", "Tags[0]", "Born"}
	if got := es.ForgottenFields(g); !slices.Equal(got, want) {
		t.Errorf("ForgottenFields = %q, want %q", got, want)
	}
	if g.ForOther.Street.Value() != "3 Other Ave" || g.Home.City != "Oxford" {
		t.Errorf("the other subject's data, or a plain field, after Forget: %+v", g)
	}
}

// TestPersonalPlaintextForm: a sealed value's plaintext is the
// transcoder's JSON of the value (datetime_iso for a time), decryptable
// with the data key from the keys table by the documented layout.
func TestPersonalPlaintextForm(t *testing.T) {
	ctx := context.Background()
	db, d, _ := sqliteFile(t)
	keys, err := es.NewSQLPersonalKeys(db, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.CreateTables(ctx); err != nil {
		t.Fatal(err)
	}
	rec := es.NewMemoryRecorder()
	events := es.NewEventStore(personalMapper(t), rec)
	events.Personal = keys
	id := uuid.New()
	if _, err := events.Put(ctx, register(id, aliceName, aliceEmail, "UK")); err != nil {
		t.Fatal(err)
	}
	stored, _ := rec.SelectEvents(ctx, id, nil)
	var state map[string]map[string]string
	var full map[string]any
	if err := es.NewTranscoder().Decode(stored[0].State, &full); err != nil {
		t.Fatal(err)
	}
	state = map[string]map[string]string{}
	for _, k := range []string{"name", "born"} {
		m := full[k].(map[string]any)
		state[k] = map[string]string{"k": m["k"].(string), "c": m["c"].(string)}
	}
	var raw []byte
	if err := db.QueryRow("SELECT wrapped_key FROM personal_keys WHERE key_id = ?", state["born"]["k"]).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	c, err := es.NewAESCipher(raw)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"name": `"Alice Liddell"`, "born": `{"_type_":"datetime_iso","_data_":"1852-05-04T00:00:00+00:00"}`} {
		ct, err := base64.StdEncoding.DecodeString(state[k]["c"])
		if err != nil {
			t.Fatal(err)
		}
		pt, err := c.Decrypt(ct)
		if err != nil || string(pt) != want {
			t.Errorf("%s: plaintext %s, %v, want %s", k, pt, err, want)
		}
	}
}

// TestPersonalProjectionAcrossForget: a projection into a table of the
// application's database (SQLite file, PostgreSQL) runs while a customer
// is forgotten: it keeps going, and a handler that sees a forgotten value
// erases what it had written of it.
func TestPersonalProjectionAcrossForget(t *testing.T) {
	for _, b := range personalBackends() {
		if b.name == "Memory" || b.name == "SQLiteMemory" {
			continue // the view is an SQL table
		}
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			f := newPersonalFixture(t, b, nil)
			view := "customers_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
			if _, err := f.db.Exec("CREATE TABLE " + view + " (id TEXT PRIMARY KEY, name TEXT, country TEXT)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.db.Exec("DROP TABLE " + view) })
			ph := func(i int) string {
				if f.pg {
					return "$" + string(rune('0'+i))
				}
				return "?"
			}
			store := f.rec.(*es.SQLRecorder)
			project := func(ctx context.Context, tx *sql.Tx, n es.Recorded[es.Event]) error {
				reg, ok := n.Event.(*pRegistered)
				if !ok {
					return nil
				}
				name := reg.Name.Value()
				if reg.Name.Forgotten() {
					name = "" // erase the copy too
				}
				_, err := tx.ExecContext(ctx, "INSERT INTO "+view+" (id, name, country) VALUES ("+ph(1)+", "+ph(2)+", "+ph(3)+
					") ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, country = EXCLUDED.country", reg.OriginatorID().String(), name, reg.Country)
				return err
			}
			p, err := es.NewProjection("customers", f.events, store, project, &es.RunnerOptions{Subscribe: es.SubscribeOptions{PollInterval: 20 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			alice, bob := uuid.New(), uuid.New()
			put := func(e es.Event) int64 {
				t.Helper()
				ids, err := f.events.Put(ctx, e)
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Wait(ctx, ids[0]); err != nil {
					t.Fatal(err)
				}
				return ids[0]
			}
			put(register(alice, aliceName, aliceEmail, "UK"))
			if err := f.keys.Forget(ctx, alice, "erasure"); err != nil {
				t.Fatal(err)
			}
			put(register(bob, bobName, "b@example.com", "FR"))
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			read := func() []string {
				t.Helper()
				rows, err := f.db.Query("SELECT name, country FROM " + view + " ORDER BY country")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var got []string
				for rows.Next() {
					var name, country string
					if err := rows.Scan(&name, &country); err != nil {
						t.Fatal(err)
					}
					got = append(got, name+"/"+country)
				}
				return got
			}
			// The copy made before the Forget is the application's to
			// erase; a rebuild (another projection from the start) reads
			// Alice's registration as forgotten, without an error.
			if want := []string{bobName + "/FR", aliceName + "/UK"}; !slices.Equal(read(), want) {
				t.Errorf("view %q, want %q", read(), want)
			}
			rebuild, err := es.NewProjection("rebuild", f.events, store, project, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rebuild.RunUntilCaughtUp(context.Background()); err != nil {
				t.Fatal(err)
			}
			if want := []string{bobName + "/FR", "/UK"}; !slices.Equal(read(), want) {
				t.Errorf("view after a rebuild %q, want %q", read(), want)
			}
		})
	}
}
