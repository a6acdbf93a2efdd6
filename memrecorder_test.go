package eventsourcing_test

import (
	"testing"

	"github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/recordertest"
)

func TestMemoryRecorder(t *testing.T) {
	recordertest.Run(t, func(t *testing.T) eventsourcing.ProcessRecorder {
		return eventsourcing.NewMemoryRecorder()
	})
}

func TestMemoryRecorderAsSnapshots(t *testing.T) {
	recordertest.RunAggregate(t, func(t *testing.T) eventsourcing.AggregateRecorder {
		return eventsourcing.NewMemoryRecorder()
	})
}
