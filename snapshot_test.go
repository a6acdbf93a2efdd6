package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// TestSnapshotStore runs snapshots through every recorder: memory, SQLite
// and Postgres snapshots tables.
func TestSnapshotStore(t *testing.T) {
	recorders := map[string]func(t *testing.T) (es.AggregateRecorder, es.AggregateRecorder){
		"Memory": func(t *testing.T) (es.AggregateRecorder, es.AggregateRecorder) {
			return es.NewMemoryRecorder(), es.NewMemoryRecorder()
		},
	}
	for _, b := range backends {
		recorders[b.name] = func(t *testing.T) (es.AggregateRecorder, es.AggregateRecorder) {
			db, d, schema := b.open(t)
			return newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Snaps"}),
				newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{AppName: "Snaps"})
		}
	}
	ctx := context.Background()
	for name, open := range recorders {
		t.Run(name, func(t *testing.T) {
			evRec, snapRec := open(t)
			mapper := es.NewMapper[es.Event](nil)
			if err := mapper.Register(&AccountOpened{}, &MoneyDeposited{}); err != nil {
				t.Fatal(err)
			}
			events := es.NewEventStore(mapper, evRec)
			snaps, err := es.NewSnapshotStore[AccountState]("bank:Account", nil, snapRec)
			if err != nil {
				t.Fatal(err)
			}
			id := uuid.New()
			if snap, err := snaps.Latest(ctx, id, 0); err != nil || snap != nil {
				t.Fatalf("no snapshot yet: %v, %v", snap, err)
			}
			if snap, after, err := es.LoadAggregate(ctx, snaps, events, id); err != nil || snap != nil || len(after) != 0 {
				t.Fatalf("LoadAggregate of nothing: %v %v %v", snap, after, err)
			}
			put := func(v int64, amount int64) {
				if _, err := events.Put(ctx, &MoneyDeposited{DomainEvent: es.NewDomainEvent(id, v), Amount: amount}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := events.Put(ctx, &AccountOpened{DomainEvent: es.NewDomainEvent(id, 1), FullName: "Ann"}); err != nil {
				t.Fatal(err)
			}
			put(2, 10)
			for _, v := range []int64{2} {
				if err := snaps.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, v), State: AccountState{"Ann", 10}}); err != nil {
					t.Fatal(err)
				}
			}
			put(3, 5)
			put(4, 1)
			if err := snaps.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, 4), State: AccountState{"Ann", 16}}); err != nil {
				t.Fatal(err)
			}
			put(5, 100)
			snap, after, err := es.LoadAggregate(ctx, snaps, events, id)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Version != 4 || snap.State.Balance != 16 || snap.Topic != "bank:Account" || len(after) != 1 || after[0].OriginatorVersion() != 5 {
				t.Errorf("LoadAggregate: snapshot %+v, %d events after", snap, len(after))
			}
			if old, err := snaps.Latest(ctx, id, 3); err != nil || old.Version != 2 {
				t.Errorf("Latest at or below 3: %+v, %v", old, err)
			}
			err = snaps.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, 4)})
			wantIntegrityErr(t, err)
		})
	}
}

func wantIntegrityErr(t *testing.T, err error) {
	t.Helper()
	var ie *es.IntegrityError
	if err == nil || !errors.As(err, &ie) {
		t.Fatalf("got %v, want an *IntegrityError", err)
	}
}

// TestSnapshotStorePutLeavesSnapshot checks that Put fills in the topic and
// timestamp of what it records, not of the snapshot it is given.
func TestSnapshotStorePutLeavesSnapshot(t *testing.T) {
	ctx := context.Background()
	snaps, err := es.NewSnapshotStore[AccountState]("bank:Account", nil, es.NewMemoryRecorder())
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	snap := &es.Snapshot[AccountState]{DomainEvent: es.DomainEvent{Originator: id, Version: 3}, State: AccountState{"Ann", 10}}
	before := *snap
	if err := snaps.Put(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if *snap != before {
		t.Errorf("Put changed the snapshot:\n got %+v\nwant %+v", *snap, before)
	}
	got, err := snaps.Latest(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Topic != "bank:Account" || got.Timestamp.IsZero() || got.State != before.State || got.Version != 3 {
		t.Errorf("recorded snapshot %+v, want the aggregate topic and a timestamp", got)
	}
	if err := snaps.Put(ctx, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Put(nil): %v, want ErrProgramming", err)
	}
}

// noPanic runs f, failing the test (not the whole binary) if it panics.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", what, r)
		}
	}()
	f()
}

