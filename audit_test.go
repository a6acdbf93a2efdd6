package eventsourcing_test

// The acknowledgement audit (issue 18): many concurrent callers insert
// through a recorder whose database connections fail by a seeded schedule
// (audit_fault_test.go), with random deadlines; every call is recorded as
// ok, fail or unknown, as Jepsen records a history; then the tables are read
// back through a fresh, unfaulted pool and every outcome is checked against
// them. Each backend's test ends with one summary line on stdout:
//
//	audit sqlite: 86400 calls, 9547 faults injected, 0 violations
//
// EVENTSOURCING_AUDIT_SEED replays a run's schedule; EVENTSOURCING_AUDIT_SOAK
// (a duration, e.g. 5m) repeats the runs with new seeds for that long.

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// Environment variables of the audit.
const (
	envAuditSeed = "EVENTSOURCING_AUDIT_SEED"
	envAuditSoak = "EVENTSOURCING_AUDIT_SOAK"
)

// How much work a run does, and the bounds the audit holds calls to.
const (
	auditWorkers    = 24
	auditCalls      = 120              // per worker and run
	auditStuckAfter = 30 * time.Second // one call in progress
	// auditLateness bounds how long after its deadline a call may return:
	// a claimed call waits for its transaction's outcome, and a lost
	// COMMIT's check for up to 10 s.
	auditLateness = 12 * time.Second
	maxReported   = 10 // violations printed per run
)

// outcome is what a call was told: ok (nil error), fail (an error), or
// unknown (ErrOutcomeUnknown: the only error after which its events may be
// recorded).
type outcome int8

const (
	outcomeOK outcome = iota
	outcomeFail
	outcomeUnknown
)

func (o outcome) String() string { return [...]string{"ok", "fail", "unknown"}[o] }

// auditCall is one InsertEvents call of the history. It is written as a
// JSON line by a writer process (audit_proc_test.go).
type auditCall struct {
	Proc, Worker, Seq int
	Events            []es.StoredEvent
	Tracking          *es.Tracking
	Conflict          bool          // re-inserts an acknowledged version: must not succeed
	Timeout           time.Duration // the caller's deadline; zero: none
	IDs               []int64
	Outcome           outcome
	Error             string
	Took              time.Duration

	advance []advance // what success moves on
}

// advance is an aggregate's next version after a call succeeds.
type advance struct {
	agg  *auditAggregate
	next int64
}

// callKey names a call; with an event index, a stored row.
type callKey struct{ proc, worker, seq int }

func (c *auditCall) key() callKey { return callKey{c.Proc, c.Worker, c.Seq} }

func (c *auditCall) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "call p%d/w%d/#%d (%d events", c.Proc, c.Worker, c.Seq, len(c.Events))
	if c.Conflict {
		b.WriteString(", conflicting on purpose")
	}
	if c.Tracking != nil {
		fmt.Fprintf(&b, ", tracking %s %d", c.Tracking.ApplicationName, c.Tracking.NotificationID)
	}
	if c.Timeout > 0 {
		fmt.Fprintf(&b, ", deadline %v", c.Timeout)
	}
	fmt.Fprintf(&b, ", took %v): %s", c.Took.Round(time.Microsecond), c.Outcome)
	if c.Outcome == outcomeOK {
		fmt.Fprintf(&b, " IDs %v", c.IDs)
	} else {
		fmt.Fprintf(&b, " %q", c.Error)
	}
	return b.String()
}

// record sets the call's outcome from what InsertEvents returned.
func (c *auditCall) record(ids []int64, err error) {
	c.IDs = ids
	switch {
	case err == nil:
		c.Outcome = outcomeOK
	case errors.Is(err, es.ErrOutcomeUnknown):
		c.Outcome = outcomeUnknown
	default:
		c.Outcome = outcomeFail
	}
	if err != nil {
		c.Error = err.Error()
	}
}

// auditState is the state of a call's kth event: it names the call, so
// that every stored row can be traced to the call that wrote it.
func auditState(c *auditCall, k int) []byte {
	return fmt.Appendf(nil, "audit %d %d %d %d", c.Proc, c.Worker, c.Seq, k)
}

func parseAuditState(b []byte) (callKey, int, bool) {
	var k callKey
	var i int
	_, err := fmt.Sscanf(string(b), "audit %d %d %d %d", &k.proc, &k.worker, &k.seq, &i)
	return k, i, err == nil
}

// auditAggregate is an aggregate a worker appends to.
type auditAggregate struct {
	id       uuid.UUID
	next     int64 // the version its next event takes
	failures int   // consecutive failed calls
}

// auditWorker is one caller: it makes calls one after another, each from
// the outcomes of the last, and keeps its history.
type auditWorker struct {
	proc, id     int
	rng          *rand.Rand
	app          string // its tracking records' application name
	lastTracking int64
	deadline     time.Duration // the bound of a short deadline
	open         []*auditAggregate
	acked        []es.StoredEvent // acknowledged events, to conflict with
	calls        []*auditCall

	current atomic.Pointer[auditCall] // the call in progress
	since   atomic.Int64              // when it started (Unix ns)
}

func newAuditWorker(proc, id int, seed uint64, deadline time.Duration) *auditWorker {
	return &auditWorker{proc: proc, id: id, rng: rand.New(rand.NewPCG(seed, uint64(proc)<<32|uint64(id))),
		app: fmt.Sprintf("audit_p%d_w%d", proc, id), deadline: deadline}
}

