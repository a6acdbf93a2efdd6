package eventsourcing

// Configuration: Config, LoadConfig (environment variables, as the Python
// library names them) and Validate.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
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

// Topics accepted in CIPHER_TOPIC, COMPRESSOR_TOPIC, TRANSCODER_TOPIC and
// MAPPER_TOPIC, as the Python library names them. CIPHER_TOPIC also accepts
// eventsourcing.cryptography:AESCipher, which writes the same bytes.
const (
	AESCipherTopic      = "eventsourcing.cipher:AESCipher"
	ZlibCompressorTopic = "eventsourcing.compressor:ZlibCompressor"
	JSONTranscoderTopic = "eventsourcing.persistence:JSONTranscoder"
	MapperTopic         = "eventsourcing.persistence:Mapper"
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
	// 16, 24 or 32-byte key (CIPHER_KEY, which holds it in base64; as in
	// the Python library, a key turns AES on even without CIPHER_TOPIC).
	// It is the key's bytes: [DecodeKey] turns CreateKey's base64 text
	// into them. The text itself is refused where it can be told from a
	// key (CreateKey(16) and CreateKey(32)'s; CreateKey(24)'s 32 characters
	// would be taken as a 32-byte key).
	CipherKey []byte
	// PreviousCipherKeys are keys the store was encrypted with before
	// CipherKey (CIPHER_KEY_PREVIOUS: comma-separated base64 keys, this
	// library's; the Python library has one key). States are decrypted
	// with whichever key opens them and written under CipherKey, and
	// [Store.RotateKeys] re-encrypts the old ones. They need CipherKey.
	PreviousCipherKeys [][]byte
	// Compress compresses stored states with zlib before encryption
	// (COMPRESSOR_TOPIC).
	Compress bool
	// MultiRowTracking keeps one tracking row per processed notification, as
	// Python eventsourcing before 9.5 did, instead of one row per upstream
	// application (SINGLE_ROW_TRACKING=false sets it).
	MultiRowTracking bool
	// Snapshotting says that the application takes snapshots
	// (IS_SNAPSHOTTING_ENABLED). The library takes none by itself, and
	// [Open] provides a snapshots recorder either way: it is for the
	// application to read.
	Snapshotting bool
	// SQLite configures PersistenceModule ModuleSQLite.
	SQLite SQLiteConfig
	// Postgres configures PersistenceModule ModulePostgres.
	Postgres PostgresConfig
}

// SQLiteConfig configures an SQLite store.
type SQLiteConfig struct {
	// DBName is the database file name, or ":memory:" (SQLITE_DBNAME).
	// Give each application a file of its own: the tables have fixed
	// names, so applications sharing a file would share one log.
	DBName string
	// LockTimeout is how long a writer waits for the database's write lock
	// (SQLITE_LOCK_TIMEOUT); zero means 5 seconds.
	LockTimeout time.Duration
}

