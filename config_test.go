package eventsourcing

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func envMap(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const testKeyB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

var pgBase = []string{
	"PERSISTENCE_MODULE", "eventsourcing.postgres",
	"POSTGRES_DBNAME", "db", "POSTGRES_HOST", "localhost",
	"POSTGRES_USER", "u", "POSTGRES_PASSWORD", "",
}

func TestLoadConfigValid(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	tests := []struct {
		name  string
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{"defaults", nil, func(t *testing.T, c *Config) {
			if c.Module() != ModuleMemory || c.SkipCreateTable || c.MultiRowTracking || c.CipherKey != nil || c.Compress {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"memory python name", []string{"PERSISTENCE_MODULE", "eventsourcing.popo"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleMemory {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"sqlite", []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", ":memory:", "SQLITE_LOCK_TIMEOUT", "10"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleSQLite || c.SQLite.DBName != ":memory:" || c.SQLite.LockTimeout != 10*time.Second {
				t.Errorf("sqlite: %+v", c.SQLite)
			}
		}},
		{"sqlite python name", []string{"PERSISTENCE_MODULE", "eventsourcing.sqlite", "SQLITE_DBNAME", "/tmp/x.db"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleSQLite || c.SQLite.DBName != "/tmp/x.db" || c.SQLite.LockTimeout != 0 {
				t.Errorf("sqlite: %+v", c.SQLite)
			}
		}},
		{"prefixed wins", []string{"PERSISTENCE_MODULE", "memory", "BANKACCOUNTS_PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "a.db", "BANKACCOUNTS_SQLITE_DBNAME", "b.db"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleSQLite || c.SQLite.DBName != "b.db" {
				t.Errorf("prefixed: %+v", c)
			}
		}},
		{"create table off, multi-row tracking", []string{"CREATE_TABLE", "false", "SINGLE_ROW_TRACKING", "no"}, func(t *testing.T, c *Config) {
			if !c.SkipCreateTable || !c.MultiRowTracking {
				t.Errorf("flags: %+v", c)
			}
		}},
		{"create table on", []string{"CREATE_TABLE", "y", "SINGLE_ROW_TRACKING", "1"}, func(t *testing.T, c *Config) {
			if c.SkipCreateTable || c.MultiRowTracking {
				t.Errorf("flags: %+v", c)
			}
		}},
		{"cipher and compressor", []string{"CIPHER_TOPIC", AESCipherTopic, "BANKACCOUNTS_CIPHER_KEY", testKeyB64, "COMPRESSOR_TOPIC", ZlibCompressorTopic}, func(t *testing.T, c *Config) {
			if !bytes.Equal(c.CipherKey, key) || !c.Compress {
				t.Errorf("cipher/compressor: %+v", c)
			}
			opts, err := c.MapperOptions()
			if err != nil || opts.Cipher == nil || opts.Compressor == nil {
				t.Errorf("MapperOptions: %+v, %v", opts, err)
			}
		}},
		{"compressor module name", []string{"COMPRESSOR_TOPIC", "zlib"}, func(t *testing.T, c *Config) {
			if !c.Compress {
				t.Error("zlib not set")
			}
		}},
		{"cipher key without topic turns AES on, as Python does", []string{"BANKACCOUNTS_CIPHER_KEY", testKeyB64}, func(t *testing.T, c *Config) {
			if !bytes.Equal(c.CipherKey, key) {
				t.Errorf("cipher key %x, want %x", c.CipherKey, key)
			}
			if opts, err := c.MapperOptions(); err != nil || opts.Cipher == nil {
				t.Errorf("MapperOptions: %+v, %v", opts, err)
			}
		}},
		{"empty cipher topic with a key", []string{"CIPHER_TOPIC", "", "CIPHER_KEY", testKeyB64}, func(t *testing.T, c *Config) {
			if !bytes.Equal(c.CipherKey, key) {
				t.Errorf("cipher key %x", c.CipherKey)
			}
		}},
		{"empty cipher topic and key, empty compressor topic", []string{"CIPHER_TOPIC", "", "CIPHER_KEY", "", "COMPRESSOR_TOPIC", ""}, func(t *testing.T, c *Config) {
			if c.CipherKey != nil || c.Compress {
				t.Errorf("cipher/compressor: %+v", c)
			}
		}},
		{"cryptography cipher topic", []string{"CIPHER_TOPIC", "eventsourcing.cryptography:AESCipher", "CIPHER_KEY", testKeyB64}, func(t *testing.T, c *Config) {
			if !bytes.Equal(c.CipherKey, key) {
				t.Errorf("cipher key %x", c.CipherKey)
			}
		}},
		{"default transcoder, mapper and recorders", []string{"PERSISTENCE_MODULE", "eventsourcing.sqlite", "SQLITE_DBNAME", "x.db",
			"TRANSCODER_TOPIC", JSONTranscoderTopic, "MAPPER_TOPIC", MapperTopic,
			"APPLICATION_RECORDER_TOPIC", "eventsourcing.sqlite:SQLiteApplicationRecorder",
			"TRACKING_RECORDER_TOPIC", "eventsourcing.sqlite:SQLiteTrackingRecorder",
			"BANKACCOUNTS_PROCESS_RECORDER_TOPIC", "eventsourcing.sqlite:SQLiteProcessRecorder",
			"ORIGINATOR_ID_TYPE", "UUID"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleSQLite {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"empty topics are the defaults", []string{"TRANSCODER_TOPIC", "", "MAPPER_TOPIC", "", "APPLICATION_RECORDER_TOPIC", "",
			"TRACKING_RECORDER_TOPIC", "", "PROCESS_RECORDER_TOPIC", "", "ORIGINATOR_ID_TYPE", "", "AGGREGATE_CACHE_MAXSIZE", ""}, func(t *testing.T, c *Config) {}},
		{"prefixed empty value wins over an unprefixed one", []string{"TRANSCODER_TOPIC", "x:Y", "BANKACCOUNTS_TRANSCODER_TOPIC", ""}, func(t *testing.T, c *Config) {}},
		{"snapshotting and cache flags", []string{"IS_SNAPSHOTTING_ENABLED", "y", "AGGREGATE_CACHE_FASTFORWARD", "n",
			"AGGREGATE_CACHE_FASTFORWARD_SKIPPING", "yes", "DEEPCOPY_FROM_AGGREGATE_CACHE", "off"}, func(t *testing.T, c *Config) {
			if !c.Snapshotting {
				t.Error("IS_SNAPSHOTTING_ENABLED=y: Snapshotting is false")
			}
		}},
		{"snapshotting off by default", nil, func(t *testing.T, c *Config) {
			if c.Snapshotting {
				t.Error("Snapshotting is true by default")
			}
		}},
		{"legacy INFRASTRUCTURE_FACTORY", []string{"INFRASTRUCTURE_FACTORY", "eventsourcing.sqlite:Factory", "SQLITE_DBNAME", "x.db"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleSQLite {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"legacy FACTORY_TOPIC after an empty PERSISTENCE_MODULE", []string{"PERSISTENCE_MODULE", "", "FACTORY_TOPIC", "eventsourcing.sqlite:SQLiteFactory", "SQLITE_DBNAME", "x.db"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleSQLite {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"PERSISTENCE_MODULE wins over legacy names", []string{"PERSISTENCE_MODULE", "eventsourcing.popo", "INFRASTRUCTURE_FACTORY", "eventsourcing.sqlite:Factory"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleMemory {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"factory topic in PERSISTENCE_MODULE", []string{"PERSISTENCE_MODULE", "eventsourcing.popo:POPOFactory", "APPLICATION_RECORDER_TOPIC", "eventsourcing.popo:POPOApplicationRecorder"}, func(t *testing.T, c *Config) {
			if c.Module() != ModuleMemory {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"postgres variables we can honour", append(append([]string{}, pgBase...), "POSTGRES_ENABLE_DB_FUNCTIONS", "no", "POSTGRES_MAX_WAITING", "0",
			"POSTGRES_GET_PASSWORD_TOPIC", "", "APPLICATION_RECORDER_TOPIC", "eventsourcing.postgres:PostgresApplicationRecorder"), func(t *testing.T, c *Config) {
			if c.Module() != ModulePostgres {
				t.Errorf("module %q", c.PersistenceModule)
			}
		}},
		{"postgres variables are not read for sqlite, as in Python", []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "x.db", "POSTGRES_ENABLE_DB_FUNCTIONS", "y", "POSTGRES_MAX_WAITING", "3"}, func(t *testing.T, c *Config) {}},
		{"postgres defaults", pgBase, func(t *testing.T, c *Config) {
			p := c.Postgres
			if c.Module() != ModulePostgres || p.DBName != "db" || p.Host != "localhost" || p.User != "u" || p.Password != "" ||
				p.Port != 0 || p.PoolSize != 0 || p.MaxOverflow != 0 || p.PrePing || p.Schema != "" {
				t.Errorf("postgres: %+v", p)
			}
		}},
		{"postgres all", append(append([]string{}, pgBase...),
			"POSTGRES_PORT", "5433", "POSTGRES_PASSWORD", "pw", "POSTGRES_CONNECT_TIMEOUT", "7",
			"POSTGRES_CONN_MAX_AGE", "1.5", "POSTGRES_PRE_PING", "on", "POSTGRES_POOL_SIZE", "3",
			"POSTGRES_MAX_OVERFLOW", "0", "POSTGRES_LOCK_TIMEOUT", "2",
			"POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "0", "BANKACCOUNTS_POSTGRES_SCHEMA", "myschema"),
			func(t *testing.T, c *Config) {
				p := c.Postgres
				want := PostgresConfig{DBName: "db", Host: "localhost", Port: 5433, User: "u", Password: "pw",
					ConnectTimeout: 7 * time.Second, ConnMaxAge: 1500 * time.Millisecond, PrePing: true, PoolSize: 3,
					MaxOverflow: -1, LockTimeout: 2 * time.Second, IdleInTransactionSessionTimeout: -1, Schema: "myschema"}
				if p != want {
					t.Errorf("postgres:\n got %+v\nwant %+v", p, want)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadConfig("BankAccounts", envMap(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != "BankAccounts" {
				t.Errorf("name %q", c.Name)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	pg := func(kv ...string) []string { return append(append([]string{}, pgBase...), kv...) }
	tests := []struct {
		name    string
		env     []string
		varName string // the variable the error must name
		value   string // and the value, if any
	}{
		{"unknown module", []string{"PERSISTENCE_MODULE", "mysql"}, "PERSISTENCE_MODULE", "mysql"},
		{"unknown module prefixed", []string{"BANKACCOUNTS_PERSISTENCE_MODULE", "eventsourcing.mongo"}, "BANKACCOUNTS_PERSISTENCE_MODULE", "eventsourcing.mongo"},
		{"bad create table", []string{"CREATE_TABLE", "maybe"}, "CREATE_TABLE", "maybe"},
		{"bad single row tracking", []string{"SINGLE_ROW_TRACKING", "2"}, "SINGLE_ROW_TRACKING", "2"},
		{"unknown cipher", []string{"CIPHER_TOPIC", "x:Y", "CIPHER_KEY", testKeyB64}, "CIPHER_TOPIC", "x:Y"},
		{"missing cipher key", []string{"CIPHER_TOPIC", AESCipherTopic}, "CIPHER_KEY", ""},
		{"cipher key not base64", []string{"CIPHER_TOPIC", AESCipherTopic, "CIPHER_KEY", "!!"}, "CIPHER_KEY", ""}, // a secret: not echoed
		{"cipher key wrong size", []string{"CIPHER_TOPIC", AESCipherTopic, "CIPHER_KEY", "AAEC"}, "CIPHER_KEY", ""},
		{"unknown compressor", []string{"COMPRESSOR_TOPIC", "lz4"}, "COMPRESSOR_TOPIC", "lz4"},
		{"sqlite missing dbname", []string{"PERSISTENCE_MODULE", "sqlite"}, "SQLITE_DBNAME", ""},
		{"sqlite bad lock timeout", []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "x", "SQLITE_LOCK_TIMEOUT", "soon"}, "SQLITE_LOCK_TIMEOUT", "soon"},
		{"sqlite negative lock timeout", []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "x", "SQLITE_LOCK_TIMEOUT", "-1"}, "SQLITE_LOCK_TIMEOUT", "-1"},
		{"postgres missing dbname", []string{"PERSISTENCE_MODULE", "postgres", "POSTGRES_HOST", "h", "POSTGRES_USER", "u", "POSTGRES_PASSWORD", ""}, "POSTGRES_DBNAME", ""},
		{"postgres missing host", []string{"PERSISTENCE_MODULE", "postgres", "POSTGRES_DBNAME", "d", "POSTGRES_USER", "u", "POSTGRES_PASSWORD", ""}, "POSTGRES_HOST", ""},
		{"postgres missing user", []string{"PERSISTENCE_MODULE", "postgres", "POSTGRES_DBNAME", "d", "POSTGRES_HOST", "h", "POSTGRES_PASSWORD", ""}, "POSTGRES_USER", ""},
		{"postgres missing password", []string{"PERSISTENCE_MODULE", "postgres", "POSTGRES_DBNAME", "d", "POSTGRES_HOST", "h", "POSTGRES_USER", "u"}, "POSTGRES_PASSWORD", ""},
		{"cipher key without topic not base64", []string{"CIPHER_KEY", "!!"}, "CIPHER_KEY", ""}, // a secret: not echoed
		{"cipher key without topic wrong size prefixed", []string{"BANKACCOUNTS_CIPHER_KEY", "AAEC"}, "BANKACCOUNTS_CIPHER_KEY", ""},
		{"empty cipher key with a topic", []string{"CIPHER_TOPIC", AESCipherTopic, "CIPHER_KEY", ""}, "CIPHER_KEY", ""},
		{"transcoder topic", []string{"TRANSCODER_TOPIC", "myapp:MsgpackTranscoder"}, "TRANSCODER_TOPIC", "myapp:MsgpackTranscoder"},
		{"transcoder topic prefixed", []string{"TRANSCODER_TOPIC", JSONTranscoderTopic, "BANKACCOUNTS_TRANSCODER_TOPIC", "x:Y"}, "BANKACCOUNTS_TRANSCODER_TOPIC", "x:Y"},
		{"mapper topic", []string{"MAPPER_TOPIC", "myapp:Mapper"}, "MAPPER_TOPIC", "myapp:Mapper"},
		{"application recorder topic", []string{"APPLICATION_RECORDER_TOPIC", "myapp:Recorder"}, "APPLICATION_RECORDER_TOPIC", "myapp:Recorder"},
		{"recorder topic of another module", []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "x", "TRACKING_RECORDER_TOPIC", "eventsourcing.postgres:PostgresTrackingRecorder"}, "TRACKING_RECORDER_TOPIC", "eventsourcing.postgres:PostgresTrackingRecorder"},
		{"process recorder topic", []string{"BANKACCOUNTS_PROCESS_RECORDER_TOPIC", "eventsourcing.popo:Nothing"}, "BANKACCOUNTS_PROCESS_RECORDER_TOPIC", "eventsourcing.popo:Nothing"},
		{"text originator IDs", []string{"ORIGINATOR_ID_TYPE", "text"}, "ORIGINATOR_ID_TYPE", "text"},
		{"unknown originator ID type", []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "x", "ORIGINATOR_ID_TYPE", "int"}, "ORIGINATOR_ID_TYPE", "int"},
		{"bad snapshotting flag", []string{"IS_SNAPSHOTTING_ENABLED", "sometimes"}, "IS_SNAPSHOTTING_ENABLED", "sometimes"},
		{"aggregate cache", []string{"AGGREGATE_CACHE_MAXSIZE", "100"}, "AGGREGATE_CACHE_MAXSIZE", "100"},
		{"unbounded aggregate cache", []string{"BANKACCOUNTS_AGGREGATE_CACHE_MAXSIZE", "0"}, "BANKACCOUNTS_AGGREGATE_CACHE_MAXSIZE", "0"},
		{"bad fastforward flag", []string{"AGGREGATE_CACHE_FASTFORWARD", "2"}, "AGGREGATE_CACHE_FASTFORWARD", "2"},
		{"bad fastforward skipping flag", []string{"AGGREGATE_CACHE_FASTFORWARD_SKIPPING", "x"}, "AGGREGATE_CACHE_FASTFORWARD_SKIPPING", "x"},
		{"bad deepcopy flag", []string{"DEEPCOPY_FROM_AGGREGATE_CACHE", "x"}, "DEEPCOPY_FROM_AGGREGATE_CACHE", "x"},
		{"unknown legacy factory", []string{"INFRASTRUCTURE_FACTORY", "eventsourcing_axon:Factory"}, "INFRASTRUCTURE_FACTORY", "eventsourcing_axon:Factory"},
		{"unknown legacy factory topic", []string{"PERSISTENCE_MODULE", "", "BANKACCOUNTS_FACTORY_TOPIC", "x"}, "BANKACCOUNTS_FACTORY_TOPIC", "x"},
		{"postgres db functions", pg("POSTGRES_ENABLE_DB_FUNCTIONS", "y"), "POSTGRES_ENABLE_DB_FUNCTIONS", "y"},
		{"postgres db functions not a boolean", pg("POSTGRES_ENABLE_DB_FUNCTIONS", "maybe"), "POSTGRES_ENABLE_DB_FUNCTIONS", "maybe"},
		{"postgres password function", pg("POSTGRES_GET_PASSWORD_TOPIC", "myapp:get_password"), "POSTGRES_GET_PASSWORD_TOPIC", "myapp:get_password"},
		{"postgres max waiting", pg("POSTGRES_MAX_WAITING", "10"), "POSTGRES_MAX_WAITING", "10"},
		{"postgres max waiting not a number", pg("BANKACCOUNTS_POSTGRES_MAX_WAITING", "x"), "BANKACCOUNTS_POSTGRES_MAX_WAITING", "x"},
		{"postgres bad port", pg("POSTGRES_PORT", "99999"), "POSTGRES_PORT", "99999"},
		{"postgres bad connect timeout", pg("POSTGRES_CONNECT_TIMEOUT", "x"), "POSTGRES_CONNECT_TIMEOUT", "x"},
		{"postgres bad conn max age", pg("POSTGRES_CONN_MAX_AGE", "-3"), "POSTGRES_CONN_MAX_AGE", "-3"},
		{"postgres bad pre ping", pg("POSTGRES_PRE_PING", "sometimes"), "POSTGRES_PRE_PING", "sometimes"},
		{"postgres bad pool size", pg("POSTGRES_POOL_SIZE", "0"), "POSTGRES_POOL_SIZE", "0"},
		{"postgres bad max overflow", pg("POSTGRES_MAX_OVERFLOW", "-2"), "POSTGRES_MAX_OVERFLOW", "-2"},
		{"postgres bad lock timeout", pg("POSTGRES_LOCK_TIMEOUT", "1 s"), "POSTGRES_LOCK_TIMEOUT", "1 s"},
		{"postgres bad idle timeout", pg("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "NaN"), "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", "NaN"},
		{"postgres bad schema", pg("POSTGRES_SCHEMA", "a;drop"), "POSTGRES_SCHEMA", "a;drop"},
		{"postgres schema too long prefixed", pg("BANKACCOUNTS_POSTGRES_SCHEMA", strings.Repeat("s", 64)), "BANKACCOUNTS_POSTGRES_SCHEMA", strings.Repeat("s", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadConfig("BankAccounts", envMap(tt.env...))
			if err == nil {
				t.Fatalf("no error, config %+v", c)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, ErrProgramming) {
				t.Fatalf("error %v (%T) is not a *ConfigError matching ErrProgramming", err, err)
			}
			if ce.Name != tt.varName || ce.Value != tt.value {
				t.Errorf("error names %s=%q, want %s=%q", ce.Name, ce.Value, tt.varName, tt.value)
			}
			if !strings.Contains(err.Error(), tt.varName) {
				t.Errorf("message %q does not name %s", err, tt.varName)
			}
			if strings.HasSuffix(tt.varName, "CIPHER_KEY") && (strings.Contains(err.Error(), "AAEC") || strings.Contains(err.Error(), "!!")) {
				t.Errorf("message %q shows the cipher key", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no name", Config{}, "Config.Name"},
		{"bad module", Config{Name: "a", PersistenceModule: "oracle"}, "Config.PersistenceModule"},
		{"bad key", Config{Name: "a", CipherKey: []byte{1, 2, 3}}, "Config.CipherKey"},
		{"sqlite no db", Config{Name: "a", PersistenceModule: ModuleSQLite}, "Config.SQLite.DBName"},
		{"postgres no host", Config{Name: "a", PersistenceModule: ModulePostgres, Postgres: PostgresConfig{DBName: "d", User: "u"}}, "Config.Postgres"},
		{"postgres bad schema", Config{Name: "a", PersistenceModule: ModulePostgres, Postgres: PostgresConfig{DBName: "d", Host: "h", User: "u", Schema: "x y"}}, "Config.Postgres.Schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Name != tt.field {
				t.Fatalf("Validate() = %v, want a ConfigError naming %s", err, tt.field)
			}
		})
	}
	ok := Config{Name: "a", PersistenceModule: ModuleSQLite, SQLite: SQLiteConfig{DBName: ":memory:"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestLoadConfigDurations: every duration variable takes Python's seconds
// (a number, fractions allowed) or a Go duration ("5s", "250ms", "1m30s").
// (SQLITE_LOCK_TIMEOUT=5s was refused.)
func TestLoadConfigDurations(t *testing.T) {
	sqliteBase := []string{"PERSISTENCE_MODULE", "sqlite", "SQLITE_DBNAME", "x.db"}
	vars := []struct {
		name string
		base []string
		get  func(*Config) time.Duration
	}{
		{"SQLITE_LOCK_TIMEOUT", sqliteBase, func(c *Config) time.Duration { return c.SQLite.LockTimeout }},
		{"POSTGRES_CONNECT_TIMEOUT", pgBase, func(c *Config) time.Duration { return c.Postgres.ConnectTimeout }},
		{"POSTGRES_CONN_MAX_AGE", pgBase, func(c *Config) time.Duration { return c.Postgres.ConnMaxAge }},
		{"POSTGRES_LOCK_TIMEOUT", pgBase, func(c *Config) time.Duration { return c.Postgres.LockTimeout }},
		{"POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", pgBase, func(c *Config) time.Duration { return c.Postgres.IdleInTransactionSessionTimeout }},
		{"POSTGRES_MAX_REPLICA_LAG", pgBase, func(c *Config) time.Duration { return c.Postgres.MaxReplicaLag }},
	}
	values := []struct {
		v    string
		want time.Duration
	}{
		{"5", 5 * time.Second}, {"0.25", 250 * time.Millisecond}, {" 2 ", 2 * time.Second},
		{"5s", 5 * time.Second}, {"250ms", 250 * time.Millisecond}, {"1m30s", 90 * time.Second}, {" 1h ", time.Hour},
	}
	for _, v := range vars {
		for _, val := range values {
			t.Run(v.name+"="+val.v, func(t *testing.T) {
				c, err := LoadConfig("BankAccounts", envMap(append(append([]string{}, v.base...), v.name, val.v)...))
				if err != nil {
					t.Fatal(err)
				}
				if got := v.get(c); got != val.want {
					t.Errorf("%s=%q: %v, want %v", v.name, val.v, got, val.want)
				}
			})
		}
		for _, bad := range []string{"soon", "-1", "-1s", "5 s", "5parsecs", "NaN"} {
			t.Run(v.name+"="+bad, func(t *testing.T) {
				_, err := LoadConfig("BankAccounts", envMap(append(append([]string{}, v.base...), v.name, bad)...))
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Name != v.name || ce.Value != bad {
					t.Fatalf("%s=%q: %v, want a ConfigError naming it", v.name, bad, err)
				}
				if !strings.Contains(err.Error(), "seconds") || !strings.Contains(err.Error(), "5s") {
					t.Errorf("%q does not say both forms are accepted", err)
				}
			})
		}
	}
	// Zero, in either form, still means "no limit" for the idle timeout.
	for _, zero := range []string{"0", "0s"} {
		c, err := LoadConfig("a", envMap(append(append([]string{}, pgBase...), "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", zero)...))
		if err != nil || c.Postgres.IdleInTransactionSessionTimeout != -1 {
			t.Errorf("idle timeout %q: %v, %v; want -1 (no limit)", zero, c.Postgres.IdleInTransactionSessionTimeout, err)
		}
	}
}

// TestLoadConfigPostgresHostWithPort: a POSTGRES_HOST with a port is
// refused at LoadConfig, naming the variable and POSTGRES_PORT (it passed,
// and failed at connect); host names, IP addresses (IPv6 too), socket
// directories and lists of hosts pass.
func TestLoadConfigPostgresHostWithPort(t *testing.T) {
	for _, host := range []string{"127.0.0.1:5432", "db.example.com:5433", "[::1]:5432", "a,b:5432"} {
		t.Run(host, func(t *testing.T) {
			env := append(append([]string{}, pgBase...), "BANKACCOUNTS_POSTGRES_HOST", host)
			_, err := LoadConfig("BankAccounts", envMap(env...))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Name != "BANKACCOUNTS_POSTGRES_HOST" || ce.Value != host {
				t.Fatalf("POSTGRES_HOST=%q: %v, want a ConfigError naming BANKACCOUNTS_POSTGRES_HOST", host, err)
			}
			if !strings.Contains(err.Error(), "POSTGRES_PORT") {
				t.Errorf("%q does not suggest POSTGRES_PORT", err)
			}
			cfg := Config{Name: "a", PersistenceModule: ModulePostgres, Postgres: PostgresConfig{DBName: "d", Host: host, User: "u"}}
			if err := cfg.Validate(); !errors.As(err, &ce) || ce.Name != "Config.Postgres.Host" || !strings.Contains(err.Error(), "Port") {
				t.Errorf("Validate with Host %q: %v, want a ConfigError naming Config.Postgres.Host and Port", host, err)
			}
		})
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "fe80::1%eth0", "/var/run/postgresql", "db1.example.com,db2.example.com"} {
		env := append(append([]string{}, pgBase...), "POSTGRES_HOST", host)
		if c, err := LoadConfig("BankAccounts", envMap(env...)); err != nil || c.Postgres.Host != host {
			t.Errorf("POSTGRES_HOST=%q: %v", host, err)
		}
	}
}

// TestLoadConfigPostgresTLS: POSTGRES_SSLMODE and POSTGRES_SSLROOTCERT
// (this library's; the Python library leaves TLS to libpq's PGSSLMODE,
// which an empty SSLMode leaves in force here too) fill PostgresConfig;
// an unknown mode names the variable.
func TestLoadConfigPostgresTLS(t *testing.T) {
	for _, mode := range []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"} {
		env := append(append([]string{}, pgBase...), "BANKACCOUNTS_POSTGRES_SSLMODE", mode, "POSTGRES_SSLROOTCERT", "/etc/ca.pem")
		c, err := LoadConfig("BankAccounts", envMap(env...))
		if err != nil || c.Postgres.SSLMode != mode || c.Postgres.SSLRootCert != "/etc/ca.pem" {
			t.Errorf("POSTGRES_SSLMODE=%s: %+v, %v", mode, c, err)
		}
	}
	c, err := LoadConfig("BankAccounts", envMap(pgBase...))
	if err != nil || c.Postgres.SSLMode != "" {
		t.Errorf("default SSLMode: %q, %v; want empty (libpq's default: PGSSLMODE, else prefer)", c.Postgres.SSLMode, err)
	}
	_, err = LoadConfig("BankAccounts", envMap(append(append([]string{}, pgBase...), "POSTGRES_SSLMODE", "on")...))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Name != "POSTGRES_SSLMODE" || ce.Value != "on" || !strings.Contains(err.Error(), "verify-full") {
		t.Errorf("POSTGRES_SSLMODE=on: %v, want a ConfigError naming it and the modes", err)
	}
	cfg := Config{Name: "a", PersistenceModule: ModulePostgres, Postgres: PostgresConfig{DBName: "d", Host: "h", User: "u", SSLMode: "yes"}}
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Name != "Config.Postgres.SSLMode" {
		t.Errorf("Validate with SSLMode yes: %v, want a ConfigError naming Config.Postgres.SSLMode", err)
	}
}
