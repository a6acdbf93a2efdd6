package eventsourcing_test

import (
	"context"
	"fmt"
	"log"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
)

// ExampleReplicatedRecorder reads from a hot standby and writes to the
// primary; a ReadYourWrites context makes the read after the write wait
// for the standby to replay it. (Not run: it needs a primary and a
// standby.)
func ExampleReplicatedRecorder() {
	ctx := context.Background()
	primaryDB, err := postgres.Open(ctx, "postgres://app@db-primary/bank")
	if err != nil {
		log.Fatal(err)
	}
	standbyDB, err := postgres.Open(ctx, "postgres://app@db-standby-1/bank")
	if err != nil {
		log.Fatal(err)
	}
	primary, err := es.NewSQLRecorder(ctx, primaryDB, postgres.Dialect{}, &es.SQLOptions{AppName: "Bank"})
	if err != nil {
		log.Fatal(err)
	}
	recorder, err := es.NewReplicatedRecorder(ctx, primary,
		[]es.Standby{{Name: "db-standby-1", DB: standbyDB}}, &es.ReplicaOptions{MaxLag: es.DefaultMaxReplicaLag})
	if err != nil {
		log.Fatal(err) // ErrProgramming: the primary is a standby, or a standby is not one
	}
	defer recorder.Close()

	mapper := es.NewMapper[*upEvent](nil)
	if err := mapper.Register(&upEvent{}); err != nil {
		log.Fatal(err)
	}
	store := es.NewEventStore(mapper, recorder)

	// One command: write, then read what was written, from the standby.
	cmd := es.ReadYourWrites(ctx)
	id := uuid.New()
	if _, err := store.Put(cmd, &upEvent{DomainEvent: es.NewDomainEvent(id, 1), N: 1}); err != nil {
		log.Fatal(err)
	}
	events, err := store.Get(cmd, id, nil) // waits until the standby has replayed the Put
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(events))

	// Across processes: hand the position on, and read after it elsewhere.
	pos, err := recorder.Position(ctx)
	if err != nil {
		log.Fatal(err)
	}
	token := pos.String() // "16/B374D848", in a response header, say
	p, _ := es.ParseLSN(token)
	events, _ = store.Get(es.ReadAfter(ctx, p), id, nil)
	fmt.Println(len(events))

	for _, s := range recorder.Standbys() {
		fmt.Println(s.Name, s.Usable, s.Lag)
	}
}
