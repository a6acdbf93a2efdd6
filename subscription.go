package eventsourcing

// Subscribe: follow the notification log in order, woken by commits.

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"
)

// Defaults of [SubscribeOptions].
const (
	// DefaultPollInterval is how often a subscription looks for new
	// notifications when nothing wakes it sooner.
	DefaultPollInterval = time.Second
	// DefaultSubscribePageSize is how many notifications a subscription
	// reads per query, as the Python library's subscriptions do.
	DefaultSubscribePageSize = 500
)

// SubscribeOptions configures [Subscribe], [EventStore.Subscribe] and
// [Runner]. The zero value (and nil) follows every topic, reads pages of
// DefaultSubscribePageSize, polls every DefaultPollInterval and listens for
// database notifications where the recorder can.
type SubscribeOptions struct {
	// Topics, if not empty, selects only notifications of these topics.
	Topics []string
	// PageSize is how many notifications are read per query; zero means
	// DefaultSubscribePageSize.
	PageSize int
	// PollInterval is the longest a subscription waits before it looks
	// for new notifications, however it is (not) woken; zero means
	// DefaultPollInterval. Polling is never off: it is what makes a lost
	// wake-up cost latency and never an event.
	PollInterval time.Duration
	// NoListen turns off database notifications (PostgreSQL LISTEN), which
	// hold one connection per subscription: the subscription is then woken
	// by commits in this process and by polling only.
	NoListen bool
}

func (o *SubscribeOptions) withDefaults() SubscribeOptions {
	var c SubscribeOptions
	if o != nil {
		c = *o
	}
	if c.PageSize <= 0 {
		c.PageSize = DefaultSubscribePageSize
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	return c
}

// A Waker is a recorder that can wake those waiting for new notifications
// or tracking records sooner than their next poll. [Subscribe],
// [WaitTracking] and [Runner] use it when a recorder has it, and poll as
// well in any case; a recorder without it is only polled. [SQLRecorder] and
// [MemoryRecorder] are Wakers.
type Waker interface {
	// Wake calls wake, which must not block, once it is ready (commits
	// before that call may have been missed) and then whenever events or
	// tracking records may have been committed since its last call, until
	// ctx ends; then it returns, having released what it used. A call that
	// comes before a commit's effects are visible to a new query is not
	// allowed: whoever is woken queries and must find what woke it. With
	// listen false, Wake uses no database connection (only commits in
	// this process wake).
	Wake(ctx context.Context, listen bool, wake func())
}

// followSignal calls wake once it waits for broadcasts of s, and after each
// one, until ctx ends. It takes the next channel before calling wake, so
// that a commit whose broadcast it misses committed before wake was called.
func followSignal(ctx context.Context, s *commitSignal, wake func()) {
	ch := s.wait()
	wake()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			ch = s.wait()
			wake()
		}
	}
}

var (
	_ Waker = (*SQLRecorder)(nil)
	_ Waker = (*MemoryRecorder)(nil)
)

// stopped is the error of a subscription, wait or runner whose context
// ended.
func stopped(what string, ctx context.Context) error {
	return fmt.Errorf("eventsourcing: %s stopped: %w", what, context.Cause(ctx))
}

// hinter is a one-slot wake-up: hints given while one is pending are one.
type hinter chan struct{}

func (h hinter) hint() {
	select {
	case h <- struct{}{}:
	default:
	}
}

func (h hinter) clear() {
	select {
	case <-h:
	default:
	}
}

// startWaker runs rec's Waker, if it has one, until the returned stop is
// called; stop waits for it to return.
func startWaker(ctx context.Context, rec any, listen bool, h hinter) (stop func()) {
	w, ok := rec.(Waker)
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Wake(ctx, listen, h.hint)
	}()
	return func() {
		cancel()
		<-done
	}
}

