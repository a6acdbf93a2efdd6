// Package recordertest is a conformance suite for eventsourcing recorders,
// in the manner of testing/fstest: anyone writing a recorder runs it to
// check that the recorder behaves as the memory, SQLite and PostgreSQL
// recorders do.
//
//	func TestMyRecorder(t *testing.T) {
//		recordertest.Run(t, func(t *testing.T) eventsourcing.ProcessRecorder {
//			return newMyRecorder(t)
//		})
//	}
//
// Every subtest asks for a fresh recorder, and uses random originator IDs
// and application names, so recorders that share a database also pass.
package recordertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// Options sizes the concurrency tests. Zero fields take the defaults.
type Options struct {
	Writers          int    // concurrent writers; default 16
	BatchesPerWriter int    // batches each writer inserts; default 100
	MaxBatchSize     int    // events per batch, 1 to MaxBatchSize; default 10
	Readers          int    // concurrent readers of the notification log; default 2
	PageSize         int    // notifications per read; default 50
	Seed             uint64 // random seed; default 1
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Writers, 16)
	def(&o.BatchesPerWriter, 100)
	def(&o.MaxBatchSize, 10)
	def(&o.Readers, 2)
	def(&o.PageSize, 50)
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o
}

// Run runs the whole suite with default options against process recorders
// made by newRecorder.
func Run(t *testing.T, newRecorder func(t *testing.T) es.ProcessRecorder) {
	Options{}.Run(t, newRecorder)
}

// RunAggregate runs the aggregate recorder part of the suite (what a
// snapshots recorder must do) against recorders made by newRecorder.
func RunAggregate(t *testing.T, newRecorder func(t *testing.T) es.AggregateRecorder) {
	Options{}.RunAggregate(t, newRecorder)
}

// Run runs the whole suite against process recorders made by newRecorder.
func (o Options) Run(t *testing.T, newRecorder func(t *testing.T) es.ProcessRecorder) {
	t.Helper()
	o = o.withDefaults()
	o.RunAggregate(t, func(t *testing.T) es.AggregateRecorder { return newRecorder(t) })
	for _, tc := range applicationTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newRecorder(t)) })
	}
	for _, tc := range processTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newRecorder(t)) })
	}
	t.Run("ConcurrentWritersAndReaders", func(t *testing.T) { o.concurrentWriters(t, newRecorder(t)) })
	t.Run("ConflictingWriters", func(t *testing.T) { o.conflictingWriters(t, newRecorder(t)) })
	t.Run("Subscriptions", func(t *testing.T) { o.subscriptions(t, newRecorder) })
	o.runTrust(t, newRecorder)
}

// RunAggregate runs the aggregate recorder tests.
func (o Options) RunAggregate(t *testing.T, newRecorder func(t *testing.T) es.AggregateRecorder) {
	t.Helper()
	for _, tc := range aggregateTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newRecorder(t)) })
	}
}

var ctx = context.Background()

func events(id uuid.UUID, from, to int64, topic string) []es.StoredEvent {
	var out []es.StoredEvent
	for v := from; v <= to; v++ {
		out = append(out, es.StoredEvent{OriginatorID: id, OriginatorVersion: v, Topic: topic,
			State: []byte(fmt.Sprintf(`{"v":%d,"id":"%s"}`, v, id))})
	}
	return out
}

func insert(t *testing.T, r es.AggregateRecorder, evs []es.StoredEvent, tr *es.Tracking) []int64 {
	t.Helper()
	ids, err := r.InsertEvents(ctx, evs, tr)
	if err != nil {
		t.Fatalf("InsertEvents: %v", err)
	}
	return ids
}

func versions(evs []es.StoredEvent) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.OriginatorVersion
	}
	return out
}

func selectVersions(t *testing.T, r es.AggregateRecorder, id uuid.UUID, q *es.Query) []int64 {
	t.Helper()
	evs, err := r.SelectEvents(ctx, id, q)
	if err != nil {
		t.Fatalf("SelectEvents(%+v): %v", q, err)
	}
	return versions(evs)
}

