package eventsourcing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// tsReading is one reading of a sensor, positioned by its time.
type tsReading struct {
	es.DomainEvent
	Celsius float64 `json:"celsius"`
}

// TestTimePositionedSequence records a sensor's readings positioned by
// time (version = Unix nanoseconds) on every recorder, and reads them
// back by time range: oldest first, newest first with a limit, the bounds
// [from, until), nanoseconds apart; a reading at an instant already
// recorded is ErrIntegrity and its batch writes nothing.
func TestTimePositionedSequence(t *testing.T) {
	recorders := []struct {
		name string
		open func(t *testing.T) es.AggregateRecorder
	}{{"Memory", func(*testing.T) es.AggregateRecorder { return es.NewMemoryRecorder() }}}
	for _, b := range backends {
		recorders = append(recorders, struct {
			name string
			open func(t *testing.T) es.AggregateRecorder
		}{b.name, func(t *testing.T) es.AggregateRecorder {
			db, d, schema := b.open(t)
			return newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Sensors", Table: pgtestName("readings")})
		}})
	}
	for _, rec := range recorders {
		t.Run(rec.name, func(t *testing.T) {
			ctx := context.Background()
			m := es.NewMapper[*tsReading](nil)
			if err := m.Register(&tsReading{}); err != nil {
				t.Fatal(err)
			}
			store := es.NewEventStore(m, rec.open(t))
			store.PageSize = 2 // pages follow positions too
			sensor := uuid.New()
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			at := []time.Time{t0, t0.Add(time.Nanosecond), t0.Add(time.Millisecond), t0.Add(time.Minute), t0.Add(time.Hour)}
			reading := func(t time.Time, c float64) *tsReading {
				return &tsReading{DomainEvent: es.DomainEventAt(sensor, t), Celsius: c}
			}
			// Out of time order, in two batches: positions order them.
			if _, err := store.Put(ctx, reading(at[3], 3), reading(at[0], 0)); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Put(ctx, reading(at[4], 4), reading(at[1], 1), reading(at[2], 2)); err != nil {
				t.Fatal(err)
			}
			celsius := func(q *es.Query) []float64 {
				t.Helper()
				got, err := store.Get(ctx, sensor, q)
				if err != nil {
					t.Fatal(err)
				}
				cs := make([]float64, len(got))
				for i, r := range got {
					cs[i] = r.Celsius
					if want := es.DomainEventAt(sensor, at[int(r.Celsius)]); r.DomainEvent != want {
						t.Errorf("reading %v read back as %+v, want %+v", r.Celsius, r.DomainEvent, want)
					}
					if !es.VersionTime(r.Version).Equal(at[int(r.Celsius)]) {
						t.Errorf("reading %v at %v, want %v", r.Celsius, es.VersionTime(r.Version), at[int(r.Celsius)])
					}
				}
				return cs
			}
			latest := es.TimeRange(time.Time{}, time.Time{})
			latest.Desc, latest.Limit = true, 1
			beforeMinute := es.TimeRange(time.Time{}, at[3])
			beforeMinute.Desc, beforeMinute.Limit = true, 1
			for name, tt := range map[string]struct {
				q    *es.Query
				want []float64
			}{
				"all":                        {es.TimeRange(time.Time{}, time.Time{}), []float64{0, 1, 2, 3, 4}},
				"from t0+1ns until t0+1h":    {es.TimeRange(at[1], at[4]), []float64{1, 2, 3}},
				"one nanosecond wide":        {es.TimeRange(at[1], at[1].Add(time.Nanosecond)), []float64{1}},
				"empty range":                {es.TimeRange(at[2].Add(time.Nanosecond), at[3]), []float64{}},
				"from t0+1ms":                {es.TimeRange(at[2], time.Time{}), []float64{2, 3, 4}},
				"latest":                     {latest, []float64{4}},
				"last before t0+1m":          {beforeMinute, []float64{2}},
				"all, newest first, three":   {&es.Query{Desc: true, Limit: 3}, []float64{4, 3, 2}},
				"until t0+1ms, newest first": {func() *es.Query { q := es.TimeRange(time.Time{}, at[2]); q.Desc = true; return q }(), []float64{1, 0}},
			} {
				if got := celsius(tt.q); fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("%s: %v, want %v", name, got, tt.want)
				}
			}
			// Two readings at one instant: the second is an integrity
			// error, and its batch (with a new instant) writes nothing.
			_, err := store.Put(ctx, reading(at[4].Add(time.Second), 5), reading(at[2], 9))
			if !errors.Is(err, es.ErrIntegrity) {
				t.Fatalf("a second reading at %v: %v, want ErrIntegrity", at[2], err)
			}
			if got := celsius(nil); fmt.Sprint(got) != fmt.Sprint([]float64{0, 1, 2, 3, 4}) {
				t.Errorf("after the failed batch: %v", got)
			}
		})
	}
}

// ExampleTimeRange records a sensor's readings positioned by their times
// and reads those of one range, then the latest.
func ExampleTimeRange() {
	ctx := context.Background()
	m := es.NewMapper[*tsReading](nil)
	if err := m.Register(&tsReading{}); err != nil {
		panic(err)
	}
	store := es.NewEventStore(m, es.NewMemoryRecorder())
	sensor := uuid.New()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, c := range []float64{19.5, 20, 20.5, 21} {
		at := t0.Add(time.Duration(i) * time.Minute)
		if _, err := store.Put(ctx, &tsReading{DomainEvent: es.DomainEventAt(sensor, at), Celsius: c}); err != nil {
			panic(err)
		}
	}
	_, err := store.Put(ctx, &tsReading{DomainEvent: es.DomainEventAt(sensor, t0), Celsius: 30})
	fmt.Println("same instant again:", errors.Is(err, es.ErrIntegrity))

	readings, err := store.Get(ctx, sensor, es.TimeRange(t0.Add(time.Minute), t0.Add(3*time.Minute)))
	if err != nil {
		panic(err)
	}
	for _, r := range readings {
		fmt.Println(es.VersionTime(r.Version).Format(time.TimeOnly), r.Celsius)
	}
	q := es.TimeRange(time.Time{}, time.Time{})
	q.Desc, q.Limit = true, 1
	latest, err := store.Get(ctx, sensor, q)
	if err != nil {
		panic(err)
	}
	fmt.Println("latest:", latest[0].Timestamp.Format(time.TimeOnly), latest[0].Celsius)
	// Output:
	// same instant again: true
	// 12:01:00 20
	// 12:02:00 20.5
	// latest: 12:03:00 21
}