// follow reads the notifications after `after` page by page and hands each
// non-empty page to deliver, in ID order, until deliver returns false (then
// follow returns nil), ctx ends (a wrapped ctx error) or a query fails.
// Between pages that did not fill up it waits for the recorder's wake-ups
// or the poll interval. It advances only past notifications it delivered,
// and assumes nothing about gaps in the IDs.
//
// With stop above zero it reads only IDs up to stop, and returns nil at
// the first page that does not fill up: every notification up to stop has
// then been delivered (IDs become visible in ID order, so none below a
// visible one can appear later).
func follow(ctx context.Context, rec ApplicationRecorder, after, stop int64, o SubscribeOptions, deliver func([]Notification) bool) error {
	parent := ctx
	h := make(hinter, 1)
	if stop == 0 { // with a stop, follow never waits
		stopWaker := startWaker(ctx, rec, !o.NoListen, h)
		defer stopWaker()
	}
	timer := time.NewTimer(o.PollInterval)
	defer timer.Stop()
	q := &NotificationQuery{ExclusiveStart: true, Topics: o.Topics, Stop: stop}
	last := after
	if stop > 0 && last >= stop {
		return nil
	}
	for {
		// This query covers whatever the pending hint was for; a hint that
		// comes while it runs makes the next wait end at once.
		h.clear()
		// With a bad row in the page, ns holds the rows before it and err
		// its error: those are delivered, then the error ends the follow.
		ns, err := selectNotifications(ctx, rec, last, o.PageSize, q)
		prev := last
		for _, n := range ns {
			if n.ID <= prev {
				return &DatabaseError{Kind: ErrData, Op: "subscription",
					Err: fmt.Errorf("recorder returned notification %d after %d (querying after %d)", n.ID, prev, last)}
			}
			prev = n.ID
		}
		if len(ns) > 0 {
			if !deliver(ns) {
				return nil
			}
			last = prev
		}
		if err != nil {
			if parent.Err() != nil {
				return stopped("subscription", parent)
			}
			return fmt.Errorf("eventsourcing: subscription after notification %d: %w", last, err)
		}
		if err := parent.Err(); err != nil {
			return stopped("subscription", parent)
		}
		if len(ns) == o.PageSize {
			continue
		}
		if stop > 0 {
			return nil
		}
		timer.Reset(o.PollInterval)
		select {
		case <-parent.Done():
			return stopped("subscription", parent)
		case <-h:
		case <-timer.C:
		}
	}
}

// partialNotifications is a recorder that can return the notifications
// before a stored row that does not fit together with that row's error
// (ErrData), where SelectNotifications returns them without it and fails
// the next page: [SQLRecorder] and [ReplicatedRecorder]. follow uses it to
// deliver those notifications and then end with the error at once, rather
// than at its next query (up to a poll interval later).
type partialNotifications interface {
	selectNotificationsPartial(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error)
}

// selectNotifications is rec's SelectNotifications, or its
// selectNotificationsPartial if it has it.
func selectNotifications(ctx context.Context, rec ApplicationRecorder, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	if p, ok := rec.(partialNotifications); ok {
		return p.selectNotificationsPartial(ctx, start, limit, q)
	}
	return rec.SelectNotifications(ctx, start, limit, q)
}

// Subscribe iterates over the recorder's notifications with IDs above
// after (0: from the start): first those recorded, read a page at a time,
// then each new one as it commits, in ID order, each exactly once, until
// ctx ends or the loop breaks. It never skips one: it asks only for IDs
// above the last it delivered, and notification IDs become visible in ID
// order (see [ApplicationRecorder]).
//
// It is woken by commits in this process and, on PostgreSQL, by LISTEN on a
// connection it holds while it runs (see [SubscribeOptions.NoListen]); it
// also polls every PollInterval, so a lost notification, a killed listen
// connection, a writer that does not notify or a pooler that cannot LISTEN
// only adds latency. Python eventsourcing 9.5 writers notify the same
// channel.
//
// The sequence ends after yielding one error: the context's (wrapped, so
// errors.Is(err, context.Canceled) holds) when ctx ends, or the recorder's.
// A stored row that cannot be read (ErrData, naming its notification ID)
// fails only itself: every notification before it is yielded first, and a
// new Subscribe after its ID skips it on purpose.
// The goroutine and connection it uses are released when it ends, however
// it ends.
func Subscribe(ctx context.Context, rec ApplicationRecorder, after int64, opts *SubscribeOptions) iter.Seq2[Notification, error] {
	o := opts.withDefaults()
	return func(yield func(Notification, error) bool) {
		ended := false
		err := follow(ctx, rec, after, 0, o, func(ns []Notification) bool {
			for _, n := range ns {
				if !yield(n, nil) {
					ended = true
					return false
				}
			}
			return true
		})
		if err != nil && !ended {
			yield(Notification{}, err)
		}
	}
}

