package eventsourcing_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// TestRepositorySnapshotsOnlyWrittenEvents: accounts saved concurrently,
// a snapshot after every save, while another session takes the events
// table's write lock again and again past a short lock timeout. Whatever
// failed, every save that returned nil is in the log, and no snapshot
// holds a version the log does not have or a state other than the log's
// replay at its version. (When group commit acknowledged calls it never
// wrote, Save cleared the account's pending events and snapshotted them.)
func TestRepositorySnapshotsOnlyWrittenEvents(t *testing.T) {
	const lockTimeout = 20 * time.Millisecond
	for _, b := range lockedBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			db, d, schema, lock := shortLock(t, b, lockTimeout)
			events := newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bank", LockTimeout: lockTimeout, Table: pgtestName("ev"), TrackingTable: pgtestName("tr")})
			snaps := newSQLSnapshotRecorder(t, db, d, schema, es.SQLOptions{AppName: "Bank", LockTimeout: lockTimeout, Table: pgtestName("snap")})
			repo := newAccounts(t, events, snaps, &es.RepositoryOptions{SnapshotEvery: 1, OnSnapshotError: func(context.Context, uuid.UUID, error) {}}, nil)

			stop := make(chan struct{})
			locker := make(chan struct{})
			go func() { // the lock, held 40 ms in every 50
				defer close(locker)
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					release := lock(events.EventsTable())
					time.Sleep(40 * time.Millisecond)
					release()
				}
			}()
			const accounts, duration = 8, 1500 * time.Millisecond
			start := time.Now()
			saves := make([]int, accounts)
			acked := make([]int64, accounts) // the highest version a nil Save gave
			failed := make([]int, accounts)
			ids := make([]uuid.UUID, accounts)
			var wg sync.WaitGroup
			for i := range accounts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a, _ := openAccount(fmt.Sprint("owner ", i))
					ids[i] = a.ID()
					for time.Since(start) < duration {
						saves[i]++
						_, err := repo.Save(ctx, a)
						if err == nil {
							acked[i] = a.Version()
						} else {
							failed[i]++
						}
						if err == nil {
						} else if acked[i] > 0 {
							// Start again from what is stored.
							if loaded, err := repo.Load(ctx, a.ID()); err == nil {
								a = loaded
							}
						} else {
							a, _ = openAccount(fmt.Sprint("owner ", i))
							ids[i] = a.ID()
						}
						if err := a.Deposit(1); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(stop)
			<-locker
			nfailed, nsaves := 0, 0
			for i, n := range failed {
				nfailed += n
				nsaves += saves[i]
			}
			if nfailed == 0 {
				t.Error("no save failed: the lock did not get in their way")
			}
			t.Logf("%d of %d saves failed", nfailed, nsaves)

			snapStore, err := es.NewSnapshotStore[*rAccount]("bank:Account", nil, snaps)
			if err != nil {
				t.Fatal(err)
			}
			store := es.NewEventStore(accountMapper(t), events)
			for i, id := range ids {
				evs, err := store.Get(ctx, id, nil)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(evs)) < acked[i] {
					t.Errorf("account %d: %d events stored, but a save of version %d returned nil", i, len(evs), acked[i])
				}
				snap, err := snapStore.Latest(ctx, id, 0)
				if err != nil || snap == nil {
					continue
				}
				v := snap.OriginatorVersion()
				if v > int64(len(evs)) {
					t.Errorf("account %d: snapshot at version %d, but the log has %d events", i, v, len(evs))
					continue
				}
				replay := &rAccount{}
				for _, e := range evs[:v] {
					replay.Apply(e)
				}
				if snap.State.Balance != replay.Balance || snap.State.Moves != replay.Moves {
					t.Errorf("account %d: snapshot at version %d has balance %d, moves %d; the log's replay %d, %d",
						i, v, snap.State.Balance, snap.State.Moves, replay.Balance, replay.Moves)
				}
			}
		})
	}
}
