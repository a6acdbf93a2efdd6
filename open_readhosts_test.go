package eventsourcing_test

import (
	"context"
	"errors"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
)

// TestOpenRefusesReadHosts: Open would leave the standbys unused; it says
// to use OpenReplicated instead of ignoring the setting.
func TestOpenRefusesReadHosts(t *testing.T) {
	cfg := &es.Config{PersistenceModule: es.ModulePostgres, Postgres: es.PostgresConfig{
		DBName: "test", Host: "127.0.0.1", User: "postgres", ReadHosts: "127.0.0.1:5433"}}
	if _, err := es.Open(context.Background(), cfg); !errors.Is(err, es.ErrProgramming) {
		t.Fatalf("Open with read hosts: %v, want ErrProgramming naming OpenReplicated", err)
	}
}
