package eventsourcing_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// repoBackend opens an events recorder and a snapshots recorder of one
// kind for one test.
type repoBackend struct {
	name string
	open func(t *testing.T) (es.ProcessRecorder, es.AggregateRecorder)
}

// repoBackends is memory plus every SQL backend (Postgres skips unless
// EVENTSOURCING_POSTGRES_DSN is set).
func repoBackends() []repoBackend {
	bs := []repoBackend{{"Memory", func(*testing.T) (es.ProcessRecorder, es.AggregateRecorder) {
		return es.NewMemoryRecorder(), es.NewMemoryRecorder()
	}}}
	for _, b := range backends {
		bs = append(bs, repoBackend{b.name, func(t *testing.T) (es.ProcessRecorder, es.AggregateRecorder) {
			db, d, schema := b.open(t)
			return newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bank", Table: pgtestName("ev"), TrackingTable: pgtestName("tr")}),
				newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bank", Table: pgtestName("snap")})
		}})
	}
	return bs
}

// accountMapper registers the account's events under explicit topics.
func accountMapper(t testing.TB) *es.Mapper[es.Event] {
	t.Helper()
	m := es.NewMapper[es.Event](nil)
	for topic, e := range map[string]es.Event{"bank:Opened": &rOpened{}, "bank:Deposited": &rDeposited{}, "bank:Withdrawn": &rWithdrawn{}} {
		if err := m.RegisterTopic(topic, e); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// newAccounts returns a repository of accounts on the recorders, with
// snapshots in snaps if it is not nil.
func newAccounts(t testing.TB, events es.AggregateRecorder, snaps es.AggregateRecorder, opts *es.RepositoryOptions, obs es.Observer) *es.Repository[*rAccount] {
	t.Helper()
	store := es.NewEventStore(accountMapper(t), events)
	store.Observer = obs
	var snapshots *es.SnapshotStore[*rAccount]
	if snaps != nil {
		var err error
		if snapshots, err = es.NewSnapshotStore[*rAccount]("bank:Account", nil, snaps); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := es.NewRepository(store, snapshots, opts)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// sameAccount reports how two accounts differ, or "".
func sameAccount(got, want *rAccount) string {
	switch {
	case got.ID() != want.ID() || got.Version() != want.Version():
		return fmt.Sprintf("%s v%d, want %s v%d", got.ID(), got.Version(), want.ID(), want.Version())
	case got.Owner != want.Owner || got.Balance != want.Balance || got.Moves != want.Moves:
		return fmt.Sprintf("%+v, want %+v", *got, *want)
	case !got.CreatedOn.Equal(want.CreatedOn) || !got.ModifiedOn.Equal(want.ModifiedOn):
		return fmt.Sprintf("created %v modified %v, want %v %v", got.CreatedOn, got.ModifiedOn, want.CreatedOn, want.ModifiedOn)
	case len(got.PendingEvents()) != 0:
		return fmt.Sprintf("%d pending events", len(got.PendingEvents()))
	}
	return ""
}

func TestRepositoryReplay(t *testing.T) {
	ctx := context.Background()
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			events, _ := b.open(t)
			repo := newAccounts(t, events, nil, nil, nil)
			a, err := openAccount("Ann")
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range []func() error{func() error { return a.Deposit(100) }, func() error { return a.Withdraw(30) }, func() error { return a.Deposit(7) }} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.Withdraw(1000); !errors.Is(err, errNoFunds) {
				t.Fatalf("a command that refuses: %v", err)
			}
			ids, err := repo.Save(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != 4 || len(a.PendingEvents()) != 0 {
				t.Fatalf("Save: ids %v, %d still pending", ids, len(a.PendingEvents()))
			}
			got, err := repo.Load(ctx, a.ID())
			if err != nil {
				t.Fatal(err)
			}
			if d := sameAccount(got, a); d != "" {
				t.Errorf("replayed: %s", d)
			}
			if got.Owner != "Ann" || got.Balance != 77 || got.Moves != 3 {
				t.Errorf("replayed state %+v", *got)
			}

			// History: the account as it was at version 2.
			v2, err := repo.LoadAt(ctx, a.ID(), 2)
			if err != nil || v2.Version() != 2 || v2.Balance != 100 {
				t.Errorf("LoadAt 2: %+v, %v", v2, err)
			}
			if last, err := repo.LoadAt(ctx, a.ID(), 99); err != nil || sameAccount(last, a) != "" {
				t.Errorf("LoadAt beyond the last version: %v", err)
			}

			// Saving nothing writes nothing.
			if ids, err := repo.Save(ctx, got); ids != nil || err != nil {
				t.Errorf("Save without pending events: %v, %v", ids, err)
			}
		})
	}
}

func TestRepositoryNotFound(t *testing.T) {
	ctx := context.Background()
	repo := newAccounts(t, es.NewMemoryRecorder(), es.NewMemoryRecorder(), nil, nil)
	id := uuid.New()
	_, err := repo.Load(ctx, id)
	if !errors.Is(err, es.ErrAggregateNotFound) || !errors.Is(err, sql.ErrNoRows) || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("Load: %v, want ErrAggregateNotFound (and sql.ErrNoRows) naming the ID", err)
	}
	if _, err := repo.LoadAt(ctx, id, 3); !errors.Is(err, es.ErrAggregateNotFound) {
		t.Errorf("LoadAt: %v", err)
	}
	if _, err := repo.LoadAt(ctx, id, 0); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("LoadAt version 0: %v", err)
	}
	ran := false
	if _, err := repo.Update(ctx, id, func(*rAccount) error { ran = true; return nil }); !errors.Is(err, es.ErrAggregateNotFound) || ran {
		t.Errorf("Update: %v (command ran: %v)", err, ran)
	}
	if _, err := repo.Save(ctx, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Save(nil): %v", err)
	}
}

