package eventsourcing

// This file holds Runner, the process application without a framework, and
// runCore, the loop it shares with Projection (projection.go): following
// the upstream log in batches, retries, skips of poison notifications, and
// the lifecycle a caller drives (Run, RunUntilCaughtUp, Wait, Status).

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults of [RunnerOptions].
const (
	// DefaultRunnerBatchSize is how many upstream notifications a runner
	// processes in one downstream transaction at most, by default.
	DefaultRunnerBatchSize = 100
	// DefaultRunnerAttempts is how many times, in all, a runner tries a
	// failed batch by default: once, so that Run stops at the first error.
	DefaultRunnerAttempts = 1
	// DefaultRetryDelay is a runner's first wait before retrying a failed
	// batch; the wait doubles with each retry up to DefaultMaxRetryDelay.
	DefaultRetryDelay    = 100 * time.Millisecond
	DefaultMaxRetryDelay = 30 * time.Second
)

// migrationTrackingName is the tracking row Python eventsourcing 9.5
// writes into a single-row tracking table it creates: not an application.
const migrationTrackingName = "__migration__"

// OpRunnerBatch is the [Observer] operation of one downstream transaction
// of a [Runner] or [Projection]: Op.Table is the runner's name (its
// tracking records' application name), Op.Start the batch's first
// notification ID and Op.Events its number of notifications. OpResult.Rows
// is how many of them are done (committed, or found tracked by another
// copy), OpResult.LastID the last of those, and OpResult.Err the batch's
// error, if any.
//
// OpRunnerSkip is a notification skipped after its handler failed (see
// [RunnerOptions].OnSkip): Op.Start is its ID, OpResult.Err why it failed.
const (
	OpRunnerBatch OpKind = "runner_batch"
	OpRunnerSkip  OpKind = "runner_skip"
)

// RunnerOptions configures a [Runner] or a [Projection]. The zero value
// (and nil) is usable: batches of up to DefaultRunnerBatchSize, the
// default subscription, no retry (Run returns the first processing error)
// and no skip.
type RunnerOptions struct {
	// Subscribe configures how the upstream log is followed (topics, page
	// size, poll interval, LISTEN).
	Subscribe SubscribeOptions
	// BatchSize is how many upstream notifications, at most, are processed
	// into one downstream transaction, whose tracking record is the last
	// one's ID. Only notifications already read are batched: a batch never
	// waits to fill up. Zero means DefaultRunnerBatchSize; 1 means one
	// transaction per notification.
	BatchSize int
	// Attempts is how many times, in all, a failed batch (a handler error,
	// an event that cannot be decoded, a downstream write that failed) is
	// tried before Run returns its error; and how many times in a row a
	// transient failure to read the upstream log is. Zero means
	// DefaultRunnerAttempts (1: Run stops at the first error); negative
	// means until ctx ends. A notification is never skipped unless OnSkip
	// says so. As [RepositoryOptions.Attempts].
	Attempts int
	// RetryDelay is the wait before the first retry, doubling with each
	// retry up to MaxRetryDelay. Zero means DefaultRetryDelay, and a zero
	// MaxRetryDelay means DefaultMaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// OnRetry, if not nil, is called with each error that will be retried
	// and the number of the attempt that failed (from 1), before the wait.
	OnRetry func(err error, attempt int)
	// OnSkip, if not nil, turns a poison notification into a skip instead
	// of the end of Run. When a notification's handler (or the decoding of
	// its event) still fails after the retries allowed, OnSkip is called
	// with the notification and the error. If it returns nil, the
	// notification is recorded as processed (its tracking record alone,
	// with none of the handler's writes) and the runner goes on with the
	// next; if it returns an error, Run returns that error with the
	// handler's. With Attempts negative, a notification is retried until
	// ctx ends and never skipped.
	//
	// OnSkip is where to record the skip durably (a dead-letter table, a
	// log, an alert): it is called before the tracking record is committed,
	// and again after a crash in between, so a record it writes should be
	// idempotent (keyed by the notification ID). Each skip is also counted
	// in [RunnerStatus] and told to the Observer (OpRunnerSkip).
	//
	// Only the handler's failures are skipped: a downstream write or
	// commit that fails is retried or ends Run, as without OnSkip.
	OnSkip func(ctx context.Context, n Notification, err error) error
	// Observer, if not nil, is told of each downstream transaction
	// (OpRunnerBatch) and each skip (OpRunnerSkip).
	Observer Observer
}

