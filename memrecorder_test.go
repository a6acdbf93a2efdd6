package eventsourcing_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/recordertest"
)

func TestMemoryRecorder(t *testing.T) {
	recordertest.Run(t, func(t *testing.T) eventsourcing.ProcessRecorder {
		return eventsourcing.NewMemoryRecorder()
	})
}

// The zero MemoryRecorder is an empty recorder, as NewMemoryRecorder's is:
// the whole conformance suite runs on one.
func TestMemoryRecorderZeroValue(t *testing.T) {
	recordertest.Run(t, func(t *testing.T) eventsourcing.ProcessRecorder {
		return new(eventsourcing.MemoryRecorder)
	})
}

func TestMemoryRecorderAsSnapshots(t *testing.T) {
	recordertest.RunAggregate(t, func(t *testing.T) eventsourcing.AggregateRecorder {
		return eventsourcing.NewMemoryRecorder()
	})
}

// A big batch is checked for duplicates in linear time: 100,000 events took
// 10 s with the quadratic scan.
func TestMemoryRecorderBigBatchLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("big batch")
	}
	r := eventsourcing.NewMemoryRecorder()
	events := make([]eventsourcing.StoredEvent, 100_000)
	id := uuid.New()
	for i := range events {
		events[i] = eventsourcing.StoredEvent{OriginatorID: id, OriginatorVersion: int64(i + 1), Topic: "t"}
	}
	dup := append(slices.Clone(events[:len(events)-1]), events[0])
	start := time.Now()
	if _, err := r.InsertEvents(context.Background(), dup, nil); !errors.Is(err, eventsourcing.ErrIntegrity) {
		t.Fatalf("duplicate at the end of a big batch: got %v, want ErrIntegrity", err)
	}
	if _, err := r.InsertEvents(context.Background(), events, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("two batches of 100,000 events took %v; want linear time (well under 4 s)", d)
	}
	if n, _ := r.MaxNotificationID(context.Background()); n != int64(len(events)) {
		t.Fatalf("max notification ID %d, want %d", n, len(events))
	}
}
