package eventsourcing

import (
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Persistence module names accepted in [Config.PersistenceModule] and the
// PERSISTENCE_MODULE environment variable. The Python library's module names
// (eventsourcing.popo, eventsourcing.sqlite, eventsourcing.postgres) are
// accepted as aliases.
const (
	ModuleMemory   = "memory"
	ModuleSQLite   = "sqlite"
	ModulePostgres = "postgres"
)

// Cipher and compressor topics accepted in CIPHER_TOPIC and
// COMPRESSOR_TOPIC, as the Python library names them.
const (
	AESCipherTopic      = "eventsourcing.cipher:AESCipher"
	ZlibCompressorTopic = "eventsourcing.compressor:ZlibCompressor"
)

// Config says where and how an application's events are stored. The zero
// value (with a Name) is an in-memory store with plain JSON states. It can be
// filled from Go values, or from environment variables by [LoadConfig].
type Config struct {
	// Name is the application name. It prefixes environment variable lookups
	// (BANKACCOUNTS_SQLITE_DBNAME before SQLITE_DBNAME) and, lower-cased,
	// the PostgreSQL table names (bankaccounts_events).
	Name string
	// PersistenceModule is ModuleMemory (the default), ModuleSQLite or
	// ModulePostgres (PERSISTENCE_MODULE).
	PersistenceModule string
	// SkipCreateTable leaves the tables alone when the store is opened; by
	// default they are created if missing (CREATE_TABLE=false sets it).
	SkipCreateTable bool
	// CipherKey, if not nil, encrypts stored states with AES-GCM under this
	// 16, 24 or 32-byte key (CIPHER_TOPIC and CIPHER_KEY).
	CipherKey []byte
	// Compress compresses stored states with zlib before encryption
	// (COMPRESSOR_TOPIC).
	Compress bool
	// MultiRowTracking keeps one tracking row per processed notification, as
	// Python eventsourcing before 9.5 did, instead of one row per upstream
	// application (SINGLE_ROW_TRACKING=false sets it).
	MultiRowTracking bool
	// SQLite configures PersistenceModule ModuleSQLite.
	SQLite SQLiteConfig
	// Postgres configures PersistenceModule ModulePostgres.
	Postgres PostgresConfig
}

// SQLiteConfig configures an SQLite store.
type SQLiteConfig struct {
	// DBName is the database file name, or ":memory:" (SQLITE_DBNAME).
	DBName string
	// LockTimeout is how long a writer waits for the database's write lock
	// (SQLITE_LOCK_TIMEOUT, seconds); zero means 5 seconds.
	LockTimeout time.Duration
}

// PostgresConfig configures a PostgreSQL store. The pool settings map onto
// database/sql: at most PoolSize+MaxOverflow open connections, PoolSize of
// them kept idle.
type PostgresConfig struct {
	DBName   string // POSTGRES_DBNAME
	Host     string // POSTGRES_HOST
	Port     int    // POSTGRES_PORT; zero means 5432
	User     string // POSTGRES_USER
	Password string // POSTGRES_PASSWORD
	// ConnectTimeout bounds establishing a connection
	// (POSTGRES_CONNECT_TIMEOUT, seconds); zero means 5 seconds.
	ConnectTimeout time.Duration
	// ConnMaxAge closes connections older than this (POSTGRES_CONN_MAX_AGE,
	// seconds); zero means no limit.
	ConnMaxAge time.Duration
	// PrePing checks that a pooled connection is alive before it is used
	// (POSTGRES_PRE_PING).
	PrePing bool
	// PoolSize is how many idle connections are kept (POSTGRES_POOL_SIZE);
	// zero means 5.
	PoolSize int
	// MaxOverflow is how many connections may be opened beyond PoolSize
	// (POSTGRES_MAX_OVERFLOW); zero means 10, negative means none.
	MaxOverflow int
	// LockTimeout bounds waiting for the events table's lock when inserting
	// (POSTGRES_LOCK_TIMEOUT, seconds); zero means no limit.
	LockTimeout time.Duration
	// IdleInTransactionSessionTimeout ends sessions left idle inside a
	// transaction (POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT, seconds);
	// zero means 5 seconds, negative means no limit.
	IdleInTransactionSessionTimeout time.Duration
	// Schema holds the tables (POSTGRES_SCHEMA); empty means the search
	// path's default, normally public.
	Schema string
}

// Environment variable names read by [LoadConfig], without the application
// name prefix.
const (
	EnvPersistenceModule  = "PERSISTENCE_MODULE"
	EnvCreateTable        = "CREATE_TABLE"
	EnvCipherTopic        = "CIPHER_TOPIC"
	EnvCipherKey          = "CIPHER_KEY"
	EnvCompressorTopic    = "COMPRESSOR_TOPIC"
	EnvSingleRowTracking  = "SINGLE_ROW_TRACKING"
	EnvSQLiteDBName       = "SQLITE_DBNAME"
	EnvSQLiteLockTimeout  = "SQLITE_LOCK_TIMEOUT"
	EnvPostgresDBName     = "POSTGRES_DBNAME"
	EnvPostgresHost       = "POSTGRES_HOST"
	EnvPostgresPort       = "POSTGRES_PORT"
	EnvPostgresUser       = "POSTGRES_USER"
	EnvPostgresPassword   = "POSTGRES_PASSWORD"
	EnvPostgresConnectTO  = "POSTGRES_CONNECT_TIMEOUT"
	EnvPostgresConnMaxAge = "POSTGRES_CONN_MAX_AGE"
	EnvPostgresPrePing    = "POSTGRES_PRE_PING"
	EnvPostgresPoolSize   = "POSTGRES_POOL_SIZE"
	EnvPostgresMaxOverflw = "POSTGRES_MAX_OVERFLOW"
	EnvPostgresLockTO     = "POSTGRES_LOCK_TIMEOUT"
	EnvPostgresIdleInTxTO = "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"
	EnvPostgresSchema     = "POSTGRES_SCHEMA"
)

// ConfigError reports an environment variable, or a Config field, whose
// value is missing or invalid. It matches [ErrProgramming].
type ConfigError struct {
	Name   string // the variable as looked up, with its prefix if it had one
	Value  string // the value found; empty if missing
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("eventsourcing: configuration %s: %s", e.Name, e.Reason)
	}
	return fmt.Sprintf("eventsourcing: configuration %s=%q: %s", e.Name, e.Value, e.Reason)
}

