// Standbys of a ReplicatedRecorder: the Replication queries, Standby and
// StandbyStatus, and the standby set that checks each standby's health and
// lag, waits for it to replay a position, and picks one for each read.

package eventsourcing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

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
	// Replayed is the position the standby had replayed when it was last
	// asked.
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

// saw records the replayed position last read from the standby. It is
// what the standby has now, not the most it ever had: one that restarted
// (from its last restart point) or was rebuilt behind its old position is
// trusted only for what it has replayed since, and any position read is
// at most what the standby has (a read that raced a newer one only makes a
// read wait for a poll).
func (s *standby) saw(l LSN) { s.replayed.Store(uint64(l)) }

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
	sb.saw(replayed)
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
				sb.saw(r)
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

func (s *standbySet) index(sb *standby) int {
	for i, x := range s.sb {
		if x == sb {
			return i
		}
	}
	panic("eventsourcing: unknown standby")
}
