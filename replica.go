package eventsourcing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Defaults of [ReplicaOptions].
const (
	// DefaultMaxReplicaLag is how far behind the primary a standby may be
	// and still serve reads, and how long a read that asks for a position
	// waits for a standby before it goes to the primary.
	DefaultMaxReplicaLag = time.Second
	// DefaultReplicaCheckInterval is how often each standby's health and
	// lag are checked.
	DefaultReplicaCheckInterval = time.Second
)

// LSN is a position in the primary database's write-ahead log: PostgreSQL's
// pg_lsn as a number. Every commit has one, and a standby that has replayed
// up to an LSN shows every transaction committed before it. It is written
// as PostgreSQL writes it, "16/B374D848". Positions of one primary (and its
// standbys) compare; those of different clusters mean nothing to each other.
type LSN uint64

// String returns the LSN as PostgreSQL writes it: two hexadecimal halves.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// ParseLSN parses an LSN written as PostgreSQL writes it ("16/B374D848").
// A malformed one is an error matching ErrProgramming.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: invalid LSN %q (want two hexadecimal halves, like 16/B374D848)", ErrProgramming, s)
	}
	return LSN(h<<32 | l), nil
}

// unknownLSN stands for a write whose position could not be read: reads
// that must follow it go to the primary.
const unknownLSN = LSN(math.MaxUint64)

// Replication is implemented by dialects of databases that stream their
// write-ahead log to read-only standbys (PostgreSQL hot standbys), which
// [ReplicatedRecorder] reads from.
type Replication interface {
	// PositionQuery returns a query whose one row holds the primary's
	// current WAL position as an integer, at or past every commit
	// acknowledged before it ran. It must fail on a standby.
	PositionQuery() string
	// ReplicaQuery returns a query whose one row holds: whether the
	// database is a standby (in recovery), the WAL position it has
	// replayed as an integer (0 if none), and the seconds since it replayed
	// its last commit (NULL if none).
	ReplicaQuery() string
}

// Standby is a read-only copy of the primary database that replays its
// write-ahead log: a PostgreSQL hot standby (streaming replication).
type Standby struct {
	// Name says which standby a status or error is about (host:port, say);
	// empty means "standby N", by position.
	Name string
	// DB is the standby's database, with the primary's database name, user
	// and password. The recorder only reads from it, and does not close it.
	DB *sql.DB
	// Open, used when DB is nil, opens the standby's database: the
	// recorder calls it when it first checks the standby and again, at
	// each check, until it succeeds (a standby down at start is used once
	// it is up), and closes what it opened on Close.
	Open func(ctx context.Context) (*sql.DB, error)
}

// ReplicaOptions configures a [ReplicatedRecorder]. The zero value (and
// nil) skips standbys more than DefaultMaxReplicaLag behind, checks them
// every DefaultReplicaCheckInterval, and lets reads that do not ask for a
// position (see [ReadAfter] and [ReadYourWrites]) see a standby as it is.
type ReplicaOptions struct {
	// MaxLag is how far behind the primary a standby may be, in time, and
	// still serve reads; a standby further behind is skipped until a later
	// check finds it caught up. It is also the longest a read waits for a
	// standby to replay the position it asks for before it reads from the
	// primary instead. Zero means DefaultMaxReplicaLag
	// (POSTGRES_MAX_REPLICA_LAG).
	MaxLag time.Duration
	// CheckInterval is how often each standby is checked: is it up, is it a
	// standby, how far behind is it. Zero means DefaultReplicaCheckInterval.
	CheckInterval time.Duration
	// ReadYourWrites makes every read wait for every write made through
	// this recorder before the read began (the primary's position after
	// each write): the whole process reads its own writes, at the cost of a
	// query to the primary after each write and of reads waiting for the
	// standby. [ReadYourWrites] does the same for one context's call chain.
	ReadYourWrites bool
	// OnCheck, if not nil, is called with each standby's status after each
	// check, from the goroutine that checks it: the lag, for metrics. It
	// must not block. (The primary recorder's SQLOptions.Observer is told
	// too, if it is a [StandbyObserver].)
	OnCheck func(StandbyStatus)
}

// StandbyObserver is an [Observer] that is also told each standby's
// status (its lag above all) after each check of a [ReplicatedRecorder]
// whose primary recorder it observes (SQLOptions.Observer): an optional
// interface, as database/sql's are. Its method is called from the
// goroutine that checks the standby and must not block.
type StandbyObserver interface {
	Observer
	ObserveStandby(ctx context.Context, status StandbyStatus)
}