func TestNewRepositoryErrors(t *testing.T) {
	store := es.NewEventStore(accountMapper(t), es.NewMemoryRecorder())
	if _, err := es.NewRepository[*rAccount](nil, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil event store: %v", err)
	}
	if _, err := es.NewRepository[*rAccount](&es.EventStore[es.Event]{}, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("event store without recorder: %v", err)
	}
	if _, err := es.NewRepository[*rAccount](store, nil, &es.RepositoryOptions{SnapshotEvery: 10}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("SnapshotEvery without snapshots: %v", err)
	}
	if _, err := es.NewRepository[notStruct](store, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("aggregate type that is not a pointer to a struct: %v", err)
	}
}

// notStruct is an Aggregate that is not a pointer to a struct.
type notStruct func()

func (notStruct) Apply(es.Event)          {}
func (notStruct) AggregateRoot() *es.Root { return nil }

// TestRepositoryUpdateConcurrent: 8 goroutines each increment one counter
// 100 times through Update; every conflict is retried and the count is
// exactly 800.
func TestRepositoryUpdateConcurrent(t *testing.T) {
	ctx := context.Background()
	const writers, increments = 8, 100
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			events, snaps := b.open(t)
			var conflicts, other atomic.Int64
			// Snapshots keep each load short: without them the 800th
			// update would replay 800 events.
			repo := newAccounts(t, events, snaps, &es.RepositoryOptions{
				SnapshotEvery: 20,
				OnSnapshotError: func(_ context.Context, id uuid.UUID, err error) {
					t.Errorf("snapshot: %v", err)
				},
				Attempts: 200,
				OnRetry: func(err error, attempt int) {
					if errors.Is(err, es.ErrIntegrity) {
						conflicts.Add(1)
					} else {
						other.Add(1)
					}
				},
			}, nil)
			a, _ := openAccount("counter")
			if _, err := repo.Save(ctx, a); err != nil {
				t.Fatal(err)
			}
			// Every writer's first command waits until all have loaded
			// version 1, so that at least writers-1 of them conflict.
			var loaded sync.WaitGroup
			loaded.Add(writers)
			var wg sync.WaitGroup
			errs := make(chan error, writers*increments)
			var runs atomic.Int64
			for range writers {
				wg.Go(func() {
					first := true
					for range increments {
						_, err := repo.Update(ctx, a.ID(), func(a *rAccount) error {
							runs.Add(1)
							if first {
								first = false
								loaded.Done()
								loaded.Wait()
							}
							return a.Deposit(1)
						})
						if err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			got, err := repo.Load(ctx, a.ID())
			if err != nil {
				t.Fatal(err)
			}
			if got.Balance != writers*increments || got.Version() != writers*increments+1 {
				t.Errorf("balance %d at version %d, want %d at %d", got.Balance, got.Version(), writers*increments, writers*increments+1)
			}
			if c := conflicts.Load(); c < writers-1 || runs.Load() != writers*increments+c || other.Load() != 0 {
				t.Errorf("%d conflicts retried, %d other retries, %d command runs", c, other.Load(), runs.Load())
			}
			t.Logf("%d conflicts retried", conflicts.Load())
		})
	}
}

// readCounter counts the events EventStore.Get reads, from the hook.
type readCounter struct {
	mu   sync.Mutex
	rows int
	ops  []es.Op
	res  []es.OpResult
}

func (c *readCounter) ObserveStart(ctx context.Context, op es.Op) context.Context { return ctx }
func (c *readCounter) ObserveEnd(_ context.Context, op es.Op, res es.OpResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if op.Kind == es.OpGet {
		c.rows += res.Rows
	}
	c.ops = append(c.ops, op)
	c.res = append(c.res, res)
}

func (c *readCounter) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.rows
	c.rows = 0
	return n
}

