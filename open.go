package eventsourcing

// Open: a Config to a running Store (recorders, mapper options, tables).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Store is an application's persistence as a configuration describes it:
// a process recorder for its events and tracking records, and an aggregate
// recorder for its snapshots.
type Store struct {
	// Recorder records the application's events, notification log and
	// tracking records.
	Recorder ProcessRecorder
	// Snapshots records snapshots of its aggregates.
	Snapshots AggregateRecorder
	// DB is the database, or nil in memory.
	DB *sql.DB
	// Personal holds the data keys of personal data, or is nil when the
	// feature is off: OpenApp sets it when AppOptions.PersonalData is
	// set; [Store.OpenPersonalKeys] sets it on a store opened otherwise.
	Personal *PersonalKeys
}

// Open opens the store a configuration describes: in memory, or in the
// database of the configured persistence module, whose dialect package must
// be imported (an error wrapping ErrProgramming says which import is
// missing). Unless cfg.SkipCreateTable, missing tables are created. On
// error nothing is left open.
//
// Open checks that the store was written as cfg says to read it (see
// [CheckPipeline]): a store whose states are encrypted or compressed
// otherwise than cfg.CipherKey and cfg.Compress say is a *[PipelineError]
// naming the variable to set (CIPHER_KEY, COMPRESSOR_TOPIC), rather than a
// store no reader can read, or one that mixes two configurations. A
// program with a Cipher or Compressor of its own, which the configuration
// does not describe, opens its store with [OpenAppConfig] and those in
// [AppOptions], which checks against them.
//
// As with the Python library, each application has a database of its own
// on SQLite: the tables have fixed names, so two applications opened on one
// SQLite file would share one notification log.
func Open(ctx context.Context, cfg *Config) (*Store, error) {
	return openConfigured(ctx, cfg, true)
}

// openConfigured is Open, checking the stored states against cfg's mapper
// options if checkPipeline.
func openConfigured(ctx context.Context, cfg *Config, checkPipeline bool) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Module() == ModulePostgres && cfg.Postgres.ReadHosts != "" {
		// Open would leave the standbys unused, and the caller expecting
		// reads on them: say so rather than ignore the setting.
		return nil, fmt.Errorf("%w: %s is set: open the store with OpenReplicated to read from the standbys", ErrProgramming, EnvPostgresReadHosts)
	}
	return openStoreChecked(ctx, cfg, checkPipeline)
}

// openStore is Open without the check for read hosts.
func openStore(ctx context.Context, cfg *Config) (*Store, error) {
	return openStoreChecked(ctx, cfg, true)
}

// openStoreChecked is openStore, checking the stored states against cfg's
// mapper options if checkPipeline.
func openStoreChecked(ctx context.Context, cfg *Config, checkPipeline bool) (*Store, error) {
	module := cfg.Module()
	if module == ModuleMemory {
		return &Store{Recorder: NewMemoryRecorder(), Snapshots: NewMemoryRecorder()}, nil
	}
	open, err := lookupOpener(module)
	if err != nil {
		return nil, err
	}
	db, d, err := open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	opts := SQLOptions{AppName: cfg.Name, MultiRowTracking: cfg.MultiRowTracking}
	if module == ModulePostgres {
		opts.Schema = cfg.Postgres.Schema
		opts.LockTimeout = cfg.Postgres.LockTimeout
	}
	events, err := NewSQLRecorder(ctx, db, d, &opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	snapshots, err := NewSQLSnapshotRecorder(ctx, db, d, &opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	if !cfg.SkipCreateTable {
		if err := errors.Join(events.CreateTables(ctx), snapshots.CreateTables(ctx)); err != nil {
			db.Close()
			return nil, err
		}
	}
	st := &Store{Recorder: events, Snapshots: snapshots, DB: db}
	if checkPipeline {
		opts, err := cfg.MapperOptions()
		if err == nil {
			err = st.checkPipeline(ctx, cfg, opts)
		}
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	return st, nil
}

// checkPipeline is CheckPipeline on the store's events, except that a
// store opened with SkipCreateTable whose table is missing passes: its
// first use reports it, as before.
func (s *Store) checkPipeline(ctx context.Context, cfg *Config, opts *MapperOptions) error {
	err := CheckPipeline(ctx, s.Recorder, opts)
	var pe *PipelineError
	if err != nil && !errors.As(err, &pe) && cfg.SkipCreateTable && errors.Is(err, ErrProgramming) {
		return nil
	}
	return err
}

// Close closes the store's database, if it has one.
func (s *Store) Close() error {
	if s.DB == nil {
		return nil
	}
	return s.DB.Close()
}