// PostgresConfig configures a PostgreSQL store. The pool settings map onto
// database/sql: at most PoolSize+MaxOverflow open connections, PoolSize of
// them kept idle.
type PostgresConfig struct {
	DBName string // POSTGRES_DBNAME
	// Host is the server's host name or IP address, a Unix socket
	// directory, or several of these comma-separated (POSTGRES_HOST),
	// without a port: a host with a port is refused.
	Host     string
	Port     int    // POSTGRES_PORT; zero means 5432
	User     string // POSTGRES_USER
	Password string // POSTGRES_PASSWORD
	// ConnectTimeout bounds establishing a connection
	// (POSTGRES_CONNECT_TIMEOUT); zero means 5 seconds.
	ConnectTimeout time.Duration
	// ConnMaxAge closes connections older than this (POSTGRES_CONN_MAX_AGE);
	// zero means no limit.
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
	// (POSTGRES_LOCK_TIMEOUT); zero means no limit.
	LockTimeout time.Duration
	// IdleInTransactionSessionTimeout ends sessions left idle inside a
	// transaction (POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT);
	// zero means 5 seconds, negative means no limit.
	IdleInTransactionSessionTimeout time.Duration
	// Schema holds the tables (POSTGRES_SCHEMA); empty means the search
	// path's default, normally public.
	Schema string
	// SSLMode is libpq's sslmode: disable, allow, prefer, require,
	// verify-ca or verify-full (POSTGRES_SSLMODE; this library's). Empty
	// means libpq's default, as the Python library (through libpq) has
	// it: the PGSSLMODE environment variable if set, else prefer.
	SSLMode string
	// SSLRootCert is the file of the certificate authorities that
	// verify-ca and verify-full check the server's certificate against
	// (POSTGRES_SSLROOTCERT; this library's). Empty means PGSSLROOTCERT
	// if set, else the system's roots. Client certificates are libpq's
	// PGSSLCERT and PGSSLKEY.
	SSLRootCert string
	// ReadHosts lists hot standbys of the primary, comma-separated ("host"
	// or "host:port", Port by default), with the same database, user and
	// password, for [OpenReplicated] to read from (POSTGRES_READ_HOSTS;
	// this library's, not the Python library's). Empty means none. It is a
	// string, as the variable is, so that PostgresConfig stays comparable.
	ReadHosts string
	// MaxReplicaLag is how far behind the primary a read host may be and
	// still serve reads (POSTGRES_MAX_REPLICA_LAG; this library's);
	// zero means DefaultMaxReplicaLag.
	MaxReplicaLag time.Duration
}

// Environment variable names read by [LoadConfig], without the application
// name prefix. Durations (SQLITE_LOCK_TIMEOUT, POSTGRES_CONNECT_TIMEOUT,
// POSTGRES_CONN_MAX_AGE, POSTGRES_LOCK_TIMEOUT,
// POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT, POSTGRES_MAX_REPLICA_LAG)
// are seconds, as in the Python library ("5", "0.5"), or Go durations
// ("5s", "250ms").
const (
	EnvPersistenceModule                       = "PERSISTENCE_MODULE"
	EnvCreateTable                             = "CREATE_TABLE"
	EnvCipherTopic                             = "CIPHER_TOPIC"
	EnvCipherKey                               = "CIPHER_KEY"
	EnvCompressorTopic                         = "COMPRESSOR_TOPIC"
	EnvSingleRowTracking                       = "SINGLE_ROW_TRACKING"
	EnvSQLiteDBName                            = "SQLITE_DBNAME"
	EnvSQLiteLockTimeout                       = "SQLITE_LOCK_TIMEOUT"
	EnvPostgresDBName                          = "POSTGRES_DBNAME"
	EnvPostgresHost                            = "POSTGRES_HOST"
	EnvPostgresPort                            = "POSTGRES_PORT"
	EnvPostgresUser                            = "POSTGRES_USER"
	EnvPostgresPassword                        = "POSTGRES_PASSWORD"
	EnvPostgresConnectTimeout                  = "POSTGRES_CONNECT_TIMEOUT"
	EnvPostgresConnMaxAge                      = "POSTGRES_CONN_MAX_AGE"
	EnvPostgresPrePing                         = "POSTGRES_PRE_PING"
	EnvPostgresPoolSize                        = "POSTGRES_POOL_SIZE"
	EnvPostgresMaxOverflow                     = "POSTGRES_MAX_OVERFLOW"
	EnvPostgresLockTimeout                     = "POSTGRES_LOCK_TIMEOUT"
	EnvPostgresIdleInTransactionSessionTimeout = "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"
	EnvPostgresSchema                          = "POSTGRES_SCHEMA"
	// EnvPostgresSSLMode and EnvPostgresSSLRootCert are this library's
	// (the Python library leaves TLS to libpq's PGSSLMODE and
	// PGSSLROOTCERT, which are honoured here too when these are unset):
	// PostgresConfig.SSLMode and SSLRootCert.
	EnvPostgresSSLMode     = "POSTGRES_SSLMODE"
	EnvPostgresSSLRootCert = "POSTGRES_SSLROOTCERT"
	// EnvPostgresReadHosts and EnvPostgresMaxReplicaLag are this library's
	// (the Python library has no standbys): PostgresConfig.ReadHosts and
	// MaxReplicaLag, read by LoadConfig, used by OpenReplicated.
	EnvPostgresReadHosts     = "POSTGRES_READ_HOSTS"
	EnvPostgresMaxReplicaLag = "POSTGRES_MAX_REPLICA_LAG"
	// EnvCipherKeyPrevious is this library's (the Python library has no key
	// rotation): Config.PreviousCipherKeys, comma-separated standard base64
	// keys, newest first, read only with CIPHER_KEY.
	EnvCipherKeyPrevious = "CIPHER_KEY_PREVIOUS"
	// EnvIsSnapshottingEnabled sets Config.Snapshotting (a boolean).
	EnvIsSnapshottingEnabled = "IS_SNAPSHOTTING_ENABLED"
)

