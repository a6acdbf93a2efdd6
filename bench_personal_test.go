package eventsourcing_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// The same event, with its name and email as plain strings or as
// personal data.
type benchPlainEvent struct {
	es.DomainEvent
	Name   string `json:"name"`
	Email  string `json:"email"`
	Amount int64  `json:"amount"`
}

type benchPersonalEvent struct {
	es.DomainEvent
	Name   es.Personal[string] `json:"name"`
	Email  es.Personal[string] `json:"email"`
	Amount int64               `json:"amount"`
}

// BenchmarkPersonal puts and gets one event at a time, in memory and in an
// SQLite file (keys in the same database), under the
// application cipher (AES-GCM) alone (Plain) and with two personal fields
// sealed under the subject's data key too (Personal), the key cached: the
// cost of personal data beside the cipher's. 100 subjects, 10 events each
// for Get. Compare Plain and Personal of the same operation.
func BenchmarkPersonal(b *testing.B) {
	key, _ := es.CreateKey(32)
	cipher, _ := es.NewAESCipherBase64(key)
	const subjects, perSubject = 100, 10
	ids := make([]uuid.UUID, subjects)
	for i := range ids {
		ids[i] = uuid.New()
	}
	newStore := func(b *testing.B, backend string, personal bool) *es.EventStore[es.Event] {
		m := es.NewMapper[es.Event](&es.MapperOptions{Cipher: cipher})
		if err := m.Register(&benchPlainEvent{}, &benchPersonalEvent{}); err != nil {
			b.Fatal(err)
		}
		var rec es.AggregateRecorder = es.NewMemoryRecorder()
		keys := es.NewMemoryPersonalKeys(&es.PersonalKeysOptions{Cipher: cipher})
		if backend == "SQLite" {
			db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), 0)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			r, err := es.NewSQLRecorder(context.Background(), db, sqlite.Dialect{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.CreateTables(context.Background()); err != nil {
				b.Fatal(err)
			}
			rec = r
			if keys, err = es.NewSQLPersonalKeys(db, sqlite.Dialect{}, &es.PersonalKeysOptions{Cipher: cipher}); err != nil {
				b.Fatal(err)
			}
			if err := keys.CreateTables(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		s := es.NewEventStore(m, rec)
		if personal {
			s.Personal = keys
		}
		return s
	}
	event := func(personal bool, id uuid.UUID, v int64) es.Event {
		if personal {
			return &benchPersonalEvent{DomainEvent: es.NewDomainEvent(id, v), Name: es.NewPersonal("Alice Liddell"),
				Email: es.NewPersonal("alice@wonderland.example"), Amount: v}
		}
		return &benchPlainEvent{DomainEvent: es.NewDomainEvent(id, v), Name: "Alice Liddell", Email: "alice@wonderland.example", Amount: v}
	}
	for _, kind := range []struct {
		name, backend string
		personal      bool
	}{{"Memory/Plain", "Memory", false}, {"Memory/Personal", "Memory", true}, {"SQLite/Plain", "SQLite", false}, {"SQLite/Personal", "SQLite", true}} {
		b.Run(kind.name+"/Put", func(b *testing.B) {
			ctx := context.Background()
			s := newStore(b, kind.backend, kind.personal)
			versions := make([]int64, subjects)
			for i := range ids { // keys created and cached
				versions[i]++
				if _, err := s.Put(ctx, event(kind.personal, ids[i], versions[i])); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % subjects
				versions[j]++
				if _, err := s.Put(ctx, event(kind.personal, ids[j], versions[j])); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind.name+"/Get", func(b *testing.B) {
			ctx := context.Background()
			s := newStore(b, kind.backend, kind.personal)
			for i := range ids {
				for v := int64(1); v <= perSubject; v++ {
					if _, err := s.Put(ctx, event(kind.personal, ids[i], v)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				evs, err := s.Get(ctx, ids[i%subjects], nil)
				if err != nil || len(evs) != perSubject {
					b.Fatal(len(evs), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perSubject), "ns/event")
		})
	}
}