// TestSnapshotStoreNotMade checks that a SnapshotStore not made with
// NewSnapshotStore (the zero value, or a nil pointer) returns errors
// wrapping ErrProgramming instead of panicking, that Mapper returns nil for
// it, and that LoadAggregate reads every event when given no snapshot store.
func TestSnapshotStoreNotMade(t *testing.T) {
	ctx := context.Background()
	var zero es.SnapshotStore[AccountState]
	stores := map[string]*es.SnapshotStore[AccountState]{
		"zero value":        &zero,
		"zero with a topic": &es.SnapshotStore[AccountState]{AggregateTopic: "bank:Account"},
		"nil pointer":       nil,
	}
	mapper := es.NewMapper[es.Event](nil)
	if err := mapper.Register(&AccountOpened{}); err != nil {
		t.Fatal(err)
	}
	events := es.NewEventStore(mapper, es.NewMemoryRecorder())
	id := uuid.New()
	if _, err := events.Put(ctx, &AccountOpened{DomainEvent: es.NewDomainEvent(id, 1), FullName: "Ann"}); err != nil {
		t.Fatal(err)
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			noPanic(t, "Put", func() {
				err := s.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(id, 1)})
				wantNotMade(t, "Put", err)
			})
			noPanic(t, "Latest", func() {
				snap, err := s.Latest(ctx, id, 0)
				wantNotMade(t, "Latest", err)
				if snap != nil {
					t.Errorf("Latest: snapshot %+v", snap)
				}
			})
			noPanic(t, "Mapper", func() {
				if m := s.Mapper(); m != nil {
					t.Errorf("Mapper: %v, want nil", m)
				}
			})
			noPanic(t, "LoadAggregate", func() {
				snap, evs, err := es.LoadAggregate(ctx, s, events, id)
				if s == nil { // no snapshot store: every event
					if err != nil || snap != nil || len(evs) != 1 {
						t.Errorf("LoadAggregate without a snapshot store: %v, %d events, %v", snap, len(evs), err)
					}
					return
				}
				wantNotMade(t, "LoadAggregate", err)
				if snap != nil || evs != nil {
					t.Errorf("LoadAggregate: %v, %v", snap, evs)
				}
			})
		})
	}
	if _, err := es.NewSnapshotStore[AccountState]("bank:Account", nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("NewSnapshotStore without a recorder: %v, want ErrProgramming", err)
	}
}

func wantNotMade(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "SnapshotStore") {
		t.Errorf("%s: %v, want ErrProgramming naming the SnapshotStore", what, err)
	}
}

// snapStateV2 is AccountState at class version 2: "full_name" became
// "owner".
type snapStateV2 struct {
	Owner   string `json:"owner"`
	Balance int64  `json:"balance"`
}

func (snapStateV2) ClassVersion() int { return 2 }

// snapStateV3 is a class version newer than snapStateV2.
type snapStateV3 struct {
	Owner   string `json:"owner"`
	Balance int64  `json:"balance"`
	Branch  string `json:"branch"`
}

func (*snapStateV3) ClassVersion() int { return 3 }

// renameOwner is the upcaster of AccountState (v1) to snapStateV2.
func renameOwner(state map[string]any) error {
	if _, ok := state["class_version"]; ok {
		return errors.New("upcaster given class_version")
	}
	if _, ok := state["balance"].(int64); !ok {
		return fmt.Errorf("balance is %T, want int64", state["balance"])
	}
	state["owner"] = state["full_name"]
	delete(state, "full_name")
	return nil
}

