package eventsourcing

import (
	"context"
	"fmt"
	"time"
)

// Defaults of [RunnerOptions].
const (
	// DefaultRunnerBatchSize is how many upstream notifications a runner
	// processes in one downstream transaction at most, by default.
	DefaultRunnerBatchSize = 100
	// DefaultRetryDelay is a runner's first wait before retrying a failed
	// batch; the wait doubles with each retry up to DefaultMaxRetryDelay.
	DefaultRetryDelay    = 100 * time.Millisecond
	DefaultMaxRetryDelay = 30 * time.Second
)

// migrationTrackingName is the tracking row Python eventsourcing 9.5
// writes into a single-row tracking table it creates: not an application.
const migrationTrackingName = "__migration__"

// RunnerOptions configures a [Runner]. The zero value (and nil) is usable:
// batches of up to DefaultRunnerBatchSize, the default subscription, and
// no retry (Run returns the first processing error).
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
	// Retries is how many times a failed batch (a handler error, an event
	// that cannot be decoded, a downstream write that failed) is tried
	// again before Run returns its error; and how many times in a row a
	// transient failure to read the upstream log is. Zero means none: Run stops at
	// the first error. Negative means until ctx ends. A notification is
	// never skipped: Run either processes it or returns.
	Retries int
	// RetryDelay is the wait before the first retry, doubling with each
	// retry up to MaxRetryDelay. Zero means DefaultRetryDelay, and a zero
	// MaxRetryDelay means DefaultMaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// OnRetry, if not nil, is called with each error that will be retried
	// and the number of the attempt that failed (from 1), before the wait.
	OnRetry func(err error, attempt int)
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
// handles again only those that were not. A Runner is safe to Run from
// one goroutine at a time.
type Runner[U, D Event] struct {
	name     string
	upstream *EventStore[U]
	upRec    ApplicationRecorder
	down     *EventStore[D]
	downRec  ProcessRecorder
	handle   Handler[U, D]
	o        RunnerOptions
}

// NewRunner returns a runner that processes the notifications of upstream
// (whose recorder must be an [ApplicationRecorder]) with handle, recording
// the results in downstream (whose recorder must be a [ProcessRecorder])
// with tracking records named upstreamName. A wrong recorder, an empty
// name, the name "__migration__" or a nil handler is an error matching
// ErrProgramming.
func NewRunner[U, D Event](upstreamName string, upstream *EventStore[U], downstream *EventStore[D], handle Handler[U, D], opts *RunnerOptions) (*Runner[U, D], error) {
	r := &Runner[U, D]{name: upstreamName, upstream: upstream, down: downstream, handle: handle}
	if opts != nil {
		r.o = *opts
	}
	var ok bool
	switch {
	case upstreamName == "" || upstreamName == migrationTrackingName:
		return nil, fmt.Errorf("%w: runner: invalid upstream application name %q", ErrProgramming, upstreamName)
	case handle == nil:
		return nil, fmt.Errorf("%w: runner: nil handler", ErrProgramming)
	case upstream == nil || downstream == nil:
		return nil, fmt.Errorf("%w: runner: nil event store", ErrProgramming)
	}
	if r.upRec, ok = upstream.Recorder.(ApplicationRecorder); !ok {
		return nil, fmt.Errorf("%w: runner: upstream recorder %T is not an application recorder", ErrProgramming, upstream.Recorder)
	}
	if r.downRec, ok = downstream.Recorder.(ProcessRecorder); !ok {
		return nil, fmt.Errorf("%w: runner: downstream recorder %T is not a process recorder", ErrProgramming, downstream.Recorder)
	}
	if r.o.BatchSize <= 0 {
		r.o.BatchSize = DefaultRunnerBatchSize
	}
	if r.o.RetryDelay <= 0 {
		r.o.RetryDelay = DefaultRetryDelay
	}
	if r.o.MaxRetryDelay <= 0 {
		r.o.MaxRetryDelay = DefaultMaxRetryDelay
	}
	return r, nil
}