// Recorded is a domain event with the notification ID it was recorded
// under, as subscriptions and runners deliver it.
type Recorded[E Event] struct {
	ID    int64 // notification ID
	Event E
}

// Subscribe is [Subscribe] on the store's recorder (which must be an
// [ApplicationRecorder]: otherwise it yields one error matching
// ErrProgramming), yielding events decoded by the store's mapper. A stored
// event that cannot be read or decoded (an unknown topic, say) ends the
// sequence with its error, naming its notification ID, after every event
// before it: nothing is skipped silently. Use SubscribeOptions.Topics
// to follow only some topics.
func (s *EventStore[E]) Subscribe(ctx context.Context, after int64, opts *SubscribeOptions) iter.Seq2[Recorded[E], error] {
	return func(yield func(Recorded[E], error) bool) {
		rec, ok := s.Recorder.(ApplicationRecorder)
		if !ok {
			yield(Recorded[E]{}, fmt.Errorf("%w: subscribe: recorder %T is not an application recorder", ErrProgramming, s.Recorder))
			return
		}
		for n, err := range Subscribe(ctx, rec, after, opts) {
			if err != nil {
				yield(Recorded[E]{}, err)
				return
			}
			e, err := s.decode(ctx, n.StoredEvent)
			if err != nil {
				yield(Recorded[E]{}, fmt.Errorf("eventsourcing: notification %d: %w", n.ID, err))
				return
			}
			if !yield(Recorded[E]{ID: n.ID, Event: e}, nil) {
				return
			}
		}
	}
}

// waitFirstPoll is WaitTracking's first wait between checks.
const waitFirstPoll = 10 * time.Millisecond

// TrackingRecorder reads the tracking records a downstream processor keeps:
// the part of a [ProcessRecorder] that [WaitTracking] needs, and what a
// [ProjectionStore] also is. [SQLRecorder], [MemoryRecorder] and
// [MemoryView] are TrackingRecorders.
type TrackingRecorder interface {
	// MaxTrackingID returns the highest notification ID recorded for the
	// upstream application, or 0 if there is none.
	MaxTrackingID(ctx context.Context, applicationName string) (int64, error)
	// HasTrackingID reports whether the upstream application's notification
	// ID has been processed: it is at or below the highest one recorded.
	HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error)
}

// WaitTracking blocks until rec has recorded that the upstream application's
// notification was processed (a tracking record at or above notificationID:
// [TrackingRecorder.HasTrackingID]), or ctx ends (a wrapped ctx error). It is
// Python eventsourcing's TrackingRecorder.wait, with a context instead of a
// timeout and an interrupt event. It waits as well for a [Projection]'s
// tracking records (rec is then its [ProjectionStore]).
//
// It is woken as a subscription is (commits in this process, and LISTEN on
// PostgreSQL, which notifies tracking records written with events or by a
// projection), and otherwise checks again after 10 ms, doubling the wait up
// to DefaultPollInterval: it never polls tightly.
//
// WaitTracking knows nothing of the processor: if it has stopped, the wait
// lasts until ctx ends. [Runner.Wait] and [Projection.Wait] also return
// when their runner stops.
func WaitTracking(ctx context.Context, rec TrackingRecorder, applicationName string, notificationID int64) error {
	done, err := rec.HasTrackingID(ctx, applicationName, notificationID)
	if err != nil || done {
		if err != nil && ctx.Err() != nil {
			return stopped("wait for tracking", ctx)
		}
		return err
	}
	h := make(hinter, 1)
	stop := startWaker(ctx, rec, true, h)
	defer stop()
	wait := waitFirstPoll
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return stopped("wait for tracking", ctx)
		case <-h:
		case <-timer.C:
			wait = min(2*wait, DefaultPollInterval)
		}
		h.clear()
		done, err := rec.HasTrackingID(ctx, applicationName, notificationID)
		if err != nil {
			if ctx.Err() != nil {
				return stopped("wait for tracking", ctx)
			}
			return fmt.Errorf("eventsourcing: wait for %q notification %d: %w", applicationName, notificationID, err)
		}
		if done {
			return nil
		}
		timer.Reset(wait)
	}
}

// trackingConflict reports whether err is an integrity conflict on a
// tracking record (as opposed to one on events).
func trackingConflict(err error) bool {
	var ie *IntegrityError
	return errors.As(err, &ie) && ie.Tracking != nil
}