// Further environment variables the Python library reads. [LoadConfig]
// accepts the values it can honour (noted beside each) and returns a
// *[ConfigError] naming the variable for any other value, rather than
// ignoring it. The README's configuration table lists them.
const (
	// envInfrastructureFactory and envFactoryTopic are the legacy names of
	// PERSISTENCE_MODULE, read in this order when it is unset or empty;
	// they take the same values.
	envInfrastructureFactory = "INFRASTRUCTURE_FACTORY"
	envFactoryTopic          = "FACTORY_TOPIC"
	// envTranscoderTopic may only name JSONTranscoderTopic.
	envTranscoderTopic = "TRANSCODER_TOPIC"
	// envMapperTopic may only name MapperTopic.
	envMapperTopic = "MAPPER_TOPIC"
	// envApplicationRecorderTopic, envTrackingRecorderTopic and
	// envProcessRecorderTopic may only name the persistence module's own
	// recorder classes, such as eventsourcing.sqlite:SQLiteProcessRecorder.
	envApplicationRecorderTopic = "APPLICATION_RECORDER_TOPIC"
	envTrackingRecorderTopic    = "TRACKING_RECORDER_TOPIC"
	envProcessRecorderTopic     = "PROCESS_RECORDER_TOPIC"
	// envOriginatorIDType may only be uuid: originator IDs are uuid.UUID.
	envOriginatorIDType = "ORIGINATOR_ID_TYPE"
	// envAggregateCacheMaxSize must be unset or empty: this library keeps
	// no aggregate cache.
	envAggregateCacheMaxSize = "AGGREGATE_CACHE_MAXSIZE"
	// envAggregateCacheFastforward, envAggregateCacheFastforwardSkipping and
	// envDeepcopyFromAggregateCache are booleans that, as in Python, mean
	// nothing without an aggregate cache.
	envAggregateCacheFastforward         = "AGGREGATE_CACHE_FASTFORWARD"
	envAggregateCacheFastforwardSkipping = "AGGREGATE_CACHE_FASTFORWARD_SKIPPING"
	envDeepcopyFromAggregateCache        = "DEEPCOPY_FROM_AGGREGATE_CACHE"
	// envPostgresEnableDBFunctions may only be false: inserts are plain
	// statements, not Python's stored functions. Read for postgres only.
	envPostgresEnableDBFunctions = "POSTGRES_ENABLE_DB_FUNCTIONS"
	// envPostgresGetPasswordTopic names a Python function, so it must be
	// unset or empty (set POSTGRES_PASSWORD). Read for postgres only.
	envPostgresGetPasswordTopic = "POSTGRES_GET_PASSWORD_TOPIC"
	// envPostgresMaxWaiting may only be 0 (no limit on callers waiting for
	// a connection, as database/sql has none). Read for postgres only.
	envPostgresMaxWaiting = "POSTGRES_MAX_WAITING"
)