// StandbyStatus is what the latest check of a standby found, and how many
// reads it has served.
type StandbyStatus struct {
	Name string
	// Usable says that reads go to the standby: it is up, it is a
	// standby, and it was at most MaxLag behind at the last check.
	Usable bool
	// Lag is how long a commit on the primary took to become visible on
	// the standby at the last check (0: it already was); when Lagging, it
	// is at least MaxLag, or the age of the last commit the standby
	// replayed if that is more.
	Lag time.Duration
	// Lagging says that the standby was more than MaxLag behind.
	Lagging bool
	// Behind is how many bytes of WAL the standby had yet to replay when
	// the check read the primary's position.
	Behind int64
	// Replayed is the highest position the standby was seen to have
	// replayed.
	Replayed LSN
	// Err says why the standby is not usable when it is down or not a
	// standby; nil otherwise.
	Err error
	// Checked is when the check ended; zero before the first.
	Checked time.Time
	// Reads counts the reads the standby served.
	Reads int64
}

// standby is one standby and what is known of it.
type standby struct {
	name     string
	open     func(ctx context.Context) (*sql.DB, error)
	db       atomic.Pointer[sql.DB]
	owned    bool // db was opened by open, and is closed on Close
	usable   atomic.Bool
	replayed atomic.Uint64
	reads    atomic.Int64
	poke     hinter // check now (a read failed)

	// One poller reads the replayed position for every waiter.
	waiters atomic.Int64
	pollMu  sync.Mutex
	polling bool
	polls   commitSignal // broadcast after each poll
	pollErr atomic.Pointer[error]

	mu sync.Mutex
	st StandbyStatus
}

// advance records a replayed position seen on the standby.
func (s *standby) advance(l LSN) {
	for {
		old := s.replayed.Load()
		if uint64(l) <= old || s.replayed.CompareAndSwap(old, uint64(l)) {
			return
		}
	}
}

func (s *standby) status() StandbyStatus {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.Usable = s.usable.Load()
	st.Replayed = LSN(s.replayed.Load())
	st.Reads = s.reads.Load()
	return st
}

// down marks the standby unusable after a failed read, until a check finds
// it up again.
func (s *standby) down(err error) {
	s.usable.Store(false)
	s.mu.Lock()
	s.st.Err = err
	s.mu.Unlock()
	s.poke.hint()
}

// standbySet checks a primary's standbys and picks one for each read. A
// ReplicatedRecorder and its snapshot recorder share one.
type standbySet struct {
	primary  *sql.DB
	observer Observer // the primary recorder's
	repl     Replication
	o        ReplicaOptions
	sb       []*standby
	next     atomic.Uint64 // round robin
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

func newStandbySet(primary *sql.DB, repl Replication, standbys []Standby, opts *ReplicaOptions) (*standbySet, error) {
	s := &standbySet{primary: primary, repl: repl}
	if opts != nil {
		s.o = *opts
	}
	if s.o.MaxLag < 0 || s.o.CheckInterval < 0 {
		return nil, fmt.Errorf("%w: negative MaxLag or CheckInterval", ErrProgramming)
	}
	if s.o.MaxLag == 0 {
		s.o.MaxLag = DefaultMaxReplicaLag
	}
	if s.o.CheckInterval == 0 {
		s.o.CheckInterval = DefaultReplicaCheckInterval
	}
	for i, sb := range standbys {
		name := sb.Name
		if name == "" {
			name = "standby " + strconv.Itoa(i)
		}
		x := &standby{name: name, open: sb.Open, poke: make(hinter, 1)}
		x.st.Name = name
		switch {
		case sb.DB != nil:
			if sb.DB == primary {
				return nil, fmt.Errorf("%w: %s is the primary's *sql.DB", ErrProgramming, name)
			}
			x.db.Store(sb.DB)
		case sb.Open != nil:
			x.owned = true
		default:
			return nil, fmt.Errorf("%w: %s has neither DB nor Open", ErrProgramming, name)
		}
		s.sb = append(s.sb, x)
	}
	return s, nil
}

// start checks every standby once, refusing one that is not a standby
// (ErrProgramming: it would take writes, or it was promoted and its log is
// no longer the primary's), then checks each every CheckInterval on a
// goroutine of its own until close.
func (s *standbySet) start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, sb := range s.sb {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.check(ctx, sb)
		}()
	}
	wg.Wait()
	for _, sb := range s.sb {
		if err := sb.status().Err; errors.Is(err, ErrProgramming) {
			s.closeDBs()
			return err
		}
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	for _, sb := range s.sb {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.monitor(mctx, sb)
		}()
	}
	return nil
}

func (s *standbySet) close() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		s.closeDBs()
	})
}

func (s *standbySet) closeDBs() {
	for _, sb := range s.sb {
		if db := sb.db.Load(); db != nil && sb.owned {
			db.Close()
		}
	}
}

func (s *standbySet) monitor(ctx context.Context, sb *standby) {
	t := time.NewTimer(s.o.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-sb.poke:
			// A read failed: look again soon, not at once (it would
			// most likely fail the same way).
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(100*time.Millisecond, s.o.CheckInterval)):
			}
		}
		s.check(ctx, sb)
		t.Reset(s.o.CheckInterval)
	}
}