// run makes n calls on rec.
func (w *auditWorker) run(rec es.ProcessRecorder, n int) {
	for range n {
		c := w.next()
		w.since.Store(time.Now().UnixNano())
		w.current.Store(c)
		w.call(rec, c)
		w.current.Store(nil)
		w.settle(c)
		w.calls = append(w.calls, c)
	}
}

func (w *auditWorker) call(rec es.ProcessRecorder, c *auditCall) {
	ctx := context.Background()
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	start := time.Now()
	ids, err := rec.InsertEvents(ctx, c.Events, c.Tracking)
	c.Took = time.Since(start)
	c.record(ids, err)
}

// next makes the worker's next call: mostly 1 to 4 new events of one or
// two aggregates, some with a tracking record; some a tracking record
// alone; some re-inserting an acknowledged version.
func (w *auditWorker) next() *auditCall {
	c := &auditCall{Proc: w.proc, Worker: w.id, Seq: len(w.calls), Timeout: w.timeout()}
	switch r := w.rng.Float64(); {
	case r < 0.08 && len(w.acked) > 0:
		w.conflicting(c)
	case r < 0.13:
		c.Tracking = w.nextTracking()
	default:
		w.appending(c)
		if w.rng.Float64() < 0.3 {
			c.Tracking = w.nextTracking()
		}
	}
	return c
}

// timeout draws a caller's deadline: none, already past, up to the short
// bound or up to 8 times it, so that deadlines expire at every stage of a
// call.
func (w *auditWorker) timeout() time.Duration {
	switch r := w.rng.Float64(); {
	case r < 0.5:
		return 0
	case r < 0.53:
		return time.Nanosecond
	case r < 0.83:
		return time.Duration(1 + w.rng.Int64N(int64(w.deadline)))
	default:
		return time.Duration(1 + w.rng.Int64N(int64(8*w.deadline)))
	}
}

func (w *auditWorker) nextTracking() *es.Tracking {
	w.lastTracking += 1 + w.rng.Int64N(3)
	return &es.Tracking{ApplicationName: w.app, NotificationID: w.lastTracking}
}

func (w *auditWorker) event(c *auditCall, id uuid.UUID, version int64) es.StoredEvent {
	return es.StoredEvent{OriginatorID: id, OriginatorVersion: version, Topic: "audit", State: auditState(c, len(c.Events))}
}

