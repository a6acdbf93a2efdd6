package main

// This file opens the store a command reads: its configuration (the
// environment as LoadConfig reads it, overridden by flags), its database,
// its tables and their layout.

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// storeFlags are the flags every command takes to name its store.
type storeFlags struct {
	app    string
	db     string
	schema string
	env    envFlag
	json   bool
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.app, "app", "", "the application `NAME`: prefixes variables (NAME_SQLITE_DBNAME) and names PostgreSQL tables (name_events)")
	fs.StringVar(&f.db, "db", "", "the store: a postgres:// `URL` or an SQLite file path (overrides PERSISTENCE_MODULE and its connection variables)")
	fs.StringVar(&f.schema, "schema", "", "the PostgreSQL `schema` of the tables (overrides POSTGRES_SCHEMA)")
	fs.Var(&f.env, "e", "set a configuration variable, `NAME=VALUE` (repeatable), over the environment")
	fs.BoolVar(&f.json, "json", false, "print JSON lines")
}

// envFlag collects -e NAME=VALUE settings.
type envFlag map[string]string

func (e *envFlag) String() string {
	var keys []string
	for k := range *e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (e *envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, not %q", s)
	}
	if *e == nil {
		*e = envFlag{}
	}
	(*e)[k] = v
	return nil
}

// parseArgs parses args with fs, allowing flags after positional
// arguments (events ID --after 3), and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlagSet returns a flag set for a command whose errors are usage
// errors, printed once by main.
func newFlagSet(c *cli, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: eventsourcing %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// flagError turns a flag parsing error into a usage error (or nil for -h).
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return &usageError{err.Error()}
}

// isPostgresURL reports whether s names a PostgreSQL database.
func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// postgresVariables returns the variables a postgres:// URL stands for.
// The password, if the URL has none, is POSTGRES_PASSWORD's (or empty).
func postgresVariables(raw string) (map[string]string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL URL: %v (want postgres://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=...)", err)
	}
	vars := map[string]string{
		es.EnvPersistenceModule: es.ModulePostgres,
		es.EnvPostgresHost:      u.Hostname(),
		es.EnvPostgresPort:      u.Port(),
		es.EnvPostgresDBName:    strings.TrimPrefix(u.Path, "/"),
		es.EnvPostgresUser:      u.User.Username(),
	}
	if vars[es.EnvPostgresHost] == "" {
		vars[es.EnvPostgresHost] = "localhost"
	}
	if p, ok := u.User.Password(); ok {
		vars[es.EnvPostgresPassword] = p
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "sslmode":
			vars["POSTGRES_SSLMODE"] = v
		case "sslrootcert":
			vars["POSTGRES_SSLROOTCERT"] = v
		case "connect_timeout":
			vars[es.EnvPostgresConnectTimeout] = v
		default:
			return nil, fmt.Errorf("PostgreSQL URL: parameter %q is not supported (sslmode, sslrootcert and connect_timeout are; set others with -e, such as -e POSTGRES_LOCK_TIMEOUT=5)", k)
		}
	}
	if vars[es.EnvPostgresUser] == "" {
		return nil, fmt.Errorf("PostgreSQL URL %q names no user: write postgres://USER@HOST/DBNAME", u.Redacted())
	}
	if vars[es.EnvPostgresDBName] == "" {
		vars[es.EnvPostgresDBName] = vars[es.EnvPostgresUser] // libpq's default
	}
	return vars, nil
}

// lookup returns the variable lookup of a command: the flags' values
// first (under the name LoadConfig asks for, or the name without the
// application's prefix), then the environment.
func (f *storeFlags) lookup(c *cli) (func(string) (string, bool), error) {
	over := map[string]string{}
	switch {
	case f.db == "":
	case isPostgresURL(f.db):
		vars, err := postgresVariables(f.db)
		if err != nil {
			return nil, &usageError{"--db: " + err.Error()}
		}
		for k, v := range vars {
			over[k] = v
		}
		if _, ok := vars[es.EnvPostgresPassword]; !ok {
			if _, found := c.lookup(es.EnvPostgresPassword); !found {
				over[es.EnvPostgresPassword] = ""
			}
		}
	default:
		over[es.EnvPersistenceModule] = es.ModuleSQLite
		over[es.EnvSQLiteDBName] = f.db
	}
	if f.schema != "" {
		over[es.EnvPostgresSchema] = f.schema
	}
	for k, v := range f.env {
		over[k] = v
	}
	prefix := strings.ToUpper(f.app) + "_"
	return func(k string) (string, bool) {
		if v, ok := over[k]; ok {
			return v, true
		}
		if bare, ok := strings.CutPrefix(k, prefix); ok {
			if v, ok := over[bare]; ok {
				return v, true
			}
		}
		return c.lookup(k)
	}, nil
}