func wantIntegrity(t *testing.T, err error) *es.IntegrityError {
	t.Helper()
	if !errors.Is(err, es.ErrIntegrity) {
		t.Fatalf("got error %v, want one matching ErrIntegrity", err)
	}
	var ie *es.IntegrityError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *IntegrityError", err, err)
	}
	return ie
}

type aggregateTest struct {
	name string
	fn   func(t *testing.T, r es.AggregateRecorder)
}

var aggregateTests = []aggregateTest{
	{"InsertAndSelect", func(t *testing.T, r es.AggregateRecorder) {
		id := uuid.New()
		in := events(id, 1, 3, "topic:A")
		insert(t, r, in, nil)
		out, err := r.SelectEvents(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 3 {
			t.Fatalf("selected %d events, want 3", len(out))
		}
		for i := range in {
			if out[i].OriginatorID != in[i].OriginatorID || out[i].OriginatorVersion != in[i].OriginatorVersion ||
				out[i].Topic != in[i].Topic || !bytes.Equal(out[i].State, in[i].State) {
				t.Errorf("event %d: got %+v, want %+v", i, out[i], in[i])
			}
		}
		if got := selectVersions(t, r, uuid.New(), nil); len(got) != 0 {
			t.Errorf("unknown originator: got %v, want nothing", got)
		}
	}},
	{"StateBytesExact", func(t *testing.T, r es.AggregateRecorder) {
		id := uuid.New()
		bin := make([]byte, 256)
		for i := range bin {
			bin[i] = byte(i)
		}
		states := [][]byte{{}, bin, []byte("{\"a\":\"\u00e9\U0001F408\"}"), bytes.Repeat([]byte("x"), 100000)}
		var in []es.StoredEvent
		for i, s := range states {
			in = append(in, es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(i + 1), Topic: "t:" + string(rune('A'+i)), State: s})
		}
		insert(t, r, in, nil)
		bin[0] = 99 // the recorder must have copied the state
		out, err := r.SelectEvents(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range out {
			want := states[i]
			if i == 1 {
				want = append([]byte{0}, bin[1:]...)
			}
			if !bytes.Equal(out[i].State, want) || out[i].Topic != in[i].Topic {
				t.Errorf("event %d: state of %d bytes differs (want %d bytes), topic %q", i, len(out[i].State), len(want), out[i].Topic)
			}
		}
	}},
	{"DuplicateVersionWritesNothing", func(t *testing.T, r es.AggregateRecorder) {
		id, other := uuid.New(), uuid.New()
		insert(t, r, events(id, 1, 2, "t:A"), nil)
		batch := append(events(other, 1, 2, "t:A"), events(id, 2, 3, "t:A")...)
		_, err := r.InsertEvents(ctx, batch, nil)
		wantIntegrity(t, err)
		if got := selectVersions(t, r, id, nil); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("conflicting aggregate has versions %v, want [1 2]", got)
		}
		if got := selectVersions(t, r, other, nil); len(got) != 0 {
			t.Errorf("other aggregate of the failed batch has versions %v, want none", got)
		}
		// The recorder works on after the failure.
		insert(t, r, events(id, 3, 3, "t:A"), nil)
		if got := selectVersions(t, r, id, nil); !slices.Equal(got, []int64{1, 2, 3}) {
			t.Errorf("after retry: versions %v, want [1 2 3]", got)
		}
	}},
	{"DuplicateWithinBatch", func(t *testing.T, r es.AggregateRecorder) {
		id := uuid.New()
		batch := append(events(id, 1, 2, "t:A"), events(id, 2, 2, "t:B")...)
		_, err := r.InsertEvents(ctx, batch, nil)
		wantIntegrity(t, err)
		if got := selectVersions(t, r, id, nil); len(got) != 0 {
			t.Errorf("versions %v recorded from a failed batch", got)
		}
	}},
	{"EmptyBatch", func(t *testing.T, r es.AggregateRecorder) {
		ids, err := r.InsertEvents(ctx, nil, nil)
		if err != nil || len(ids) != 0 {
			t.Errorf("InsertEvents(nil) = %v, %v; want no IDs and no error", ids, err)
		}
	}},
	{"QueryBounds", func(t *testing.T, r es.AggregateRecorder) {
		id := uuid.New()
		insert(t, r, events(id, 1, 10, "t:A"), nil)
		seq := func(from, to int64) []int64 {
			var out []int64
			if from <= to {
				for v := from; v <= to; v++ {
					out = append(out, v)
				}
			} else {
				for v := from; v >= to; v-- {
					out = append(out, v)
				}
			}
			return out
		}
		tests := []struct {
			q    es.Query
			want []int64
		}{
			{es.Query{}, seq(1, 10)},
			{es.Query{GT: 3}, seq(4, 10)},
			{es.Query{GTE: 3}, seq(3, 10)},
			{es.Query{LT: 4}, seq(1, 3)},
			{es.Query{LTE: 4}, seq(1, 4)},
			{es.Query{GT: 2, LTE: 5}, seq(3, 5)},
			{es.Query{GTE: 2, LT: 5}, seq(2, 4)},
			{es.Query{Desc: true}, seq(10, 1)},
			{es.Query{Desc: true, LTE: 7}, seq(7, 1)},
			{es.Query{Desc: true, LT: 7, GT: 3}, seq(6, 4)},
			{es.Query{Limit: 3}, seq(1, 3)},
			{es.Query{Limit: 3, Desc: true}, seq(10, 8)},
			{es.Query{Limit: 1, Desc: true, LTE: 5}, []int64{5}},
			{es.Query{Limit: 2, GT: 8}, seq(9, 10)},
			{es.Query{Limit: 100}, seq(1, 10)},
			{es.Query{GT: 10}, nil},
			{es.Query{LT: 1}, nil},
			{es.Query{GT: 5, LT: 5}, nil},
			{es.Query{GTE: 5, LTE: 5}, []int64{5}},
			{es.Query{GT: 3, GTE: 5}, seq(5, 10)},
			{es.Query{LT: 8, LTE: 6}, seq(1, 6)},
		}
		for _, tt := range tests {
			got := selectVersions(t, r, id, &tt.q)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%+v: got %v, want %v", tt.q, got, tt.want)
			}
		}
	}},
	{"CancelledContext", func(t *testing.T, r es.AggregateRecorder) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		id := uuid.New()
		if _, err := r.InsertEvents(c, events(id, 1, 1, "t:A"), nil); err == nil {
			t.Error("InsertEvents with a cancelled context: no error")
		} else if !errors.Is(err, es.ErrOperational) {
			t.Errorf("InsertEvents with a cancelled context: %v, want ErrOperational", err)
		}
		if got := selectVersions(t, r, id, nil); len(got) != 0 {
			t.Errorf("cancelled insert recorded %v", got)
		}
		if _, err := r.SelectEvents(c, id, nil); err == nil {
			t.Error("SelectEvents with a cancelled context: no error")
		}
	}},
}