// TestRepositorySnapshotEvery: with a snapshot every N events, Load reads
// fewer than N events after the snapshot, and the state equals a replay of
// every event.
func TestRepositorySnapshotEvery(t *testing.T) {
	ctx := context.Background()
	const every = 5
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			events, snaps := b.open(t)
			reads := &readCounter{}
			repo := newAccounts(t, events, snaps, &es.RepositoryOptions{
				SnapshotEvery:   every,
				OnSnapshotError: func(_ context.Context, id uuid.UUID, err error) { t.Errorf("snapshot of %s: %v", id, err) },
			}, reads)
			plain := newAccounts(t, events, nil, nil, nil) // no snapshots: replays everything
			a, _ := openAccount("Ann")
			if _, err := repo.Save(ctx, a); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for a.Version() < 60 {
				for range 1 + rng.IntN(7) { // batches of 1 to 7 events
					if err := a.Deposit(int64(a.Version())); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := repo.Save(ctx, a); err != nil {
					t.Fatal(err)
				}
				reads.take()
				got, err := repo.Load(ctx, a.ID())
				if err != nil {
					t.Fatal(err)
				}
				if n := reads.take(); n >= every {
					t.Errorf("at version %d Load read %d events after the snapshot, want fewer than %d", a.Version(), n, every)
				}
				if d := sameAccount(got, a); d != "" {
					t.Fatalf("loaded from a snapshot: %s", d)
				}
				a = got
			}
			// History is the same with and without snapshots.
			for v := int64(1); v <= a.Version(); v++ {
				withSnap, err := repo.LoadAt(ctx, a.ID(), v)
				if err != nil {
					t.Fatal(err)
				}
				replayed, err := plain.LoadAt(ctx, a.ID(), v)
				if err != nil {
					t.Fatal(err)
				}
				if d := sameAccount(withSnap, replayed); d != "" {
					t.Errorf("LoadAt %d: %s", v, d)
				}
			}
			// The snapshots are in the Python layout.
			stored, err := snaps.SelectEvents(ctx, a.ID(), &es.Query{Desc: true, Limit: 1})
			if err != nil || len(stored) != 1 {
				t.Fatalf("latest snapshot: %v, %v", stored, err)
			}
			s := string(stored[0].State)
			if stored[0].Topic != es.SnapshotTopic || !strings.Contains(s, `"topic":"bank:Account","state":{"_created_on":{"_type_":"datetime_iso"`) || !strings.Contains(s, `"owner":"Ann"`) {
				t.Errorf("snapshot %s: %s", stored[0].Topic, s)
			}
		})
	}
}

// TestRepositorySaveAtomic: Save of two aggregates where one conflicts
// writes nothing of either, and both keep their pending events.
func TestRepositorySaveAtomic(t *testing.T) {
	ctx := context.Background()
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			events, _ := b.open(t)
			repo := newAccounts(t, events, nil, nil, nil)
			from, _ := openAccount("From")
			to, _ := openAccount("To")
			from.Deposit(100)
			if _, err := repo.Save(ctx, from, to); err != nil {
				t.Fatal(err)
			}
			stale, _ := repo.Load(ctx, to.ID())
			if _, err := repo.Update(ctx, to.ID(), func(a *rAccount) error { return a.Deposit(1) }); err != nil {
				t.Fatal(err)
			}
			// A transfer decided on a stale copy of "to".
			if err := from.Withdraw(40); err != nil {
				t.Fatal(err)
			}
			stale.Deposit(40)
			_, err := repo.Save(ctx, from, stale)
			if !errors.Is(err, es.ErrIntegrity) {
				t.Fatalf("Save with a conflict: %v, want ErrIntegrity", err)
			}
			if len(from.PendingEvents()) != 1 || len(stale.PendingEvents()) != 1 {
				t.Errorf("pending after a failed save: %d and %d, want 1 and 1", len(from.PendingEvents()), len(stale.PendingEvents()))
			}
			gotFrom, _ := repo.Load(ctx, from.ID())
			gotTo, _ := repo.Load(ctx, to.ID())
			if gotFrom.Version() != 2 || gotFrom.Balance != 100 || gotTo.Version() != 2 || gotTo.Balance != 1 {
				t.Errorf("after a failed save: from v%d %d, to v%d %d; want v2 100, v2 1", gotFrom.Version(), gotFrom.Balance, gotTo.Version(), gotTo.Balance)
			}
		})
	}
}