// Run processes upstream notifications as they commit until ctx ends (it
// returns the wrapped ctx error) or processing fails beyond the retries
// allowed (it returns that error, naming the notification). A transient
// failure to read the upstream log ([IsRetryable]) is retried under the same
// policy, resuming after the last notification processed; any other ends
// Run. Everything committed downstream before it returns stays; the next
// Run resumes after it. Run holds a LISTEN connection of the upstream
// database while it runs, unless Subscribe.NoListen.
func (r *Runner[U, D]) Run(ctx context.Context) error {
	last, err := r.downRec.MaxTrackingID(ctx, r.name)
	if err != nil {
		if ctx.Err() != nil {
			return stopped("runner "+r.name, ctx)
		}
		return fmt.Errorf("eventsourcing: runner %s: resume: %w", r.name, err)
	}
	delay := r.o.RetryDelay
	for attempt := 1; ; attempt++ {
		var runErr error
		progressed := false
		err = follow(ctx, r.upRec, last, r.o.Subscribe.withDefaults(), func(ns []Notification) bool {
			for len(ns) > 0 {
				n := min(len(ns), r.o.BatchSize)
				if runErr = r.processWithRetry(ctx, ns[:n]); runErr != nil {
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
			return stopped("runner "+r.name, ctx)
		case err == nil: // deliver stops only with runErr
			return nil
		case !IsRetryable(err):
			return fmt.Errorf("eventsourcing: runner %s: %w", r.name, err)
		}
		if progressed {
			attempt, delay = 1, r.o.RetryDelay
		}
		if r.o.Retries >= 0 && attempt > r.o.Retries {
			return fmt.Errorf("eventsourcing: runner %s: %w", r.name, err)
		}
		if r.o.OnRetry != nil {
			r.o.OnRetry(err, attempt)
		}
		if !sleepCtx(ctx, delay) {
			return stopped("runner "+r.name, ctx)
		}
		delay = min(2*delay, r.o.MaxRetryDelay)
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

func (r *Runner[U, D]) processWithRetry(ctx context.Context, ns []Notification) error {
	delay := r.o.RetryDelay
	for attempt := 1; ; attempt++ {
		done, err := r.process(ctx, ns)
		ns = ns[done:]
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return stopped("runner "+r.name, ctx)
		}
		if r.o.Retries >= 0 && attempt > r.o.Retries {
			return err
		}
		if r.o.OnRetry != nil {
			r.o.OnRetry(err, attempt)
		}
		if !sleepCtx(ctx, delay) {
			return stopped("runner "+r.name, ctx)
		}
		delay = min(2*delay, r.o.MaxRetryDelay)
	}
}

// process handles a batch and commits it, returning how many of its
// notifications are done (committed, or found already tracked). If a
// notification fails, those before it are committed first.
func (r *Runner[U, D]) process(ctx context.Context, ns []Notification) (int, error) {
	done := 0
	for done < len(ns) {
		n, err := r.processOnce(ctx, ns[done:])
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// processOnce handles and commits notifications, returning how many are
// done; fewer than all with no error means some were found tracked by
// someone else, and the rest must be handled again.
func (r *Runner[U, D]) processOnce(ctx context.Context, ns []Notification) (int, error) {
	var events []D
	for i, n := range ns {
		e, err := r.upstream.Mapper.FromStoredEvent(n.StoredEvent)
		var out []D
		if err == nil {
			out, err = r.handle(ctx, Recorded[U]{ID: n.ID, Event: e})
		}
		if err != nil {
			err = fmt.Errorf("eventsourcing: runner %s: notification %d: %w", r.name, n.ID, err)
			if i == 0 {
				return 0, err
			}
			done, cerr := r.commit(ctx, ns[:i], events)
			if cerr != nil || done < i {
				return done, cerr
			}
			return done, err
		}
		events = append(events, out...)
	}
	return r.commit(ctx, ns, events)
}

// commit records the events with the tracking record of the last
// notification. It returns fewer than len(ns) done, and no error, if some
// of them turn out to be tracked already.
func (r *Runner[U, D]) commit(ctx context.Context, ns []Notification, events []D) (int, error) {
	first, last := ns[0].ID, ns[len(ns)-1].ID
	tracked := func() (int, error) {
		max, err := r.downRec.MaxTrackingID(ctx, r.name)
		if err != nil {
			return 0, fmt.Errorf("eventsourcing: runner %s: %w", r.name, err)
		}
		done := 0
		for done < len(ns) && ns[done].ID <= max {
			done++
		}
		return done, nil
	}
	// The tracking record covers the whole batch (First): it is refused
	// if another runner of the same name tracked any of it meanwhile.
	_, err := r.down.PutWithTracking(ctx, Tracking{ApplicationName: r.name, NotificationID: last, First: first}, events...)
	if err == nil {
		return len(ns), nil
	}
	if !trackingConflict(err) {
		return 0, fmt.Errorf("eventsourcing: runner %s: record notifications %d to %d: %w", r.name, first, last, err)
	}
	// Tracked already, some or all of them: skip those, handle the rest
	// again.
	done, terr := tracked()
	if terr == nil && done == 0 {
		terr = fmt.Errorf("eventsourcing: runner %s: record notifications %d to %d: %w", r.name, first, last, err)
	}
	return done, terr
}
