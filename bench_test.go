package eventsourcing_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// benchEvent has about 200 bytes of state: a UUID, a timestamp, strings
// and numbers.
type benchEvent struct {
	es.DomainEvent
	AccountID uuid.UUID `json:"account_id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Amount    int64     `json:"amount"`
	Rate      float64   `json:"rate"`
	Memo      string    `json:"memo"`
}

func newBenchEvent(id uuid.UUID, v int64) *benchEvent {
	return &benchEvent{
		DomainEvent: es.DomainEvent{Originator: id, Version: v, Timestamp: time.Date(2024, 3, 1, 9, 0, 0, 123456000, time.UTC)},
		AccountID:   uuid.MustParse("b2723fe2-c01a-40d2-875e-a3aac6a09ff5"), Name: "Alice Example", Email: "alice@example.com",
		Amount: 12345, Rate: 0.0125, Memo: "monthly transfer",
	}
}

// BenchmarkMapper maps an event to a stored event and back, beside
// encoding/json's Marshal and Unmarshal of the same struct.
func BenchmarkMapper(b *testing.B) {
	e := newBenchEvent(uuid.New(), 1)
	b.Run("eventsourcing", func(b *testing.B) {
		m := es.NewMapper[*benchEvent](nil)
		if err := m.Register(&benchEvent{}); err != nil {
			b.Fatal(err)
		}
		se, _ := m.ToStoredEvent(e)
		b.ReportMetric(float64(len(se.State)), "state-bytes")
		b.ReportAllocs()
		for b.Loop() {
			se, err := m.ToStoredEvent(e)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.FromStoredEvent(se); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(e)
			if err != nil {
				b.Fatal(err)
			}
			var out benchEvent
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