// replicaState runs the dialect's ReplicaQuery on db.
func (s *standbySet) replicaState(ctx context.Context, db *sql.DB) (inRecovery bool, replayed LSN, since sql.NullFloat64, err error) {
	var r int64
	err = db.QueryRowContext(ctx, s.repl.ReplicaQuery()).Scan(&inRecovery, &r, &since)
	return inRecovery, LSN(r), since, err
}

// position returns the primary's current WAL position.
func (s *standbySet) position(ctx context.Context) (LSN, error) {
	var p int64
	if err := s.primary.QueryRowContext(ctx, s.repl.PositionQuery()).Scan(&p); err != nil {
		return 0, err
	}
	return LSN(p), nil
}

// check finds out whether a standby is up, is a standby, and how far
// behind it is: it reads the primary's position and waits, up to MaxLag,
// for the standby to replay it.
func (s *standbySet) check(ctx context.Context, sb *standby) {
	ctx, cancel := context.WithTimeout(ctx, s.o.CheckInterval+s.o.MaxLag)
	defer cancel()
	st := StandbyStatus{Name: sb.name}
	usable := false
	defer func() {
		st.Checked = time.Now()
		sb.mu.Lock()
		st.Lag, st.Behind = max(st.Lag, 0), max(st.Behind, 0)
		sb.st = st
		sb.mu.Unlock()
		sb.usable.Store(usable)
		if s.o.OnCheck != nil {
			s.o.OnCheck(sb.status())
		}
		if o, ok := s.observer.(StandbyObserver); ok {
			o.ObserveStandby(ctx, sb.status())
		}
	}()
	db := sb.db.Load()
	if db == nil {
		d, err := sb.open(ctx)
		if err != nil {
			st.Err = &DatabaseError{Kind: ErrOperational, Op: "open " + sb.name, Err: err}
			return
		}
		sb.db.Store(d)
		db = d
	}
	inRecovery, replayed, since, err := s.replicaState(ctx, db)
	if err != nil {
		st.Err = &DatabaseError{Kind: ErrOperational, Op: "check " + sb.name, Err: err}
		return
	}
	if !inRecovery {
		st.Err = fmt.Errorf("%w: %s is not a standby (pg_is_in_recovery() is false: the primary itself, another primary, or a promoted standby whose log is no longer the primary's): it must not serve reads for this primary", ErrProgramming, sb.name)
		return
	}
	sb.advance(replayed)
	t0 := time.Now()
	p, err := s.position(ctx)
	if err != nil {
		// The primary cannot be asked: keep what the last check found.
		prev := sb.status()
		st.Lag, st.Lagging, st.Behind = prev.Lag, prev.Lagging, prev.Behind
		usable = !prev.Lagging
		return
	}
	st.Behind = int64(p) - int64(replayed)
	ok, err := s.waitReplayed(ctx, sb, p, s.o.MaxLag)
	if err != nil {
		st.Err = &DatabaseError{Kind: ErrOperational, Op: "check " + sb.name, Err: err}
		return
	}
	if ok {
		if replayed < p {
			st.Lag = time.Since(t0)
		}
		usable = true
		return
	}
	st.Lagging = true
	st.Lag = time.Since(t0)
	if _, _, since, err = s.replicaState(ctx, db); err == nil && since.Valid {
		st.Lag = max(st.Lag, time.Duration(since.Float64*float64(time.Second)))
	}
}

// waitReplayed waits until the standby has replayed pos, for at most
// bound, and reports whether it has; the error is the standby's (or the
// context's). However many wait at once, one goroutine polls the standby
// for them: every 100 µs at first, backing off to every millisecond.
func (s *standbySet) waitReplayed(ctx context.Context, sb *standby, pos LSN, bound time.Duration) (bool, error) {
	if LSN(sb.replayed.Load()) >= pos {
		return true, nil
	}
	db := sb.db.Load()
	if db == nil {
		return false, nil
	}
	sb.waiters.Add(1)
	defer sb.waiters.Add(-1)
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		ch := sb.polls.wait()
		if LSN(sb.replayed.Load()) >= pos {
			return true, nil
		}
		s.startPoller(sb, db)
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
			return LSN(sb.replayed.Load()) >= pos, nil
		case <-ch:
			if p := sb.pollErr.Load(); p != nil {
				return false, *p
			}
		}
	}
}

// startPoller starts the standby's poller unless it runs: it reads the
// replayed position and wakes the waiters, until none is left.
func (s *standbySet) startPoller(sb *standby, db *sql.DB) {
	sb.pollMu.Lock()
	defer sb.pollMu.Unlock()
	if sb.polling {
		return
	}
	sb.polling = true
	go func() {
		sleep := 100 * time.Microsecond
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.o.CheckInterval+s.o.MaxLag)
			_, r, _, err := s.replicaState(ctx, db)
			cancel()
			if err != nil {
				sb.pollErr.Store(&err)
				sleep = 10 * time.Millisecond
			} else {
				sb.pollErr.Store(nil)
				sb.advance(r)
			}
			sb.polls.broadcast()
			sb.pollMu.Lock()
			if sb.waiters.Load() == 0 {
				sb.polling = false
				sb.pollMu.Unlock()
				return
			}
			sb.pollMu.Unlock()
			time.Sleep(sleep)
			sleep = min(2*sleep, time.Millisecond)
		}
	}()
}

