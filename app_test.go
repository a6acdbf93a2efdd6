package eventsourcing_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
)

// bankTopics are the explicit topics the App tests register.
var bankTopics = map[string]es.Event{
	"bank:AccountOpened":  &AccountOpened{},
	"bank:MoneyDeposited": &MoneyDeposited{},
	"bank:MoneyWithdrawn": &MoneyWithdrawn{},
}

// openTestApp opens the application the variables configure (closed
// when the test ends).
func openTestApp(t *testing.T, vars map[string]string, opts *es.AppOptions) (*es.App[*BankAccount], error) {
	t.Helper()
	cfg, err := es.LoadConfig("BankAccounts", mapLookup(vars))
	if err != nil {
		t.Fatal(err)
	}
	app, err := es.OpenAppConfig[*BankAccount](context.Background(), cfg, opts)
	if err == nil {
		t.Cleanup(func() { app.Close() })
	}
	return app, err
}

// TestAppSnapshotsAsEvents opens an application with a cipher and a
// compressor configured, on each backend: events and snapshots are both
// stored compressed and encrypted (before App, a snapshot store made
// without the options stored plaintext next to encrypted events), the
// aggregate loads from its snapshot, and the App opens again on the same
// store, but not with another configuration.
func TestAppSnapshotsAsEvents(t *testing.T) {
	ctx := context.Background()
	aes, err := es.NewAESCipherBase64(interopKey)
	if err != nil {
		t.Fatal(err)
	}
	backends := pipelineBackends()
	backends["memory"] = func(t *testing.T) map[string]string { return map[string]string{} }
	for backend, base := range backends {
		t.Run(backend, func(t *testing.T) {
			vars := merged(base(t), pipelineVars["zlib+aes"])
			opts := &es.AppOptions{Topics: bankTopics, AggregateTopic: "bank:BankAccount", Repository: es.RepositoryOptions{SnapshotEvery: 2}}
			app, err := openTestApp(t, vars, opts)
			if err != nil {
				t.Fatal(err)
			}
			acct, err := OpenAccount("Secret Sam")
			if err != nil {
				t.Fatal(err)
			}
			if err := acct.Deposit(123456); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Save(ctx, acct); err != nil {
				t.Fatal(err)
			}
			id := acct.ID()
			snap, err := app.Snapshots.Latest(ctx, id, 0)
			if err != nil || snap == nil || snap.Version != 2 || snap.Topic != "bank:BankAccount" {
				t.Fatalf("snapshot: %+v, %v", snap, err)
			}
			for what, rec := range map[string]es.AggregateRecorder{"events": app.Store.Recorder, "snapshots": app.Store.Snapshots} {
				stored, err := rec.SelectEvents(ctx, id, nil)
				if err != nil || len(stored) == 0 {
					t.Fatalf("%s: %v, %v", what, stored, err)
				}
				for _, se := range stored {
					if bytes.Contains(se.State, []byte("Secret Sam")) || bytes.Contains(se.State, []byte("123456")) {
						t.Errorf("%s stored in plaintext: %s", what, se.State)
					}
					plain, err := aes.Decrypt(se.State)
					if err != nil {
						t.Fatalf("%s: not encrypted under the key: %v", what, err)
					}
					if _, err := (es.ZlibCompressor{}).Decompress(plain); err != nil {
						t.Errorf("%s: not compressed: %v", what, err)
					}
				}
			}
			if _, err := app.Update(ctx, id, func(a *BankAccount) error { return a.Withdraw(456) }); err != nil {
				t.Fatal(err)
			}
			if backend == "memory" {
				return // a memory store does not outlive its App
			}
			app.Close()

			again, err := openTestApp(t, vars, opts)
			if err != nil {
				t.Fatalf("open again: %v", err)
			}
			got, err := again.Load(ctx, id)
			if err != nil || got.Balance != 123000 || got.Version() != 3 || got.FullName != "Secret Sam" {
				t.Fatalf("Load after reopening: %+v, %v", got, err)
			}
			again.Close()

			_, err = openTestApp(t, merged(base(t), map[string]string{}), opts) // a new, empty store: fine
			if err != nil {
				t.Fatalf("new store: %v", err)
			}
			plain := merged(vars, map[string]string{es.EnvCipherKey: "", es.EnvCipherTopic: "", es.EnvCompressorTopic: ""})
			_, err = openTestApp(t, plain, opts)
			var pe *es.PipelineError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), es.EnvCipherKey) {
				t.Fatalf("opened without the cipher: %v", err)
			}
		})
	}
}

