package eventsourcing_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	"github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// rotDeposited is the event of the rotation tests.
type rotDeposited struct {
	es.DomainEvent
	Amount int    `json:"amount"`
	Note   string `json:"note"`
}

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCipher(t testing.TB, current []byte, previous ...[]byte) *es.AESCipher {
	t.Helper()
	c, err := es.NewAESCipherKeys(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rotMapper(t testing.TB, c es.Cipher) *es.Mapper[*rotDeposited] {
	t.Helper()
	m := es.NewMapper[*rotDeposited](&es.MapperOptions{Cipher: c, Compressor: &es.ZlibCompressor{}})
	if err := m.Register(&rotDeposited{}); err != nil {
		t.Fatal(err)
	}
	return m
}

// rotRow is a stored row as the rotation tests compare it.
type rotRow struct {
	id, topic string
	plaintext []byte
}

// rawRows returns every row of the events (notification ID, topic,
// plaintext under c) keyed by aggregate and version.
func rawEvents(t *testing.T, rec es.ApplicationRecorder, c es.Cipher) map[es.StateKey]rotRow {
	t.Helper()
	ns, err := rec.SelectNotifications(context.Background(), 1, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[es.StateKey]rotRow{}
	for _, n := range ns {
		pt, err := c.Decrypt(n.State)
		if err != nil {
			t.Fatalf("notification %d: %v", n.ID, err)
		}
		out[es.StateKey{OriginatorID: n.OriginatorID, OriginatorVersion: n.OriginatorVersion}] = rotRow{fmt.Sprint(n.ID), n.Topic, pt}
	}
	return out
}

// TestRotateKeys writes a store under key A (events compressed, and
// snapshots), then rotates it to key B (CIPHER_KEY=B,
// CIPHER_KEY_PREVIOUS=A) while a writer appends and a subscriber reads, on
// every recorder. Afterwards every state opens with B alone to the same
// plaintext bytes, with the same topic, notification ID and version; A
// alone is refused with ErrDecrypt; the subscriber saw every event once, in
// order, decoded; a second rotation rotates nothing.
func TestRotateKeys(t *testing.T) {
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			events, snaps := b.open(t)
			keyA, keyB := randomKey(t), randomKey(t)
			cA, cB, cBA := mustCipher(t, keyA), mustCipher(t, keyB), mustCipher(t, keyB, keyA)

			// The store as key A wrote it.
			storeA := es.NewEventStore(rotMapper(t, cA), events)
			var ids []uuid.UUID
			for i := range 20 {
				id := uuid.New()
				ids = append(ids, id)
				var evs []*rotDeposited
				for v := range 6 {
					evs = append(evs, &rotDeposited{DomainEvent: es.NewDomainEvent(id, int64(v+1)), Amount: i*10 + v + 1, Note: "personal note"})
				}
				if _, err := storeA.Put(ctx, evs...); err != nil {
					t.Fatal(err)
				}
			}
			var snapRows []es.StoredEvent
			for i, id := range ids[:7] {
				st, err := cA.Encrypt([]byte(fmt.Sprintf(`{"balance":%d}`, i)))
				if err != nil {
					t.Fatal(err)
				}
				snapRows = append(snapRows, es.StoredEvent{OriginatorID: id, OriginatorVersion: 6, Topic: "rotation:Snapshot", State: st})
			}
			if _, err := snaps.InsertEvents(ctx, snapRows, nil); err != nil {
				t.Fatal(err)
			}
			before := rawEvents(t, events, cA)

			// A writer under B (with A to read), and a subscriber.
			storeBA := es.NewEventStore(rotMapper(t, cBA), events)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var written atomic.Int64
			var writeErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					id := uuid.New()
					if _, err := storeBA.Put(ctx, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: 1}, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 2), Amount: 2}); err != nil {
						writeErr = err
						return
					}
					written.Add(2)
					time.Sleep(time.Millisecond)
				}
			}()
			subCtx, cancelSub := context.WithCancel(ctx)
			defer cancelSub()
			var mu sync.Mutex // guards seen and subErr
			var seen []int64
			var subErr error
			subDone := make(chan struct{})
			go func() {
				defer close(subDone)
				for r, err := range storeBA.Subscribe(subCtx, 0, &es.SubscribeOptions{PageSize: 9, PollInterval: 5 * time.Millisecond}) {
					mu.Lock()
					if err == nil && r.Event.Amount == 0 {
						err = fmt.Errorf("notification %d decoded empty", r.ID)
					}
					if err != nil {
						if subCtx.Err() == nil {
							subErr = err
						}
						mu.Unlock()
						return
					}
					seen = append(seen, r.ID)
					mu.Unlock()
				}
			}()

			var reports []es.RotateProgress
			st := &es.Store{Recorder: events, Snapshots: snaps}
			// The first batches wait for the writer to append and the
			// subscriber to read, so that rotation, writes and reads interleave.
			interleave := func() {
				w := written.Load()
				mu.Lock()
				r := len(seen)
				mu.Unlock()
				for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
					mu.Lock()
					read := len(seen) > r
					mu.Unlock()
					if written.Load() > w && read {
						return
					}
				}
				t.Errorf("the writer or the subscriber made no progress in 5 s during the rotation")
			}
			err := st.RotateKeys(ctx, cBA, &es.RotateOptions{BatchSize: 7, Progress: func(p es.RotateProgress) {
				reports = append(reports, p)
				if len(reports) <= 4 {
					interleave()
				}
			}})
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if writeErr != nil {
				t.Fatalf("writer during rotation: %v", writeErr)
			}
			var rotatedEvents, rotatedSnaps int64
			for _, p := range reports {
				if p.Done && p.Table == "events" {
					rotatedEvents = p.Rotated
				}
				if p.Done && p.Table == "snapshots" {
					rotatedSnaps = p.Rotated
				}
			}
			if rotatedEvents != int64(len(before)) || rotatedSnaps != int64(len(snapRows)) {
				t.Errorf("rotated %d events and %d snapshots, want %d and %d (reports %+v)", rotatedEvents, rotatedSnaps, len(before), len(snapRows), reports[len(reports)-1])
			}
			if len(reports) < 3 {
				t.Errorf("%d progress reports, want one per batch", len(reports))
			}

			// The subscriber catches up with everything, once, in order.
			maxID, err := events.MaxNotificationID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				<-time.After(10 * time.Millisecond)
				mu.Lock()
				n, failed := len(seen), subErr != nil
				caughtUp := n > 0 && seen[n-1] >= maxID
				mu.Unlock()
				if caughtUp || failed || time.Now().After(deadline) {
					break
				}
			}
			cancelSub()
			<-subDone
			if subErr != nil {
				t.Fatalf("subscriber during rotation: %v", subErr)
			}
			if int64(len(seen)) != maxID || int64(len(before))+written.Load() != maxID {
				t.Errorf("subscriber saw %d notifications, the log holds %d (%d before, %d written)", len(seen), maxID, len(before), written.Load())
			}
			for i, id := range seen {
				if id != int64(i+1) {
					t.Fatalf("subscriber's notification %d has ID %d", i, id)
				}
			}

			// B alone opens every row to the same plaintext; A alone opens none.
			after := rawEvents(t, events, cB)
			for k, was := range before {
				if now := after[k]; now.id != was.id || now.topic != was.topic || !bytes.Equal(now.plaintext, was.plaintext) {
					t.Errorf("%s: after rotation %s %s %q, before %s %s %q", k, now.id, now.topic, now.plaintext, was.id, was.topic, was.plaintext)
				}
			}
			storeB := es.NewEventStore(rotMapper(t, cB), events)
			for _, id := range ids {
				if evs, err := storeB.Get(ctx, id, nil); err != nil || len(evs) != 6 {
					t.Fatalf("aggregate %s with key B only: %d events, %v", id, len(evs), err)
				}
			}
			if _, err := es.NewEventStore(rotMapper(t, cA), events).Get(ctx, ids[0], nil); !errors.Is(err, es.ErrDecrypt) {
				t.Errorf("with key A only: %v, want ErrDecrypt", err)
			}
			for i, s := range snapRows {
				got, err := snaps.SelectEvents(ctx, s.OriginatorID, nil)
				if err != nil || len(got) != 1 {
					t.Fatalf("snapshot of %s: %d, %v", s.OriginatorID, len(got), err)
				}
				if pt, err := cB.Decrypt(got[0].State); err != nil || string(pt) != fmt.Sprintf(`{"balance":%d}`, i) || got[0].Topic != s.Topic {
					t.Errorf("snapshot %d with key B only: %q %s, %v", i, pt, got[0].Topic, err)
				}
				if _, err := cA.Decrypt(got[0].State); !errors.Is(err, es.ErrDecrypt) {
					t.Errorf("snapshot %d with key A only: %v, want ErrDecrypt", i, err)
				}
			}

			// Idempotent: nothing is left to rotate.
			p, err := es.RotateKeys(ctx, events, cBA, nil)
			if err != nil || p.Rotated != 0 || p.Scanned != maxID || !p.Done {
				t.Errorf("second rotation: %+v, %v; want %d scanned, none rotated", p, err, maxID)
			}
		})
	}
}

