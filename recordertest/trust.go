package recordertest

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// runTrust runs the tests that hold a recorder to its acknowledgements:
// an error means nothing of the call was written, success means all of it
// was, under the returned IDs, whenever the caller's context ends.
func (o Options) runTrust(t *testing.T, newRecorder func(t *testing.T) es.ProcessRecorder) {
	for _, tc := range trustTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newRecorder(t)) })
	}
	t.Run("DeadlinesAroundCommit", func(t *testing.T) { o.deadlinesAroundCommit(t, newRecorder(t)) })
}

var trustTests = []processTest{
	{"IntegrityErrorNamesTheEvent", func(t *testing.T, r es.ProcessRecorder) {
		id := uuid.New()
		insert(t, r, events(id, 1, 3, "t:A"), nil)
		_, err := r.InsertEvents(ctx, append(events(uuid.New(), 1, 1, "t:A"), events(id, 3, 4, "t:A")...), nil)
		ie := wantIntegrity(t, err)
		if ie.OriginatorID != id || ie.Version != 3 {
			t.Errorf("conflict with a recorded event: error names %v version %d, want %v version 3 (%v)", ie.OriginatorID, ie.Version, id, err)
		}
		if es.IsRetryable(err) {
			t.Errorf("IsRetryable(%v) = true for an integrity error", err)
		}
		other := uuid.New()
		batch := append(events(other, 1, 2, "t:A"), events(other, 2, 2, "t:A")...)
		_, err = r.InsertEvents(ctx, batch, nil)
		ie = wantIntegrity(t, err)
		if ie.OriginatorID != other || ie.Version != 2 {
			t.Errorf("duplicate within a batch: error names %v version %d, want %v version 2 (%v)", ie.OriginatorID, ie.Version, other, err)
		}
	}},
	{"MigrationRowIsNotAnApplication", func(t *testing.T, r es.ProcessRecorder) {
		const name = es.MigrationTrackingName
		_, err := r.InsertEvents(ctx, events(uuid.New(), 1, 1, "t:A"), &es.Tracking{ApplicationName: name, NotificationID: 5})
		if !errors.Is(err, es.ErrProgramming) {
			t.Errorf("tracking record for %q: %v, want ErrProgramming", name, err)
		}
		if _, err := r.MaxTrackingID(ctx, name); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("MaxTrackingID(%q): %v, want ErrProgramming", name, err)
		}
		if _, err := r.HasTrackingID(ctx, name, 1); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("HasTrackingID(%q): %v, want ErrProgramming", name, err)
		}
	}},
	{"ContextErrorsAreNotRetryable", func(t *testing.T, r es.ProcessRecorder) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		_, err := r.InsertEvents(c, events(uuid.New(), 1, 1, "t:A"), nil)
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("InsertEvents with a cancelled context: %v, want an error wrapping context.Canceled", err)
		}
		if es.IsRetryable(err) {
			t.Errorf("IsRetryable(%v) = true: the call's own context ended, a retry with it cannot succeed", err)
		}
	}},
}

// deadlinesAroundCommit makes calls whose deadlines fall around the time an
// insert takes, from several goroutines at once, and checks that every
// outcome is definite: an error means none of the call's events is
// recorded, success means all are, under exactly the returned IDs.
func (o Options) deadlinesAroundCommit(t *testing.T, r es.ProcessRecorder) {
	topic := "t:" + uuid.NewString()
	// How long one insert takes here.
	var lat []time.Duration
	for range 20 {
		begin := time.Now()
		insert(t, r, events(uuid.New(), 1, 1, topic), nil)
		lat = append(lat, time.Since(begin))
	}
	slices.Sort(lat)
	median := max(lat[len(lat)/2], time.Microsecond)
	start, err := r.MaxNotificationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		events []es.StoredEvent
		ids    []int64
		err    error
	}
	const writers, calls = 4, 150
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)+100))
			for i := range calls {
				evs := events(uuid.New(), 1, int64(1+rng.IntN(3)), topic)
				// Writer 0 sweeps deadlines from 0 to twice the latency in
				// small steps, so that some end during COMMIT; the others
				// have time to spare every other call (keeping connections
				// warm) and end at random around the commit otherwise.
				d := time.Duration(rng.Int64N(int64(3 * median)))
				switch {
				case w == 0:
					d = 2 * median * time.Duration(i) / calls
				case rng.IntN(2) == 0:
					d = 20 * median
				}
				c, cancel := context.WithTimeout(ctx, d)
				ids, err := r.InsertEvents(c, evs, nil)
				cancel()
				mu.Lock()
				outcomes = append(outcomes, outcome{evs, ids, err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Everything recorded since start, by notification ID.
	recorded := map[int64]es.Notification{}
	for next := start; ; {
		page, err := r.SelectNotifications(ctx, next, 500, &es.NotificationQuery{ExclusiveStart: true, Topics: []string{topic}})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, n := range page {
			if n.ID <= next {
				t.Fatalf("SelectNotifications after %d (exclusive) returned notification %d", next, n.ID)
			}
			recorded[n.ID] = n
		}
		next = page[len(page)-1].ID
	}
	failed, acknowledged := 0, 0
	for _, oc := range outcomes {
		id := oc.events[0].OriginatorID
		stored, err := r.SelectEvents(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if oc.err != nil {
			failed++
			if len(stored) != 0 {
				t.Errorf("call failed with %v, but %d of its %d events are recorded", oc.err, len(stored), len(oc.events))
			}
			continue
		}
		acknowledged++
		if len(stored) != len(oc.events) || len(oc.ids) != len(oc.events) {
			t.Errorf("call succeeded with IDs %v, but %d of its %d events are recorded", oc.ids, len(stored), len(oc.events))
			continue
		}
		for i, e := range oc.events {
			n, ok := recorded[oc.ids[i]]
			if !ok || n.OriginatorID != e.OriginatorID || n.OriginatorVersion != e.OriginatorVersion {
				t.Errorf("call succeeded with ID %d for %v v%d, but the log has %+v there", oc.ids[i], e.OriginatorID, e.OriginatorVersion, n)
			}
			delete(recorded, oc.ids[i])
		}
	}
	for id, n := range recorded {
		t.Errorf("notification %d (%v v%d) is recorded but no call was acknowledged for it", id, n.OriginatorID, n.OriginatorVersion)
	}
	t.Logf("insert latency %v; deadlines 0 to %v: %d acknowledged, %d failed", median, 3*median, acknowledged, failed)
}