// usable returns the usable standbys, in round-robin order.
func (s *standbySet) usable() []*standby {
	n := len(s.sb)
	if n == 0 {
		return nil
	}
	first := int(s.next.Add(1) % uint64(n))
	var out []*standby
	for i := range n {
		if sb := s.sb[(first+i)%n]; sb.usable.Load() {
			out = append(out, sb)
		}
	}
	return out
}

// Read-your-writes through contexts.
type (
	readAfterKey struct{}
	sessionKey   struct{}
	session      struct{ pos atomic.Uint64 }
)

// ReadAfter returns a context whose reads through a [ReplicatedRecorder]
// see at least everything committed at or before pos (a position from
// [ReplicatedRecorder.Position], on this primary): a standby serves them
// once it has replayed pos, waiting up to ReplicaOptions.MaxLag for it,
// and otherwise the primary does. It is the token to pass on when a write
// and the reads that must see it are not in one call chain: a client that
// got it in a response, another process, a message.
func ReadAfter(ctx context.Context, pos LSN) context.Context {
	if prev, ok := ctx.Value(readAfterKey{}).(LSN); ok && prev >= pos {
		return ctx
	}
	return context.WithValue(ctx, readAfterKey{}, pos)
}

// ReadYourWrites returns a context in which reads through a
// [ReplicatedRecorder] see the writes made through it with this context or
// one derived from it, before the read: after each write the recorder
// reads the primary's position (one more query) and keeps it in the
// context; each read then waits for a standby to replay it (see
// [ReadAfter]). Use it for one request or one call chain, such as a
// command that saves an aggregate and then loads it again. If ctx has
// such a session already, it is returned as is.
func ReadYourWrites(ctx context.Context) context.Context {
	if _, ok := ctx.Value(sessionKey{}).(*session); ok {
		return ctx
	}
	return context.WithValue(ctx, sessionKey{}, &session{})
}

func raise(a *atomic.Uint64, l LSN) {
	for {
		old := a.Load()
		if uint64(l) <= old || a.CompareAndSwap(old, uint64(l)) {
			return
		}
	}
}

// ReplicatedRecorder is a [ProcessRecorder] on a PostgreSQL primary and
// its hot standbys: writes, tracking records and tracking queries go to the
// primary, and reads (SelectEvents, SelectNotifications,
// MaxNotificationID, and so subscriptions and runners that follow its log)
// go to a standby, round robin, falling back to the primary.
//
// A standby applies the primary's commits in commit order, and the events
// table lock orders commits by notification ID, so a standby's
// notification log is always a prefix of the primary's (holes from
// rolled-back inserts included). Any mixture of standbys and primary
// therefore serves a subscription's "IDs above the last delivered" without
// skipping or repeating one: a standby that is behind returns fewer, never
// others.
//
// A standby that is down, is not a standby, or was more than MaxLag behind
// at its last check is skipped; a read that fails on a standby is served by
// the primary and the standby is skipped until a check finds it up again.
// Reads see a standby as it is unless they ask for a position
// ([ReadAfter], [ReadYourWrites], ReplicaOptions.ReadYourWrites). Standbys()
// gives each standby's lag and state, and ReplicaOptions.OnCheck reports
// them as they are checked.
//
// It checks each standby on a goroutine of its own: Close stops them. It is
// safe for concurrent use.
type ReplicatedRecorder struct {
	primary   *SQLRecorder
	set       *standbySet
	recs      []lazyRecorder[*SQLRecorder]
	ryw       bool
	pos       atomic.Uint64 // highest write position, if ryw
	primReads atomic.Int64
	hubs      [2]wakeHub // without and with LISTEN
}

var (
	_ ProcessRecorder = (*ReplicatedRecorder)(nil)
	_ Waker           = (*ReplicatedRecorder)(nil)
)

// lazyRecorder makes a standby's recorder when it is first needed (a
// standby down at start has none yet).
type lazyRecorder[T any] struct {
	mu  sync.Mutex
	rec atomic.Pointer[T]
}