// RunnerStatus is a [Runner]'s or a [Projection]'s progress, as its Status
// method reports it.
type RunnerStatus struct {
	// Name is the runner's name: the application name of its tracking
	// records.
	Name string
	// Running reports whether Run or RunUntilCaughtUp is running.
	Running bool
	// Position is the highest upstream notification ID tracked downstream
	// for Name, by this runner or by another copy.
	Position int64
	// UpstreamHead is the upstream's highest notification ID.
	UpstreamHead int64
	// Lag is UpstreamHead less Position, or zero if that is negative. With
	// SubscribeOptions.Topics it counts notifications of other topics too,
	// until one of the topics is processed after them.
	Lag int64
	// Batches is how many batches this runner committed (or found tracked)
	// since it was made.
	Batches int64
	// LastError is the most recent error of this runner: a batch that
	// failed (retried or not), a failed read of the upstream log, or what
	// ended the last Run. It is nil if there was none.
	LastError error
	// Skipped is how many notifications this runner skipped (see
	// RunnerOptions.OnSkip) since it was made, and LastSkipped the ID of
	// the last of them (0 if none).
	Skipped     int64
	LastSkipped int64
}

// A Handler processes one upstream event into new downstream events
// (possibly none). It is called again for the same event if its batch is
// retried, so effects it has outside the returned events must be
// idempotent.
type Handler[U, D Event] func(ctx context.Context, upstream Recorded[U]) ([]D, error)

// Runner is a process application without a framework: it follows an
// upstream application's notification log (possibly in another database),
// hands each notification, decoded, to a [Handler], and records the events
// it returns together with the tracking record (upstream name,
// notification ID) in one transaction of the downstream [ProcessRecorder].
// So each upstream notification is processed exactly once, however often
// the process is stopped or killed and restarted: on start it resumes after
// the downstream's MaxTrackingID.
//
// A notification already tracked (another runner got there first) is
// skipped: the integrity error on the tracking record is the signal, not an
// error. Two runners of the same name on one downstream at once (a
// process thought dead that is still running, say) still process each
// notification exactly once, batching or not: a batch's tracking record
// covers every notification of the batch ([Tracking].First), so it is
// refused if any of them was tracked meanwhile, and the runner then
// handles again only those that were not.
//
// The events of a batch are written together when the batch commits, so a
// handler that reads downstream state (loads its own downstream aggregate,
// say) does not see the events returned for the notifications before it in
// the same batch. When a handler returns an event whose originator ID and
// version an earlier handler of the batch returned too (both loaded the
// aggregate at the same version), the runner commits the batch up to the
// earlier notification and handles that notification again, now seeing
// those events: the batch is cut there, nothing fails. Two events of the
// same version returned for one notification are the handler's error.
//
// Run, RunUntilCaughtUp, Wait and Status may be called from several
// goroutines, but only one Run or RunUntilCaughtUp at a time.
type Runner[U, D Event] struct {
	core     runCore
	upstream *EventStore[U]
	down     *EventStore[D]
	downRec  ProcessRecorder
	handle   Handler[U, D]
}

