package eventsourcing_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
)

// repoBenchStore is an events and a snapshots recorder of one backend.
type repoBenchStore struct {
	name          string
	events, snaps es.AggregateRecorder
}

// repoBenchStores returns stores on memory, an SQLite file, and Postgres
// when EVENTSOURCING_POSTGRES_DSN is set.
func repoBenchStores(b *testing.B) []repoBenchStore {
	stores := []repoBenchStore{{"memory", es.NewMemoryRecorder(), es.NewMemoryRecorder()}}
	for _, bd := range benchDBs(b) {
		stores = append(stores, repoBenchStore{bd.name, bd.recorder(b, es.SQLOptions{}), bd.recorder(b, es.SQLOptions{})})
	}
	return stores
}

// BenchmarkRepositoryLoad loads an aggregate of 10,000 events: replaying
// every event, and from a snapshot taken every 100 events (so at most 99
// events after it).
func BenchmarkRepositoryLoad(b *testing.B) {
	ctx := context.Background()
	const events, every = 10_000, 100
	for _, s := range repoBenchStores(b) {
		snapshotted := newAccounts(b, s.events, s.snaps, &es.RepositoryOptions{SnapshotEvery: every}, nil)
		a, _ := openAccount("bench")
		for a.Version() < events {
			for range min(500, events-a.Version()) {
				a.Deposit(1)
			}
			if _, err := snapshotted.Save(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
		// One more event, so that the snapshotted load reads a few after
		// its snapshot.
		for range 50 {
			a.Deposit(1)
		}
		if _, err := snapshotted.Save(ctx, a); err != nil {
			b.Fatal(err)
		}
		for _, mode := range []struct {
			name string
			repo *es.Repository[*rAccount]
		}{
			{"replay", newAccounts(b, s.events, nil, nil, nil)},
			{"snapshot", snapshotted},
		} {
			b.Run(fmt.Sprintf("%s/%s", s.name, mode.name), func(b *testing.B) {
				for b.Loop() {
					got, err := mode.repo.Load(ctx, a.ID())
					if err != nil || got.Version() != a.Version() {
						b.Fatal(got.Version(), err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "loads/s")
			})
		}
	}
}

// BenchmarkRepositoryUpdate runs Update (load, deposit, save) on one
// aggregate from 1 and 8 goroutines at once, snapshotting every 100 events.
// conflicts/update is how often a save met ErrIntegrity and was retried.
func BenchmarkRepositoryUpdate(b *testing.B) {
	ctx := context.Background()
	for _, s := range repoBenchStores(b) {
		for _, g := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/g%d", s.name, g), func(b *testing.B) {
				var conflicts atomic.Int64
				repo := newAccounts(b, s.events, s.snaps, &es.RepositoryOptions{
					SnapshotEvery: 100,
					Attempts:      -1,
					OnRetry:       func(error, int) { conflicts.Add(1) },
				}, nil)
				a, _ := openAccount("bench")
				if _, err := repo.Save(ctx, a); err != nil {
					b.Fatal(err)
				}
				id := a.ID()
				deposit := func(a *rAccount) error { return a.Deposit(1) }
				b.ResetTimer()
				if g == 1 {
					for b.Loop() {
						if _, err := repo.Update(ctx, id, deposit); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(max(1, g/runtime.GOMAXPROCS(0)))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := repo.Update(ctx, id, deposit); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
				b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/update")
			})
		}
	}
}
