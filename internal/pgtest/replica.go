package pgtest

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"testing"

	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
)

// Environment variables for the tests of reads from a hot standby.
const (
	// EnvReplicaDSN names a hot standby of EVENTSOURCING_POSTGRES_DSN's
	// server (the same database), for the replica tests.
	EnvReplicaDSN = "EVENTSOURCING_POSTGRES_REPLICA_DSN"
	// EnvRequireReplica=1 (set by CI) turns the replica tests' skip into a
	// failure.
	EnvRequireReplica = "EVENTSOURCING_REQUIRE_POSTGRES_REPLICA"
	// EnvReplicaCtl is a shell command that takes "stop" or "start" as its
	// last argument and stops (fast) or starts the standby (.ci/run sets
	// it to .ci/standby.sh ctl DIR); without it the test that stops the
	// standby skips.
	EnvReplicaCtl = "EVENTSOURCING_POSTGRES_REPLICA_CTL"
)

// ReplicaDSN returns the standby's connection string, or skips the test
// (fails it, if the standby is required) when none is configured.
func ReplicaDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvReplicaDSN)
	if dsn == "" {
		msg := "set " + EnvReplicaDSN + " to a hot standby of " + EnvDSN + " to run the replica tests (see README; .ci/standby.sh makes one)"
		if os.Getenv(EnvRequireReplica) == "1" {
			t.Fatal(msg + "; " + EnvRequireReplica + "=1 requires them")
		}
		t.Skip(msg)
	}
	return dsn
}

// ReplicaDB opens the standby, closed when the test ends.
func ReplicaDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), ReplicaDSN(t))
	if err != nil {
		t.Fatalf("open the standby (%s): %v", EnvReplicaDSN, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ReplicaCtl returns a function that runs the standby's control command
// with "stop" or "start", or skips the test when EnvReplicaCtl is unset.
func ReplicaCtl(t testing.TB) func(action string) {
	t.Helper()
	ctl := os.Getenv(EnvReplicaCtl)
	if ctl == "" {
		t.Skip("set " + EnvReplicaCtl + " to a command that stops and starts the standby (\"CMD stop\", \"CMD start\"; .ci/run sets it) to run this test")
	}
	return func(action string) {
		t.Helper()
		out, err := exec.Command("sh", "-c", ctl+" "+action).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", ctl, action, err, out)
		}
	}
}