// NewRunner returns a runner that processes the notifications of upstream
// (whose recorder must be an [ApplicationRecorder]) with handle, recording
// the results in downstream (whose recorder must be a [ProcessRecorder])
// with tracking records named upstreamName. A wrong recorder, an empty
// name, the name "__migration__" or a nil handler is an error matching
// ErrProgramming.
func NewRunner[U, D Event](upstreamName string, upstream *EventStore[U], downstream *EventStore[D], handle Handler[U, D], opts *RunnerOptions) (*Runner[U, D], error) {
	r := &Runner[U, D]{upstream: upstream, down: downstream, handle: handle}
	var ok bool
	switch {
	case upstreamName == "" || upstreamName == migrationTrackingName:
		return nil, fmt.Errorf("%w: runner: invalid upstream application name %q", ErrProgramming, upstreamName)
	case handle == nil:
		return nil, fmt.Errorf("%w: runner: nil handler", ErrProgramming)
	case upstream == nil || downstream == nil:
		return nil, fmt.Errorf("%w: runner: nil event store", ErrProgramming)
	case upstream.Mapper == nil || downstream.Mapper == nil:
		return nil, fmt.Errorf("%w: runner: event store without a Mapper", ErrProgramming)
	}
	upRec, ok := upstream.Recorder.(ApplicationRecorder)
	if !ok {
		return nil, fmt.Errorf("%w: runner: upstream recorder %T is not an application recorder", ErrProgramming, upstream.Recorder)
	}
	if r.downRec, ok = downstream.Recorder.(ProcessRecorder); !ok {
		return nil, fmt.Errorf("%w: runner: downstream recorder %T is not a process recorder", ErrProgramming, downstream.Recorder)
	}
	r.core.init("runner", upstreamName, upRec, r.downRec, opts)
	r.core.handle = r.processOnce
	r.core.skip = func(ctx context.Context, n Notification) error {
		_, err := r.down.PutWithTracking(ctx, Tracking{ApplicationName: upstreamName, NotificationID: n.ID, First: n.ID})
		return err
	}
	return r, nil
}

// Run processes upstream notifications as they commit until ctx ends or
// processing fails beyond the retries allowed. A stop the caller asked for
// (ctx ended) returns nil; a failure returns the error, naming the
// notification. A transient failure to read the upstream log
// ([IsRetryable]) is retried under the same policy, resuming after the
// last notification processed; any other ends Run. Everything committed
// downstream before it returns stays; the next Run resumes after it. Run
// holds a LISTEN connection of the upstream database while it runs, unless
// Subscribe.NoListen. A second Run while one runs is an error matching
// ErrProgramming.
func (r *Runner[U, D]) Run(ctx context.Context) error { return r.core.run(ctx, false) }

// RunUntilCaughtUp processes the upstream notifications up to the
// upstream's highest notification ID at the time of the call, then
// returns nil: for tests, command-line rebuilds and batch jobs. Failures
// are as for Run; if ctx ends first, it returns an error wrapping the
// context's (it did not catch up).
func (r *Runner[U, D]) RunUntilCaughtUp(ctx context.Context) error { return r.core.run(ctx, true) }

// Wait blocks until the upstream notification notificationID is processed
// (tracked downstream, by this runner or another copy) and returns nil; or
// until the runner stops first, and returns an error matching
// [ErrRunnerStopped] (and wrapping Run's error, if Run failed); or until
// ctx ends (a wrapped ctx error).
//
// A runner that has not started yet is waited for, and so is one whose
// last run was a RunUntilCaughtUp that caught up. One whose last Run or
// RunUntilCaughtUp stopped (its context ended) or failed, and has not been
// started again, ends the wait at once: so a Wait that closely follows a
// new `go r.Run(ctx)` after such a stop may still see it (wait for
// Status's Running first). With SubscribeOptions.Topics, wait for a notification of
// those topics: the tracking record may never reach one of another topic.
func (r *Runner[U, D]) Wait(ctx context.Context, notificationID int64) error {
	return r.core.wait(ctx, notificationID)
}