// TestRepositoryAliases: events written under old topics (an old import
// path, a Python topic) are read; new ones are written under the new topic.
func TestRepositoryAliases(t *testing.T) {
	ctx := context.Background()
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			events, _ := b.open(t)
			id := uuid.New()
			// Written before the rename, straight into the recorder.
			ts := `{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T12:00:00+00:00"},`
			if _, err := events.InsertEvents(ctx, []es.StoredEvent{
				{OriginatorID: id, OriginatorVersion: 1, Topic: "github.com/old/bank:Opened", State: []byte(ts + `"owner":"Old"}`)},
				{OriginatorID: id, OriginatorVersion: 2, Topic: "bankaccounts:BankAccount.Deposited", State: []byte(ts + `"amount":5}`)},
			}, nil); err != nil {
				t.Fatal(err)
			}
			m := es.NewMapper[es.Event](nil)
			if err := errors.Join(
				m.RegisterTopic("bank:Opened", &rOpened{}, "github.com/old/bank:Opened"),
				m.RegisterTopic("bank:Deposited", &rDeposited{}, "github.com/old/bank:Deposited", "bankaccounts:BankAccount.Deposited"),
				m.RegisterTopic("bank:Withdrawn", &rWithdrawn{}),
			); err != nil {
				t.Fatal(err)
			}
			repo, err := es.NewRepository[*rAccount](es.NewEventStore(m, events), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, err := repo.Update(ctx, id, func(a *rAccount) error { return a.Deposit(10) })
			if err != nil {
				t.Fatal(err)
			}
			if a.Owner != "Old" || a.Balance != 15 || a.Version() != 3 {
				t.Errorf("loaded under old topics: %+v", *a)
			}
			stored, err := events.SelectEvents(ctx, id, &es.Query{GT: 2})
			if err != nil || len(stored) != 1 || stored[0].Topic != "bank:Deposited" {
				t.Errorf("written: %v, %v; want one event under bank:Deposited", stored, err)
			}
		})
	}
}

// failingSnapshots refuses every snapshot.
type failingSnapshots struct{ es.AggregateRecorder }

func (failingSnapshots) InsertEvents(context.Context, []es.StoredEvent, *es.Tracking) ([]int64, error) {
	return nil, &es.DatabaseError{Kind: es.ErrOperational, Op: "insert snapshot", Err: errors.New("disk full")}
}

func TestRepositorySnapshotFailureIsNotFatal(t *testing.T) {
	ctx := context.Background()
	var failed []error
	repo := newAccounts(t, es.NewMemoryRecorder(), failingSnapshots{es.NewMemoryRecorder()}, &es.RepositoryOptions{
		SnapshotEvery:   2,
		OnSnapshotError: func(_ context.Context, _ uuid.UUID, err error) { failed = append(failed, err) },
	}, nil)
	a, _ := openAccount("Ann")
	a.Deposit(1)
	if _, err := repo.Save(ctx, a); err != nil {
		t.Fatalf("Save failed with its snapshot: %v", err)
	}
	if len(failed) != 1 || !strings.Contains(failed[0].Error(), "disk full") {
		t.Errorf("snapshot errors: %v", failed)
	}
	if got, err := repo.Load(ctx, a.ID()); err != nil || got.Balance != 1 {
		t.Errorf("Load: %v", err)
	}
	if err := repo.TakeSnapshot(ctx, a); err == nil {
		t.Error("TakeSnapshot: no error")
	}
	a.Deposit(1)
	if err := repo.TakeSnapshot(ctx, a); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("TakeSnapshot with pending events: %v", err)
	}
}

// flaky fails the first fails calls of InsertEvents with a transient
// error.
type flaky struct {
	es.ProcessRecorder
	fails atomic.Int64
}

func (f *flaky) InsertEvents(ctx context.Context, evs []es.StoredEvent, tr *es.Tracking) ([]int64, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, &es.DatabaseError{Kind: es.ErrOperational, Op: "insert events", Err: errors.New("connection reset"), Transient: true}
	}
	return f.ProcessRecorder.InsertEvents(ctx, evs, tr)
}