func (l *lazyRecorder[T]) get(ctx context.Context, db *sql.DB, make func(context.Context, *sql.DB) (T, error)) (T, error) {
	if r := l.rec.Load(); r != nil {
		return *r, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rec.Load(); r != nil {
		return *r, nil
	}
	r, err := make(ctx, db)
	if err != nil {
		return r, err
	}
	l.rec.Store(&r)
	return r, nil
}

// NewReplicatedRecorder returns a recorder that writes to primary and reads
// from the standbys, each read through a recorder made by NewSQLRecorder on
// the standby's database with the primary's tables. It checks every
// standby once before it returns: a primary that is in recovery (a
// standby, which cannot take writes), or a "standby" that is not one, is
// an error matching ErrProgramming; a standby that is down is not an error
// (it is skipped until it is up), nor is an empty list (every read goes to
// the primary). The primary's dialect must be a [Replication]
// (PostgreSQL's is). Close stops the standbys' checks.
func NewReplicatedRecorder(ctx context.Context, primary *SQLRecorder, standbys []Standby, opts *ReplicaOptions) (*ReplicatedRecorder, error) {
	if primary == nil {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: nil primary", ErrProgramming)
	}
	if primary.snapshots {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: the primary records snapshots: use a recorder of events, and ReplicatedRecorder.Snapshots", ErrProgramming)
	}
	repl, ok := primary.d.(Replication)
	if !ok {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: the %s dialect has no standbys (it is not a Replication)", ErrProgramming, primary.d.Name())
	}
	// The primary must take writes.
	inRecovery, _, _, err := (&standbySet{repl: repl}).replicaState(ctx, primary.db)
	if err != nil {
		return nil, primary.dbError(ctx, "check primary", primary.events, err)
	}
	if inRecovery {
		return nil, fmt.Errorf("%w: NewReplicatedRecorder: the primary database is a standby (pg_is_in_recovery() is true) and cannot take writes: give the primary's *sql.DB as primary, and standbys as Standby", ErrProgramming)
	}
	set, err := newStandbySet(primary.db, repl, standbys, opts)
	if err != nil {
		return nil, err
	}
	set.observer = primary.observer
	r := &ReplicatedRecorder{primary: primary, set: set, recs: make([]lazyRecorder[*SQLRecorder], len(set.sb)), ryw: set.o.ReadYourWrites}
	if err := set.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// standbyOptions returns the options that make a recorder of the same
// tables as r.
func standbyOptions(r *SQLRecorder) *SQLOptions {
	return &SQLOptions{Table: r.events.Name, TrackingTable: r.tracking.Name, Schema: r.events.Schema,
		MultiRowTracking: r.multiRow, NoNotify: true, LockTimeout: r.lockTO, MaxRowsPerStatement: r.maxRows, Observer: r.observer}
}

// Primary returns the recorder on the primary.
func (r *ReplicatedRecorder) Primary() *SQLRecorder { return r.primary }

// Close stops checking the standbys and closes the databases it opened
// (Standby.Open); it closes neither the primary nor a Standby.DB. Reads
// after Close go to standbys as they were last found.
func (r *ReplicatedRecorder) Close() error {
	r.set.close()
	return nil
}

// Standbys returns each standby's status, in the order given.
func (r *ReplicatedRecorder) Standbys() []StandbyStatus {
	out := make([]StandbyStatus, len(r.set.sb))
	for i, sb := range r.set.sb {
		out[i] = sb.status()
	}
	return out
}

// PrimaryReads returns how many reads the primary has served (no standby
// was usable, or had replayed what the read asked for, or one failed).
func (r *ReplicatedRecorder) PrimaryReads() int64 { return r.primReads.Load() }

// Position returns the primary's current WAL position: a token for
// [ReadAfter] that covers every write acknowledged before the call (with
// PostgreSQL's default synchronous_commit=on; with it off, a commit may
// not be flushed yet and a read may not see it).
func (r *ReplicatedRecorder) Position(ctx context.Context) (LSN, error) {
	p, err := r.set.position(ctx)
	if err != nil {
		return 0, r.primary.dbError(ctx, "read the primary's WAL position", r.primary.events, err)
	}
	return p, nil
}

// ReadLatest returns a context whose reads see everything committed on the
// primary before the call: [ReadAfter] with the primary's [Position]. Use
// it to read again after a conflict (ErrIntegrity), whose winning write
// a standby may not have replayed yet.
func (r *ReplicatedRecorder) ReadLatest(ctx context.Context) (context.Context, error) {
	p, err := r.Position(ctx)
	if err != nil {
		return ctx, err
	}
	return ReadAfter(ctx, p), nil
}

// WaitReplayed waits until some usable standby has replayed pos, for at
// most MaxLag, and reports whether one has. It is what a read given pos
// does before it reads (see [ReadAfter]); a context that ends is an error.
func (r *ReplicatedRecorder) WaitReplayed(ctx context.Context, pos LSN) (bool, error) {
	sb, err := r.set.ready(ctx, pos)
	return sb != nil, err
}

// ready picks a usable standby that has replayed need: one known to have,
// or else the first, waited for up to MaxLag. nil means the primary.
func (s *standbySet) ready(ctx context.Context, need LSN) (*standby, error) {
	cands := s.usable()
	if len(cands) == 0 || need == unknownLSN {
		return nil, nil
	}
	for _, sb := range cands {
		if LSN(sb.replayed.Load()) >= need {
			return sb, nil
		}
	}
	ok, err := s.waitReplayed(ctx, cands[0], need, s.o.MaxLag)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		cands[0].down(&DatabaseError{Kind: ErrOperational, Op: "wait on " + cands[0].name, Err: err})
		return nil, nil
	}
	if ok {
		return cands[0], nil
	}
	return nil, nil
}

// required returns the position a read in ctx must see: the greatest of
// ReadAfter's, the context session's and (ReplicaOptions.ReadYourWrites)
// the recorder's.
func (r *ReplicatedRecorder) required(ctx context.Context) LSN {
	var need LSN
	if p, ok := ctx.Value(readAfterKey{}).(LSN); ok {
		need = p
	}
	if s, ok := ctx.Value(sessionKey{}).(*session); ok {
		need = max(need, LSN(s.pos.Load()))
	}
	if r.ryw {
		need = max(need, LSN(r.pos.Load()))
	}
	return need
}

// routeRead runs read on a standby's recorder, chosen for ctx's required
// position, and on the primary's if no standby can serve it or the
// standby's read fails (the standby is then skipped until a check finds it
// up).
func routeRead[T any](ctx context.Context, set *standbySet, need LSN, recs []lazyRecorder[T], make func(context.Context, *sql.DB) (T, error), primary T, primReads *atomic.Int64, read func(T) error) error {
	var tries []*standby
	if need == 0 {
		tries = set.usable()
	} else {
		sb, err := set.ready(ctx, need)
		if err != nil {
			return fmt.Errorf("eventsourcing: wait for a standby to replay %v: %w", need, err)
		}
		if sb != nil {
			tries = []*standby{sb}
		}
	}
	for _, sb := range tries {
		i := set.index(sb)
		rec, err := recs[i].get(ctx, sb.db.Load(), make)
		if err == nil {
			if err = read(rec); err == nil {
				sb.reads.Add(1)
				return nil
			}
		}
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, ErrOperational) {
			sb.down(err)
			continue
		}
		// Not the standby's health (a table the standby has not replayed
		// yet, say): the primary answers this one.
		break
	}
	primReads.Add(1)
	return read(primary)
}