// Status returns the runner's progress: its position and the upstream head
// as they are now (two queries), the lag between them, its counters and
// last error.
func (r *Runner[U, D]) Status(ctx context.Context) (RunnerStatus, error) { return r.core.status(ctx) }

// processOnce handles and commits notifications, returning how many are
// done; fewer than all with no error means some were found tracked by
// someone else, or the batch was cut before a handler that would collide
// with an earlier one of the batch: the rest must be handled again.
func (r *Runner[U, D]) processOnce(ctx context.Context, ns []Notification) (int, error) {
	var events []D
	// The originator versions returned so far in this batch, and the
	// notification each came from.
	seen := map[eventKey]int64{}
	for i, n := range ns {
		e, err := r.upstream.decode(ctx, n.StoredEvent)
		var out []D
		if err == nil {
			out, err = r.handle(ctx, Recorded[U]{ID: n.ID, Event: e})
		}
		cut := false
		if err == nil {
			cut, err = collisions(seen, n.ID, out)
		}
		if cut {
			// A handler before it in the batch returned the same version:
			// commit up to here, and handle this one again after.
			return r.commit(ctx, ns[:i], events)
		}
		if err != nil {
			nerr := &notificationError{what: "runner", name: r.core.name, id: n.ID, err: err}
			if i == 0 {
				return 0, nerr
			}
			done, cerr := r.commit(ctx, ns[:i], events)
			if cerr != nil || done < i {
				return done, cerr
			}
			return done, nerr
		}
		events = append(events, out...)
	}
	return r.commit(ctx, ns, events)
}

// eventKey is an event's originator ID and version.
type eventKey struct {
	id uuid.UUID
	v  int64
}

// collisions adds the originator versions of out, returned for
// notification id, to seen. It reports cut if one was returned for an
// earlier notification of the batch, or an error if out has one twice.
// Nil events are left for the mapper to refuse.
func collisions[D Event](seen map[eventKey]int64, id int64, out []D) (cut bool, err error) {
	for _, e := range out {
		if v := reflect.ValueOf(e); !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
			continue
		}
		k := eventKey{e.OriginatorID(), e.OriginatorVersion()}
		if from, ok := seen[k]; ok {
			if from == id {
				return false, fmt.Errorf("%w: the handler returned version %d of aggregate %s twice for this one notification", ErrIntegrity, k.v, k.id)
			}
			return true, nil
		}
		seen[k] = id
	}
	return false, nil
}

// commit records the events with the tracking record of the last
// notification. It returns fewer than len(ns) done, and no error, if some
// of them turn out to be tracked already.
func (r *Runner[U, D]) commit(ctx context.Context, ns []Notification, events []D) (int, error) {
	first, last := ns[0].ID, ns[len(ns)-1].ID
	// The tracking record covers the whole batch (First): it is refused
	// if another runner of the same name tracked any of it meanwhile.
	_, err := r.down.PutWithTracking(ctx, Tracking{ApplicationName: r.core.name, NotificationID: last, First: first}, events...)
	if err == nil {
		return len(ns), nil
	}
	if !trackingConflict(err) {
		return 0, fmt.Errorf("eventsourcing: runner %s: record notifications %d to %d: %w", r.core.name, first, last, err)
	}
	return r.core.tracked(ctx, ns, err)
}

// notificationError is a notification whose handler (or decoding) failed:
// what OnSkip may skip.
type notificationError struct {
	what, name string // "runner" or "projection", and its name
	id         int64
	err        error
}

func (e *notificationError) Error() string {
	return fmt.Sprintf("eventsourcing: %s %s: notification %d: %s", e.what, e.name, e.id, e.err)
}

func (e *notificationError) Unwrap() error { return e.err }

// stoppedError is Wait's error when the runner stopped: ErrRunnerStopped,
// and what Run returned, if it failed.
type stoppedError struct {
	what, name string
	err        error
}

