package main

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
	"github.com/seed06b138f8/eventsourcing/internal/pgtest"
)

// Registered is an event with personal data.
type Registered struct {
	es.DomainEvent
	Name es.Personal[string] `json:"name"`
}

const registeredTopic = "cli_test:Registered"

// personalStore opens a store's events with its keys table, as the
// application does.
func personalStore(t *testing.T, s *testStore) (*es.EventStore[*Registered], *es.PersonalKeys, func()) {
	t.Helper()
	ctx := context.Background()
	cfg := s.config(t)
	st, err := es.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.MapperOptions()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.OpenPersonalKeys(ctx, cfg, opts.Cipher)
	if err != nil {
		t.Fatal(err)
	}
	m := es.NewMapper[*Registered](opts)
	if err := m.RegisterTopic(registeredTopic, &Registered{}); err != nil {
		t.Fatal(err)
	}
	events := es.NewEventStore(m, st.Recorder)
	events.Personal = keys
	return events, keys, func() { st.Close() }
}

func readName(t *testing.T, events *es.EventStore[*Registered], id uuid.UUID) es.Personal[string] {
	t.Helper()
	got, err := events.Get(context.Background(), id, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("read %s: %v, %v", id, got, err)
	}
	return got[0].Name
}

// TestCopyPersonalKeys: a store with personal data, one subject forgotten,
// copied to PostgreSQL reads back as the source does; a subject forgotten
// in the source after the copy is forgotten in the destination by the
// next copy, and its key bytes are gone from the table's file.
func TestCopyPersonalKeys(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	pg := pgtest.DB(t)
	schema := pgtest.Schema(t, pg)
	p := pipeline{name: "aes", key: testKey}
	src := sqliteStore(t, p)
	events, keys, closeSrc := personalStore(t, src)
	var ids []uuid.UUID
	for i := 0; i < 5; i++ {
		id := uuid.New()
		ids = append(ids, id)
		if _, err := events.Put(ctx, &Registered{DomainEvent: es.NewDomainEvent(id, 1), Name: es.NewPersonal("person " + id.String())}); err != nil {
			t.Fatal(err)
		}
	}
	if err := keys.Forget(ctx, ids[0], "erasure request 1"); err != nil {
		t.Fatal(err)
	}
	closeSrc()

	toPG := append([]string{"copy", "--to", dsn, "--to-schema", schema}, src.args...)
	r := mustRun(t, src.env, toPG...)
	if !strings.Contains(r.stdout, "personal_keys -> "+schema+".bank_personal_keys: 5 rows (5 copied now)") || !strings.Contains(r.stdout, "verified") {
		t.Errorf("copy:\n%s", r)
	}
	dst := postgresStoreIn(t, p, schema)
	check := func(forgotten ...uuid.UUID) {
		t.Helper()
		events, _, closeDst := personalStore(t, dst)
		defer closeDst()
		for _, id := range ids {
			name := readName(t, events, id)
			want := true
			for _, f := range forgotten {
				want = want && f != id
			}
			if name.Forgotten() == want || want && name.Value() != "person "+id.String() {
				t.Errorf("destination: %s reads %q (forgotten %v), want forgotten %v", id, name.Value(), name.Forgotten(), !want)
			}
		}
	}
	check(ids[0])
	r = mustRun(t, dst.env, append([]string{"info"}, dst.args...)...)
	if !strings.Contains(r.stdout, "personal keys      5 (1 forgotten)") {
		t.Errorf("info:\n%s", r)
	}
	r = mustRun(t, dst.env, append([]string{"verify"}, dst.args...)...)
	if !strings.Contains(r.stdout, "5 personal data keys (1 forgotten)") {
		t.Errorf("verify:\n%s", r)
	}

	// Forget a second subject in the source; copy again.
	table := schema + ".bank_personal_keys"
	var key []byte
	if err := pg.QueryRow("SELECT wrapped_key FROM "+table+" WHERE subject = $1", ids[1].String()).Scan(&key); err != nil || len(key) == 0 {
		t.Fatalf("the destination's key of %s: %v", ids[1], err)
	}
	_, keys, closeSrc = personalStore(t, src)
	if err := keys.Forget(ctx, ids[1], "erasure request 2"); err != nil {
		t.Fatal(err)
	}
	closeSrc()
	r = mustRun(t, src.env, toPG...)
	if !strings.Contains(r.stdout, "5 rows (0 copied now, 1 forgotten now") || !strings.Contains(r.stdout, "verified") {
		t.Errorf("copy after a Forget:\n%s", r)
	}
	check(ids[0], ids[1])
	if b := pgFileVacuumed(t, pg, table, key); bytes.Contains(b, key) {
		t.Errorf("the destination's keys table file still holds the forgotten key")
	}

	// Back to SQLite: the keys read there as in PostgreSQL, and verify.
	back := filepath.Join(t.TempDir(), "back.db")
	r = mustRun(t, dst.env, append([]string{"copy", "--to", back}, dst.args...)...)
	if !strings.Contains(r.stdout, "bank_personal_keys -> personal_keys: 5 rows (5 copied now)") || !strings.Contains(r.stdout, "verified") {
		t.Errorf("copy back to SQLite:\n%s", r)
	}
	mustRun(t, nil, "verify", "--app", "Bank", "--db", back, "-e", "CIPHER_KEY="+testKey)
	backStore := &testStore{app: "Bank", env: append([]string{"PERSISTENCE_MODULE=sqlite", "SQLITE_DBNAME=" + back}, p.env()...)}
	backStore.lookup = lookupOf(backStore.env)
	backEvents, _, closeBack := personalStore(t, backStore)
	for i, id := range ids {
		if name := readName(t, backEvents, id); name.Forgotten() != (i < 2) {
			t.Errorf("SQLite copy: %s forgotten %v", id, name.Forgotten())
		}
	}
	closeBack()

	// A destination holding a key the source does not have is refused.
	if _, err := pg.Exec("INSERT INTO "+table+" (key_id, subject, generation, wrapped_key, created_at) VALUES ($1, $2, 1, $3, now())",
		strings.Repeat("ab", 16), uuid.NewString(), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if r := run(t, src.env, toPG...); r.code != exitFail || !strings.Contains(r.stderr, "holds data the source does not") {
		t.Errorf("copy onto a destination holding other keys: %s", r)
	}
}

// pgFileVacuumed reads a table's file once VACUUM has removed the row
// versions holding key (retrying for up to 20 s: other tests' transactions
// keep VACUUM from removing them for moments).
func pgFileVacuumed(t *testing.T, db *sql.DB, table string, key []byte) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := db.Exec("CHECKPOINT"); err != nil {
			t.Skipf("CHECKPOINT (needs a superuser): %v", err)
		}
		var b []byte
		if err := db.QueryRow("SELECT pg_read_binary_file(pg_relation_filepath($1))", table).Scan(&b); err != nil {
			t.Skipf("read the table's file (needs a superuser): %v", err)
		}
		if !bytes.Contains(b, key) || time.Now().After(deadline) {
			return b
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := db.Exec("VACUUM " + table); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifyBadKeys: verify names each damaged row of the keys table.
func TestVerifyBadKeys(t *testing.T) {
	ctx := context.Background()
	s := sqliteStore(t, pipeline{name: "aes", key: testKey})
	events, _, closeStore := personalStore(t, s)
	for i := 0; i < 4; i++ {
		if _, err := events.Put(ctx, &Registered{DomainEvent: es.NewDomainEvent(uuid.New(), 1), Name: es.NewPersonal("x")}); err != nil {
			t.Fatal(err)
		}
	}
	closeStore()
	if r := mustRun(t, s.env, "verify", "--app", "Bank"); !strings.Contains(r.stdout, "4 personal data keys (0 forgotten)") {
		t.Errorf("verify:\n%s", r)
	}
	db, err := sqlite.Open(ctx, s.config(t).SQLite.DBName, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []string
	rows, err := db.Query("SELECT key_id FROM personal_keys ORDER BY key_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE personal_keys SET key_id = 'XYZ' WHERE key_id = ?", []any{ids[0]}},
		{"UPDATE personal_keys SET wrapped_key = NULL WHERE key_id = ?", []any{ids[1]}},
		{"UPDATE personal_keys SET wrapped_key = zeroblob(60) WHERE key_id = ?", []any{ids[2]}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, s.env, "verify", "--app", "Bank")
	if r.code != exitFail {
		t.Fatalf("verify of damaged keys: %s", r)
	}
	for _, want := range []string{
		`personal_keys key "XYZ": key_id "XYZ" is not 32 lower-case hexadecimal digits`,
		`personal_keys key "` + ids[1] + `": wrapped_key is NULL but forgotten_at is not set`,
		`personal_keys key "` + ids[2] + `": wrapped_key does not unwrap under the configured cipher`,
		"verify: 3 BAD ROWS",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify does not say %q:\n%s", want, r)
		}
	}
}

// TestCopyPersonalKeysResumed: a copy killed in the middle of the keys
// table resumes, and the copy is verified.
func TestCopyPersonalKeysResumed(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	pg := pgtest.DB(t)
	schema := pgtest.Schema(t, pg)
	p := pipeline{name: "plain"}
	src := sqliteStore(t, p)
	events, keys, closeSrc := personalStore(t, src)
	var ids []uuid.UUID
	for i := 0; i < 600; i++ {
		id := uuid.New()
		ids = append(ids, id)
		if _, err := events.Put(ctx, &Registered{DomainEvent: es.NewDomainEvent(id, 1), Name: es.NewPersonal("p")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := keys.Forget(ctx, ids[7], "gone"); err != nil {
		t.Fatal(err)
	}
	closeSrc()
	toPG := append([]string{"copy", "--to", dsn, "--to-schema", schema}, src.args...)
	copyKilledWhen(t, src.env, toPG, func(c copyProgress) bool { return c.Table == "personal_keys" && c.Copied >= 200 })
	var n int64
	if err := pg.QueryRow("SELECT COUNT(*) FROM " + schema + ".bank_personal_keys").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 200 || n >= 600 {
		t.Fatalf("after the kill the destination holds %d keys, want 200 to 599", n)
	}
	r := mustRun(t, src.env, toPG...)
	if !strings.Contains(r.stdout, "personal_keys -> "+schema+".bank_personal_keys: 600 rows") || !strings.Contains(r.stdout, "verified") {
		t.Errorf("resumed copy:\n%s", r)
	}
	dst := postgresStoreIn(t, p, schema)
	dstEvents, _, closeDst := personalStore(t, dst)
	defer closeDst()
	for i, id := range ids {
		if name := readName(t, dstEvents, id); name.Forgotten() != (i == 7) {
			t.Errorf("destination: %s forgotten %v", id, name.Forgotten())
		}
	}
}
