package eventsourcing_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/postgres"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// envRotateChild makes TestRotateKeysChildProcess rotate a store: its value
// is "sqlite <file>" or "postgres <schema>", and EVENTSOURCING_ROTATE_KEYS
// holds the current and previous keys in base64, comma-separated.
const envRotateChild = "EVENTSOURCING_ROTATE_CHILD"

// openRotateStore opens the events recorder of a kill test's store.
func openRotateStore(t *testing.T, kind, where string) *es.SQLRecorder {
	t.Helper()
	var db *sql.DB
	var d es.Dialect
	schema := ""
	switch kind {
	case "sqlite":
		var err error
		if db, err = sqlite.Open(context.Background(), where, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		d = sqlite.Dialect{}
	default:
		db, d, schema = pgtest.DB(t), postgres.Dialect{}, where
	}
	return newSQLRecorder(t, db, d, schema, es.SQLOptions{AppName: "Rotation"})
}

// TestRotateKeysChildProcess is the rotating process of
// TestRotateKeysKilled: it rotates batches of 5 rows, printing a line
// after each and pausing, until it is killed.
func TestRotateKeysChildProcess(t *testing.T) {
	spec := os.Getenv(envRotateChild)
	if spec == "" {
		t.Skip("run by TestRotateKeysKilled only")
	}
	kind, where, _ := strings.Cut(spec, " ")
	rec := openRotateStore(t, kind, where)
	var keys [][]byte
	for _, k := range strings.Split(os.Getenv("EVENTSOURCING_ROTATE_KEYS"), ",") {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b)
	}
	c := mustCipher(t, keys[0], keys[1:]...)
	_, err := es.RotateKeys(context.Background(), rec, c, &es.RotateOptions{BatchSize: 5, Progress: func(p es.RotateProgress) {
		fmt.Printf("rotated %d\n", p.Rotated)
		time.Sleep(50 * time.Millisecond)
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRotateKeysKilled kills (SIGKILL) a process rotating a store from
// key A to key B after a few batches, on SQLite and PostgreSQL: the store
// is left part under B and part under A, every row whole (it reads with
// both keys); a rotation started again completes, and B alone then reads
// every row to its plaintext from before.
func TestRotateKeysKilled(t *testing.T) {
	kinds := []string{"sqlite"}
	if os.Getenv("EVENTSOURCING_POSTGRES_DSN") != "" {
		kinds = append(kinds, "postgres")
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			where := filepath.Join(t.TempDir(), "rotate.db")
			if kind == "postgres" {
				where = pgtest.Schema(t, pgtest.DB(t))
			}
			rec := openRotateStore(t, kind, where)
			keyA, keyB := randomKey(t), randomKey(t)
			cA, cB, cBA := mustCipher(t, keyA), mustCipher(t, keyB), mustCipher(t, keyB, keyA)
			store := es.NewEventStore(rotMapper(t, cA), rec)
			for i := range 40 {
				id := uuid.New()
				if _, err := store.Put(ctx, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: i + 1}, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 2), Amount: i + 2}); err != nil {
					t.Fatal(err)
				}
			}
			before := rawEvents(t, rec, cA)

			cmd := exec.Command(os.Args[0], "-test.run=^TestRotateKeysChildProcess$", "-test.count=1", "-test.v")
			b64 := base64.StdEncoding.EncodeToString
			cmd.Env = append(os.Environ(), envRotateChild+"="+kind+" "+where, "EVENTSOURCING_ROTATE_KEYS="+b64(keyB)+","+b64(keyA))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines, batches := bufio.NewScanner(out), 0
			for batches < 3 && lines.Scan() {
				if strings.HasPrefix(lines.Text(), "rotated ") {
					batches++
				}
			}
			cmd.Process.Kill()
			cmd.Wait()
			if batches < 3 {
				t.Fatalf("the rotating process reported %d batches before it ended", batches)
			}

			underB := 0
			for k := range rawEvents(t, rec, cBA) { // every row whole, under one key or the other
				if _, err := cB.Decrypt(mustState(t, rec, k)); err == nil {
					underB++
				}
			}
			if underB < 15 || underB >= len(before) {
				t.Errorf("%d of %d rows under key B after the kill, want at least 3 batches of 5 and not all", underB, len(before))
			}
			p, err := es.RotateKeys(ctx, rec, cBA, nil)
			if err != nil || !p.Done || p.Rotated != int64(len(before)-underB) {
				t.Fatalf("rotation started again: %+v, %v; want the other %d rotated", p, err, len(before)-underB)
			}
			after := rawEvents(t, rec, cB)
			for k, was := range before {
				if now := after[k]; now.id != was.id || now.topic != was.topic || string(now.plaintext) != string(was.plaintext) {
					t.Errorf("%s: after %+v, before %+v", k, now, was)
				}
			}
		})
	}
}

// mustState returns the stored state of one row.
func mustState(t *testing.T, rec es.AggregateRecorder, k es.StateKey) []byte {
	t.Helper()
	evs, err := rec.SelectEvents(context.Background(), k.OriginatorID, &es.Query{GTE: k.OriginatorVersion, LTE: k.OriginatorVersion})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%s: %d rows, %v", k, len(evs), err)
	}
	return evs[0].State
}