// TestSnapshotStoreClassVersion checks that Latest (and so LoadAggregate)
// applies the mapper's class version rules to a snapshot's "state": older
// states are upcast with the upcasters registered on the store's mapper
// under the aggregate topic, newer or not upcastable ones are
// ErrClassVersion errors naming the topic and both versions. It runs with
// plain JSON and with zlib and AES, which Latest must undo first.
func TestSnapshotStoreClassVersion(t *testing.T) {
	ctx := context.Background()
	key, err := es.CreateKey(32)
	if err != nil {
		t.Fatal(err)
	}
	cipher, err := es.NewAESCipherBase64(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]*es.MapperOptions{
		"plain":    nil,
		"zlib+AES": {Compressor: es.ZlibCompressor{}, Cipher: cipher},
	} {
		t.Run(name, func(t *testing.T) {
			rec := es.NewMemoryRecorder()
			v1, errV1 := es.NewSnapshotStore[AccountState]("bank:Account", opts, rec)
			v2, errV2 := es.NewSnapshotStore[snapStateV2]("bank:Account", opts, rec)
			v2ptr, errV2ptr := es.NewSnapshotStore[*snapStateV2]("bank:Account", opts, rec)
			v3, errV3 := es.NewSnapshotStore[*snapStateV3]("bank:Account", opts, rec)
			if err := errors.Join(errV1, errV2, errV2ptr, errV3); err != nil {
				t.Fatal(err)
			}
			old, cur, newer, renamed := uuid.New(), uuid.New(), uuid.New(), uuid.New()
			put := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			put(v1.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(old, 3), State: AccountState{"Ann", 10}}))
			put(v2.Put(ctx, &es.Snapshot[snapStateV2]{DomainEvent: es.NewDomainEvent(cur, 4), State: snapStateV2{"Bob", 20}}))
			put(v3.Put(ctx, &es.Snapshot[*snapStateV3]{DomainEvent: es.NewDomainEvent(newer, 5), State: &snapStateV3{"Cy", 30, "X"}}))
			put(v1.Put(ctx, &es.Snapshot[AccountState]{DomainEvent: es.NewDomainEvent(renamed, 6), Topic: "old:Account", State: AccountState{"Di", 40}}))

			// No upcaster yet: an older state cannot be read as version 2.
			_, err := v2.Latest(ctx, old, 0)
			wantClassVersion(t, err, `"bank:Account"`, "class version 1", "class version 2")
			// A newer state is never read.
			_, err = v2.Latest(ctx, newer, 0)
			wantClassVersion(t, err, `"bank:Account"`, "class version 3", "newer", "class version 2")
			_, err = v1.Latest(ctx, cur, 0)
			wantClassVersion(t, err, `"bank:Account"`, "class version 2", "newer", "class version 1")
			events := es.NewEventStore(es.NewMapper[es.Event](nil), es.NewMemoryRecorder())
			if _, _, err := es.LoadAggregate(ctx, v2, events, newer); !errors.Is(err, es.ErrClassVersion) {
				t.Errorf("LoadAggregate of a newer snapshot: %v, want ErrClassVersion", err)
			}

			// Version 2 read as version 2 needs no upcaster: one that
			// fails shows that none runs.
			failing := errors.New("upcaster must not run")
			if err := v3.Mapper().Upcast("bank:Account", 2, func(map[string]any) error { return failing }); err != nil {
				t.Fatal(err)
			}
			if snap, err := v2.Latest(ctx, cur, 0); err != nil || snap.State != (snapStateV2{"Bob", 20}) || snap.Version != 4 {
				t.Errorf("version 2 as version 2: %+v, %v", snap, err)
			}
			// An upcaster that fails is an ErrClassVersion error wrapping
			// the upcaster's.
			_, err = v3.Latest(ctx, cur, 0)
			wantClassVersion(t, err, `"bank:Account"`)
			if !errors.Is(err, failing) {
				t.Errorf("failing upcaster: %v does not wrap its error", err)
			}

			// With the upcaster registered under the aggregate topic, an
			// older state is upcast, for a value or a pointer S, and for a
			// snapshot stored under another topic.
			if err := v2.Mapper().Upcast("bank:Account", 1, renameOwner); err != nil {
				t.Fatal(err)
			}
			if err := v2ptr.Mapper().Upcast("bank:Account", 1, renameOwner); err != nil {
				t.Fatal(err)
			}
			if snap, err := v2.Latest(ctx, old, 0); err != nil || snap.State != (snapStateV2{"Ann", 10}) || snap.Version != 3 || snap.Topic != "bank:Account" {
				t.Errorf("version 1 upcast to 2: %+v, %v", snap, err)
			}
			if snap, err := v2ptr.Latest(ctx, old, 0); err != nil || *snap.State != (snapStateV2{"Ann", 10}) {
				t.Errorf("version 1 upcast to 2 (pointer): %+v, %v", snap, err)
			}
			if snap, err := v2.Latest(ctx, renamed, 0); err != nil || snap.State != (snapStateV2{"Di", 40}) || snap.Topic != "old:Account" {
				t.Errorf("version 1 upcast to 2 under another topic: %+v, %v", snap, err)
			}
			// A chain with a missing step is refused before any step runs.
			_, err = v3.Latest(ctx, old, 0)
			wantClassVersion(t, err, `"bank:Account"`, "class version 1", "class version 3", "no upcaster from class version 1 to 2")
			if errors.Is(err, failing) {
				t.Errorf("missing step: %v: the upcaster from version 2 ran", err)
			}
			if snap, _, err := es.LoadAggregate(ctx, v2, events, old); err != nil || snap.State.Owner != "Ann" {
				t.Errorf("LoadAggregate upcasts: %+v, %v", snap, err)
			}
		})
	}
}