func (s *standbySet) index(sb *standby) int {
	for i, x := range s.sb {
		if x == sb {
			return i
		}
	}
	panic("eventsourcing: unknown standby")
}

func (r *ReplicatedRecorder) makeStandby(ctx context.Context, db *sql.DB) (*SQLRecorder, error) {
	return NewSQLRecorder(ctx, db, r.primary.d, standbyOptions(r.primary))
}

func (r *ReplicatedRecorder) read(ctx context.Context, read func(*SQLRecorder) error) error {
	return routeRead(ctx, r.set, r.required(ctx), r.recs, r.makeStandby, r.primary, &r.primReads, read)
}

// InsertEvents records events (and the tracking record) on the primary.
// With ReadYourWrites (the option, or a context from [ReadYourWrites]), it
// then reads the primary's position for the reads that follow.
func (r *ReplicatedRecorder) InsertEvents(ctx context.Context, events []StoredEvent, tracking *Tracking) ([]int64, error) {
	ids, err := r.primary.InsertEvents(ctx, events, tracking)
	if err == nil {
		r.wrote(ctx)
	}
	return ids, err
}

// wrote keeps the primary's position after a write for the reads that
// must see it (ReadYourWrites), if any.
func (r *ReplicatedRecorder) wrote(ctx context.Context) {
	s, _ := ctx.Value(sessionKey{}).(*session)
	if s == nil && !r.ryw {
		return
	}
	// The write is committed whatever happens now: a position that cannot
	// be read sends the reads that must see it to the primary.
	p, err := r.set.position(context.WithoutCancel(ctx))
	if err != nil {
		p = unknownLSN
	}
	if s != nil {
		raise(&s.pos, p)
	}
	if r.ryw {
		raise(&r.pos, p)
	}
}

// SelectEvents reads an aggregate's events from a standby (or the primary).
func (r *ReplicatedRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	var out []StoredEvent
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.SelectEvents(ctx, originatorID, q)
		return err
	})
	return out, err
}

// SelectNotifications reads notifications from a standby (or the primary):
// a prefix of the primary's log, so a page may end earlier than the
// primary's would, never differ.
func (r *ReplicatedRecorder) SelectNotifications(ctx context.Context, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	var out []Notification
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.SelectNotifications(ctx, start, limit, q)
		return err
	})
	return out, err
}

// SelectNotificationsInto is SelectNotifications reusing dst, as
// [SQLRecorder.SelectNotificationsInto] does.
func (r *ReplicatedRecorder) SelectNotificationsInto(ctx context.Context, dst []Notification, start int64, limit int, q *NotificationQuery) ([]Notification, error) {
	var out []Notification
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.SelectNotificationsInto(ctx, dst, start, limit, q)
		return err
	})
	return out, err
}