func (e *stoppedError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("eventsourcing: %s %s stopped", e.what, e.name)
	}
	return fmt.Sprintf("eventsourcing: %s %s stopped: %s", e.what, e.name, e.err)
}

func (e *stoppedError) Is(target error) bool { return target == ErrRunnerStopped }

func (e *stoppedError) Unwrap() error { return e.err }

// runCore is the loop a Runner and a Projection share, and their state.
// handle and skip are what differs: how a batch is processed and
// committed, and how a skipped notification is recorded.
type runCore struct {
	what string // "runner" or "projection"
	name string
	up   ApplicationRecorder
	down TrackingRecorder
	o    RunnerOptions
	// handle processes a batch in one downstream transaction, returning
	// how many of its notifications are done (committed, or found tracked
	// by another copy), at least one unless it fails. A failure of a
	// notification's handler is a *notificationError for the first
	// notification not done.
	handle func(ctx context.Context, ns []Notification) (int, error)
	// skip records n as processed, alone, with none of its handler's
	// writes.
	skip func(ctx context.Context, n Notification) error

	mu          sync.Mutex
	running     bool
	ended       bool  // a run has ended, and no other has started since
	endErr      error // what it returned
	pos         int64 // the last notification done
	batches     int64
	lastErr     error
	skipped     int64
	lastSkipped int64
	changed     commitSignal // broadcast when pos advances and when a run ends
}

func (c *runCore) init(what, name string, up ApplicationRecorder, down TrackingRecorder, opts *RunnerOptions) {
	c.what, c.name, c.up, c.down = what, name, up, down
	if opts != nil {
		c.o = *opts
	}
	if c.o.BatchSize <= 0 {
		c.o.BatchSize = DefaultRunnerBatchSize
	}
	if c.o.Attempts == 0 {
		c.o.Attempts = DefaultRunnerAttempts
	}
	if c.o.RetryDelay <= 0 {
		c.o.RetryDelay = DefaultRetryDelay
	}
	if c.o.MaxRetryDelay <= 0 {
		c.o.MaxRetryDelay = DefaultMaxRetryDelay
	}
}

// errRunStopped marks the end of a run by its context.
var errRunStopped = errors.New("run stopped by its context")

// run is Run (caughtUp false) and RunUntilCaughtUp.
func (c *runCore) run(ctx context.Context, caughtUp bool) (err error) {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s %s: Run called while it runs", ErrProgramming, c.what, c.name)
	}
	c.running, c.ended, c.endErr = true, false, nil
	c.mu.Unlock()
	err = errors.New("a handler panicked")
	defer func() {
		c.mu.Lock()
		// A RunUntilCaughtUp that caught up leaves the runner idle, as
		// before its first run: a Wait then waits for the next run (the
		// usual start of a program: catch up, then go Run).
		c.running, c.ended, c.endErr = false, !caughtUp || err != nil, err
		if err != nil {
			c.lastErr = err
		}
		c.mu.Unlock()
		c.changed.broadcast()
	}()
	err = c.loop(ctx, caughtUp)
	if errors.Is(err, errRunStopped) {
		err = nil
		if caughtUp {
			err = stopped(c.what+" "+c.name, ctx)
		}
	}
	return err
}

