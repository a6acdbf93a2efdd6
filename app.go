package eventsourcing

// This file holds App, an application's persistence opened in one call
// from its configuration: store, mapper, event store, snapshot store and
// repository, sharing one set of mapper options.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
)

// AppOptions configures [OpenApp] and [OpenAppConfig]. The zero value (and
// nil) opens the configured store with no event types registered (register
// them with App.Mapper), the aggregate's default topic, and the default
// [RepositoryOptions].
type AppOptions struct {
	// Defaults holds values for configuration variables the environment
	// does not set, by their names without the application prefix
	// (SQLITE_DBNAME, not BANKACCOUNTS_SQLITE_DBNAME): a variable set in
	// the environment, with the prefix or without, wins. OpenApp only.
	Defaults map[string]string
	// Topics registers the application's event types: each value's type
	// (only its type matters) under its key, as [Mapper.RegisterTopic]
	// does. Give explicit topics: stored events keep their topic for ever,
	// whatever happens to the Go package's import path. Register aliases,
	// or types under their default topics, with App.Mapper.
	Topics map[string]Event
	// AggregateTopic names the aggregate type in snapshots; empty means
	// DefaultTopic of A.
	AggregateTopic string
	// Repository configures the repository. A SnapshotEvery above zero
	// turns snapshots on, as IS_SNAPSHOTTING_ENABLED does.
	Repository RepositoryOptions
	// Transcoder, if not nil, is the transcoder of events and snapshots
	// (with the application's transcodings registered); nil means a new
	// one, which App.Mapper.Transcoder returns.
	Transcoder *Transcoder
	// Cipher and Compressor, if not nil, replace the AES-GCM cipher and
	// the zlib compressor the configuration asks for (CIPHER_KEY,
	// COMPRESSOR_TOPIC): a cipher whose key is kept elsewhere, another
	// compressor. The store is checked against them when opened.
	Cipher     Cipher
	Compressor Compressor
	// PersonalData turns personal data on: the data keys of [Personal]
	// values are kept in a keys table of the application's database
	// (personal_keys on SQLite, <app>_personal_keys on PostgreSQL; in
	// memory for a memory store), created with the other tables unless
	// the configuration skips that, and wrapped with the application
	// cipher if there is one. App.Personal, Store.Personal and the
	// Personal fields of Events and Snapshots are then set.
	PersonalData bool
}

// App is an application's persistence, opened in one call by [OpenApp]:
// its store, a mapper of its events, an event store and a snapshot store
// made with the same [MapperOptions], and a [Repository] of aggregates of
// type A (a pointer to a struct embedding [Root]) on them. Snapshots are
// compressed and encrypted exactly when events are. Its Repository's
// methods (Load, Save, Update, ...) are the App's. Close it when done.
//
// Every part is the one the lower-level constructors make ([Open],
// [NewMapper], [NewEventStore], [NewSnapshotStore], [NewRepository]), for
// use with them: a [Runner] or a [Projection] following Events, a second
// repository on Events and MapperOptions. On SQLite and PostgreSQL,
// Store.Recorder is an *[SQLRecorder]: the [ProjectionStore] of a projection
// whose tables are in the application's database.
type App[A Aggregate] struct {
	*Repository[A]
	// Config is the configuration the App was opened with.
	Config *Config
	// Store is the opened store: its recorders, and its database.
	Store *Store
	// MapperOptions are the options of Mapper and of Snapshots' mapper:
	// make other mappers of the same store with them.
	MapperOptions *MapperOptions
	// Mapper maps the application's events; register event types,
	// aliases, upcasters and transcodings with it before first use. Its
	// Transcoder is the snapshots' too.
	Mapper *Mapper[Event]
	// Events is the event store of the application's events.
	Events *EventStore[Event]
	// Snapshots is the snapshot store of A, or nil when snapshots are
	// off: they are on when the configuration says so
	// (IS_SNAPSHOTTING_ENABLED, Config.Snapshotting) or
	// AppOptions.Repository.SnapshotEvery is above zero, and the
	// Repository then loads from them.
	Snapshots *SnapshotStore[A]
	// Personal holds the data keys of personal data (Forget, Renew), or
	// is nil unless AppOptions.PersonalData is set.
	Personal *PersonalKeys
}

