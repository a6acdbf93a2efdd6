package eventsourcing

// Observers: the Observer interface and the operations (Op, OpResult) it is
// told about.

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// OpKind names an operation an [Observer] is told about.
type OpKind string

// The observed operations.
const (
	// OpPut is one EventStore.Put or PutWithTracking call (and so one
	// Repository.Save attempt): Op.Events events to write.
	OpPut OpKind = "put"
	// OpGet is one read of an aggregate's events by EventStore.Get or
	// Events (and so by Repository.Load), from the first page to the last
	// event yielded: OpResult.Rows is how many events were read.
	OpGet OpKind = "get"
	// OpSelectNotifications is one SelectNotifications call on a recorder
	// (a page of the notification log, as subscriptions and runners read
	// it): Op.Start and Op.Limit as asked, OpResult.Rows and LastID as
	// returned.
	OpSelectNotifications OpKind = "select_notifications"
	// OpGroupCommit is one insert transaction of a recorder: Op.Calls
	// InsertEvents calls (the group size, 1 for a call committed alone)
	// with Op.Events events in all.
	OpGroupCommit OpKind = "group_commit"
)

// Op describes an operation as it starts. Fields that do not apply to its
// Kind are zero.
type Op struct {
	Kind OpKind
	// Table is the table the recorder works on, if it knows one.
	Table string
	// OriginatorID is the aggregate read (OpGet).
	OriginatorID uuid.UUID
	// Events is how many events are to be written (OpPut, OpGroupCommit).
	Events int
	// Calls is how many InsertEvents calls share the transaction
	// (OpGroupCommit).
	Calls int
	// Start is the first notification ID asked for (OpSelectNotifications).
	Start int64
	// Limit is the most rows asked for (OpSelectNotifications; OpGet with
	// a limited query), zero for no limit.
	Limit int
}

// OpResult describes how an operation ended.
type OpResult struct {
	// Calls is how many InsertEvents calls the transaction committed
	// (OpGroupCommit): Op.Calls as it started, plus the calls that joined
	// it once it held the lock, less those that failed or gave up.
	Calls int
	// Rows is how many events were written (OpPut, OpGroupCommit) or read
	// (OpGet, OpSelectNotifications); zero after an error that wrote
	// nothing.
	Rows int
	// LastID is the highest notification ID written or read, zero if none
	// (or if the recorder assigns none). Put's LastID beside a subscriber's
	// select_notifications LastID is the subscriber's lag.
	LastID int64
	// Duration is how long the operation took.
	Duration time.Duration
	// Err is the operation's error, or nil.
	Err error
}

// Observer is told when operations start and end: to count appends, measure
// latency, size groups or follow a subscriber's lag, in the style of pgx's
// QueryTracer. It is an optional field of [EventStore] (put, get) and of
// the recorders' options (select notifications, group commit); nil, the
// default, costs nothing. Its methods are called from many goroutines at
// once and should return quickly.
type Observer interface {
	// ObserveStart is called as an operation starts. The context it
	// returns (ctx itself, or one derived from it to carry a span or a
	// start time) is the one ObserveEnd gets.
	ObserveStart(ctx context.Context, op Op) context.Context
	// ObserveEnd is called once as the operation ends, with the same op.
	ObserveEnd(ctx context.Context, op Op, res OpResult)
}

// observe tells o, if it is not nil, that op starts, and returns the
// context for the operation and a function to call once when it ends,
// which fills in the duration and tells o. With a nil Observer it returns
// ctx and a function that does nothing, and allocates nothing. Recorders
// call it around the operations an Observer is told about:
//
//	ctx, end := observe(ctx, r.observer, Op{Kind: OpSelectNotifications, Start: start, Limit: limit})
//	notes, err := r.selectNotifications(ctx, start, limit, q)
//	end(OpResult{Rows: len(notes), LastID: lastID(notes), Err: err})
func observe(ctx context.Context, o Observer, op Op) (context.Context, func(OpResult)) {
	if o == nil {
		return ctx, endNothing
	}
	if c := o.ObserveStart(ctx, op); c != nil {
		ctx = c
	}
	start := time.Now()
	return ctx, func(res OpResult) {
		res.Duration = time.Since(start)
		o.ObserveEnd(ctx, op, res)
	}
}

func endNothing(OpResult) {}