// Is reports whether target is ErrProgramming.
func (e *ConfigError) Is(target error) bool { return target == ErrProgramming }

// LoadConfig reads an application's configuration from environment variables
// as the Python library does: each variable is looked up first with the
// upper-cased application name and an underscore as prefix
// (BANKACCOUNTS_SQLITE_DBNAME), then without. lookup is os.LookupEnv if nil.
// A missing required variable or an invalid value is a *[ConfigError] that
// names the variable and the value.
func LoadConfig(name string, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env := environment{name: name, lookup: lookup}
	cfg := &Config{Name: name}

	if v, key, ok := env.get(EnvPersistenceModule); ok {
		m, err := parseModule(v)
		if err != nil {
			return nil, &ConfigError{Name: key, Value: v, Reason: err.Error()}
		}
		cfg.PersistenceModule = m
	} else {
		cfg.PersistenceModule = ModuleMemory
	}
	create, err := env.boolean(EnvCreateTable, true)
	if err != nil {
		return nil, err
	}
	cfg.SkipCreateTable = !create
	single, err := env.boolean(EnvSingleRowTracking, true)
	if err != nil {
		return nil, err
	}
	cfg.MultiRowTracking = !single

	if v, key, ok := env.get(EnvCipherTopic); ok {
		if v != AESCipherTopic && v != "AESCipher" && v != "aes" {
			return nil, &ConfigError{Name: key, Value: v, Reason: "unknown cipher topic (want " + AESCipherTopic + ")"}
		}
		kv, kkey, ok := env.get(EnvCipherKey)
		if !ok {
			return nil, &ConfigError{Name: kkey, Reason: "not set, but " + key + " is: give the base64 AES key"}
		}
		k, err := base64.StdEncoding.DecodeString(kv)
		if err != nil {
			return nil, &ConfigError{Name: kkey, Value: kv, Reason: "not standard base64: " + err.Error()}
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, &ConfigError{Name: kkey, Value: kv, Reason: fmt.Sprintf("AES key is %d bytes, want 16, 24 or 32", n)}
		}
		cfg.CipherKey = k
	}
	if v, key, ok := env.get(EnvCompressorTopic); ok {
		switch v {
		case ZlibCompressorTopic, "zlib", "ZlibCompressor":
			cfg.Compress = true
		default:
			return nil, &ConfigError{Name: key, Value: v, Reason: "unknown compressor topic (want " + ZlibCompressorTopic + " or zlib)"}
		}
	}

	switch cfg.PersistenceModule {
	case ModuleSQLite:
		v, key, ok := env.get(EnvSQLiteDBName)
		if !ok || v == "" {
			return nil, &ConfigError{Name: key, Value: v, Reason: "required when " + EnvPersistenceModule + " is sqlite"}
		}
		cfg.SQLite.DBName = v
		if cfg.SQLite.LockTimeout, err = env.seconds(EnvSQLiteLockTimeout); err != nil {
			return nil, err
		}
	case ModulePostgres:
		p := &cfg.Postgres
		for _, f := range []struct {
			name string
			dst  *string
		}{{EnvPostgresDBName, &p.DBName}, {EnvPostgresHost, &p.Host}, {EnvPostgresUser, &p.User}} {
			v, key, ok := env.get(f.name)
			if !ok || v == "" {
				return nil, &ConfigError{Name: key, Value: v, Reason: "required when " + EnvPersistenceModule + " is postgres"}
			}
			*f.dst = v
		}
		v, key, ok := env.get(EnvPostgresPassword)
		if !ok {
			return nil, &ConfigError{Name: key, Reason: "required when " + EnvPersistenceModule + " is postgres (it may be empty)"}
		}
		p.Password = v
		if p.Port, err = env.integer(EnvPostgresPort, 1, 65535); err != nil {
			return nil, err
		}
		if p.ConnectTimeout, err = env.seconds(EnvPostgresConnectTO); err != nil {
			return nil, err
		}
		if p.ConnMaxAge, err = env.seconds(EnvPostgresConnMaxAge); err != nil {
			return nil, err
		}
		if p.PrePing, err = env.boolean(EnvPostgresPrePing, false); err != nil {
			return nil, err
		}
		if p.PoolSize, err = env.integer(EnvPostgresPoolSize, 1, 1<<20); err != nil {
			return nil, err
		}
		if v, key, ok := env.get(EnvPostgresMaxOverflw); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, &ConfigError{Name: key, Value: v, Reason: "want a whole number >= 0"}
			}
			if n == 0 {
				n = -1 // explicitly none; zero in Config means the default
			}
			p.MaxOverflow = n
		}
		if p.LockTimeout, err = env.seconds(EnvPostgresLockTO); err != nil {
			return nil, err
		}
		if v, key, ok := env.get(EnvPostgresIdleInTxTO); ok && v != "" {
			d, err := parseSeconds(v)
			if err != nil {
				return nil, &ConfigError{Name: key, Value: v, Reason: err.Error()}
			}
			if d == 0 {
				d = -1 // explicitly no limit
			}
			p.IdleInTransactionSessionTimeout = d
		}
		if v, key, ok := env.get(EnvPostgresSchema); ok && v != "" {
			if err := validIdentifier(v, 63); err != nil {
				return nil, &ConfigError{Name: key, Value: v, Reason: err.Error()}
			}
			p.Schema = v
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate checks a configuration made from Go values, returning a
// *[ConfigError] that names the field and value at fault.
func (c *Config) Validate() error {
	if c.Name == "" {
		return &ConfigError{Name: "Config.Name", Reason: "the application name is required"}
	}
	m, err := parseModule(c.PersistenceModule)
	if err != nil {
		return &ConfigError{Name: "Config.PersistenceModule", Value: c.PersistenceModule, Reason: err.Error()}
	}
	if k := len(c.CipherKey); c.CipherKey != nil && k != 16 && k != 24 && k != 32 {
		return &ConfigError{Name: "Config.CipherKey", Reason: fmt.Sprintf("AES key is %d bytes, want 16, 24 or 32", k)}
	}
	switch m {
	case ModuleSQLite:
		if c.SQLite.DBName == "" {
			return &ConfigError{Name: "Config.SQLite.DBName", Reason: "required for sqlite"}
		}
		if c.SQLite.LockTimeout < 0 {
			return &ConfigError{Name: "Config.SQLite.LockTimeout", Value: c.SQLite.LockTimeout.String(), Reason: "must not be negative"}
		}
	case ModulePostgres:
		p := c.Postgres
		if p.DBName == "" || p.Host == "" || p.User == "" {
			return &ConfigError{Name: "Config.Postgres", Reason: "DBName, Host and User are required for postgres"}
		}
		if p.Port < 0 || p.Port > 65535 {
			return &ConfigError{Name: "Config.Postgres.Port", Value: strconv.Itoa(p.Port), Reason: "not a TCP port"}
		}
		if p.PoolSize < 0 {
			return &ConfigError{Name: "Config.Postgres.PoolSize", Value: strconv.Itoa(p.PoolSize), Reason: "must not be negative"}
		}
		if p.Schema != "" {
			if err := validIdentifier(p.Schema, 63); err != nil {
				return &ConfigError{Name: "Config.Postgres.Schema", Value: p.Schema, Reason: err.Error()}
			}
		}
	}
	return nil
}

// Module returns the canonical persistence module name (ModuleMemory if
// PersistenceModule is empty).
func (c *Config) Module() string {
	m, _ := parseModule(c.PersistenceModule)
	return m
}

// MapperOptions returns the mapper options the configuration asks for: zlib
// compression if Compress, AES-GCM encryption if CipherKey is set.
func (c *Config) MapperOptions() (*MapperOptions, error) {
	opts := &MapperOptions{}
	if c.Compress {
		opts.Compressor = &ZlibCompressor{}
	}
	if c.CipherKey != nil {
		ci, err := NewAESCipher(c.CipherKey)
		if err != nil {
			return nil, &ConfigError{Name: "Config.CipherKey", Reason: err.Error()}
		}
		opts.Cipher = ci
	}
	return opts, nil
}

func parseModule(v string) (string, error) {
	switch strings.TrimSpace(v) {
	case "", ModuleMemory, "popo", "eventsourcing.popo":
		return ModuleMemory, nil
	case ModuleSQLite, "eventsourcing.sqlite":
		return ModuleSQLite, nil
	case ModulePostgres, "postgresql", "eventsourcing.postgres":
		return ModulePostgres, nil
	}
	return "", fmt.Errorf("unknown persistence module (want memory, sqlite or postgres, or eventsourcing.popo, eventsourcing.sqlite or eventsourcing.postgres)")
}

// environment looks variables up with the application name prefix first.
type environment struct {
	name   string
	lookup func(string) (string, bool)
}

// get returns the value, the variable name it was found under, and whether
// it was found.
func (e environment) get(key string) (string, string, bool) {
	if e.name != "" {
		k := strings.ToUpper(e.name) + "_" + key
		if v, ok := e.lookup(k); ok {
			return v, k, true
		}
	}
	v, ok := e.lookup(key)
	return v, key, ok
}

// boolean parses a variable as Python's strtobool does; unset or empty is
// def.
func (e environment) boolean(key string, def bool) (bool, error) {
	v, k, ok := e.get(key)
	if !ok || v == "" {
		return def, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "y", "yes", "t", "true", "on", "1":
		return true, nil
	case "n", "no", "f", "false", "off", "0":
		return false, nil
	}
	return false, &ConfigError{Name: k, Value: v, Reason: "want a boolean (true/false, yes/no, on/off, 1/0)"}
}

// integer parses a whole number in [min, max]; unset or empty is 0.
func (e environment) integer(key string, min, max int) (int, error) {
	v, k, ok := e.get(key)
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < min || n > max {
		return 0, &ConfigError{Name: k, Value: v, Reason: fmt.Sprintf("want a whole number from %d to %d", min, max)}
	}
	return n, nil
}

// seconds parses a non-negative number of seconds (fractions allowed);
// unset or empty is 0.
func (e environment) seconds(key string) (time.Duration, error) {
	v, k, ok := e.get(key)
	if !ok || v == "" {
		return 0, nil
	}
	d, err := parseSeconds(v)
	if err != nil {
		return 0, &ConfigError{Name: k, Value: v, Reason: err.Error()}
	}
	return d, nil
}

func parseSeconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || f != f || f > 1e9 {
		return 0, fmt.Errorf("want a number of seconds >= 0")
	}
	return time.Duration(f * float64(time.Second)), nil
}

// validIdentifier checks an SQL identifier as the Python library would
// accept it: letters, digits and underscores, not starting with a digit, at
// most max bytes.
func validIdentifier(s string, max int) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	if len(s) > max {
		return fmt.Errorf("name is %d bytes, longer than %d", len(s), max)
	}
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("invalid character %q at byte %d (letters, digits and underscores only)", r, i)
		}
	}
	return nil
}