// MaxNotificationID reads the highest notification ID from a standby (or
// the primary): the standby's, which may be below the primary's.
func (r *ReplicatedRecorder) MaxNotificationID(ctx context.Context) (int64, error) {
	var out int64
	err := r.read(ctx, func(rec *SQLRecorder) (err error) {
		out, err = rec.MaxNotificationID(ctx)
		return err
	})
	return out, err
}

// MaxTrackingID asks the primary: tracking records decide what a runner
// does next, so they are never read stale.
func (r *ReplicatedRecorder) MaxTrackingID(ctx context.Context, applicationName string) (int64, error) {
	return r.primary.MaxTrackingID(ctx, applicationName)
}

// HasTrackingID asks the primary, as MaxTrackingID does.
func (r *ReplicatedRecorder) HasTrackingID(ctx context.Context, applicationName string, notificationID int64) (bool, error) {
	return r.primary.HasTrackingID(ctx, applicationName, notificationID)
}

// CreateTables creates the tables on the primary; standbys get them by
// replication.
func (r *ReplicatedRecorder) CreateTables(ctx context.Context) error {
	return r.primary.CreateTables(ctx)
}

// Wake wakes subscribers as the primary's recorder does (commits in this
// process, and LISTEN on the primary: a standby cannot LISTEN), and once
// more when the usable standbys have replayed the primary's position after
// the wake-up (waiting up to MaxLag), so that a subscriber reading from a
// standby finds what woke it. The first wake-up lets WaitTracking, which
// asks the primary, go on at once. However many subscribers wait at once,
// the recorder holds one LISTEN connection to the primary for them, and
// reads the primary's position once per wake-up.
func (r *ReplicatedRecorder) Wake(ctx context.Context, listen bool, wake func()) {
	if len(r.set.sb) == 0 {
		r.primary.Wake(ctx, listen, wake)
		return
	}
	h := &r.hubs[0]
	if listen {
		h = &r.hubs[1]
	}
	ready := h.join(r, listen)
	defer h.leave()
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	pch, rch := h.primary.wait(), h.replayed.wait()
	wake()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pch:
			pch = h.primary.wait()
			wake()
		case <-rch:
			rch = h.replayed.wait()
			wake()
		}
	}
}

// wakeHub shares one primary Wake (one LISTEN connection) among a
// recorder's subscribers while any is waiting.
type wakeHub struct {
	mu       sync.Mutex
	n        int
	cancel   context.CancelFunc
	ready    chan struct{}
	done     chan struct{}
	primary  commitSignal // a commit on the primary
	replayed commitSignal // the standbys replayed the position after one
}

func (h *wakeHub) join(r *ReplicatedRecorder, listen bool) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if h.n == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel, h.ready, h.done = cancel, make(chan struct{}), make(chan struct{})
		go h.run(ctx, r, listen, h.ready, h.done)
	}
	return h.ready
}

func (h *wakeHub) leave() {
	h.mu.Lock()
	h.n--
	if h.n > 0 {
		h.mu.Unlock()
		return
	}
	h.cancel()
	done := h.done
	h.mu.Unlock()
	<-done
}

func (h *wakeHub) run(ctx context.Context, r *ReplicatedRecorder, listen bool, ready, done chan struct{}) {
	defer close(done)
	hint := make(hinter, 1)
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.primary.Wake(ctx, listen, func() {
			once.Do(func() { close(ready) })
			h.primary.broadcast()
			hint.hint()
		})
	}()
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hint:
		}
		p, err := r.set.position(ctx)
		if err != nil {
			continue // polling finds what this misses
		}
		for _, sb := range r.set.usable() {
			if _, err := r.set.waitReplayed(ctx, sb, p, r.set.o.MaxLag); err != nil && ctx.Err() != nil {
				return
			}
		}
		h.replayed.broadcast()
	}
}

// ReplicatedSnapshotRecorder reads snapshots from the standbys of a
// [ReplicatedRecorder] (the same checks, lag bound and read-your-writes
// positions) and records them on the primary.
type ReplicatedSnapshotRecorder struct {
	primary *SQLSnapshotRecorder
	r       *ReplicatedRecorder
	recs    []lazyRecorder[*SQLSnapshotRecorder]
}

var _ AggregateRecorder = (*ReplicatedSnapshotRecorder)(nil)

// Snapshots returns a snapshot recorder that records on primary (a
// snapshot recorder on the same primary database) and reads from the
// recorder's standbys.
func (r *ReplicatedRecorder) Snapshots(primary *SQLSnapshotRecorder) *ReplicatedSnapshotRecorder {
	return &ReplicatedSnapshotRecorder{primary: primary, r: r, recs: make([]lazyRecorder[*SQLSnapshotRecorder], len(r.set.sb))}
}