type applicationTest struct {
	name string
	fn   func(t *testing.T, r es.ApplicationRecorder)
}

func notifications(t *testing.T, r es.ApplicationRecorder, start int64, limit int, q *es.NotificationQuery) []es.Notification {
	t.Helper()
	ns, err := r.SelectNotifications(ctx, start, limit, q)
	if err != nil {
		t.Fatalf("SelectNotifications(%d, %d, %+v): %v", start, limit, q, err)
	}
	return ns
}

func noteIDs(ns []es.Notification) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

var applicationTests = []applicationTest{
	{"ReturnedStatesAreTheCallersOwn", func(t *testing.T, r es.ApplicationRecorder) {
		// States of many sizes (a recorder may carve small ones out of a
		// shared buffer): writing to or appending to one returned state
		// changes no other state, returned or stored.
		id := uuid.New()
		var in []es.StoredEvent
		for i, n := range []int{0, 1, 200, 3, 5000, 200, 40000, 7} {
			st := bytes.Repeat([]byte{byte('a' + i)}, n)
			in = append(in, es.StoredEvent{OriginatorID: id, OriginatorVersion: int64(i + 1), Topic: "t:S", State: st})
		}
		ids := insert(t, r, in, nil)
		check := func(what string, states func() [][]byte) {
			t.Helper()
			got := states()
			if len(got) != len(in) {
				t.Fatalf("%s: %d states, want %d", what, len(got), len(in))
			}
			for i := range got {
				if !bytes.Equal(got[i], in[i].State) {
					t.Fatalf("%s: state %d = %.20q (%d bytes), want %.20q (%d bytes)", what, i, got[i], len(got[i]), in[i].State, len(in[i].State))
				}
			}
			for i := range got {
				for j := range got[i] {
					got[i][j] = 'X'
				}
				got[i] = append(got[i], "YYYYYYYY"...)
			}
			for i := range got {
				want := append(bytes.Repeat([]byte{'X'}, len(in[i].State)), "YYYYYYYY"...)
				if !bytes.Equal(got[i], want) {
					t.Fatalf("%s: state %d changed by writes to another state: %.20q", what, i, got[i])
				}
			}
		}
		selectEvents := func() [][]byte {
			evs, err := r.SelectEvents(ctx, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, e := range evs {
				out = append(out, e.State)
			}
			return out
		}
		selectNotifications := func() [][]byte {
			ns, err := r.SelectNotifications(ctx, ids[0], len(ids), nil)
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for _, n := range ns {
				out = append(out, n.State)
			}
			return out
		}
		check("SelectEvents", selectEvents)
		check("SelectEvents again", selectEvents)
		check("SelectNotifications", selectNotifications)
		check("SelectNotifications again", selectNotifications)
	}},
	{"NotificationIDs", func(t *testing.T, r es.ApplicationRecorder) {
		base, err := r.MaxNotificationID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		a, b := uuid.New(), uuid.New()
		ids1 := insert(t, r, events(a, 1, 3, "t:A"), nil)
		ids2 := insert(t, r, events(b, 1, 2, "t:B"), nil)
		all := append(slices.Clone(ids1), ids2...)
		if len(all) != 5 {
			t.Fatalf("got %d notification IDs, want 5: %v", len(all), all)
		}
		for i := 1; i < len(all); i++ {
			if all[i] <= all[i-1] {
				t.Fatalf("notification IDs not increasing: %v", all)
			}
		}
		if all[0] <= base {
			t.Errorf("first new ID %d is not above the previous maximum %d", all[0], base)
		}
		max, err := r.MaxNotificationID(ctx)
		if err != nil || max != all[4] {
			t.Errorf("MaxNotificationID = %d, %v; want %d", max, err, all[4])
		}
		ns := notifications(t, r, all[0], 10, nil)
		if !slices.Equal(noteIDs(ns), all) {
			t.Fatalf("log from %d: IDs %v, want %v", all[0], noteIDs(ns), all)
		}
		want := append(events(a, 1, 3, "t:A"), events(b, 1, 2, "t:B")...)
		for i, n := range ns {
			w := want[i]
			if n.OriginatorID != w.OriginatorID || n.OriginatorVersion != w.OriginatorVersion || n.Topic != w.Topic || !bytes.Equal(n.State, w.State) {
				t.Errorf("notification %d: got %+v, want %+v", n.ID, n.StoredEvent, w)
			}
		}
	}},
	{"EmptyLog", func(t *testing.T, r es.ApplicationRecorder) {
		max, err := r.MaxNotificationID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ns := notifications(t, r, max+1, 10, nil); len(ns) != 0 {
			t.Errorf("notifications beyond the maximum: %v", noteIDs(ns))
		}
	}},
	{"NotificationPaging", func(t *testing.T, r es.ApplicationRecorder) {
		var ids []int64
		for i := 0; i < 4; i++ {
			ids = append(ids, insert(t, r, events(uuid.New(), 1, 3, fmt.Sprintf("t:%c", 'A'+i%2)), nil)...)
		}
		first, last := ids[0], ids[len(ids)-1]
		topicA := func(ids []int64) []int64 { // events of t:A are the batches 0 and 2
			return slices.Concat(ids[0:3], ids[6:9])
		}
		tests := []struct {
			name  string
			start int64
			limit int
			q     *es.NotificationQuery
			want  []int64
		}{
			{"all", first, 100, nil, ids},
			{"limit", first, 5, nil, ids[:5]},
			{"start inclusive", ids[4], 3, nil, ids[4:7]},
			{"start exclusive", ids[4], 3, &es.NotificationQuery{ExclusiveStart: true}, ids[5:8]},
			{"stop", first, 100, &es.NotificationQuery{Stop: ids[6]}, ids[:7]},
			{"stop and limit", ids[2], 3, &es.NotificationQuery{Stop: ids[3]}, ids[2:4]},
			{"stop before start", ids[5], 10, &es.NotificationQuery{Stop: ids[4]}, nil},
			{"topics", first, 100, &es.NotificationQuery{Topics: []string{"t:A"}}, topicA(ids)},
			{"topics limit", first, 4, &es.NotificationQuery{Topics: []string{"t:A"}}, topicA(ids)[:4]},
			{"topics both", first, 100, &es.NotificationQuery{Topics: []string{"t:A", "t:B"}}, ids},
			{"unknown topic", first, 100, &es.NotificationQuery{Topics: []string{"t:none"}}, nil},
			{"beyond the end", last + 1, 10, nil, nil},
			{"last exclusive", last, 10, &es.NotificationQuery{ExclusiveStart: true}, nil},
		}
		for _, tt := range tests {
			got := noteIDs(notifications(t, r, tt.start, tt.limit, tt.q))
			// Other tests may share the table: keep only this test's IDs.
			got = slices.DeleteFunc(got, func(id int64) bool { return !slices.Contains(ids, id) })
			if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
			}
		}
	}},
	{"NotificationLimitMustBePositive", func(t *testing.T, r es.ApplicationRecorder) {
		for _, limit := range []int{0, -1} {
			if _, err := r.SelectNotifications(ctx, 1, limit, nil); !errors.Is(err, es.ErrProgramming) {
				t.Errorf("limit %d: got %v, want ErrProgramming", limit, err)
			}
		}
	}},
	{"FailedBatchLeavesNoNotification", func(t *testing.T, r es.ApplicationRecorder) {
		id, other := uuid.New(), uuid.New()
		ids := insert(t, r, events(id, 1, 1, "t:A"), nil)
		_, err := r.InsertEvents(ctx, append(events(other, 1, 2, "t:A"), events(id, 1, 1, "t:A")...), nil)
		wantIntegrity(t, err)
		for _, n := range notifications(t, r, ids[0], 1000, nil) {
			if n.OriginatorID == other {
				t.Errorf("the failed batch left notification %d", n.ID)
			}
		}
		after := insert(t, r, events(id, 2, 2, "t:A"), nil)
		if after[0] <= ids[0] {
			t.Errorf("ID after a failed batch %d is not above %d", after[0], ids[0])
		}
	}},
}