// store is an opened store, read with database/sql and the library's SQL
// recorders.
type store struct {
	cfg    *es.Config
	module string
	// where says which database: an SQLite file, a PostgreSQL host and
	// database.
	where string
	path  string // the SQLite file
	db    *sql.DB
	d     es.Dialect

	events, snapshots, tracking                   es.Table
	eventsExists, snapshotsExists, trackingExists bool
	// keys is the personal data keys table (see keys.go), as the library
	// names it for the application.
	keys       es.Table
	keysExists bool
	// multiRow is the tracking table's layout (as found; as configured if
	// the table does not exist).
	multiRow bool

	rec   *es.SQLRecorder         // nil if the events table does not exist
	snaps *es.SQLSnapshotRecorder // nil if the snapshots table does not exist
	dec   *stateDecoder
}

// openStore opens the store the flags and environment configure, for
// reading: it creates nothing (an SQLite file is opened read-only).
func openStore(ctx context.Context, c *cli, f *storeFlags) (*store, error) {
	if f.app == "" {
		return nil, usagef("--app NAME is required: the application name, as the application gives it to LoadConfig (it prefixes variables such as NAME_SQLITE_DBNAME and names the PostgreSQL tables)")
	}
	lookup, err := f.lookup(c)
	if err != nil {
		return nil, err
	}
	cfg, err := es.LoadConfig(f.app, lookup)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the variable, or override it with -e NAME=VALUE)", err)
	}
	cfg.SkipCreateTable = true
	s := &store{cfg: cfg, module: cfg.Module()}
	switch s.module {
	case es.ModuleSQLite:
		name := cfg.SQLite.DBName
		if name == ":memory:" {
			return nil, fmt.Errorf("SQLITE_DBNAME is :memory:, a database private to one process: give the application's file with --db PATH")
		}
		if _, err := os.Stat(name); err != nil {
			return nil, fmt.Errorf("SQLite database %q: %w (check SQLITE_DBNAME, or --db PATH)", name, err)
		}
		s.where, s.path = "SQLite file "+name, name
		s.d = sqlite.Dialect{}
		if s.db, err = openSQLiteReadOnly(name, cfg.SQLite.LockTimeout); err != nil {
			return nil, err
		}
	case es.ModulePostgres:
		p := cfg.Postgres
		s.where = fmt.Sprintf("PostgreSQL database %s on %s", p.DBName, p.Host)
		if p.Port != 0 {
			s.where = fmt.Sprintf("PostgreSQL database %s on %s:%d", p.DBName, p.Host, p.Port)
		}
		if p.Schema != "" {
			s.where += ", schema " + p.Schema
		}
		s.d = postgres.Dialect{}
		if s.db, err = postgres.OpenConfig(ctx, &cfg.Postgres); err != nil {
			return nil, fmt.Errorf("%w (check POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DBNAME, or --db URL)", err)
		}
	default:
		return nil, fmt.Errorf("PERSISTENCE_MODULE is %q: a store in memory lives in its process only; set PERSISTENCE_MODULE=sqlite and SQLITE_DBNAME, or PERSISTENCE_MODULE=postgres and POSTGRES_*, or give --db URL|PATH", s.module)
	}
	if err := s.openTables(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	if s.dec, err = newStateDecoder(cfg); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// openSQLiteReadOnly opens an SQLite file read-only, with the library's
// busy timeout.
func openSQLiteReadOnly(name string, lockTimeout time.Duration) (*sql.DB, error) {
	if lockTimeout <= 0 {
		lockTimeout = sqlite.DefaultLockTimeout
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", fmt.Sprint(lockTimeout.Milliseconds()))
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: name}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open SQLite file %q: %w", name, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open SQLite file %q: %w", name, err)
	}
	return db, nil
}