// stoppingRewriter is a recorder that stops (cancels its rotation's
// context) when its rotation hands it its n'th batch to write, before
// writing it: a process killed mid-rotation.
type stoppingRewriter struct {
	es.ApplicationRecorder
	rw     es.StateRewriter
	n      int
	calls  int
	cancel context.CancelFunc
}

func (s *stoppingRewriter) ScanStates(ctx context.Context, after es.StateKey, limit int) ([]es.StoredEvent, error) {
	return s.rw.ScanStates(ctx, after, limit)
}

func (s *stoppingRewriter) ReplaceStates(ctx context.Context, rs []es.StateReplacement) (int, error) {
	s.calls++
	if s.calls == s.n {
		s.cancel()
	}
	return s.rw.ReplaceStates(ctx, rs)
}

// TestRotateKeysStoppedAndResumed stops a rotation at its third batch (the
// context ends as the batch is written, as when the process is killed):
// the batch is written not at all, the store is readable with both keys
// meanwhile, and a rotation resumed from the last progress, or started
// again, completes.
func TestRotateKeysStoppedAndResumed(t *testing.T) {
	for _, b := range repoBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			events, _ := b.open(t)
			keyA, keyB := randomKey(t), randomKey(t)
			cA, cB, cBA := mustCipher(t, keyA), mustCipher(t, keyB), mustCipher(t, keyB, keyA)
			storeA := es.NewEventStore(rotMapper(t, cA), events)
			for range 10 {
				id := uuid.New()
				if _, err := storeA.Put(ctx, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: 1}, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 2), Amount: 2}); err != nil {
					t.Fatal(err)
				}
			}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stopping := &stoppingRewriter{ApplicationRecorder: events, rw: events.(es.StateRewriter), n: 3, cancel: cancel}
			var last es.RotateProgress
			p, err := es.RotateKeys(rctx, stopping, cBA, &es.RotateOptions{BatchSize: 3, Progress: func(p es.RotateProgress) { last = p }})
			if !errors.Is(err, context.Canceled) || p.Done || p.Rotated != 6 || last.Rotated != 6 {
				t.Fatalf("stopped rotation: %+v (last report %+v), %v; want 6 rotated, context.Canceled", p, last, err)
			}
			underB := 0
			rawEvents(t, events, cBA) // half rotated, it reads with both keys
			ns, err := events.SelectNotifications(ctx, 1, 100, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range ns {
				if _, err := cB.Decrypt(n.State); err == nil {
					underB++
				}
			}
			if underB != 6 {
				t.Errorf("%d states under key B after two batches of 3 and a third stopped, want 6", underB)
			}
			// Resumed where it stopped.
			p, err = es.RotateKeys(ctx, events, cBA, &es.RotateOptions{BatchSize: 3, After: last.Last})
			if err != nil || !p.Done || p.Rotated != 14 || p.Scanned != 14 {
				t.Fatalf("resumed rotation: %+v, %v; want the other 14 rotated", p, err)
			}
			// Started again: nothing left.
			p, err = es.RotateKeys(ctx, events, cBA, &es.RotateOptions{BatchSize: 3})
			if err != nil || !p.Done || p.Rotated != 0 || p.Scanned != 20 {
				t.Fatalf("rotation started again: %+v, %v; want 20 scanned, none rotated", p, err)
			}
			rawEvents(t, events, cB) // every state opens with B alone
		})
	}
}