func (w *auditWorker) newID() uuid.UUID {
	var id uuid.UUID
	for i := range id {
		id[i] = byte(w.rng.Uint32())
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

// aggregate picks an open aggregate, or opens a new one.
func (w *auditWorker) aggregate() *auditAggregate {
	if len(w.open) == 0 || (len(w.open) < 4 && w.rng.Float64() < 0.1) {
		a := &auditAggregate{id: w.newID(), next: 1}
		w.open = append(w.open, a)
		return a
	}
	return w.open[w.rng.IntN(len(w.open))]
}

func (w *auditWorker) retire(a *auditAggregate) {
	if i := slices.Index(w.open, a); i >= 0 {
		w.open = slices.Delete(w.open, i, i+1)
	}
}

// appending fills c with the next events of one or two aggregates.
func (w *auditWorker) appending(c *auditCall) {
	n := 1 + w.rng.IntN(4)
	aggs := []*auditAggregate{w.aggregate()}
	if n > 1 && w.rng.Float64() < 0.25 {
		if b := w.aggregate(); b != aggs[0] {
			aggs = append(aggs, b)
		}
	}
	next := make([]int64, len(aggs))
	for i, a := range aggs {
		next[i] = a.next
	}
	for k := range n {
		i := k % len(aggs)
		c.Events = append(c.Events, w.event(c, aggs[i].id, next[i]))
		next[i]++
	}
	for i, a := range aggs {
		c.advance = append(c.advance, advance{a, next[i]})
	}
}

// conflicting fills c with an acknowledged (aggregate, version), and
// perhaps a new aggregate's first event: the whole call must fail.
func (w *auditWorker) conflicting(c *auditCall) {
	e := w.acked[w.rng.IntN(len(w.acked))]
	c.Conflict = true
	c.Events = append(c.Events, w.event(c, e.OriginatorID, e.OriginatorVersion))
	if w.rng.Float64() < 0.5 {
		c.Events = append(c.Events, w.event(c, w.newID(), 1))
	}
}

// settle moves the worker's aggregates on after c: past its events if it
// succeeded; a call whose outcome is unknown (or that keeps failing)
// retires its aggregates, whose next version is then unknown.
func (w *auditWorker) settle(c *auditCall) {
	switch c.Outcome {
	case outcomeOK:
		for _, a := range c.advance {
			a.agg.next, a.agg.failures = a.next, 0
		}
		if !c.Conflict {
			for _, e := range c.Events {
				if len(w.acked) < 16 {
					w.acked = append(w.acked, e)
				} else {
					w.acked[w.rng.IntN(len(w.acked))] = e
				}
			}
		}
	case outcomeUnknown:
		for _, a := range c.advance {
			w.retire(a.agg)
		}
	case outcomeFail:
		for _, a := range c.advance {
			if a.agg.failures++; a.agg.failures >= 3 {
				w.retire(a.agg)
			}
		}
	}
}

// drive runs the run's workers on rec, concurrently, and returns their
// history, with violations if a call was in progress for auditStuckAfter.
func drive(rec es.ProcessRecorder, proc int, run auditRun) ([]*auditCall, violations) {
	ws := make([]*auditWorker, run.workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = newAuditWorker(proc, i, run.seed, run.deadline)
		wg.Go(func() { ws[i].run(rec, run.calls) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	stuck := watch(ws, done)
	return history(ws), stuck
}

// watch waits for done, and reports the calls in progress if one has been
// for auditStuckAfter; if they have still not returned after as long
// again, it panics with them and the goroutines' stacks.
func watch(ws []*auditWorker, done <-chan struct{}) violations {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
		}
		if stuck := stuckCalls(ws); stuck != nil {
			stuck.addf("goroutines:\n%s", goroutineDump(4000))
			select {
			case <-done: // late, but returned: the history can be checked
				return stuck
			case <-time.After(auditStuckAfter):
				panic("audit: calls that do not return:\n" + strings.Join(stuck, "\n"))
			}
		}
	}
}

// stuckCalls describes the calls in progress, if one has been for
// auditStuckAfter, or returns nil.
func stuckCalls(ws []*auditWorker) violations {
	var stuck violations
	oldest := time.Duration(0)
	for _, w := range ws {
		if c := w.current.Load(); c != nil {
			d := time.Since(time.Unix(0, w.since.Load()))
			oldest = max(oldest, d)
			stuck.addf("call p%d/w%d/#%d (%d events, deadline %v): still waiting after %v", c.Proc, c.Worker, c.Seq, len(c.Events), c.Timeout, d.Round(time.Millisecond))
		}
	}
	if oldest < auditStuckAfter {
		return nil
	}
	return stuck
}

// history returns the workers' calls, once they have all returned.
func history(ws []*auditWorker) []*auditCall {
	var hist []*auditCall
	for _, w := range ws {
		hist = append(hist, w.calls...)
	}
	return hist
}

// goroutineDump returns the goroutines' stacks, cut at limit bytes.
func goroutineDump(limit int) string {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	s := b.String()
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}

// auditView reads a recorder's tables back, through a pool the faults do
// not touch.
type auditView struct {
	rec es.ProcessRecorder
	// count returns SELECT count(*) of the events table (nil: no table).
	count func(context.Context) (int64, error)
	// trackedIDs returns every tracking row of an application (nil:
	// single-row tracking, which keeps the highest alone).
	trackedIDs func(context.Context, string) ([]int64, error)
}

// violations collects what a check found.
type violations []string

func (v *violations) addf(format string, args ...any) { *v = append(*v, fmt.Sprintf(format, args...)) }

// checkHistory compares every call of hist with the tables: an ok call's
// events are all stored under the IDs it was given, a failed call's are
// not stored, an unknown call's are stored all or none, nothing is stored
// that no call wrote; and the tracking records agree.
func checkHistory(ctx context.Context, v auditView, hist []*auditCall) violations {
	var bad violations
	log, err := readLog(ctx, v.rec)
	if err != nil {
		bad.addf("read the notification log: %v", err)
		return bad
	}
	stored := checkLog(&bad, log, hist)
	if v.count != nil {
		if n, err := v.count(ctx); err != nil {
			bad.addf("count the events: %v", err)
		} else if n != int64(len(log)) {
			bad.addf("SELECT count(*) finds %d events, paging the log finds %d", n, len(log))
		}
	}
	for _, c := range hist {
		checkCall(&bad, c, stored[c.key()])
	}
	checkTracking(ctx, &bad, v, hist)
	checkAggregates(ctx, &bad, v.rec, log, hist)
	return bad
}

// readLog pages the whole notification log from 0.
func readLog(ctx context.Context, rec es.ProcessRecorder) ([]es.Notification, error) {
	var all []es.Notification
	start := int64(0)
	for {
		page, err := rec.SelectNotifications(ctx, start, 500, nil)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return all, nil
		}
		all = append(all, page...)
		start = page[len(page)-1].ID + 1
	}
}

// checkLog traces every stored row to the call and event that wrote it,
// and returns the rows by call, indexed by event.
func checkLog(bad *violations, log []es.Notification, hist []*auditCall) map[callKey]map[int]es.Notification {
	calls := make(map[callKey]*auditCall, len(hist))
	for _, c := range hist {
		calls[c.key()] = c
	}
	stored := map[callKey]map[int]es.Notification{}
	var last int64
	for _, n := range log {
		if n.ID <= last {
			bad.addf("notification %d follows %d: IDs not ascending", n.ID, last)
		}
		last = n.ID
		k, i, ok := parseAuditState(n.State)
		c := calls[k]
		if !ok || c == nil || i >= len(c.Events) {
			bad.addf("notification %d (%s v%d, state %q) was written by no call", n.ID, n.OriginatorID, n.OriginatorVersion, n.State)
			continue
		}
		if e := c.Events[i]; e.OriginatorID != n.OriginatorID || e.OriginatorVersion != n.OriginatorVersion || e.Topic != n.Topic {
			bad.addf("notification %d is %s v%d %q, but %s wrote event %d as %s v%d", n.ID, n.OriginatorID, n.OriginatorVersion, n.Topic, c, i, e.OriginatorID, e.OriginatorVersion)
		}
		if stored[k] == nil {
			stored[k] = map[int]es.Notification{}
		}
		stored[k][i] = n
	}
	return stored
}

// checkCall compares a call's outcome with its rows in the log: one
// violation per call that was told something untrue.
func checkCall(bad *violations, c *auditCall, rows map[int]es.Notification) {
	var wrong []string
	switch c.Outcome {
	case outcomeOK:
		if len(c.IDs) != len(c.Events) {
			wrong = append(wrong, fmt.Sprintf("%d IDs for %d events", len(c.IDs), len(c.Events)))
		}
		for i, e := range c.Events {
			n, ok := rows[i]
			switch {
			case !ok:
				wrong = append(wrong, fmt.Sprintf("event %d (%s v%d) is not stored", i, e.OriginatorID, e.OriginatorVersion))
			case i < len(c.IDs) && c.IDs[i] != n.ID:
				wrong = append(wrong, fmt.Sprintf("event %d is stored as notification %d, not %d", i, n.ID, c.IDs[i]))
			}
		}
	case outcomeFail:
		if len(rows) > 0 {
			wrong = append(wrong, fmt.Sprintf("%d of its %d events are stored", len(rows), len(c.Events)))
		}
		if c.IDs != nil {
			wrong = append(wrong, "it returned IDs with its error")
		}
	case outcomeUnknown:
		if len(rows) != 0 && len(rows) != len(c.Events) {
			wrong = append(wrong, fmt.Sprintf("%d of its %d events are stored (all or none)", len(rows), len(c.Events)))
		}
	}
	if len(wrong) > 0 {
		bad.addf("%s: %s", c, strings.Join(wrong, "; "))
	}
}

// checkTracking compares each application's tracking records with the
// calls that carried them. With single-row tracking only the highest is
// kept: it must be the highest acknowledged, or an unknown call's above it.
func checkTracking(ctx context.Context, bad *violations, v auditView, hist []*auditCall) {
	byApp := map[string][]*auditCall{}
	for _, c := range hist {
		if c.Tracking != nil {
			byApp[c.Tracking.ApplicationName] = append(byApp[c.Tracking.ApplicationName], c)
		}
	}
	for app, calls := range byApp {
		byID := map[int64]*auditCall{}
		var okMax int64
		for _, c := range calls {
			byID[c.Tracking.NotificationID] = c
			if c.Outcome == outcomeOK {
				okMax = max(okMax, c.Tracking.NotificationID)
			}
		}
		got, err := v.rec.MaxTrackingID(ctx, app)
		if err != nil {
			bad.addf("MaxTrackingID(%s): %v", app, err)
			continue
		}
		switch c := byID[got]; {
		case got == okMax:
		case got < okMax:
			bad.addf("MaxTrackingID(%s) is %d: %s was acknowledged", app, got, byID[okMax])
		case c == nil:
			bad.addf("MaxTrackingID(%s) is %d, which no call recorded", app, got)
		case c.Outcome != outcomeUnknown:
			bad.addf("MaxTrackingID(%s) is %d: %s", app, got, c)
		}
		if okMax > 0 {
			if has, err := v.rec.HasTrackingID(ctx, app, okMax); err != nil || !has {
				bad.addf("HasTrackingID(%s, %d) = %v, %v: %s was acknowledged", app, okMax, has, err, byID[okMax])
			}
		}
		if v.trackedIDs != nil {
			checkTrackingRows(ctx, bad, v, app, byID)
		}
	}
}

// checkTrackingRows compares an application's tracking rows (multi-row
// tracking keeps one per call) with the calls.
func checkTrackingRows(ctx context.Context, bad *violations, v auditView, app string, byID map[int64]*auditCall) {
	ids, err := v.trackedIDs(ctx, app)
	if err != nil {
		bad.addf("tracking rows of %s: %v", app, err)
		return
	}
	rows := map[int64]bool{}
	for _, id := range ids {
		rows[id] = true
		if byID[id] == nil {
			bad.addf("tracking row %s %d was recorded by no call", app, id)
		}
	}
	for id, c := range byID {
		switch {
		case c.Outcome == outcomeOK && !rows[id]:
			bad.addf("%s: acknowledged, but its tracking row is not stored", c)
		case c.Outcome == outcomeFail && rows[id]:
			bad.addf("%s: failed, but its tracking row is stored", c)
		}
	}
}

// checkAggregates reads some acknowledged aggregates with SelectEvents:
// each must hold exactly the log's rows of the aggregate.
func checkAggregates(ctx context.Context, bad *violations, rec es.ProcessRecorder, log []es.Notification, hist []*auditCall) {
	const sample = 40
	inLog := map[uuid.UUID][]es.Notification{}
	for _, n := range log {
		inLog[n.OriginatorID] = append(inLog[n.OriginatorID], n)
	}
	seen := map[uuid.UUID]bool{}
	for _, c := range hist {
		if c.Outcome != outcomeOK || c.Conflict || len(c.Events) == 0 || seen[c.Events[0].OriginatorID] {
			continue
		}
		id := c.Events[0].OriginatorID
		seen[id] = true
		if len(seen) > sample {
			return
		}
		evs, err := rec.SelectEvents(ctx, id, nil)
		if err != nil {
			bad.addf("SelectEvents(%s): %v", id, err)
			continue
		}
		want := slices.Clone(inLog[id])
		slices.SortFunc(want, func(a, b es.Notification) int { return int(a.OriginatorVersion - b.OriginatorVersion) })
		if !sameEvents(evs, want) {
			bad.addf("SelectEvents(%s) gives %d events, the log %d (or they differ)", id, len(evs), len(want))
		}
	}
}

func sameEvents(evs []es.StoredEvent, ns []es.Notification) bool {
	return slices.EqualFunc(evs, ns, func(e es.StoredEvent, n es.Notification) bool {
		return e.OriginatorVersion == n.OriginatorVersion && bytes.Equal(e.State, n.State)
	})
}

// checkLateness reports calls that returned long after their deadline.
func checkLateness(bad *violations, hist []*auditCall) {
	for _, c := range hist {
		if c.Timeout > 0 && c.Took > c.Timeout+auditLateness {
			bad.addf("%s: returned %v after its deadline", c, c.Took-c.Timeout)
		}
	}
}

// auditObserver counts the calls the recorder's Observer is told were
// committed.
type auditObserver struct{ calls atomic.Int64 }

func (o *auditObserver) ObserveStart(ctx context.Context, _ es.Op) context.Context { return ctx }

func (o *auditObserver) ObserveEnd(_ context.Context, op es.Op, res es.OpResult) {
	if op.Kind == es.OpGroupCommit {
		o.calls.Add(int64(res.Calls))
	}
}

// checkCounters compares the calls told "success" with the Observer's
// count and Stats().Calls. A transaction's calls are counted just after their
// callers are released, so the counts are given a moment to settle.
func checkCounters(bad *violations, tg *auditTarget, obs *auditObserver, hist []*auditCall) {
	var ok int64
	for _, c := range hist {
		if c.Outcome == outcomeOK {
			ok++
		}
	}
	counted := func() (observed, stats int64) {
		observed, stats = obs.calls.Load(), ok
		if tg.stats != nil {
			stats = tg.stats().Calls
		}
		return observed, stats
	}
	eventually(2*time.Second, func() bool {
		observed, stats := counted()
		return observed == ok && stats == ok
	})
	observed, stats := counted()
	if observed != ok {
		bad.addf("the Observer was told of %d committed calls; %d calls were told success", observed, ok)
	}
	if stats != ok {
		bad.addf("Stats().Calls is %d; %d calls were told success", stats, ok)
	}
}

// checkResources checks that the faulted pool's connections are back and
// close, and the goroutines are back to their number before the run.
func checkResources(bad *violations, tg *auditTarget, goroutines int) {
	if tg.db != nil {
		if !eventually(2*time.Second, func() bool { return tg.db.Stats().InUse == 0 }) {
			bad.addf("%d connections still in use after every call returned", tg.db.Stats().InUse)
		}
		tg.db.Close()
		if !eventually(2*time.Second, func() bool { return tg.db.Stats().OpenConnections == 0 }) {
			bad.addf("%d connections still open after Close", tg.db.Stats().OpenConnections)
		}
	}
	const slack = 3
	if !eventually(3*time.Second, func() bool { return runtime.NumGoroutine() <= goroutines+slack }) {
		bad.addf("%d goroutines after the run, %d before:\n%s", runtime.NumGoroutine(), goroutines, goroutineDump(4000))
	}
}

// eventually polls cond until it holds or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// auditTarget is a recorder under audit, and how to read it back.
type auditTarget struct {
	rec   es.ProcessRecorder
	stats func() es.Stats // nil: no group commit
	db    *sql.DB         // the faulted pool (nil: memory)
	view  auditView
	// disrupt, if not nil, injects real faults until its context ends.
	disrupt func(ctx context.Context)
}

// auditMode is a recorder configuration the audit runs under.
type auditMode struct {
	name string
	opts es.SQLOptions
}

var (
	modeGroup    = auditMode{"group", es.SQLOptions{}}
	modeNoGroup  = auditMode{"nogroup", es.SQLOptions{MaxGroupSize: 1}}
	modeDelay    = auditMode{"delay", es.SQLOptions{MaxGroupDelay: 200 * time.Microsecond}}
	modeMultiRow = auditMode{"multirow", es.SQLOptions{MultiRowTracking: true}}
	// The transaction path (BEGIN, lock statements, INSERT, COMMIT) where
	// the default is the append function (PostgreSQL).
	modeTxGroup   = auditMode{"tx-group", es.SQLOptions{NoAppendFunction: true}}
	modeTxNoGroup = auditMode{"tx-nogroup", es.SQLOptions{NoAppendFunction: true, MaxGroupSize: 1}}
)

// auditRates are the chances that an opportunity faults, in a run that
// faults one point (a run that faults every point: mixedRates). A group's
// transaction has a tracking insert and a savepoint per call: theirs are
// lower, or hardly a group would commit.
// A real fault's rate is its intensity: at 1, one every 10 to 40 ms.
var auditRates = [numFaults]float64{
	faultConnect: 0.5, faultCheckout: 0.5, faultBegin: 0.5, faultLock: 0.5, faultInsert: 0.4,
	faultTracking: 0.25, faultNotify: 0.5, faultSavepoint: 0.25, faultCommitUnsent: 0.4,
	faultCommitLost: 0.4, faultCommitReplyLost: 0.4, faultCommitServerError: 0.4,
	faultTerminate: 0.5, faultTableLock: 1,
	faultCall: 0.4, faultCallLost: 0.4, faultCallReplyLost: 0.4, faultCallCancelled: 0.4,
}

// auditRun is one run: a configuration, a fault schedule, and the work.
type auditRun struct {
	name           string
	mode           auditMode
	rates          [numFaults]float64
	seed           uint64
	workers, calls int
	deadline       time.Duration // the bound of a short caller deadline
}

// auditBackend opens a fresh target for each run.
type auditBackend struct {
	name string
	// calls is how many calls each worker makes per run (auditCalls if
	// zero), and deadline the bound of a short caller deadline (a long
	// one is up to 8 times that): both scaled to the backend's speed.
	calls    int
	deadline time.Duration
	faults   []auditFault // the points it can fault
	function bool         // its recorders append through the append function unless NoAppendFunction
	modes    []auditMode  // modes run with one point faulted at a time
	mixed    []auditMode  // modes run with every point faulted at once
	open     func(t *testing.T, run auditRun, s *faultSchedule, obs *auditObserver) *auditTarget
}

// runs returns a round of runs: each fault point alone in each of the
// backend's modes, then all of them at once; seeds derive from seed, the
// round and the run's name.
func (b auditBackend) runs(seed uint64, round int) []auditRun {
	workers, calls := auditWorkers, cmp.Or(b.calls, auditCalls)
	if raceEnabled {
		workers, calls = 16, max(calls/3, 4)
	}
	prefix := ""
	if round > 0 {
		prefix = fmt.Sprintf("round%d/", round)
	}
	add := func(runs []auditRun, m auditMode, what string, rates [numFaults]float64) []auditRun {
		name := prefix + m.name + "/" + what
		h := fnv.New64a()
		h.Write([]byte(name))
		return append(runs, auditRun{name: name, mode: m, rates: rates, seed: mix64(seed ^ h.Sum64()),
			workers: workers, calls: calls, deadline: cmp.Or(b.deadline, 3*time.Millisecond)})
	}
	var runs []auditRun
	for _, m := range b.modes {
		for _, f := range b.faults {
			if !b.meets(m, f) {
				continue
			}
			var rates [numFaults]float64
			rates[f] = auditRates[f]
			runs = add(runs, m, f.String(), rates)
		}
	}
	for _, m := range b.mixed {
		rates := mixedRates(b.faults)
		what := "all"
		if len(b.faults) == 0 {
			what = "deadlines"
		}
		runs = add(runs, m, what, rates)
	}
	return runs
}

// meets reports whether calls in mode m meet fault point f: without group
// commit there is no savepoint redo; with it, a tracking record alone shares
// its group's transaction with events, whose lock statements carry the
// NOTIFY, so NOTIFY is never sent alone. On the append function's path
// (PostgreSQL by default) the call is the only statement of a
// transaction: no BEGIN, lock statements, INSERT or COMMIT to fault, and
// on the transaction path no call. Connection faults, the same on both
// paths, are run on the function's.
func (b auditBackend) meets(m auditMode, f auditFault) bool {
	grouped := m.opts.MaxGroupSize != 1
	fn := b.function && !m.opts.NoAppendFunction
	switch f {
	case faultCall, faultCallLost, faultCallReplyLost, faultCallCancelled:
		return fn
	case faultBegin, faultLock, faultInsert, faultTracking, faultNotify, faultSavepoint,
		faultCommitUnsent, faultCommitLost, faultCommitReplyLost, faultCommitServerError:
		if fn {
			return false
		}
	case faultConnect, faultCheckout:
		return fn || !b.function
	}
	switch f {
	case faultSavepoint:
		return grouped
	case faultNotify:
		return !grouped
	}
	return true
}

// mixedRates returns the rates of a run that faults every point of faults
// at once: an eighth of each one's rate alone.
func mixedRates(faults []auditFault) [numFaults]float64 {
	var rates [numFaults]float64
	for _, f := range faults {
		rates[f] = auditRates[f] / 8
	}
	return rates
}

// auditTotals adds up a backend's runs for its summary line.
type auditTotals struct {
	calls      int
	faults     int64
	violations int
}

// auditTest runs the backend's rounds (one, or as many as the soak
// duration allows) and prints its summary line, whatever happens.
func auditTest(t *testing.T, b auditBackend) {
	seed, soak := auditSeed(t), auditSoak(t)
	var total auditTotals
	defer func() {
		fmt.Printf("audit %s: %d calls, %d faults injected, %d violations\n", b.name, total.calls, total.faults, total.violations)
	}()
	t.Logf("audit %s: seed %d (re-run with %s=%d)", b.name, seed, envAuditSeed, seed)
	end := time.Now().Add(soak)
	for round := 0; round == 0 || time.Now().Before(end); round++ {
		for _, run := range b.runs(seed, round) {
			t.Run(run.name, func(t *testing.T) { auditOnce(t, b, run, seed, &total) })
		}
	}
}

// auditOnce runs one run and checks it.
func auditOnce(t *testing.T, b auditBackend, run auditRun, seed uint64, total *auditTotals) {
	s := &faultSchedule{seed: run.seed, rate: run.rates}
	obs := &auditObserver{}
	tg := b.open(t, run, s, obs)
	goroutines := runtime.NumGoroutine()
	start := time.Now()
	ctx, stop := context.WithCancel(context.Background())
	var side sync.WaitGroup
	if tg.disrupt != nil {
		side.Go(func() { tg.disrupt(ctx) })
	}
	s.armed.Store(true)
	hist, bad := drive(tg.rec, 0, run)
	s.armed.Store(false)
	stop()
	side.Wait()
	took := time.Since(start)
	checkCounters(&bad, tg, obs, hist)
	checkResources(&bad, tg, goroutines)
	checkLateness(&bad, hist)
	bad = append(bad, checkHistory(context.Background(), tg.view, hist)...)
	total.calls += len(hist)
	total.faults += s.total()
	total.violations += len(bad)
	t.Logf("%d calls (%s) in %v, the slowest %v; faults: %s; commonest errors: %s", len(hist), outcomes(hist),
		took.Round(time.Millisecond), slowest(hist).Round(time.Millisecond), s.breakdown(), commonErrors(hist, 3))
	reportViolations(t, bad, seed)
}

// outcomes counts a history's outcomes.
func outcomes(hist []*auditCall) string {
	var n [3]int
	for _, c := range hist {
		n[c.Outcome]++
	}
	return fmt.Sprintf("%d ok, %d fail, %d unknown", n[outcomeOK], n[outcomeFail], n[outcomeUnknown])
}

// slowest returns the longest a call of hist took.
func slowest(hist []*auditCall) time.Duration {
	var d time.Duration
	for _, c := range hist {
		d = max(d, c.Took)
	}
	return d
}

// commonErrors returns the n commonest errors of a history, digits masked.
func commonErrors(hist []*auditCall, n int) string {
	count := map[string]int{}
	for _, c := range hist {
		if c.Error != "" {
			count[strings.Map(maskDigit, c.Error[:min(len(c.Error), 120)])]++
		}
	}
	errs := slices.SortedFunc(maps.Keys(count), func(a, b string) int { return count[b] - count[a] })
	var parts []string
	for _, e := range errs[:min(n, len(errs))] {
		parts = append(parts, fmt.Sprintf("%d× %q", count[e], e))
	}
	return strings.Join(parts, ", ")
}

func maskDigit(r rune) rune {
	if r >= '0' && r <= '9' {
		return '#'
	}
	return r
}

// reportViolations fails the test with the first violations and the seed
// that re-runs it.
func reportViolations(t *testing.T, bad []string, seed uint64) {
	t.Helper()
	if len(bad) == 0 {
		return
	}
	shown := bad[:min(len(bad), maxReported)]
	t.Errorf("%d violations; re-run with %s=%d go test -run '%s'; the first:\n%s",
		len(bad), envAuditSeed, seed, runPattern(t.Name()), strings.Join(shown, "\n"))
}

// runPattern returns the -run pattern that selects the test name alone.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// auditSeed returns EVENTSOURCING_AUDIT_SEED, or a random seed.
func auditSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv(envAuditSeed)
	if s == "" {
		return rand.Uint64()
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", envAuditSeed, s, err)
	}
	return seed
}

// auditSoak returns EVENTSOURCING_AUDIT_SOAK, or zero: one round.
func auditSoak(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv(envAuditSoak)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", envAuditSoak, s, err)
	}
	return d
}