type processTest struct {
	name string
	fn   func(t *testing.T, r es.ProcessRecorder)
}

func maxTracking(t *testing.T, r es.ProcessRecorder, app string) int64 {
	t.Helper()
	n, err := r.MaxTrackingID(ctx, app)
	if err != nil {
		t.Fatalf("MaxTrackingID(%q): %v", app, err)
	}
	return n
}

func hasTracking(t *testing.T, r es.ProcessRecorder, app string, id int64) bool {
	t.Helper()
	ok, err := r.HasTrackingID(ctx, app, id)
	if err != nil {
		t.Fatalf("HasTrackingID(%q, %d): %v", app, id, err)
	}
	return ok
}

func appName() string { return "App" + uuid.NewString()[:8] }

var processTests = []processTest{
	{"TrackingWithEvents", func(t *testing.T, r es.ProcessRecorder) {
		app := appName()
		if got := maxTracking(t, r, app); got != 0 {
			t.Errorf("MaxTrackingID of an unknown application = %d, want 0", got)
		}
		if hasTracking(t, r, app, 1) {
			t.Error("HasTrackingID of an unknown application is true")
		}
		id := uuid.New()
		insert(t, r, events(id, 1, 2, "t:A"), &es.Tracking{ApplicationName: app, NotificationID: 5})
		if got := maxTracking(t, r, app); got != 5 {
			t.Errorf("MaxTrackingID = %d, want 5", got)
		}
		for n, want := range map[int64]bool{1: true, 5: true, 6: false} {
			if got := hasTracking(t, r, app, n); got != want {
				t.Errorf("HasTrackingID(%d) = %v, want %v", n, got, want)
			}
		}
		insert(t, r, events(id, 3, 3, "t:A"), &es.Tracking{ApplicationName: app, NotificationID: 9})
		if got := maxTracking(t, r, app); got != 9 {
			t.Errorf("MaxTrackingID = %d, want 9", got)
		}
	}},
	{"TrackingMustIncrease", func(t *testing.T, r es.ProcessRecorder) {
		app := appName()
		id := uuid.New()
		insert(t, r, events(id, 1, 1, "t:A"), &es.Tracking{ApplicationName: app, NotificationID: 5})
		for _, n := range []int64{5, 4} {
			tr := &es.Tracking{ApplicationName: app, NotificationID: n}
			_, err := r.InsertEvents(ctx, events(id, 2, 3, "t:A"), tr)
			ie := wantIntegrity(t, err)
			if ie.Tracking == nil || *ie.Tracking != *tr {
				t.Errorf("tracking %d: IntegrityError.Tracking = %v, want %v", n, ie.Tracking, *tr)
			}
			if got := selectVersions(t, r, id, nil); !slices.Equal(got, []int64{1}) {
				t.Fatalf("tracking %d refused, but events %v were recorded", n, got)
			}
		}
		if got := maxTracking(t, r, app); got != 5 {
			t.Errorf("MaxTrackingID = %d, want 5", got)
		}
	}},
	{"TrackingBatchFirst", func(t *testing.T, r es.ProcessRecorder) {
		// A batch from First to NotificationID is refused if any of its
		// notifications was tracked already (two processes with
		// overlapping batches), and taken if none was.
		app := appName()
		id := uuid.New()
		insert(t, r, events(id, 1, 1, "t:A"), &es.Tracking{ApplicationName: app, NotificationID: 60, First: 50})
		for _, first := range []int64{1, 60} {
			tr := &es.Tracking{ApplicationName: app, NotificationID: 100, First: first}
			_, err := r.InsertEvents(ctx, events(id, 2, 2, "t:A"), tr)
			ie := wantIntegrity(t, err)
			if ie.Tracking == nil || *ie.Tracking != *tr {
				t.Errorf("batch %d-100: IntegrityError.Tracking = %v, want %v", first, ie.Tracking, *tr)
			}
			if got := selectVersions(t, r, id, nil); !slices.Equal(got, []int64{1}) {
				t.Fatalf("batch %d-100 refused, but events %v were recorded", first, got)
			}
		}
		insert(t, r, events(id, 2, 2, "t:A"), &es.Tracking{ApplicationName: app, NotificationID: 100, First: 61})
		if got := maxTracking(t, r, app); got != 100 {
			t.Errorf("MaxTrackingID = %d, want 100", got)
		}
		for _, tr := range []es.Tracking{{ApplicationName: app, NotificationID: 200, First: 201}, {ApplicationName: app, NotificationID: 200, First: -1}} {
			if _, err := r.InsertEvents(ctx, events(id, 3, 3, "t:A"), &tr); !errors.Is(err, es.ErrProgramming) {
				t.Errorf("tracking %+v: %v, want ErrProgramming", tr, err)
			}
		}
		if got := selectVersions(t, r, id, nil); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("events %v, want [1 2]", got)
		}
	}},
	{"TrackingNotWrittenWhenEventsConflict", func(t *testing.T, r es.ProcessRecorder) {
		app := appName()
		id := uuid.New()
		insert(t, r, events(id, 1, 1, "t:A"), nil)
		_, err := r.InsertEvents(ctx, events(id, 1, 1, "t:A"), &es.Tracking{ApplicationName: app, NotificationID: 3})
		ie := wantIntegrity(t, err)
		if ie.Tracking != nil {
			t.Errorf("an event conflict reported tracking %v", ie.Tracking)
		}
		if got := maxTracking(t, r, app); got != 0 {
			t.Errorf("tracking %d written by a failed batch", got)
		}
	}},
	{"TrackingOnly", func(t *testing.T, r es.ProcessRecorder) {
		app := appName()
		ids, err := r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: app, NotificationID: 7})
		if err != nil || len(ids) != 0 {
			t.Fatalf("tracking only: %v, %v", ids, err)
		}
		if got := maxTracking(t, r, app); got != 7 {
			t.Errorf("MaxTrackingID = %d, want 7", got)
		}
		_, err = r.InsertEvents(ctx, nil, &es.Tracking{ApplicationName: app, NotificationID: 7})
		wantIntegrity(t, err)
	}},
	{"TrackingPerApplication", func(t *testing.T, r es.ProcessRecorder) {
		a, b := appName(), appName()
		insert(t, r, nil, &es.Tracking{ApplicationName: a, NotificationID: 10})
		insert(t, r, nil, &es.Tracking{ApplicationName: b, NotificationID: 2})
		insert(t, r, nil, &es.Tracking{ApplicationName: b, NotificationID: 3})
		if got := maxTracking(t, r, a); got != 10 {
			t.Errorf("%s: MaxTrackingID = %d, want 10", a, got)
		}
		if got := maxTracking(t, r, b); got != 3 {
			t.Errorf("%s: MaxTrackingID = %d, want 3", b, got)
		}
	}},
}

