// Package eventsourcing is the persistence side of event-sourced
// applications: typed domain events go in, and come back out typed, in
// order, with nothing lost. It stores them in memory, SQLite or PostgreSQL,
// in the same tables and with the same bytes as the Python eventsourcing
// library, so Go and Python applications can share a store.
//
// # Events
//
// A domain event is a struct that embeds [DomainEvent] (originator ID,
// version and timestamp) and adds its own fields; JSON tags name them in the
// stored state:
//
//	type Deposited struct {
//		eventsourcing.DomainEvent
//		Amount int64 `json:"amount"`
//	}
//
// # Mapping
//
// A [Mapper] turns events into [StoredEvent] values and back. Each event type
// is registered under a topic, by default "import/path:TypeName", or any
// topic given explicitly (Python's "module:Class.Event" to share a store).
// The state is JSON written by a [Transcoder], byte for byte as Python writes
// it; values of types JSON cannot express are written through registered
// [Transcoding] values, such as the built-in uuid_hex, datetime_iso and
// decimal_str. The state may then be compressed ([ZlibCompressor]) and
// encrypted ([AESCipher], AES-GCM).
//
// # Recording
//
// Recorders store stored events. An [AggregateRecorder] keeps each
// aggregate's events as a sequence of versions, refusing a version twice
// ([ErrIntegrity]: optimistic concurrency). An [ApplicationRecorder] also
// numbers every event in one total order, the notification log, which
// readers can follow without ever missing an event. A [ProcessRecorder] also
// records, atomically with new events, which upstream notification they were
// made from ([Tracking]), so that a downstream processor handles each
// notification exactly once.
//
// [MemoryRecorder] keeps everything in memory; [SQLRecorder] uses any
// database/sql database for which a [Dialect] exists: the packages
// dialect/sqlite and dialect/postgres.
//
// # Event stores
//
// An [EventStore] puts typed events through a mapper into a recorder and gets
// them back typed:
//
//	mapper := eventsourcing.NewMapper[eventsourcing.Event](nil)
//	mapper.Register(&Deposited{})
//	store := eventsourcing.NewEventStore(mapper, eventsourcing.NewMemoryRecorder())
//	store.Put(ctx, &Deposited{DomainEvent: eventsourcing.NewDomainEvent(id, 1), Amount: 100})
//	events, err := store.Get(ctx, id, nil)
//
// # Aggregates and repositories
//
// An aggregate embeds [Root] and applies its events; its commands [Trigger]
// new ones. A [Repository] loads aggregates (from the latest snapshot and
// the events after it), saves the pending events of several aggregates in
// one transaction, and updates one with a command, retrying it when another
// writer saved first ([Repository.Update]).
//
// # Following the log
//
// [Subscribe] (and [EventStore.Subscribe], typed) delivers notifications
// after a given ID, catching up and then following new commits in order,
// each exactly once; a [Runner] processes an upstream application's events
// into a downstream one, exactly once, resuming where it stopped;
// [WaitTracking] waits until a downstream application has processed a
// notification.
//
// # Errors
//
// Errors match the package's sentinel errors with [errors.Is]
// ([ErrIntegrity], [ErrOperational], [ErrUnknownTopic], [ErrDecrypt], ...)
// and unwrap to their cause, such as the database driver's error.
package eventsourcing