// TestRotateKeysRefuses: no cipher, a recorder that cannot rewrite, and a
// state no key opens (a plaintext store, or another key) are errors; the
// last names the row and writes nothing.
func TestRotateKeysRefuses(t *testing.T) {
	ctx := context.Background()
	rec := es.NewMemoryRecorder()
	plain := es.NewEventStore(rotMapper(t, nil), rec)
	id := uuid.New()
	if _, err := plain.Put(ctx, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := es.RotateKeys(ctx, rec, nil, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil cipher: %v, want ErrProgramming", err)
	}
	c := mustCipher(t, randomKey(t), randomKey(t))
	if _, err := es.RotateKeys(ctx, struct{ es.AggregateRecorder }{rec}, c, nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("a recorder that is no StateRewriter: %v, want ErrProgramming", err)
	}
	if _, err := es.RotateKeys(ctx, rec, c, &es.RotateOptions{BatchSize: -1}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("negative BatchSize: %v, want ErrProgramming", err)
	}
	p, err := es.RotateKeys(ctx, rec, c, nil)
	if !errors.Is(err, es.ErrDecrypt) || !bytes.Contains([]byte(err.Error()), []byte(id.String())) || p.Rotated != 0 {
		t.Errorf("a plaintext state: %+v, %v; want ErrDecrypt naming aggregate %s", p, err, id)
	}
	if got, err := plain.Get(ctx, id, nil); err != nil || len(got) != 1 || got[0].Amount != 1 {
		t.Errorf("plaintext store after the refused rotation: %v, %v", got, err)
	}
}

// TestAESCipherKeys: a cipher with previous keys encrypts with the first
// and decrypts with whichever opens the value; Reencrypt moves a value to
// the current key and leaves one under it alone; a value no key opens is
// ErrDecrypt; a bad previous key is refused, naming its position.
func TestAESCipherKeys(t *testing.T) {
	keyA, keyB, keyC := randomKey(t), randomKey(t)[:16], randomKey(t)[:24]
	cA, cB := mustCipher(t, keyA), mustCipher(t, keyB)
	cBCA := mustCipher(t, keyB, keyC, keyA)
	if cBCA.PreviousKeys() != 2 || cA.PreviousKeys() != 0 {
		t.Errorf("PreviousKeys: %d and %d", cBCA.PreviousKeys(), cA.PreviousKeys())
	}
	plain := []byte(`{"amount":1}`)
	underA, err := cA.Encrypt(plain)
	if err != nil {
		t.Fatal(err)
	}
	underBCA, err := cBCA.Encrypt(plain)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    *es.AESCipher
		data []byte
		ok   bool
	}{
		{"written under B, read with B alone", cB, underBCA, true},
		{"written under A, read with B, C, A", cBCA, underA, true},
		{"written under B, read with B, C, A", cBCA, underBCA, true},
		{"written under B, read with A", cA, underBCA, false},
		{"written under A, read with B", cB, underA, false},
	} {
		got, err := tc.c.Decrypt(tc.data)
		if tc.ok && (err != nil || !bytes.Equal(got, plain)) {
			t.Errorf("%s: %q, %v", tc.name, got, err)
		}
		if !tc.ok && !errors.Is(err, es.ErrDecrypt) {
			t.Errorf("%s: %q, %v, want ErrDecrypt", tc.name, got, err)
		}
	}
	again, changed, err := cBCA.Reencrypt(underA)
	if err != nil || !changed {
		t.Fatalf("Reencrypt of a value under A: %v, %v", changed, err)
	}
	if got, err := cB.Decrypt(again); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("Reencrypted value with B alone: %q, %v", got, err)
	}
	if out, changed, err := cBCA.Reencrypt(underBCA); err != nil || changed || out != nil {
		t.Errorf("Reencrypt of a value under the current key: %v, %v, %v", out, changed, err)
	}
	if _, _, err := cB.Reencrypt(underA); !errors.Is(err, es.ErrDecrypt) {
		t.Errorf("Reencrypt with no key that opens it: %v, want ErrDecrypt", err)
	}
	if _, _, err := cBCA.Reencrypt([]byte("short")); !errors.Is(err, es.ErrDecrypt) {
		t.Errorf("Reencrypt of 5 bytes: %v, want ErrDecrypt", err)
	}
	if _, err := es.NewAESCipherKeys(keyA, keyB, []byte("seven b")); !errors.Is(err, es.ErrProgramming) || !bytes.Contains([]byte(err.Error()), []byte("previous key 2")) {
		t.Errorf("a bad previous key: %v, want ErrProgramming naming previous key 2", err)
	}
}