// TestSnapshotStoreClassVersionStored reads hand-written snapshot states:
// "class_version" anywhere in the state (not only last) counts, nested
// ones do not, and one that is not a positive integer is an error.
func TestSnapshotStoreClassVersionStored(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, state string
		want        snapStateV2
		err         error
	}{
		{"last", `{"owner":"Ann","balance":1,"class_version":2}`, snapStateV2{"Ann", 1}, nil},
		{"first", `{"class_version":2,"owner":"Ann","balance":1}`, snapStateV2{"Ann", 1}, nil},
		{"spaced", `{ "owner" : "Ann", "balance" : 1, "class_version" : 2 }`, snapStateV2{"Ann", 1}, nil},
		{"missing is 1", `{"owner":"Ann","balance":1}`, snapStateV2{}, es.ErrClassVersion},
		{"nested is not the state's", `{"owner":"Ann","balance":1,"x":{"class_version":2}}`, snapStateV2{}, es.ErrClassVersion},
		{"newer", `{"owner":"Ann","balance":1,"class_version":3}`, snapStateV2{}, es.ErrClassVersion},
		{"not a number", `{"owner":"Ann","balance":1,"class_version":"2"}`, snapStateV2{}, es.ErrClassVersion},
		{"zero", `{"owner":"Ann","balance":1,"class_version":0}`, snapStateV2{}, es.ErrClassVersion},
		{"null state", `null`, snapStateV2{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := es.NewMemoryRecorder()
			id := uuid.New()
			state := `{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T12:00:00+00:00"},"topic":"bank:Account","state":` + tc.state + `}`
			if _, err := rec.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 2, Topic: es.SnapshotTopic, State: []byte(state)}}, nil); err != nil {
				t.Fatal(err)
			}
			s, err := es.NewSnapshotStore[snapStateV2]("bank:Account", nil, rec)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := s.Latest(ctx, id, 0)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("Latest: %v, want %v", err, tc.err)
			}
			if err == nil && (snap.State != tc.want || snap.Version != 2 || snap.Originator != id) {
				t.Errorf("Latest: %+v", snap)
			}
		})
	}
}

func wantClassVersion(t *testing.T, err error, says ...string) {
	t.Helper()
	if !errors.Is(err, es.ErrClassVersion) {
		t.Errorf("got %v, want ErrClassVersion", err)
		return
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%v does not say %s", err, s)
		}
	}
}

// bankAccountStateV1 and bankAccountStateV3 read the Python snapshot (at
// class version 2) as an older and a newer class.
type (
	bankAccountStateV1 struct {
		FullName string `json:"full_name"`
	}
	bankAccountStateV3 struct {
		BankAccountState
		Nickname string `json:"nickname"`
	}
)

func (bankAccountStateV3) ClassVersion() int { return 3 }

// TestSnapshotStoreInteropLatest reads the Python library's snapshots
// through Latest: the state at class version 2 as BankAccountState (version
// 2), upcast to version 3, and refused as version 1.
func TestSnapshotStoreInteropLatest(t *testing.T) {
	m := loadManifest(t)
	var snapEvent manifestEvent
	for _, me := range manifestEvents(t, m) {
		if me.topic == es.SnapshotTopic {
			snapEvent = me
		}
	}
	ctx := context.Background()
	forEachInteropSQLite(t, m, func(t *testing.T, _ map[string]any, env map[string]string, db *sql.DB) {
		_, _, opts := interopMappers(t, env)
		rec, err := es.NewSQLSnapshotRecorder(ctx, db, sqlite.Dialect{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v2, errV2 := es.NewSnapshotStore[BankAccountState]("interop_domain:BankAccount", opts, rec)
		v1, errV1 := es.NewSnapshotStore[bankAccountStateV1]("interop_domain:BankAccount", opts, rec)
		v3, errV3 := es.NewSnapshotStore[*bankAccountStateV3]("interop_domain:BankAccount", opts, rec)
		if err := errors.Join(errV2, errV1, errV3); err != nil {
			t.Fatal(err)
		}
		snap, err := v2.Latest(ctx, snapEvent.id, 0)
		if err != nil || snap.Version != snapEvent.version || snap.State.FullName != "Alice Example" || snap.Topic != "interop_domain:BankAccount" {
			t.Fatalf("Python snapshot: %+v, %v", snap, err)
		}
		checkDecoded(t, "snapshot", snap, snapEvent.decoded)
		_, err = v1.Latest(ctx, snapEvent.id, 0)
		wantClassVersion(t, err, `"interop_domain:BankAccount"`, "class version 2", "newer", "class version 1")
		if err := v3.Mapper().Upcast("interop_domain:BankAccount", 2, func(s map[string]any) error {
			s["nickname"] = "Al"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		up, err := v3.Latest(ctx, snapEvent.id, 0)
		if err != nil || up.State.Nickname != "Al" || !reflect.DeepEqual(up.State.BankAccountState, snap.State) {
			t.Errorf("Python snapshot upcast to version 3: %+v, %v", up, err)
		}
	})
}