// sqlTarget makes the target of a recorder on the faulted pool db, read
// back through a recorder on viewDB with the same options.
func sqlTarget(t *testing.T, db, viewDB *sql.DB, d es.Dialect, opts es.SQLOptions) *auditTarget {
	t.Helper()
	r, err := es.NewSQLRecorder(context.Background(), db, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	tg := &auditTarget{rec: r, db: db, view: sqlView(t, viewDB, d, opts)}
	if opts.MaxGroupSize != 1 {
		tg.stats = r.Stats
	}
	return tg
}

// sqlView reads back the tables opts names through db.
func sqlView(t *testing.T, db *sql.DB, d es.Dialect, opts es.SQLOptions) auditView {
	t.Helper()
	opts.Observer = nil
	r, err := es.NewSQLRecorder(context.Background(), db, d, &opts)
	if err != nil {
		t.Fatal(err)
	}
	v := auditView{rec: r, count: func(ctx context.Context) (int64, error) {
		var n int64
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+r.EventsTable().Quote(d)).Scan(&n)
		return n, err
	}}
	if opts.MultiRowTracking {
		v.trackedIDs = func(ctx context.Context, app string) ([]int64, error) {
			return queryIDs(ctx, db, "SELECT notification_id FROM "+r.TrackingTable().Quote(d)+" WHERE application_name = "+d.Placeholder(1), app)
		}
	}
	return v
}

