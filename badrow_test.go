package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
)

// badRowLog is a SQL recorder whose log holds good rows and planted bad
// ones, in one aggregate: versions 1 and 2 good, 3 with a NULL topic, 4
// good (notification IDs 1 to 4), then 5 good, 6 with a topic no mapper
// knows (it decodes to an error, not a bad row) and 7 good.
type badRowLog struct {
	r  *es.SQLRecorder
	id uuid.UUID
}

// badRowRecorder is a recorder of a bad row log: the SQL recorder or a
// ReplicatedRecorder on it.
type badRowRecorder interface {
	es.ApplicationRecorder
	SelectNotificationsInto(ctx context.Context, dst []es.Notification, start int64, limit int, q *es.NotificationQuery) ([]es.Notification, error)
}

func newBadRowLog(t *testing.T, db *sql.DB, d es.Dialect, schema string) badRowLog {
	t.Helper()
	ctx := context.Background()
	r := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "BadRows"})
	store := upStore(t, r)
	id := uuid.New()
	put := func(v int64) {
		t.Helper()
		if _, err := store.Put(ctx, &upEvent{DomainEvent: es.NewDomainEvent(id, v), N: v}); err != nil {
			t.Fatal(err)
		}
	}
	plant := func(v int64, topic any) {
		t.Helper()
		insert := "INSERT INTO " + r.EventsTable().Quote(d) + " (originator_id, originator_version, topic, state) VALUES (" +
			d.Placeholder(1) + ", " + d.Placeholder(2) + ", " + d.Placeholder(3) + ", " + d.Placeholder(4) + ")"
		if _, err := db.ExecContext(ctx, insert, d.UUIDArg(id), v, topic, []byte(`{"timestamp":"2024-01-01T00:00:00+00:00","n":0}`)); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	put(2)
	plant(3, sql.NullString{}) // NULL topic
	put(4)
	put(5)
	plant(6, "nowhere:Unknown")
	put(7)
	return badRowLog{r, id}
}

// wantBadRow fails the test unless err is the ErrData of a bad row that
// names want.
func wantBadRow(t *testing.T, what string, err error, want string) {
	t.Helper()
	if !errors.Is(err, es.ErrData) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want ErrData naming %q", what, err, want)
	}
}

// TestBadRowFailsOnlyItself: a stored row that does not fit (a NULL
// topic) ends a page of notifications just before it, with no error, and
// the page that starts at it is the ErrData naming its notification ID;
// SelectNotificationsInto does the same. Iterators (EventStore.Events,
// Subscribe, EventStore.Subscribe) yield every good item before it, then
// its error; Get and SelectEvents return the error alone.
func TestBadRowFailsOnlyItself(t *testing.T) {
	for _, b := range backends {
		if b.name == "SQLiteMemory" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			db, d, schema := b.open(t)
			l := newBadRowLog(t, db, d, schema)
			checkBadRowLog(t, context.Background(), l.r, l.id)
		})
	}
}

// TestReplicaBadRowFailsOnlyItself: the same through a ReplicatedRecorder
// whose reads go to the standby.
func TestReplicaBadRowFailsOnlyItself(t *testing.T) {
	f := newReplicaFixture(t, nil)
	waitUsable(t, f.rr, true, 5*time.Second)
	l := newBadRowLog(t, f.primaryDB, postgres.Dialect{}, f.schema)
	rr := newReplicated(t, l.r, f.standbyDB, nil)
	waitUsable(t, rr, true, 5*time.Second)
	ctx, err := rr.ReadLatest(context.Background()) // the planted rows are replayed
	if err != nil {
		t.Fatal(err)
	}
	s0 := rr.Standbys()[0].Reads
	checkBadRowLog(t, ctx, rr, l.id)
	if rr.Standbys()[0].Reads == s0 {
		t.Error("no read went to the standby")
	}
}