// OpenApp opens the application name as its configuration says: it reads
// the configuration from the environment as [LoadConfig] does (with the
// variables of opts.Defaults where the environment sets none), then opens
// it as [OpenAppConfig] does. Configuration errors are *[ConfigError]s
// naming the variable.
func OpenApp[A Aggregate](ctx context.Context, name string, opts *AppOptions) (*App[A], error) {
	var defaults map[string]string
	if opts != nil {
		defaults = opts.Defaults
	}
	cfg, err := LoadConfig(name, EnvWithDefaults(defaults))
	if err != nil {
		return nil, err
	}
	return OpenAppConfig[A](ctx, cfg, opts)
}

// OpenAppConfig opens the application cfg configures: the store (as
// [Open] does, creating missing tables unless cfg.SkipCreateTable), the
// mapper options (cfg's, with opts.Cipher and opts.Compressor in their
// place if set), the mapper with opts.Topics registered, the event store,
// the snapshot store if snapshots are on, and the repository.
//
// The stored states are checked against the mapper options (see
// [CheckPipeline]): a store written with another cipher or compression is
// a *[PipelineError] naming the variable to set. A topic that cannot be
// registered, or repository options that [NewRepository] refuses, are
// errors wrapping [ErrProgramming]. On error nothing is left open.
func OpenAppConfig[A Aggregate](ctx context.Context, cfg *Config, opts *AppOptions) (*App[A], error) {
	var o AppOptions
	if opts != nil {
		o = *opts
	}
	if cfg == nil {
		return nil, fmt.Errorf("%w: OpenAppConfig: nil Config", ErrProgramming)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mo, err := cfg.MapperOptions()
	if err != nil {
		return nil, err
	}
	if o.Cipher != nil {
		mo.Cipher = o.Cipher
	}
	if o.Compressor != nil {
		mo.Compressor = o.Compressor
	}
	mo.Transcoder = o.Transcoder
	if mo.Transcoder == nil {
		mo.Transcoder = NewTranscoder() // one for events and snapshots
	}
	// Everything that needs no database is checked before it is opened.
	mapper := NewMapper[Event](mo)
	for _, topic := range slices.Sorted(maps.Keys(o.Topics)) {
		if err := mapper.RegisterTopic(topic, o.Topics[topic]); err != nil {
			return nil, fmt.Errorf("open application %s: %w", cfg.Name, err)
		}
	}
	aggregateTopic := o.AggregateTopic
	if aggregateTopic == "" {
		aggregateTopic = DefaultTopic(reflect.TypeFor[A]())
	}
	store, err := openConfigured(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	if o.PersonalData {
		if _, err := store.OpenPersonalKeys(ctx, cfg, mo.Cipher); err != nil {
			store.Close()
			return nil, err
		}
	}
	app, err := newApp[A](ctx, cfg, store, mo, mapper, aggregateTopic, &o.Repository)
	if err != nil {
		store.Close()
		return nil, err
	}
	return app, nil
}

// newApp wires an App on an opened store.
func newApp[A Aggregate](ctx context.Context, cfg *Config, store *Store, mo *MapperOptions, mapper *Mapper[Event], aggregateTopic string, ro *RepositoryOptions) (*App[A], error) {
	if err := store.checkPipeline(ctx, cfg, mo); err != nil {
		return nil, err
	}
	app := &App[A]{Config: cfg, Store: store, MapperOptions: mo, Mapper: mapper, Events: NewEventStore(mapper, store.Recorder), Personal: store.Personal}
	app.Events.Personal = store.Personal
	if cfg.Snapshotting || ro.SnapshotEvery > 0 {
		snaps, err := NewSnapshotStore[A](aggregateTopic, mo, store.Snapshots)
		if err != nil {
			return nil, err
		}
		snaps.Personal = store.Personal
		app.Snapshots = snaps
	}
	repo, err := NewRepository(app.Events, app.Snapshots, ro)
	if err != nil {
		return nil, fmt.Errorf("open application %s: %w", cfg.Name, err)
	}
	app.Repository = repo
	return app, nil
}

// Close closes the application's store.
func (a *App[A]) Close() error {
	if a == nil || a.Store == nil {
		return nil
	}
	return a.Store.Close()
}

// EnvWithDefaults returns a lookup function for [LoadConfig] that reads
// the environment (os.LookupEnv), and defaults for a variable the
// environment does not set. LoadConfig looks each variable up with the
// application name prefix first, then without; give defaults without the
// prefix, so that the environment wins under either name.
func EnvWithDefaults(defaults map[string]string) func(string) (string, bool) {
	return func(key string) (string, bool) {
		if v, ok := os.LookupEnv(key); ok {
			return v, true
		}
		v, ok := defaults[key]
		return v, ok
	}
}