func queryIDs(ctx context.Context, db *sql.DB, q string, args ...any) ([]int64, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// The fault points of each database: SQLite has no lock statements and no
// NOTIFY (BEGIN IMMEDIATE takes the write lock), and no server to send an
// error after COMMIT or to terminate sessions.
var (
	sqliteFaults = []auditFault{faultConnect, faultCheckout, faultBegin, faultInsert, faultTracking, faultSavepoint,
		faultCommitUnsent, faultCommitLost, faultCommitReplyLost}
	postgresFaults = []auditFault{faultConnect, faultCheckout, faultBegin, faultLock, faultInsert, faultTracking, faultNotify,
		faultSavepoint, faultCommitUnsent, faultCommitLost, faultCommitReplyLost, faultCommitServerError,
		faultTerminate, faultTableLock, faultCall, faultCallLost, faultCallReplyLost, faultCallCancelled}
)

// sqliteAuditBackend audits the SQLite recorder on a file of its own per
// run, faulted at every point SQLite has.
func sqliteAuditBackend(t *testing.T) auditBackend {
	errs := sqliteFaultErrors(t)
	return auditBackend{
		name:   "sqlite",
		faults: sqliteFaults,
		modes:  []auditMode{modeGroup, modeNoGroup, modeDelay},
		mixed:  []auditMode{modeGroup, modeNoGroup, modeDelay, modeMultiRow},
		open: func(t *testing.T, run auditRun, s *faultSchedule, obs *auditObserver) *auditTarget {
			path := filepath.Join(t.TempDir(), "audit.db")
			opts := run.mode.opts
			opts.Observer = obs
			return sqlTarget(t, faultedSQLite(t, path, time.Second, s, errs), viewSQLite(t, path), sqlite.Dialect{}, opts)
		},
	}
}

// faultedSQLite opens the SQLite file path, with the busy timeout busy,
// through an auditConnector.
func faultedSQLite(t *testing.T, path string, busy time.Duration, s *faultSchedule, errs faultErrors) *sql.DB {
	t.Helper()
	db := sql.OpenDB(&auditConnector{inner: sqliteConnector(t, path, busy), s: s, errs: errs})
	auditPool(t, db, 2, 20*time.Millisecond)
	return db
}

// viewSQLite opens the SQLite file path to read it back.
func viewSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// faultedPostgres opens dsn through an auditConnector, its connections
// named app (application_name) for the terminator to find.
func faultedPostgres(t *testing.T, dsn, app string, s *faultSchedule, errs faultErrors) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = app
	// The audit checks acknowledgements, not durability across a server
	// crash: commits need not wait for the disk.
	cfg.RuntimeParams["synchronous_commit"] = "off"
	db := sql.OpenDB(&auditConnector{inner: stdlib.GetConnector(*cfg), s: s, errs: errs})
	// A PostgreSQL connection takes milliseconds to open: the pool keeps
	// them longer. Few: transactions take the table lock one at a time, and
	// more connections only wait for it longer.
	db.SetMaxOpenConns(4)
	auditPool(t, db, 4, 500*time.Millisecond)
	return db
}