// checkBadRowLog checks the reads of a bad row log through rec.
func checkBadRowLog(t *testing.T, ctx context.Context, rec badRowRecorder, aggregate uuid.UUID) {
	t.Helper()
	ids := func(ns []es.Notification) []int64 {
		var out []int64
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	pages := []struct {
		start, stop int64
		exclusive   bool
		want        []int64
		bad         string // the error's notification, if any
	}{
		{start: 1, want: []int64{1, 2}},
		{start: 2, want: []int64{2}},
		{start: 2, exclusive: true, bad: "notification 3"},
		{start: 3, bad: "notification 3"},
		{start: 4, want: []int64{4, 5, 6, 7}}, // an unknown topic is a row that fits
		{start: 1, stop: 2, want: []int64{1, 2}},
	}
	for _, p := range pages {
		q := &es.NotificationQuery{Stop: p.stop, ExclusiveStart: p.exclusive}
		for _, into := range []bool{false, true} {
			var ns []es.Notification
			var err error
			what := "SelectNotifications"
			if into {
				what = "SelectNotificationsInto"
				ns, err = rec.SelectNotificationsInto(ctx, make([]es.Notification, 0, 2), p.start, 10, q)
			} else {
				ns, err = rec.SelectNotifications(ctx, p.start, 10, q)
			}
			what += fmt.Sprintf(" from %d (exclusive %v, stop %d)", p.start, p.exclusive, p.stop)
			if p.bad != "" {
				if len(ns) != 0 {
					t.Errorf("%s: %v with the error, want the error alone", what, ids(ns))
				}
				wantBadRow(t, what, err, p.bad)
				continue
			}
			if err != nil || !slices.Equal(ids(ns), p.want) {
				t.Errorf("%s: %v, %v; want %v, no error", what, ids(ns), err, p.want)
			}
		}
	}

	// Get and SelectEvents: the error alone.
	if evs, err := rec.SelectEvents(ctx, aggregate, nil); len(evs) != 0 {
		t.Errorf("SelectEvents: %d events with %v, want the error alone", len(evs), err)
	} else {
		wantBadRow(t, "SelectEvents", err, "version 3")
	}
	store := upStore(t, rec)
	if evs, err := store.Get(ctx, aggregate, nil); len(evs) != 0 {
		t.Errorf("Get: %d events with %v, want the error alone", len(evs), err)
	} else {
		wantBadRow(t, "Get", err, "version 3")
	}

	// Events: the good events before the bad row, then its error,
	// whatever the page size.
	for _, size := range []int{0, 1, 2, 3} {
		store.PageSize = size
		var got []int64
		var errs []error
		for e, err := range store.Events(ctx, aggregate, nil) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			got = append(got, e.OriginatorVersion())
		}
		if !slices.Equal(got, []int64{1, 2}) || len(errs) != 1 {
			t.Errorf("Events (page size %d): versions %v and errors %v, want 1 and 2 then one error", size, got, errs)
			continue
		}
		wantBadRow(t, "Events", errs[0], "version 3")
	}
	// Past the bad row, a row that does not decode: the events
	// before it, then its error.
	var got []int64
	var errs []error
	for e, err := range store.Events(ctx, aggregate, &es.Query{GT: 3}) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, e.OriginatorVersion())
	}
	if !slices.Equal(got, []int64{4, 5}) || len(errs) != 1 || !errors.Is(errs[0], es.ErrUnknownTopic) {
		t.Errorf("Events after version 3: versions %v and errors %v, want 4 and 5 then ErrUnknownTopic", got, errs)
	}

	// Subscriptions: the good notifications, then the error, at
	// once (not at the next poll).
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o := &es.SubscribeOptions{PollInterval: 20 * time.Second, NoListen: true}
	start := time.Now()
	got, errs = nil, nil
	for n, err := range es.Subscribe(sctx, rec, 0, o) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, n.ID)
	}
	if !slices.Equal(got, []int64{1, 2}) || len(errs) != 1 {
		t.Errorf("Subscribe: %v and errors %v, want 1 and 2 then one error", got, errs)
	} else {
		wantBadRow(t, "Subscribe", errs[0], "notification 3")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Subscribe took %v to yield the bad row's error (poll interval %v): want it at once", el, o.PollInterval)
	}
	got, errs = nil, nil
	for n, err := range store.Subscribe(sctx, 0, o) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, n.ID)
	}
	if !slices.Equal(got, []int64{1, 2}) || len(errs) != 1 {
		t.Errorf("EventStore.Subscribe: %v and errors %v, want 1 and 2 then one error", got, errs)
	} else {
		wantBadRow(t, "EventStore.Subscribe", errs[0], "notification 3")
	}
	// Resuming past it on purpose: the rows that decode, then the
	// one that does not.
	got, errs = nil, nil
	for n, err := range store.Subscribe(sctx, 3, o) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, n.ID)
	}
	if !slices.Equal(got, []int64{4, 5}) || len(errs) != 1 || !errors.Is(errs[0], es.ErrUnknownTopic) || !strings.Contains(errs[0].Error(), "notification 6") {
		t.Errorf("EventStore.Subscribe after 3: %v and errors %v, want 4 and 5 then ErrUnknownTopic naming notification 6", got, errs)
	}
}