// TestConfigPreviousCipherKeys: CIPHER_KEY_PREVIOUS holds comma-separated
// base64 keys, read into Config.PreviousCipherKeys, and the configured
// cipher opens states under them and writes under CIPHER_KEY; it needs
// CIPHER_KEY, and a bad key is refused naming the variable and the key's
// position, never showing it.
func TestConfigPreviousCipherKeys(t *testing.T) {
	keyA, keyB, keyC := randomKey(t), randomKey(t), randomKey(t)[:16]
	b64 := base64.StdEncoding.EncodeToString
	load := func(env map[string]string) (*es.Config, error) {
		return es.LoadConfig("Accounts", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := load(map[string]string{"CIPHER_KEY": b64(keyB), "ACCOUNTS_CIPHER_KEY_PREVIOUS": b64(keyC) + ", " + b64(keyA)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.PreviousCipherKeys) != 2 || !bytes.Equal(cfg.PreviousCipherKeys[0], keyC) || !bytes.Equal(cfg.PreviousCipherKeys[1], keyA) {
		t.Fatalf("PreviousCipherKeys: %d keys", len(cfg.PreviousCipherKeys))
	}
	opts, err := cfg.MapperOptions()
	if err != nil {
		t.Fatal(err)
	}
	underA, _ := mustCipher(t, keyA).Encrypt([]byte("x"))
	if pt, err := opts.Cipher.Decrypt(underA); err != nil || string(pt) != "x" {
		t.Errorf("the configured cipher on a state under a previous key: %q, %v", pt, err)
	}
	written, _ := opts.Cipher.Encrypt([]byte("y"))
	if pt, err := mustCipher(t, keyB).Decrypt(written); err != nil || string(pt) != "y" {
		t.Errorf("the configured cipher writes under CIPHER_KEY: %q, %v", pt, err)
	}
	if _, ok := opts.Cipher.(es.KeyRotator); !ok {
		t.Errorf("the configured cipher %T is no KeyRotator", opts.Cipher)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"previous without current", map[string]string{"CIPHER_KEY_PREVIOUS": b64(keyA)}, "CIPHER_KEY"},
		{"not base64", map[string]string{"CIPHER_KEY": b64(keyB), "CIPHER_KEY_PREVIOUS": b64(keyA) + ",not-base64!"}, "key 2"},
		{"not an AES size", map[string]string{"CIPHER_KEY": b64(keyB), "CIPHER_KEY_PREVIOUS": b64(keyA[:10])}, "key 1"},
	} {
		_, err := load(tc.env)
		var ce *es.ConfigError
		if !errors.As(err, &ce) || ce.Name != "CIPHER_KEY_PREVIOUS" || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), b64(keyA)) {
			t.Errorf("%s: %v, want a ConfigError naming CIPHER_KEY_PREVIOUS and %q, not showing the key", tc.name, err, tc.want)
		}
	}
	for _, c := range []es.Config{
		{Name: "a", PreviousCipherKeys: [][]byte{keyA}},
		{Name: "a", CipherKey: keyB, PreviousCipherKeys: [][]byte{keyA[:7]}},
	} {
		var ce *es.ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Name != "Config.PreviousCipherKeys" {
			t.Errorf("Validate: %v, want a ConfigError naming Config.PreviousCipherKeys", err)
		}
		if _, err := c.MapperOptions(); !errors.As(err, &ce) || ce.Name != "Config.PreviousCipherKeys" {
			t.Errorf("MapperOptions: %v, want a ConfigError naming Config.PreviousCipherKeys", err)
		}
	}
}