// concurrentWriters: writers insert batches for their own originators while
// readers follow the notification log. No error, every event seen exactly
// once, IDs strictly ascending, and no reader ever sees an ID appear below
// one it has already seen.
func (o Options) concurrentWriters(t *testing.T, r es.ProcessRecorder) {
	start, err := r.MaxNotificationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	topic := "t:" + uuid.NewString()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written = map[int64]es.StoredEvent{}
		done    = make(chan struct{})
		errs    = make(chan error, o.Writers+o.Readers)
	)
	for w := range o.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)))
			id := uuid.New()
			v := int64(0)
			for b := 0; b < o.BatchesPerWriter; b++ {
				n := 1 + rng.IntN(o.MaxBatchSize)
				evs := events(id, v+1, v+int64(n), topic)
				v += int64(n)
				ids, err := r.InsertEvents(ctx, evs, nil)
				if err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
					return
				}
				if len(ids) != n {
					errs <- fmt.Errorf("writer %d: %d IDs for %d events", w, len(ids), n)
					return
				}
				mu.Lock()
				for i, id := range ids {
					written[id] = evs[i]
				}
				mu.Unlock()
			}
		}()
	}
	seen := make([][]int64, o.Readers)
	var rwg sync.WaitGroup
	for rd := range o.Readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			last := start
			read := func() (bool, error) {
				ns, err := r.SelectNotifications(ctx, last, o.PageSize, &es.NotificationQuery{ExclusiveStart: true, Topics: []string{topic}})
				if err != nil {
					return false, err
				}
				for _, n := range ns {
					if n.ID <= last {
						return false, fmt.Errorf("reader %d: ID %d after %d", rd, n.ID, last)
					}
					last = n.ID
					seen[rd] = append(seen[rd], n.ID)
				}
				return len(ns) == o.PageSize, nil
			}
			for {
				select {
				case <-done:
					// Drain what is left.
					for {
						more, err := read()
						if err != nil {
							errs <- err
							return
						}
						if !more {
							return
						}
					}
				default:
				}
				if _, err := read(); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(done)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	all := notifications(t, r, start, len(written)+10, &es.NotificationQuery{ExclusiveStart: true, Topics: []string{topic}})
	if len(all) != len(written) {
		t.Fatalf("log has %d of the %d events written", len(all), len(written))
	}
	for i, n := range all {
		if i > 0 && n.ID <= all[i-1].ID {
			t.Fatalf("log IDs not ascending at %d: %d after %d", i, n.ID, all[i-1].ID)
		}
		w, ok := written[n.ID]
		if !ok || w.OriginatorID != n.OriginatorID || w.OriginatorVersion != n.OriginatorVersion || !bytes.Equal(w.State, n.State) {
			t.Fatalf("notification %d is %v, but the writer was given that ID for %v", n.ID, n.StoredEvent, w)
		}
	}
	// Each reader saw every event exactly once, in order: a reader that
	// missed one (because it committed with a lower ID after the reader
	// passed it) fails here.
	want := noteIDs(all)
	for rd, ids := range seen {
		if !slices.Equal(ids, want) {
			missing := 0
			for _, id := range want {
				if !slices.Contains(ids, id) {
					missing++
				}
			}
			t.Errorf("reader %d saw %d IDs, want %d (%d missed)", rd, len(ids), len(want), missing)
		}
	}
}