func (c *runCore) loop(ctx context.Context, caughtUp bool) error {
	last, err := c.down.MaxTrackingID(ctx, c.name)
	if err != nil {
		if ctx.Err() != nil {
			return errRunStopped
		}
		return fmt.Errorf("eventsourcing: %s %s: resume: %w", c.what, c.name, err)
	}
	c.advance(last, false)
	var head int64
	if caughtUp {
		if head, err = c.up.MaxNotificationID(ctx); err != nil {
			if ctx.Err() != nil {
				return errRunStopped
			}
			return fmt.Errorf("eventsourcing: %s %s: upstream head: %w", c.what, c.name, err)
		}
		if head <= last {
			return nil
		}
	}
	o := c.o.Subscribe.withDefaults()
	delay := c.o.RetryDelay
	for attempt := 1; ; attempt++ {
		var runErr error
		progressed := false
		err = follow(ctx, c.up, last, head, o, func(ns []Notification) bool {
			for len(ns) > 0 {
				n := min(len(ns), c.o.BatchSize)
				if runErr = c.processWithRetry(ctx, ns[:n]); runErr != nil {
					return false
				}
				last, progressed = ns[n-1].ID, true
				ns = ns[n:]
			}
			return true
		})
		switch {
		case runErr != nil:
			return runErr
		case ctx.Err() != nil:
			return errRunStopped
		case err == nil: // caught up (deliver stops only with runErr)
			return nil
		case !IsRetryable(err):
			return fmt.Errorf("eventsourcing: %s %s: %w", c.what, c.name, err)
		}
		c.failed(err)
		if progressed {
			attempt, delay = 1, c.o.RetryDelay
		}
		if c.o.Attempts > 0 && attempt >= c.o.Attempts {
			return fmt.Errorf("eventsourcing: %s %s: %w", c.what, c.name, err)
		}
		if c.o.OnRetry != nil {
			c.o.OnRetry(err, attempt)
		}
		if !sleepCtx(ctx, delay) {
			return errRunStopped
		}
		delay = min(2*delay, c.o.MaxRetryDelay)
	}
}

// sleepCtx waits for d, or until ctx ends (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// processWithRetry processes a batch, retrying what fails under the
// policy and skipping a poison notification if OnSkip allows it.
func (c *runCore) processWithRetry(ctx context.Context, ns []Notification) error {
	delay := c.o.RetryDelay
	for attempt := 1; ; attempt++ {
		done, err := c.process(ctx, ns)
		ns = ns[done:]
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errRunStopped
		}
		c.failed(err)
		if c.o.Attempts > 0 && attempt >= c.o.Attempts {
			var ne *notificationError
			if c.o.OnSkip == nil || !errors.As(err, &ne) || len(ns) == 0 || ne.id != ns[0].ID {
				return err
			}
			if err := c.skipOne(ctx, ns[0], ne); err != nil {
				return err
			}
			if ns = ns[1:]; len(ns) == 0 {
				return nil
			}
			attempt, delay = 0, c.o.RetryDelay
			continue
		}
		if c.o.OnRetry != nil {
			c.o.OnRetry(err, attempt)
		}
		if !sleepCtx(ctx, delay) {
			return errRunStopped
		}
		delay = min(2*delay, c.o.MaxRetryDelay)
	}
}

// process handles a batch and commits it, in as many transactions as it
// takes, returning how many of its notifications are done (committed, or
// found already tracked). If a notification fails, those before it are
// committed first.
func (c *runCore) process(ctx context.Context, ns []Notification) (int, error) {
	done := 0
	for done < len(ns) {
		batch := ns[done:]
		octx, end := observe(ctx, c.o.Observer, Op{Kind: OpRunnerBatch, Table: c.name, Start: batch[0].ID, Events: len(batch)})
		n, err := c.handle(octx, batch)
		res := OpResult{Rows: n, Err: err}
		if n > 0 {
			res.LastID = batch[n-1].ID
			c.advance(batch[n-1].ID, true)
		}
		end(res)
		done += n
		if err != nil {
			return done, err
		}
		if n == 0 { // never: handle does at least one or fails
			return done, fmt.Errorf("eventsourcing: %s %s: internal error: notification %d neither done nor failed", c.what, c.name, batch[0].ID)
		}
	}
	return done, nil
}

