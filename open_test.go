package eventsourcing_test

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// TestOpenFromEnvironment opens each persistence module from environment
// variables alone and records an event through it.
func TestOpenFromEnvironment(t *testing.T) {
	envs := map[string]func(t *testing.T) map[string]string{
		"memory": func(t *testing.T) map[string]string {
			return map[string]string{"PERSISTENCE_MODULE": "eventsourcing.popo"}
		},
		"sqlite": func(t *testing.T) map[string]string {
			return map[string]string{"PERSISTENCE_MODULE": "eventsourcing.sqlite", "BANKACCOUNTS_SQLITE_DBNAME": filepath.Join(t.TempDir(), "x.db"),
				"SQLITE_LOCK_TIMEOUT": "2", "COMPRESSOR_TOPIC": es.ZlibCompressorTopic, "CIPHER_TOPIC": es.AESCipherTopic, "CIPHER_KEY": interopKey}
		},
		"sqlite memory": func(t *testing.T) map[string]string {
			return map[string]string{"PERSISTENCE_MODULE": "sqlite", "SQLITE_DBNAME": ":memory:"}
		},
		"postgres": func(t *testing.T) map[string]string {
			u, err := url.Parse(pgtest.DSN(t))
			if err != nil {
				t.Fatal(err)
			}
			db := pgtest.DB(t)
			schema := pgtest.Schema(t, db)
			pw, _ := u.User.Password()
			return map[string]string{"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": u.Hostname(), "POSTGRES_PORT": u.Port(),
				"POSTGRES_DBNAME": strings.TrimPrefix(u.Path, "/"), "POSTGRES_USER": u.User.Username(), "POSTGRES_PASSWORD": pw,
				"POSTGRES_SCHEMA": schema, "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "2", "POSTGRES_LOCK_TIMEOUT": "3",
				"POSTGRES_CONN_MAX_AGE": "60", "POSTGRES_PRE_PING": "y", "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
				"SINGLE_ROW_TRACKING": "false"}
		},
	}
	ctx := context.Background()
	for name, env := range envs {
		t.Run(name, func(t *testing.T) {
			vars := env(t)
			store, events := openFromVars(t, vars)
			id := uuid.New()
			if _, err := events.PutWithTracking(ctx, es.Tracking{ApplicationName: "Up", NotificationID: 1},
				&MoneyDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: 5}); err != nil {
				t.Fatal(err)
			}
			got, err := events.Get(ctx, id, nil)
			if err != nil || len(got) != 1 {
				t.Fatalf("Get: %v, %v", got, err)
			}
			if _, err := store.Snapshots.InsertEvents(ctx, []es.StoredEvent{{OriginatorID: id, OriginatorVersion: 1, Topic: es.SnapshotTopic}}, nil); err != nil {
				t.Fatal(err)
			}
			if sr, ok := store.Recorder.(*es.SQLRecorder); ok && name == "postgres" {
				if tbl := sr.EventsTable(); tbl.Name != "bankaccounts_events" || tbl.Schema != vars["POSTGRES_SCHEMA"] {
					t.Errorf("events table %v", tbl)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	// Nothing is created when the configuration is wrong.
	if _, err := es.Open(ctx, &es.Config{Name: "A", PersistenceModule: "sqlite"}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("sqlite without a database name: %v", err)
	}
	cfg := &es.Config{Name: "A", PersistenceModule: "postgres", Postgres: es.PostgresConfig{Host: "127.0.0.1", Port: 1, DBName: "x", User: "u"}}
	if _, err := es.Open(ctx, cfg); !errors.Is(err, es.ErrOperational) {
		t.Errorf("unreachable postgres: %v", err)
	}
	dir := t.TempDir()
	cfg = &es.Config{Name: "A", PersistenceModule: "sqlite", SkipCreateTable: true, SQLite: es.SQLiteConfig{DBName: filepath.Join(dir, "x.db")}}
	store, err := es.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Recorder.MaxNotificationID(ctx); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("CREATE_TABLE=false leaves no table: %v", err)
	}
}

// TestOpenCipherKeyWithoutTopic opens stores from a CIPHER_KEY without a
// CIPHER_TOPIC, which the Python library takes to mean AES: the stored
// states must be ciphertext that the key opens.
func TestOpenCipherKeyWithoutTopic(t *testing.T) {
	ctx := context.Background()
	aes, err := es.NewAESCipherBase64(interopKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, vars := range map[string]map[string]string{
		"memory": {"BANKACCOUNTS_CIPHER_KEY": interopKey},
		"sqlite": {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": filepath.Join(t.TempDir(), "x.db"), "CIPHER_KEY": interopKey, "CIPHER_TOPIC": ""},
	} {
		t.Run(name, func(t *testing.T) {
			store, events := openFromVars(t, vars)
			id := uuid.New()
			if _, err := events.Put(ctx, &MoneyDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: 123456}); err != nil {
				t.Fatal(err)
			}
			stored, err := store.Recorder.SelectEvents(ctx, id, nil)
			if err != nil || len(stored) != 1 {
				t.Fatalf("SelectEvents: %v, %v", stored, err)
			}
			if strings.Contains(string(stored[0].State), "123456") {
				t.Fatalf("state stored in plaintext: %s", stored[0].State)
			}
			plain, err := aes.Decrypt(stored[0].State)
			if err != nil || !strings.Contains(string(plain), `"amount":123456`) {
				t.Fatalf("the key does not open the stored state: %q, %v", plain, err)
			}
		})
	}
}

// openFromVars opens the store the variables configure (closed when the
// test ends) and an event store of MoneyDeposited on its events.
func openFromVars(t *testing.T, vars map[string]string) (*es.Store, *es.EventStore[es.Event]) {
	t.Helper()
	cfg, err := es.LoadConfig("BankAccounts", func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	store, err := es.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	opts, err := cfg.MapperOptions()
	if err != nil {
		t.Fatal(err)
	}
	m := es.NewMapper[es.Event](opts)
	if err := m.Register(&MoneyDeposited{}); err != nil {
		t.Fatal(err)
	}
	return store, es.NewEventStore(m, store.Recorder)
}
