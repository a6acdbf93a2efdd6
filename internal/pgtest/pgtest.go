// Package pgtest gives tests a PostgreSQL database when one is configured:
// EVENTSOURCING_POSTGRES_DSN names it, and without it the tests skip with a
// message saying so, unless EVENTSOURCING_REQUIRE_POSTGRES=1 (set by CI),
// which turns the skip into a failure.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
)

// Environment variables read by the package.
const (
	EnvDSN     = "EVENTSOURCING_POSTGRES_DSN"
	EnvRequire = "EVENTSOURCING_REQUIRE_POSTGRES"
)

// DSN returns the test database's connection string, or skips the test
// (fails it, if PostgreSQL is required) when none is configured.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		msg := "set " + EnvDSN + " to run the PostgreSQL tests (see README)"
		if os.Getenv(EnvRequire) == "1" {
			t.Fatal(msg + "; " + EnvRequire + "=1 requires them")
		}
		t.Skip(msg)
	}
	return dsn
}

// DB opens the test database, closed when the test ends.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), DSN(t))
	if err != nil {
		t.Fatalf("open PostgreSQL (%s): %v", EnvDSN, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Schema creates a schema of its own for the test and drops it, with
// everything in it, when the test ends.
func Schema(t testing.TB, db *sql.DB) string {
	t.Helper()
	name := "estest_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	if _, err := db.Exec("CREATE SCHEMA " + name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + name + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// UniqueName returns a table name no other test uses.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s_%s", prefix, strings.ReplaceAll(uuid.NewString(), "-", "")[:12])
}
