package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
)

// setEnv configures the program for a test: an SQLite file of its own,
// and none of the shell's cipher, compressor or module settings.
func setEnv(t *testing.T, path string) {
	t.Helper()
	for _, k := range []string{es.EnvCipherKey, es.EnvCipherTopic, es.EnvCompressorTopic, es.EnvIsSnapshottingEnabled, es.EnvCreateTable} {
		for _, name := range []string{k, "BANKACCOUNTS_" + k} {
			if _, ok := os.LookupEnv(name); ok {
				t.Setenv(name, "")
			}
		}
	}
	t.Setenv(es.EnvPersistenceModule, es.ModuleSQLite)
	t.Setenv("BANKACCOUNTS_"+es.EnvPersistenceModule, es.ModuleSQLite)
	t.Setenv("BANKACCOUNTS_"+es.EnvSQLiteDBName, path)
}

// TestRunAgain runs the program, adds a deposit while it is not running,
// and runs it again: the second run catches up with the deposit and adds
// its own to the same accounts.
func TestRunAgain(t *testing.T) {
	ctx := context.Background()
	setEnv(t, filepath.Join(t.TempDir(), "bank.db"))
	balances := func() string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, &out); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		_, table, ok := strings.Cut(out.String(), "balances (from the balances table):\n")
		if !ok {
			t.Fatalf("no balances printed:\n%s", out.String())
		}
		return table
	}
	if got, want := balances(), "  Alice        74.50\n  Bob          25.50\n"; got != want {
		t.Errorf("first run:\n%s\nwant\n%s", got, want)
	}

	// Another writer deposits while the projection is not running.
	app, err := es.OpenApp[*Account](ctx, "BankAccounts", &es.AppOptions{
		Topics: map[string]es.Event{"bankaccount:Opened": &Opened{}, "bankaccount:Deposited": &Deposited{}, "bankaccount:Withdrawn": &Withdrawn{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := account(ctx, app, "Alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Update(ctx, alice.ID(), func(a *Account) error { return a.Deposit(100) }); err != nil {
		t.Fatal(err)
	}
	app.Close()

	if got, want := balances(), "  Alice       150.00\n  Bob          51.00\n"; got != want {
		t.Errorf("second run:\n%s\nwant\n%s", got, want)
	}
}

// TestLength: the example stays within 150 lines of Go, not counting
// blank lines and comments.
func TestLength(t *testing.T) {
	f, err := os.Open("main.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		if line := strings.TrimSpace(s.Text()); line != "" && !strings.HasPrefix(line, "//") {
			n++
		}
	}
	if n > 150 {
		t.Errorf("main.go has %d lines of code, want at most 150", n)
	}
}