// conflictingWriters: goroutines race for the same (originator, version);
// exactly one wins each contested version, the others get ErrIntegrity,
// and every successful event is in the log exactly once, in order.
func (o Options) conflictingWriters(t *testing.T, r es.ProcessRecorder) {
	const versions = 20
	contenders := max(o.Writers/2, 2)
	topic := "t:" + uuid.NewString()
	shared := uuid.New()
	start, err := r.MaxNotificationID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		writer  int
		version int64
		ids     []int64
		err     error
	}
	results := make(chan result, contenders*versions*2)
	var wg sync.WaitGroup
	for w := range contenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := uuid.New()
			for v := int64(1); v <= versions; v++ {
				// Each batch holds an event of the writer's own aggregate and
				// the contested version of the shared one.
				batch := []es.StoredEvent{
					{OriginatorID: own, OriginatorVersion: v, Topic: topic, State: []byte(fmt.Sprintf(`{"w":%d}`, w))},
					{OriginatorID: shared, OriginatorVersion: v, Topic: topic, State: []byte(fmt.Sprintf(`{"w":%d}`, w))},
				}
				ids, err := r.InsertEvents(ctx, batch, nil)
				results <- result{w, v, ids, err}
				if err != nil && !errors.Is(err, es.ErrIntegrity) {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(results)
	winners := map[int64]int{}
	var okIDs []int64
	for res := range results {
		switch {
		case res.err == nil:
			winners[res.version]++
			okIDs = append(okIDs, res.ids...)
		case errors.Is(res.err, es.ErrIntegrity):
		default:
			t.Errorf("writer %d version %d: %v", res.writer, res.version, res.err)
		}
	}
	for v := int64(1); v <= versions; v++ {
		if winners[v] != 1 {
			t.Errorf("version %d of the shared aggregate was won %d times, want once", v, winners[v])
		}
	}
	slices.Sort(okIDs)
	all := notifications(t, r, start, len(okIDs)+100, &es.NotificationQuery{ExclusiveStart: true, Topics: []string{topic}})
	if !slices.Equal(noteIDs(all), okIDs) {
		t.Errorf("log IDs %v\nwant the successful writers' IDs %v", noteIDs(all), okIDs)
	}
	sharedEvs, err := r.SelectEvents(ctx, shared, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sharedEvs) != versions {
		t.Errorf("shared aggregate has %d versions, want %d", len(sharedEvs), versions)
	}
	// A loser's own event was not written: each own aggregate's versions are
	// exactly those of the batches it won.
	for _, n := range all {
		if n.OriginatorID == shared {
			continue
		}
		evs, _ := r.SelectEvents(ctx, n.OriginatorID, &es.Query{GTE: n.OriginatorVersion, LTE: n.OriginatorVersion})
		if len(evs) != 1 {
			t.Errorf("own event %v v%d: %d copies", n.OriginatorID, n.OriginatorVersion, len(evs))
		}
	}
}