// auditPool sets the faulted pool up so that connections are opened again
// often (and so faulted there): after lifetime, and beyond idle idle ones;
// and closes it at the end.
func auditPool(t *testing.T, db *sql.DB, idle int, lifetime time.Duration) {
	db.SetMaxIdleConns(idle)
	db.SetConnMaxLifetime(lifetime)
	t.Cleanup(func() { db.Close() })
}

// auditLockTimeout is the PostgreSQL recorder's lock timeout in the audit:
// short, so that a lock held from another session makes it fire.
const auditLockTimeout = 20 * time.Millisecond

// postgresAuditBackend audits the PostgreSQL recorder on tables of its own
// per run in a schema of the test's, faulted at every point, and by real
// faults: its backends terminated, its table locked from another session.
func postgresAuditBackend(t *testing.T) auditBackend {
	dsn := pgtest.DSN(t)
	side := pgtest.DB(t)
	schema := pgtest.Schema(t, side)
	errs := postgresFaultErrors()
	return auditBackend{
		name:     "postgres",
		calls:    30,
		deadline: 20 * time.Millisecond,
		faults:   postgresFaults,
		function: true,
		modes:    []auditMode{modeGroup, modeNoGroup, modeTxGroup, modeTxNoGroup},
		mixed:    []auditMode{modeGroup, modeNoGroup, modeDelay, modeMultiRow, modeTxGroup},
		open: func(t *testing.T, run auditRun, s *faultSchedule, obs *auditObserver) *auditTarget {
			app := pgtest.UniqueName("audit")
			db := faultedPostgres(t, dsn, app, s, errs)
			opts := run.mode.opts
			opts.Observer, opts.Schema, opts.LockTimeout = obs, schema, auditLockTimeout
			opts.Table, opts.TrackingTable = pgtest.UniqueName("audit_ev"), pgtest.UniqueName("audit_tr")
			tg := sqlTarget(t, db, side, postgres.Dialect{}, opts)
			if fn := tg.rec.(*es.SQLRecorder).Stats().AppendFunction; fn == opts.NoAppendFunction {
				t.Fatalf("the recorder appends through the append function: %v, NoAppendFunction: %v", fn, opts.NoAppendFunction)
			}
			table := tg.rec.(*es.SQLRecorder).EventsTable().Quote(postgres.Dialect{})
			tg.disrupt = postgresDisruptor(side, app, table, run.seed, s)
			return tg
		},
	}
}