// openTables finds the store's tables and their layout, and opens the
// library's recorders on those that exist.
func (s *store) openTables(ctx context.Context) error {
	events, snapshots, tracking := s.d.DefaultTables(s.cfg.Name)
	schema := s.cfg.Postgres.Schema
	s.events, s.snapshots, s.tracking = es.Table{Schema: schema, Name: events}, es.Table{Schema: schema, Name: snapshots}, es.Table{Schema: schema, Name: tracking}
	var err error
	if s.eventsExists, err = tableExists(ctx, s.db, s.d, s.events, true); err != nil {
		return err
	}
	if s.snapshotsExists, err = tableExists(ctx, s.db, s.d, s.snapshots, false); err != nil {
		return err
	}
	n, err := trackingKeyColumns(ctx, s.db, s.d, s.tracking)
	if err != nil {
		return err
	}
	s.trackingExists = n > 0
	s.multiRow = n == 2 || (n == 0 && s.cfg.MultiRowTracking)
	if s.keys, _, err = keysTableOf(s.db, s.d, s.cfg.Name, schema); err != nil {
		return err
	}
	if s.keysExists, err = keysTableExists(ctx, s.db, s.d, s.keys); err != nil {
		return err
	}
	opts := &es.SQLOptions{AppName: s.cfg.Name, Schema: schema, MultiRowTracking: s.multiRow}
	if s.eventsExists {
		if s.rec, err = es.NewSQLRecorder(ctx, s.db, s.d, opts); err != nil {
			return err
		}
	}
	if s.snapshotsExists {
		if s.snaps, err = es.NewSQLSnapshotRecorder(ctx, s.db, s.d, opts); err != nil {
			return err
		}
	}
	return nil
}

// tableExists reports whether an events (or snapshots) table exists, as
// the dialect's schema checker finds it.
func tableExists(ctx context.Context, db *sql.DB, d es.Dialect, t es.Table, notifications bool) (bool, error) {
	sc, ok := d.(es.SchemaChecker)
	if !ok {
		return false, fmt.Errorf("the %s dialect cannot tell which tables exist", d.Name())
	}
	o := sc.EventsTableObjects(t, notifications)[0]
	var exists bool
	if err := db.QueryRowContext(ctx, o.Exists, o.Args...).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for table %s: %w", t, err)
	}
	return exists, nil
}

// trackingKeyColumns returns the number of primary key columns of a
// tracking table: 0 if it does not exist, 1 for single-row tracking, 2 for
// multi-row.
func trackingKeyColumns(ctx context.Context, db *sql.DB, d es.Dialect, t es.Table) (int64, error) {
	q, args := d.TrackingKeyColumnsQuery(t)
	var n sql.NullInt64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("look for table %s: %w", t, err)
	}
	return n.Int64, nil
}

// requireEvents returns an error saying how to fix a missing events table.
// openEvents opens the store flags name and refuses one without an
// events table; with checked, also one whose stored states do not read
// under the configuration (checkConfiguration). The caller closes it.
func openEvents(ctx context.Context, c *cli, f *storeFlags, checked bool) (*store, error) {
	s, err := openStore(ctx, c, f)
	if err != nil {
		return nil, err
	}
	err = s.requireEvents()
	if err == nil && checked {
		err = s.checkConfiguration(ctx)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *store) requireEvents() error {
	if s.eventsExists {
		return nil
	}
	hint := "check SQLITE_DBNAME (or --db): the file holds no event store"
	if s.module == es.ModulePostgres {
		hint = fmt.Sprintf("check --app (PostgreSQL tables are named after the application: %s) and POSTGRES_SCHEMA (--schema)", s.events.Name)
	}
	return fmt.Errorf("table %s does not exist in %s: %s; or create the tables by starting the application once with CREATE_TABLE on (the default)", s.events, s.where, hint)
}

func (s *store) close() { s.db.Close() }

// isPostgres reports whether a dialect is PostgreSQL's.
func isPostgres(d es.Dialect) bool { return d.Name() == es.ModulePostgres }

// checkConfiguration fails a command at once, rather than on every row,
// when neither the oldest nor the newest state of the events table reads:
// then the configuration, not the store, is wrong (most likely CIPHER_KEY
// or COMPRESSOR_TOPIC), and the error says which setting reads them.
func (s *store) checkConfiguration(ctx context.Context) error {
	r := tableReader{s.db, s.d}
	first, err := r.eventsAfter(ctx, nil, s.events, 0, 1)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.events, err)
	}
	if len(first) == 0 || !first[0].State.Valid {
		return nil
	}
	if _, err := s.dec.check(first[0].State.V, false); err == nil {
		return nil
	}
	var maxID int64
	if err := s.db.QueryRowContext(ctx, "SELECT MAX("+s.d.NotificationIDColumn()+") FROM "+s.events.Quote(s.d)).Scan(&maxID); err != nil {
		return fmt.Errorf("read %s: %w", s.events, err)
	}
	last, err := r.eventsAfter(ctx, nil, s.events, maxID-1, 1)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.events, err)
	}
	if len(last) == 0 || !last[0].State.Valid {
		return nil
	}
	if _, err = s.dec.check(last[0].State.V, false); err == nil {
		return nil
	}
	return fmt.Errorf("neither the oldest (notification %d) nor the newest (notification %d) state of %s reads as configured (%s): %v; fix the configuration (or override it with -e NAME=VALUE)",
		first[0].ID, last[0].ID, s.events, s.dec.describe(), err)
}