// skipOne calls OnSkip for n, whose handler failed with cause, and if it
// agrees records n as processed.
func (c *runCore) skipOne(ctx context.Context, n Notification, cause *notificationError) error {
	if err := c.o.OnSkip(ctx, n, cause); err != nil {
		return fmt.Errorf("%w (OnSkip refused to skip it: %w)", cause, err)
	}
	octx, end := observe(ctx, c.o.Observer, Op{Kind: OpRunnerSkip, Table: c.name, Start: n.ID, Events: 1})
	err := c.skip(octx, n)
	if err != nil && trackingConflict(err) {
		err = nil // tracked by another copy meanwhile: done all the same
	}
	if err != nil {
		end(OpResult{Err: err})
		return fmt.Errorf("eventsourcing: %s %s: skip notification %d: %w", c.what, c.name, n.ID, err)
	}
	end(OpResult{Rows: 1, LastID: n.ID, Err: cause})
	c.mu.Lock()
	c.skipped++
	c.lastSkipped = n.ID
	c.mu.Unlock()
	c.advance(n.ID, false)
	return nil
}

// tracked is what to do after a batch's tracking record was refused
// (conflict): the notifications another copy tracked meanwhile are done,
// and the rest are to be handled again. If none is done, the conflict is
// the error.
func (c *runCore) tracked(ctx context.Context, ns []Notification, conflict error) (int, error) {
	first, last := ns[0].ID, ns[len(ns)-1].ID
	max, err := c.down.MaxTrackingID(ctx, c.name)
	if err != nil {
		return 0, fmt.Errorf("eventsourcing: %s %s: %w", c.what, c.name, err)
	}
	done := 0
	for done < len(ns) && ns[done].ID <= max {
		done++
	}
	if done == 0 {
		return 0, fmt.Errorf("eventsourcing: %s %s: record notifications %d to %d: %w", c.what, c.name, first, last, conflict)
	}
	return done, nil
}

// advance records that the notifications up to id are done (by a batch
// of this runner's, if batch).
func (c *runCore) advance(id int64, batch bool) {
	c.mu.Lock()
	c.pos = max(c.pos, id)
	if batch {
		c.batches++
	}
	c.mu.Unlock()
	c.changed.broadcast()
}

// failed records err as the last error.
func (c *runCore) failed(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

func (c *runCore) wait(ctx context.Context, id int64) error {
	poll := waitFirstPoll
	timer := time.NewTimer(0) // check the tracking records at once
	defer timer.Stop()
	for {
		ch := c.changed.wait()
		c.mu.Lock()
		pos, ended, endErr := c.pos, c.ended, c.endErr
		c.mu.Unlock()
		if pos >= id {
			return nil
		}
		if ended {
			// Another copy may have processed it.
			if done, err := c.down.HasTrackingID(ctx, c.name, id); err == nil && done {
				return nil
			}
			return &stoppedError{what: c.what, name: c.name, err: endErr}
		}
		select {
		case <-ctx.Done():
			return stopped("wait for "+c.what+" "+c.name, ctx)
		case <-ch:
		case <-timer.C:
			// Progress of another copy, which this process is not told of.
			done, err := c.down.HasTrackingID(ctx, c.name, id)
			if err != nil && ctx.Err() != nil {
				return stopped("wait for "+c.what+" "+c.name, ctx)
			}
			if err == nil && done {
				return nil
			}
			poll = min(2*poll, DefaultPollInterval)
			timer.Reset(poll)
		}
	}
}

func (c *runCore) status(ctx context.Context) (RunnerStatus, error) {
	pos, err := c.down.MaxTrackingID(ctx, c.name)
	if err != nil {
		return RunnerStatus{}, fmt.Errorf("eventsourcing: %s %s: status: %w", c.what, c.name, err)
	}
	head, err := c.up.MaxNotificationID(ctx)
	if err != nil {
		return RunnerStatus{}, fmt.Errorf("eventsourcing: %s %s: status: %w", c.what, c.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return RunnerStatus{
		Name: c.name, Running: c.running,
		Position: pos, UpstreamHead: head, Lag: max(0, head-pos),
		Batches: c.batches, LastError: c.lastErr,
		Skipped: c.skipped, LastSkipped: c.lastSkipped,
	}, nil
}
