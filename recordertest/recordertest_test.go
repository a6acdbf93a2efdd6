package recordertest_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/recordertest"
)

// Broken recorders, each with one planted bug the suite must catch.

type noDuplicateCheck struct{ *es.MemoryRecorder }

func (r noDuplicateCheck) InsertEvents(ctx context.Context, evs []es.StoredEvent, tr *es.Tracking) ([]int64, error) {
	// Drop events whose version exists instead of failing the batch.
	var keep []es.StoredEvent
	for _, e := range evs {
		if got, _ := r.MemoryRecorder.SelectEvents(ctx, e.OriginatorID, &es.Query{GTE: e.OriginatorVersion, LTE: e.OriginatorVersion}); len(got) == 0 {
			keep = append(keep, e)
		}
	}
	return r.MemoryRecorder.InsertEvents(ctx, keep, tr)
}

type ignoresLimit struct{ *es.MemoryRecorder }

func (r ignoresLimit) SelectEvents(ctx context.Context, id uuid.UUID, q *es.Query) ([]es.StoredEvent, error) {
	if q != nil {
		c := *q
		c.Limit = 0
		q = &c
	}
	return r.MemoryRecorder.SelectEvents(ctx, id, q)
}

type ignoresTracking struct{ *es.MemoryRecorder }

func (r ignoresTracking) InsertEvents(ctx context.Context, evs []es.StoredEvent, tr *es.Tracking) ([]int64, error) {
	return r.MemoryRecorder.InsertEvents(ctx, evs, nil)
}

type exclusiveStartIgnored struct{ *es.MemoryRecorder }

func (r exclusiveStartIgnored) SelectNotifications(ctx context.Context, start int64, limit int, q *es.NotificationQuery) ([]es.Notification, error) {
	if q != nil {
		c := *q
		c.ExclusiveStart = false
		q = &c
	}
	return r.MemoryRecorder.SelectNotifications(ctx, start, limit, q)
}

var broken = map[string]func() es.ProcessRecorder{
	"noDuplicateCheck":      func() es.ProcessRecorder { return noDuplicateCheck{es.NewMemoryRecorder()} },
	"ignoresLimit":          func() es.ProcessRecorder { return ignoresLimit{es.NewMemoryRecorder()} },
	"ignoresTracking":       func() es.ProcessRecorder { return ignoresTracking{es.NewMemoryRecorder()} },
	"exclusiveStartIgnored": func() es.ProcessRecorder { return exclusiveStartIgnored{es.NewMemoryRecorder()} },
}

// TestBrokenRecorder runs the suite against one broken recorder when the
// parent test asks for it in a subprocess.
func TestBrokenRecorder(t *testing.T) {
	name := os.Getenv("RECORDERTEST_BROKEN")
	if name == "" {
		t.Skip("run by TestSuiteCatchesBugs")
	}
	recordertest.Options{Writers: 2, BatchesPerWriter: 5}.Run(t, func(t *testing.T) es.ProcessRecorder { return broken[name]() })
}

// TestSuiteCatchesBugs checks that the suite fails for each planted bug:
// a suite that passes everything proves nothing.
func TestSuiteCatchesBugs(t *testing.T) {
	if os.Getenv("RECORDERTEST_BROKEN") != "" {
		return
	}
	for name := range broken {
		t.Run(name, func(t *testing.T) {
			// A bound of its own: a planted bug may make a test hang, and
			// a subprocess outlives its parent's timeout.
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenRecorder$", "-test.timeout=3m")
			cmd.Env = append(os.Environ(), "RECORDERTEST_BROKEN="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Errorf("the suite passed a recorder with the bug %s:\n%s", name, out)
			}
		})
	}
	// And it passes the real thing.
	recordertest.Options{Writers: 2, BatchesPerWriter: 5}.Run(t, func(t *testing.T) es.ProcessRecorder { return es.NewMemoryRecorder() })
}