// postgresDisruptor returns what injects a run's real faults from the side
// session, or nil if it has none.
func postgresDisruptor(side *sql.DB, app, table string, seed uint64, s *faultSchedule) func(context.Context) {
	terminate, lock := s.rate[faultTerminate] > 0, s.rate[faultTableLock] > 0
	if !terminate && !lock {
		return nil
	}
	return func(ctx context.Context) {
		var wg sync.WaitGroup
		if terminate {
			rng := rand.New(rand.NewPCG(seed, uint64(faultTerminate)))
			wg.Go(func() { runTerminator(ctx, side, app, s, rng) })
		}
		if lock {
			rng := rand.New(rand.NewPCG(seed, uint64(faultTableLock)))
			wg.Go(func() { runTableLocker(ctx, side, table, 2*auditLockTimeout, s, rng) })
		}
		wg.Wait()
	}
}

// memoryAuditBackend audits the memory recorder under deadlines alone (it
// has no driver to break).
func memoryAuditBackend() auditBackend {
	return auditBackend{
		name:  "memory",
		mixed: []auditMode{{"run1", es.SQLOptions{}}, {"run2", es.SQLOptions{}}, {"run3", es.SQLOptions{}}},
		open: func(t *testing.T, run auditRun, s *faultSchedule, obs *auditObserver) *auditTarget {
			r := es.NewMemoryRecorder()
			r.Observer = obs
			return &auditTarget{rec: r, view: auditView{rec: r}}
		},
	}
}

// TestAuditSQLite: the acknowledgement audit on a SQLite file.
func TestAuditSQLite(t *testing.T) { auditTest(t, sqliteAuditBackend(t)) }

// TestAuditPostgres: the acknowledgement audit on PostgreSQL.
func TestAuditPostgres(t *testing.T) { auditTest(t, postgresAuditBackend(t)) }

// TestAuditMemory: the acknowledgement audit on the memory recorder, with
// deadlines as its only faults.
func TestAuditMemory(t *testing.T) { auditTest(t, memoryAuditBackend()) }