// ConfigError reports an environment variable, or a Config field, whose
// value is missing or invalid. It matches [ErrProgramming].
type ConfigError struct {
	Name   string // the variable as looked up, with its prefix if it had one
	Value  string // the value found; empty if missing, or withheld (CIPHER_KEY)
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
// (BANKACCOUNTS_SQLITE_DBNAME), then without; a prefixed variable that is
// set but empty wins over the unprefixed one, as in Python. lookup is
// os.LookupEnv if nil. Every variable the Python library reads is either
// used (the Env constants) or checked: a missing required variable, an
// invalid value, or a value this library cannot honour (a TRANSCODER_TOPIC
// other than the JSON transcoder, ORIGINATOR_ID_TYPE=text, ...) is a
// *[ConfigError] that names the variable and the value. Empty values mean
// the default, as in Python.
func LoadConfig(name string, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	env := environment{name: name, lookup: lookup}
	cfg := &Config{Name: name}
	if err := env.module(cfg); err != nil {
		return nil, err
	}
	if err := env.unsupported(cfg.PersistenceModule); err != nil {
		return nil, err
	}
	steps := []func(*Config) error{env.flags, env.cipher, env.compressor}
	switch cfg.PersistenceModule {
	case ModuleSQLite:
		steps = append(steps, env.sqlite)
	case ModulePostgres:
		steps = append(steps, env.postgres)
	}
	for _, step := range steps {
		if err := step(cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// module reads PERSISTENCE_MODULE, or its legacy names; memory if unset.
func (env environment) module(cfg *Config) error {
	cfg.PersistenceModule = ModuleMemory
	for _, k := range []string{EnvPersistenceModule, envInfrastructureFactory, envFactoryTopic} {
		v, key, _ := env.get(k)
		if strings.TrimSpace(v) == "" {
			continue
		}
		m, err := parseModule(v)
		if err != nil {
			return &ConfigError{Name: key, Value: v, Reason: err.Error()}
		}
		cfg.PersistenceModule = m
		break
	}
	return nil
}

// flags reads the booleans: IS_SNAPSHOTTING_ENABLED, CREATE_TABLE and
// SINGLE_ROW_TRACKING.
func (env environment) flags(cfg *Config) error {
	snapshotting, err := env.boolean(EnvIsSnapshottingEnabled, false)
	if err != nil {
		return err
	}
	cfg.Snapshotting = snapshotting
	create, err := env.boolean(EnvCreateTable, true)
	if err != nil {
		return err
	}
	cfg.SkipCreateTable = !create
	single, err := env.boolean(EnvSingleRowTracking, true)
	if err != nil {
		return err
	}
	cfg.MultiRowTracking = !single
	return nil
}

// cipher reads CIPHER_TOPIC, CIPHER_KEY and CIPHER_KEY_PREVIOUS.
func (env environment) cipher(cfg *Config) error {
	// As in Python: a CIPHER_KEY without a CIPHER_TOPIC means AES.
	topic, key, _ := env.get(EnvCipherTopic)
	kv, kkey, kok := env.get(EnvCipherKey)
	if topic != "" {
		switch topic {
		case AESCipherTopic, "eventsourcing.cryptography:AESCipher", "AESCipher", "aes":
		default:
			return &ConfigError{Name: key, Value: topic, Reason: "unknown cipher topic (want " + AESCipherTopic + ")"}
		}
		if !kok {
			return &ConfigError{Name: kkey, Reason: "not set, but " + key + " is: give the base64 AES key"}
		}
		if kv == "" {
			return &ConfigError{Name: kkey, Reason: "empty, but " + key + " is set: give the base64 AES key"}
		}
	}
	if kv != "" {
		// The key is a secret: errors name the variable, not the value.
		k, err := base64.StdEncoding.DecodeString(kv)
		if err != nil {
			return &ConfigError{Name: kkey, Reason: "not standard base64 (value withheld): " + err.Error()}
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return &ConfigError{Name: kkey, Reason: fmt.Sprintf("AES key is %d bytes, want 16, 24 or 32 (value withheld)", n)}
		}
		cfg.CipherKey = k
	}
	if pv, pkey, _ := env.get(EnvCipherKeyPrevious); strings.TrimSpace(pv) != "" {
		if kv == "" {
			return &ConfigError{Name: pkey, Reason: "set, but " + kkey + " is not: give the current key in " + kkey}
		}
		for i, part := range strings.Split(pv, ",") {
			k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(part))
			if err != nil {
				return &ConfigError{Name: pkey, Reason: fmt.Sprintf("key %d is not standard base64 (value withheld): %v", i+1, err)}
			}
			if n := len(k); n != 16 && n != 24 && n != 32 {
				return &ConfigError{Name: pkey, Reason: fmt.Sprintf("key %d: AES key is %d bytes, want 16, 24 or 32 (value withheld)", i+1, n)}
			}
			cfg.PreviousCipherKeys = append(cfg.PreviousCipherKeys, k)
		}
	}
	return nil
}

// compressor reads COMPRESSOR_TOPIC.
func (env environment) compressor(cfg *Config) error {
	if v, key, _ := env.get(EnvCompressorTopic); v != "" {
		switch v {
		case ZlibCompressorTopic, "zlib", "ZlibCompressor":
			cfg.Compress = true
		default:
			return &ConfigError{Name: key, Value: v, Reason: "unknown compressor topic (want " + ZlibCompressorTopic + " or zlib)"}
		}
	}
	return nil
}

// sqlite reads the SQLITE_ variables.
func (env environment) sqlite(cfg *Config) error {
	v, key, ok := env.get(EnvSQLiteDBName)
	if !ok || v == "" {
		return &ConfigError{Name: key, Value: v, Reason: "required when " + EnvPersistenceModule + " is sqlite"}
	}
	cfg.SQLite.DBName = v
	var err error
	if cfg.SQLite.LockTimeout, err = env.seconds(EnvSQLiteLockTimeout); err != nil {
		return err
	}
	return nil
}

// postgres reads the POSTGRES_ variables.
func (env environment) postgres(cfg *Config) error {
	p := &cfg.Postgres
	for _, f := range []struct {
		name string
		dst  *string
	}{{EnvPostgresDBName, &p.DBName}, {EnvPostgresHost, &p.Host}, {EnvPostgresUser, &p.User}} {
		v, key, ok := env.get(f.name)
		if !ok || v == "" {
			return &ConfigError{Name: key, Value: v, Reason: "required when " + EnvPersistenceModule + " is postgres"}
		}
		*f.dst = v
	}
	if reason := hostWithPort(p.Host, EnvPostgresPort); reason != "" {
		_, key, _ := env.get(EnvPostgresHost)
		return &ConfigError{Name: key, Value: p.Host, Reason: reason}
	}
	v, key, ok := env.get(EnvPostgresPassword)
	if !ok {
		return &ConfigError{Name: key, Reason: "required when " + EnvPersistenceModule + " is postgres (it may be empty)"}
	}
	p.Password = v
	var err error
	if p.Port, err = env.integer(EnvPostgresPort, 1, 65535); err != nil {
		return err
	}
	if p.ConnectTimeout, err = env.seconds(EnvPostgresConnectTimeout); err != nil {
		return err
	}
	if p.ConnMaxAge, err = env.seconds(EnvPostgresConnMaxAge); err != nil {
		return err
	}
	if p.PrePing, err = env.boolean(EnvPostgresPrePing, false); err != nil {
		return err
	}
	if p.PoolSize, err = env.integer(EnvPostgresPoolSize, 1, 1<<20); err != nil {
		return err
	}
	if v, key, ok := env.get(EnvPostgresMaxOverflow); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return &ConfigError{Name: key, Value: v, Reason: "want a whole number >= 0"}
		}
		if n == 0 {
			n = -1 // explicitly none; zero in Config means the default
		}
		p.MaxOverflow = n
	}
	if p.LockTimeout, err = env.seconds(EnvPostgresLockTimeout); err != nil {
		return err
	}
	if v, key, ok := env.get(EnvPostgresIdleInTransactionSessionTimeout); ok && v != "" {
		d, err := parseSeconds(v)
		if err != nil {
			return &ConfigError{Name: key, Value: v, Reason: err.Error()}
		}
		if d == 0 {
			d = -1 // explicitly no limit
		}
		p.IdleInTransactionSessionTimeout = d
	}
	if v, key, ok := env.get(EnvPostgresSchema); ok && v != "" {
		if err := validIdentifier(v, 63); err != nil {
			return &ConfigError{Name: key, Value: v, Reason: err.Error()}
		}
		p.Schema = v
	}
	if v, key, _ := env.get(EnvPostgresSSLMode); v != "" {
		if err := validSSLMode(v); err != nil {
			return &ConfigError{Name: key, Value: v, Reason: err.Error()}
		}
		p.SSLMode = v
	}
	p.SSLRootCert, _, _ = env.get(EnvPostgresSSLRootCert)
	if v, key, _ := env.get(EnvPostgresReadHosts); strings.TrimSpace(v) != "" {
		if _, err := readHosts(v, p.Port); err != nil {
			return &ConfigError{Name: key, Value: v, Reason: err.Error()}
		}
		p.ReadHosts = v
	}
	if p.MaxReplicaLag, err = env.seconds(EnvPostgresMaxReplicaLag); err != nil {
		return err
	}
	return env.unsupportedPostgres()
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
	if c.CipherKey != nil {
		if reason := cipherKeyProblem(c.CipherKey); reason != "" {
			return &ConfigError{Name: "Config.CipherKey", Reason: reason}
		}
	}
	if err := c.previousKeysProblem(); err != nil {
		return err
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
		if reason := hostWithPort(p.Host, "Port"); reason != "" {
			return &ConfigError{Name: "Config.Postgres.Host", Value: p.Host, Reason: reason}
		}
		if p.Port < 0 || p.Port > 65535 {
			return &ConfigError{Name: "Config.Postgres.Port", Value: strconv.Itoa(p.Port), Reason: "not a TCP port"}
		}
		if p.SSLMode != "" {
			if err := validSSLMode(p.SSLMode); err != nil {
				return &ConfigError{Name: "Config.Postgres.SSLMode", Value: p.SSLMode, Reason: err.Error()}
			}
		}
		if p.PoolSize < 0 {
			return &ConfigError{Name: "Config.Postgres.PoolSize", Value: strconv.Itoa(p.PoolSize), Reason: "must not be negative"}
		}
		if p.Schema != "" {
			if err := validIdentifier(p.Schema, 63); err != nil {
				return &ConfigError{Name: "Config.Postgres.Schema", Value: p.Schema, Reason: err.Error()}
			}
		}
		if _, err := readHosts(p.ReadHosts, p.Port); err != nil {
			return &ConfigError{Name: "Config.Postgres.ReadHosts", Value: p.ReadHosts, Reason: err.Error()}
		}
		if p.MaxReplicaLag < 0 {
			return &ConfigError{Name: "Config.Postgres.MaxReplicaLag", Value: p.MaxReplicaLag.String(), Reason: "must not be negative"}
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
	if err := c.previousKeysProblem(); err != nil {
		return nil, err
	}
	if c.CipherKey != nil {
		if reason := cipherKeyProblem(c.CipherKey); reason != "" {
			return nil, &ConfigError{Name: "Config.CipherKey", Reason: reason}
		}
		ci, err := NewAESCipherKeys(c.CipherKey, c.PreviousCipherKeys...)
		if err != nil {
			return nil, &ConfigError{Name: "Config.CipherKey", Reason: err.Error()}
		}
		opts.Cipher = ci
	}
	return opts, nil
}

func parseModule(v string) (string, error) {
	switch strings.TrimSpace(v) {
	case "", ModuleMemory, "popo", "eventsourcing.popo", "eventsourcing.popo:Factory", "eventsourcing.popo:POPOFactory":
		return ModuleMemory, nil
	case ModuleSQLite, "eventsourcing.sqlite", "eventsourcing.sqlite:Factory", "eventsourcing.sqlite:SQLiteFactory":
		return ModuleSQLite, nil
	case ModulePostgres, "postgresql", "eventsourcing.postgres", "eventsourcing.postgres:Factory", "eventsourcing.postgres:PostgresFactory":
		return ModulePostgres, nil
	}
	return "", fmt.Errorf("unknown persistence module (want memory, sqlite or postgres, or eventsourcing.popo, eventsourcing.sqlite or eventsourcing.postgres)")
}

// recorderTopicPrefixes gives, per persistence module, the Python module
// and class name prefix of its recorder classes
// (eventsourcing.sqlite:SQLiteProcessRecorder).
var recorderTopicPrefixes = map[string]string{
	ModuleMemory:   "eventsourcing.popo:POPO",
	ModuleSQLite:   "eventsourcing.sqlite:SQLite",
	ModulePostgres: "eventsourcing.postgres:Postgres",
}

// unsupported checks the variables the Python library reads for every
// persistence module that this library does not support beyond their
// default values.
func (e environment) unsupported(module string) error {
	for _, c := range []struct{ key, want string }{
		{envTranscoderTopic, JSONTranscoderTopic},
		{envMapperTopic, MapperTopic},
		{envApplicationRecorderTopic, recorderTopicPrefixes[module] + "ApplicationRecorder"},
		{envTrackingRecorderTopic, recorderTopicPrefixes[module] + "TrackingRecorder"},
		{envProcessRecorderTopic, recorderTopicPrefixes[module] + "ProcessRecorder"},
	} {
		if v, k, _ := e.get(c.key); v != "" && v != c.want {
			return &ConfigError{Name: k, Value: v, Reason: "not supported: only " + c.want + " (or empty) can be honoured"}
		}
	}
	if v, k, _ := e.get(envOriginatorIDType); v != "" && !strings.EqualFold(v, "uuid") {
		return &ConfigError{Name: k, Value: v, Reason: "not supported: originator IDs are UUIDs (want uuid or empty)"}
	}
	if v, k, _ := e.get(envAggregateCacheMaxSize); v != "" {
		return &ConfigError{Name: k, Value: v, Reason: "not supported: this library keeps no aggregate cache (leave it unset or empty)"}
	}
	for _, k := range []string{envAggregateCacheFastforward, envAggregateCacheFastforwardSkipping, envDeepcopyFromAggregateCache} {
		if _, err := e.boolean(k, false); err != nil {
			return err
		}
	}
	return nil
}

// unsupportedPostgres checks the variables the Python library's Postgres
// factory reads that this library does not support beyond their defaults.
func (e environment) unsupportedPostgres() error {
	on, err := e.boolean(envPostgresEnableDBFunctions, false)
	if err != nil {
		return err
	}
	if on {
		v, k, _ := e.get(envPostgresEnableDBFunctions)
		return &ConfigError{Name: k, Value: v, Reason: "not supported: events are inserted by plain statements, not database functions (want false or empty)"}
	}
	if v, k, _ := e.get(envPostgresGetPasswordTopic); v != "" {
		return &ConfigError{Name: k, Value: v, Reason: "not supported: a Python function cannot be called; set POSTGRES_PASSWORD, or PostgresConfig.Password from Go"}
	}
	if v, k, _ := e.get(envPostgresMaxWaiting); strings.TrimSpace(v) != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err != nil || n != 0 {
			return &ConfigError{Name: k, Value: v, Reason: "not supported: database/sql does not limit callers waiting for a connection (want 0 or empty)"}
		}
	}
	return nil
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

// seconds parses a non-negative duration, as parseSeconds does; unset or
// empty is 0.
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

// parseSeconds parses a non-negative duration given as the Python library
// takes it, a number of seconds (fractions allowed: "5", "0.5"), or as a
// Go duration ("5s", "250ms", "1m30s").
func parseSeconds(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f != f || f > 1e9 {
			return 0, errBadDuration
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, errBadDuration
	}
	return d, nil
}

var errBadDuration = errors.New("want a duration >= 0: a number of seconds (5, 0.5) or a Go duration (5s, 250ms, 1m30s)")

// previousKeysProblem checks PreviousCipherKeys: keys of AES sizes, and
// only with a CipherKey.
func (c *Config) previousKeysProblem() error {
	if len(c.PreviousCipherKeys) == 0 {
		return nil
	}
	if c.CipherKey == nil {
		return &ConfigError{Name: "Config.PreviousCipherKeys", Reason: "set, but Config.CipherKey is not: give the current key (CIPHER_KEY)"}
	}
	for i, k := range c.PreviousCipherKeys {
		if reason := cipherKeyProblem(k); reason != "" {
			return &ConfigError{Name: "Config.PreviousCipherKeys", Reason: fmt.Sprintf("key %d: %s", i+1, reason)}
		}
	}
	return nil
}

// cipherKeyProblem says what is wrong with an AES key's bytes, or returns
// "". Never the key: it is a secret. A key that is the base64 text of a
// key, as CreateKey returns it (44 characters for 32 bytes, 24 ending in
// "==" for 16), is refused as the mistake it surely is; the 32 characters
// of a 24-byte key's text cannot be told from a 32-byte key.
func cipherKeyProblem(k []byte) string {
	text := ""
	if n := len(k); (n == 44 && k[43] == '=') || (n == 24 && k[22] == '=' && k[23] == '=') {
		if d, err := base64.StdEncoding.DecodeString(string(k)); err == nil && (len(d) == 16 || len(d) == 32) {
			text = fmt.Sprintf("it is the base64 text of a %d-byte key (as CreateKey returns it and CIPHER_KEY holds it): give its bytes, from DecodeKey", len(d))
		}
	}
	switch n := len(k); {
	case text != "" && n == 24:
		return "AES key of 24 bytes, but " + text
	case text != "":
		return fmt.Sprintf("AES key is %d bytes, want 16, 24 or 32: %s", n, text)
	case n != 16 && n != 24 && n != 32:
		return fmt.Sprintf("AES key is %d bytes, want 16, 24 or 32", n)
	}
	return ""
}

// hostWithPort says why a PostgreSQL host (or a comma-separated list of
// them) is refused for carrying a port ("127.0.0.1:5432", "[::1]:5432"),
// which the connection would take as part of the name, or returns "".
// portName is where the port belongs. IPv6 addresses without brackets
// ("::1") and socket directories pass.
func hostWithPort(hosts, portName string) string {
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if strings.HasPrefix(h, "/") {
			continue
		}
		if host, port, err := net.SplitHostPort(h); err == nil {
			return fmt.Sprintf("%q holds a port: give the host alone (%q) and the port in %s (%q)", h, host, portName, port)
		}
	}
	return ""
}

// validSSLMode checks a libpq sslmode.
func validSSLMode(mode string) error {
	switch mode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		return nil
	}
	return errors.New("unknown sslmode (want disable, allow, prefer, require, verify-ca or verify-full)")
}