// TestRotateKeysInterop rotates each encrypted SQLite store the Python
// library wrote (AES, and zlib then AES) from the manifest's key to a new
// one, configured as CIPHER_KEY with the old key in CIPHER_KEY_PREVIOUS:
// every event and snapshot then opens with the new key alone (the
// configuration Python would be given) to the manifest's plaintext bytes,
// under the same notification ID, topic, originator and version, decodes
// to the manifest's values, and no longer opens with the old key.
func TestRotateKeysInterop(t *testing.T) {
	forEachInteropSet(t, func(t *testing.T, m map[string]any) {
		events := manifestEvents(t, m)
		ctx := context.Background()
		forEachInteropSQLite(t, m, func(t *testing.T, file map[string]any, env map[string]string, db *sql.DB) {
			oldKey := env["BANKACCOUNTS_CIPHER_KEY"]
			if oldKey == "" {
				t.Skip("not encrypted: nothing to rotate")
			}
			newKey, err := es.CreateKey(32)
			if err != nil {
				t.Fatal(err)
			}
			rotating := maps.Clone(env)
			rotating["BANKACCOUNTS_CIPHER_KEY"], rotating["BANKACCOUNTS_CIPHER_KEY_PREVIOUS"] = newKey, oldKey
			_, _, rotOpts := interopMappers(t, rotating)
			rec, err := es.NewSQLRecorder(ctx, db, sqlite.Dialect{}, &es.SQLOptions{AppName: "BankAccounts", MultiRowTracking: sqliteMultiRow(t, file)})
			if err != nil {
				t.Fatal(err)
			}
			snaps, err := es.NewSQLSnapshotRecorder(ctx, db, sqlite.Dialect{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			st := &es.Store{Recorder: rec, Snapshots: snaps}
			rotated := map[string]int64{}
			if err := st.RotateKeys(ctx, rotOpts.Cipher.(es.KeyRotator), &es.RotateOptions{BatchSize: 3, Progress: func(p es.RotateProgress) {
				rotated[p.Table] = p.Rotated
			}}); err != nil {
				t.Fatal(err)
			}
			rows, snapRows := file["stored_events"].([]any), file["stored_snapshots"].([]any)
			if rotated["events"] != int64(len(rows)) || rotated["snapshots"] != int64(len(snapRows)) {
				t.Errorf("rotated %v, want %d events and %d snapshots", rotated, len(rows), len(snapRows))
			}

			newOnly := maps.Clone(env)
			newOnly["BANKACCOUNTS_CIPHER_KEY"] = newKey
			mapper, _, newOpts := interopMappers(t, newOnly)
			_, _, oldOpts := interopMappers(t, env)
			notes, err := rec.SelectNotifications(ctx, 1, 100, nil)
			if err != nil || len(notes) != len(rows) {
				t.Fatalf("%d notifications, %v; want %d", len(notes), err, len(rows))
			}
			for i, raw := range rows {
				row, n := asMap(raw), notes[i]
				want := events[row["event"].(string)]
				if n.ID != num(row["notification_id"]) || n.OriginatorID != want.id || n.OriginatorVersion != want.version || n.Topic != want.topic {
					t.Errorf("notification %d: %v v%d %s; want %d %v v%d %s", n.ID, n.OriginatorID, n.OriginatorVersion, n.Topic,
						num(row["notification_id"]), want.id, want.version, want.topic)
				}
				if plain := openState(t, want.key, newOpts, n.State); !bytes.Equal(plain, want.plaintext) {
					t.Errorf("%s with the new key: %s, want %s", want.key, plain, want.plaintext)
				}
				if _, err := oldOpts.Cipher.Decrypt(n.State); !errors.Is(err, es.ErrDecrypt) {
					t.Errorf("%s with the old key alone: %v, want ErrDecrypt", want.key, err)
				}
				e, err := mapper.FromStoredEvent(n.StoredEvent)
				if err != nil {
					t.Fatalf("notification %d with the new key: %v", n.ID, err)
				}
				checkDecoded(t, fmt.Sprintf("notification %d", n.ID), e, want.decoded)
			}
			for _, raw := range snapRows {
				want := events[asMap(raw)["event"].(string)]
				got, err := snaps.SelectEvents(ctx, want.id, &es.Query{GTE: want.version, LTE: want.version})
				if err != nil || len(got) != 1 || got[0].Topic != want.topic {
					t.Fatalf("%s: %v, %v", want.key, got, err)
				}
				if plain := openState(t, want.key, newOpts, got[0].State); !bytes.Equal(plain, want.plaintext) {
					t.Errorf("%s with the new key: %s, want %s", want.key, plain, want.plaintext)
				}
			}
		})
	})
}

// ExampleRotateKeys moves a store from key A to key B: the application is
// configured with CIPHER_KEY=B and CIPHER_KEY_PREVIOUS=A, so that it reads
// both while RotateKeys re-encrypts the old states; afterwards key B alone
// reads everything, and A can be dropped.
func ExampleRotateKeys() {
	ctx := context.Background()
	keyA, _ := es.CreateKey(32)
	keyB, _ := es.CreateKey(32)
	env := map[string]string{"CIPHER_KEY": keyA}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	// The store as the application wrote it under key A.
	cfg, _ := es.LoadConfig("Accounts", lookup)
	opts, _ := cfg.MapperOptions()
	m := es.NewMapper[*rotDeposited](opts)
	m.Register(&rotDeposited{})
	rec := es.NewMemoryRecorder()
	id := uuid.New()
	es.NewEventStore(m, rec).Put(ctx, &rotDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: 10})

	// Deploy B as the current key, A as a previous one; then rotate.
	env["CIPHER_KEY"], env["CIPHER_KEY_PREVIOUS"] = keyB, keyA
	cfg, _ = es.LoadConfig("Accounts", lookup)
	opts, _ = cfg.MapperOptions()
	p, err := es.RotateKeys(ctx, rec, opts.Cipher.(es.KeyRotator), &es.RotateOptions{BatchSize: 500})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("scanned %d, rotated %d, done %v\n", p.Scanned, p.Rotated, p.Done)

	// Key B alone reads the store.
	delete(env, "CIPHER_KEY_PREVIOUS")
	cfg, _ = es.LoadConfig("Accounts", lookup)
	opts, _ = cfg.MapperOptions()
	m = es.NewMapper[*rotDeposited](opts)
	m.Register(&rotDeposited{})
	evs, err := es.NewEventStore(m, rec).Get(ctx, id, nil)
	fmt.Println(len(evs), evs[0].Amount, err)
	// Output:
	// scanned 1, rotated 1, done true
	// 1 10 <nil>
}