// TestAppSnapshotsOff: without SnapshotEvery or IS_SNAPSHOTTING_ENABLED,
// the App has no snapshot store and loads from events alone;
// IS_SNAPSHOTTING_ENABLED gives it one, for snapshots on demand.
func TestAppSnapshotsOff(t *testing.T) {
	ctx := context.Background()
	app, err := openTestApp(t, map[string]string{}, &es.AppOptions{Topics: bankTopics})
	if err != nil {
		t.Fatal(err)
	}
	if app.Snapshots != nil {
		t.Errorf("snapshot store without snapshotting")
	}
	acct, _ := OpenAccount("Ann")
	if _, err := app.Save(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if err := app.TakeSnapshot(ctx, acct); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("TakeSnapshot without snapshots: %v", err)
	}
	app, err = openTestApp(t, map[string]string{es.EnvIsSnapshottingEnabled: "y"}, &es.AppOptions{Topics: bankTopics})
	if err != nil {
		t.Fatal(err)
	}
	if app.Snapshots == nil || app.Snapshots.AggregateTopic != es.DefaultTopic(reflect.TypeFor[*BankAccount]()) {
		t.Fatalf("IS_SNAPSHOTTING_ENABLED: snapshots %+v", app.Snapshots)
	}
	if _, err := app.Save(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if err := app.TakeSnapshot(ctx, acct); err != nil {
		t.Fatal(err)
	}
}

// TestAppEnvironment: OpenApp reads the environment, prefixed names first,
// and the defaults where it sets nothing.
func TestAppEnvironment(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{es.EnvPersistenceModule, es.EnvSQLiteDBName, es.EnvCipherKey, es.EnvCipherTopic, es.EnvCompressorTopic, es.EnvIsSnapshottingEnabled} {
		if _, ok := os.LookupEnv(k); ok {
			t.Setenv(k, "") // empty means the default, as unset does
		}
		if _, ok := os.LookupEnv("BANKACCOUNTS_" + k); ok {
			t.Setenv("BANKACCOUNTS_"+k, "")
		}
	}
	defaults := map[string]string{es.EnvPersistenceModule: es.ModuleSQLite, es.EnvSQLiteDBName: filepath.Join(dir, "default.db")}
	open := func() *es.App[*BankAccount] {
		t.Helper()
		app, err := es.OpenApp[*BankAccount](context.Background(), "BankAccounts", &es.AppOptions{Defaults: defaults, Topics: bankTopics})
		if err != nil {
			t.Fatal(err)
		}
		app.Close()
		return app
	}
	if app := open(); app.Config.SQLite.DBName != defaults[es.EnvSQLiteDBName] || app.Config.Module() != es.ModuleSQLite {
		t.Errorf("defaults: %+v", app.Config)
	}
	t.Setenv(es.EnvSQLiteDBName, filepath.Join(dir, "env.db"))
	if app := open(); app.Config.SQLite.DBName != filepath.Join(dir, "env.db") {
		t.Errorf("environment over defaults: %s", app.Config.SQLite.DBName)
	}
	t.Setenv("BANKACCOUNTS_"+es.EnvSQLiteDBName, filepath.Join(dir, "prefixed.db"))
	if app := open(); app.Config.SQLite.DBName != filepath.Join(dir, "prefixed.db") {
		t.Errorf("prefixed over unprefixed: %s", app.Config.SQLite.DBName)
	}
	t.Setenv(es.EnvSQLiteLockTimeout, "soon")
	var ce *es.ConfigError
	if _, err := es.OpenApp[*BankAccount](context.Background(), "BankAccounts", &es.AppOptions{Defaults: defaults}); !errors.As(err, &ce) || ce.Name != es.EnvSQLiteLockTimeout {
		t.Errorf("bad variable: %v", err)
	}
}

// TestAppOwnCipher opens an App with a cipher of its own (the
// configuration has no key): its states are checked against that cipher,
// and Open, which knows only the configuration, refuses the store.
func TestAppOwnCipher(t *testing.T) {
	ctx := context.Background()
	aes, err := es.NewAESCipherBase64(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	vars := pipelineBackends()["sqlite"](t)
	opts := &es.AppOptions{Topics: bankTopics, Cipher: aes}
	app, err := openTestApp(t, vars, opts)
	if err != nil {
		t.Fatal(err)
	}
	acct, _ := OpenAccount("Kim")
	if _, err := app.Save(ctx, acct); err != nil {
		t.Fatal(err)
	}
	app.Close()
	if _, err := openTestApp(t, vars, opts); err != nil {
		t.Fatalf("open again with the cipher: %v", err)
	}
	if _, err := openTestApp(t, vars, &es.AppOptions{Topics: bankTopics}); !errors.As(err, new(*es.PipelineError)) {
		t.Errorf("open again without the cipher: %v", err)
	}
}

// TestAppErrors: what OpenAppConfig refuses, before opening anything.
func TestAppErrors(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	cfg := &es.Config{Name: "A", PersistenceModule: es.ModuleSQLite, SQLite: es.SQLiteConfig{DBName: path}}
	for name, opts := range map[string]*es.AppOptions{
		"empty topic":          {Topics: map[string]es.Event{"": &AccountOpened{}}},
		"one type, two topics": {Topics: map[string]es.Event{"a": &AccountOpened{}, "b": &AccountOpened{}}},
		"nil event":            {Topics: map[string]es.Event{"a": nil}},
	} {
		if _, err := es.OpenAppConfig[*BankAccount](ctx, cfg, opts); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an App refused for its topics opened the database: %v", err)
	}
	if _, err := es.OpenAppConfig[*BankAccount](ctx, cfg, &es.AppOptions{Repository: es.RepositoryOptions{SnapshotEvery: -1}}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("negative SnapshotEvery: %v", err)
	}
	if _, err := es.OpenAppConfig[*BankAccount](ctx, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil Config: %v", err)
	}
	if _, err := es.OpenAppConfig[*BankAccount](ctx, &es.Config{}, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("no name: %v", err)
	}
	app, err := es.OpenAppConfig[*BankAccount](ctx, &es.Config{Name: "A"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	acct, _ := OpenAccount("Lee")
	if _, err := app.Save(ctx, acct); !errors.Is(err, es.ErrUnknownTopic) {
		t.Errorf("save with no topics registered: %v", err)
	}
	if err := app.Mapper.Register(&AccountOpened{}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Save(ctx, acct); err != nil {
		t.Errorf("save after registering: %v", err)
	}
}