// InsertEvents records snapshots on the primary (and, with ReadYourWrites,
// keeps the position after them, as ReplicatedRecorder.InsertEvents does).
func (s *ReplicatedSnapshotRecorder) InsertEvents(ctx context.Context, snapshots []StoredEvent, tracking *Tracking) ([]int64, error) {
	ids, err := s.primary.InsertEvents(ctx, snapshots, tracking)
	if err == nil {
		s.r.wrote(ctx)
	}
	return ids, err
}

// SelectEvents reads snapshots from a standby (or the primary).
func (s *ReplicatedSnapshotRecorder) SelectEvents(ctx context.Context, originatorID uuid.UUID, q *Query) ([]StoredEvent, error) {
	var out []StoredEvent
	mk := func(ctx context.Context, db *sql.DB) (*SQLSnapshotRecorder, error) {
		return NewSQLSnapshotRecorder(ctx, db, s.primary.r.d, &SQLOptions{Table: s.primary.r.events.Name, Schema: s.primary.r.events.Schema})
	}
	err := routeRead(ctx, s.r.set, s.r.required(ctx), s.recs, mk, s.primary, &s.r.primReads, func(rec *SQLSnapshotRecorder) (err error) {
		out, err = rec.SelectEvents(ctx, originatorID, q)
		return err
	})
	return out, err
}

// CreateTables creates the snapshots table on the primary.
func (s *ReplicatedSnapshotRecorder) CreateTables(ctx context.Context) error {
	return s.primary.CreateTables(ctx)
}

// ReplicatedStore is a [Store] whose Events is a [ReplicatedRecorder] and
// whose Snapshots is a [ReplicatedSnapshotRecorder]: see [OpenReplicated].
type ReplicatedStore struct {
	*Store
	// Replicated is Store.Events, as its own type (Standbys, Position).
	Replicated *ReplicatedRecorder
}

// Close stops checking the standbys and closes their databases and the
// primary's.
func (s *ReplicatedStore) Close() error {
	s.Replicated.Close()
	return s.Store.Close()
}

// OpenReplicated is [Open] for a PostgreSQL store with standbys
// (Config.Postgres.ReadHosts, POSTGRES_READ_HOSTS): it opens the primary as
// Open does, then each read host with the primary's settings (database,
// user, password, pool) and its own host and port, and routes reads there
// as [NewReplicatedRecorder] describes. A standby that cannot be reached is
// skipped until it can. Read hosts with another persistence module are an
// error matching ErrProgramming; with none, every read goes to the
// primary.
func OpenReplicated(ctx context.Context, cfg *Config) (*ReplicatedStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Module() != ModulePostgres {
		return nil, &ConfigError{Name: "Config.PersistenceModule", Value: cfg.PersistenceModule, Reason: "standbys (read hosts) need postgres"}
	}
	open, err := lookupOpener(ModulePostgres)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	primary, ok := st.Events.(*SQLRecorder)
	snaps, ok2 := st.Snapshots.(*SQLSnapshotRecorder)
	if !ok || !ok2 {
		st.Close()
		return nil, fmt.Errorf("%w: OpenReplicated: Open returned %T and %T", ErrProgramming, st.Events, st.Snapshots)
	}
	hosts, err := ReadHosts(cfg.Postgres.ReadHosts, cfg.Postgres.Port)
	if err != nil {
		st.Close()
		return nil, &ConfigError{Name: "Config.Postgres.ReadHosts", Value: cfg.Postgres.ReadHosts, Reason: err.Error()}
	}
	var standbys []Standby
	for _, hp := range hosts {
		host, p, _ := net.SplitHostPort(hp)
		port, _ := strconv.Atoi(p)
		c := *cfg
		c.Postgres.Host, c.Postgres.Port, c.Postgres.ReadHosts = host, port, ""
		standbys = append(standbys, Standby{
			Name: hp,
			Open: func(ctx context.Context) (*sql.DB, error) {
				db, _, err := open(ctx, &c)
				return db, err
			},
		})
	}
	rr, err := NewReplicatedRecorder(ctx, primary, standbys, &ReplicaOptions{MaxLag: cfg.Postgres.MaxReplicaLag})
	if err != nil {
		st.Close()
		return nil, err
	}
	st.Events = rr
	st.Snapshots = rr.Snapshots(snaps)
	return &ReplicatedStore{Store: st, Replicated: rr}, nil
}

// ReadHosts parses a comma-separated list of read hosts
// (POSTGRES_READ_HOSTS): each "host" or "host:port" ("[::1]:5433" for
// IPv6), with defaultPort (zero: 5432) when it has none. It returns them
// as host:port; an empty list is none.
func ReadHosts(list string, defaultPort int) ([]string, error) {
	if defaultPort == 0 {
		defaultPort = 5432
	}
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, errors.New("an empty host in the list")
		}
		if !strings.Contains(s, ":") || (strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")) {
			out = append(out, net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(defaultPort)))
			continue
		}
		host, p, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want host or host:port ([addr]:port for IPv6)", s)
		}
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 || host == "" {
			return nil, fmt.Errorf("%q: want host or host:port with a TCP port", s)
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return out, nil
}