func TestRepositoryRetryTransient(t *testing.T) {
	ctx := context.Background()
	rec := &flaky{ProcessRecorder: es.NewMemoryRecorder()}
	off := newAccounts(t, rec, nil, nil, nil)
	var retried []int
	on := newAccounts(t, rec, nil, &es.RepositoryOptions{RetryTransient: true, Attempts: 3, OnRetry: func(_ error, n int) { retried = append(retried, n) }}, nil)

	a, _ := openAccount("Ann")
	rec.fails.Store(1)
	if _, err := off.Save(ctx, a); !es.IsRetryable(err) || len(a.PendingEvents()) != 1 {
		t.Fatalf("Save without RetryTransient: %v, %d pending", err, len(a.PendingEvents()))
	}
	rec.fails.Store(2)
	if _, err := on.Save(ctx, a); err != nil || len(retried) != 2 || len(a.PendingEvents()) != 0 {
		t.Fatalf("Save with RetryTransient: %v, retries %v", err, retried)
	}
	rec.fails.Store(3)
	_, err := on.Update(ctx, a.ID(), func(a *rAccount) error { return a.Deposit(1) })
	if !es.IsRetryable(err) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("Update after 3 transient errors: %v", err)
	}
	rec.fails.Store(1)
	if _, err := on.Update(ctx, a.ID(), func(a *rAccount) error { return a.Deposit(1) }); err != nil {
		t.Errorf("Update after 1 transient error: %v", err)
	}
	// A command's own error is returned as it is, and not retried.
	runs := 0
	if _, err := on.Update(ctx, a.ID(), func(a *rAccount) error { runs++; return a.Withdraw(100) }); err != errNoFunds || runs != 1 {
		t.Errorf("command error: %v after %d runs", err, runs)
	}
	// A context that ends while waiting stops the retries.
	cctx, cancel := context.WithCancel(ctx)
	slow := newAccounts(t, rec, nil, &es.RepositoryOptions{RetryTransient: true, Attempts: -1, RetryDelay: time.Hour, OnRetry: func(error, int) { cancel() }}, nil)
	rec.fails.Store(1)
	if _, err := slow.Update(cctx, a.ID(), func(a *rAccount) error { return a.Deposit(1) }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while waiting: %v", err)
	}
}

// TestRepositorySaveWithTracking: the tracking record is written with the
// events; a notification processed already writes nothing.
func TestRepositorySaveWithTracking(t *testing.T) {
	ctx := context.Background()
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			events, _ := b.open(t)
			repo := newAccounts(t, events, nil, nil, nil)
			a, _ := openAccount("Ann")
			upstream := es.Tracking{ApplicationName: "Payments", NotificationID: 7}
			if _, err := repo.SaveWithTracking(ctx, upstream, a); err != nil {
				t.Fatal(err)
			}
			if max, err := events.MaxTrackingID(ctx, "Payments"); err != nil || max != 7 {
				t.Errorf("MaxTrackingID %d, %v", max, err)
			}
			a.Deposit(1)
			if _, err := repo.SaveWithTracking(ctx, upstream, a); !errors.Is(err, es.ErrIntegrity) || len(a.PendingEvents()) != 1 {
				t.Errorf("again: %v, %d pending", err, len(a.PendingEvents()))
			}
			if got, _ := repo.Load(ctx, a.ID()); got.Version() != 1 {
				t.Errorf("version %d after a refused tracking record, want 1", got.Version())
			}
		})
	}
}

// TestRepositoryUnreadableSnapshotIsSkipped: a snapshot whose state has a
// class version this program cannot read (written by a newer version of
// the application during a rolling deploy, or older with no upcaster) is
// a cache that does not fit: Load replays the events instead.
func TestRepositoryUnreadableSnapshotIsSkipped(t *testing.T) {
	ctx := context.Background()
	events, snaps := es.NewMemoryRecorder(), es.NewMemoryRecorder()
	repo := newAccounts(t, events, snaps, nil, nil)
	a, _ := openAccount("Ann")
	for range 3 {
		if err := a.Deposit(10); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := repo.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	state := `{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T12:00:00+00:00"},"topic":"bank:Account",` +
		`"state":{"owner":"Zed","balance":999,"class_version":99}}`
	if _, err := snaps.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: a.ID(), OriginatorVersion: 2, Topic: es.SnapshotTopic, State: []byte(state)}}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := repo.Load(ctx, a.ID())
	if err != nil {
		t.Fatalf("Load with a snapshot of class version 99: %v; want the aggregate replayed from its events", err)
	}
	if d := sameAccount(got, a); d != "" {
		t.Fatalf("loaded: %s", d)
	}
}
