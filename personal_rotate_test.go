package eventsourcing_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
	_ "github.com/seed06b138f8/eventsourcing/dialect/sqlite"
)

// TestRotatePersonalKeys: data keys wrapped under key A are re-wrapped
// under B while the personal values stay readable; then keys under B
// alone open every value, and A alone is ErrDecrypt (an error, never
// "forgotten"). A forgotten key stays forgotten.
func TestRotatePersonalKeys(t *testing.T) {
	for _, b := range personalBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			rawA, _ := es.CreateKey(32)
			rawB, _ := es.CreateKey(32)
			keyA, _ := es.DecodeKey(rawA)
			keyB, _ := es.DecodeKey(rawB)
			cA, _ := es.NewAESCipher(keyA)
			f := newPersonalFixture(t, b, cA)
			var ids []uuid.UUID
			for range 7 {
				id := uuid.New()
				ids = append(ids, id)
				if _, err := f.events.Put(ctx, register(id, aliceName, aliceEmail, "UK")); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.keys.Forget(ctx, ids[0], "before rotation"); err != nil {
				t.Fatal(err)
			}

			// The same table, seen with B current and A previous.
			rotating, _ := es.NewAESCipherKeys(keyB, keyA)
			keysAB := reopenKeys(t, f, rotating)
			var reports []es.RotateProgress
			p, err := es.RotatePersonalKeys(ctx, keysAB, rotating, &es.RotateOptions{BatchSize: 4, Progress: func(p es.RotateProgress) { reports = append(reports, p) }})
			if err != nil {
				t.Fatal(err)
			}
			if p.Scanned != 6 || p.Rotated != 6 || !p.Done || len(reports) != 2 || p.Table != f.keys.Table() {
				t.Errorf("progress %+v (%d reports), want 6 of 6 rotated in 2 batches", p, len(reports))
			}
			if p, err := es.RotatePersonalKeys(ctx, keysAB, rotating, nil); err != nil || p.Rotated != 0 || p.Scanned != 6 {
				t.Errorf("again: %+v, %v, want nothing rotated", p, err)
			}

			cB, _ := es.NewAESCipher(keyB)
			read := func(keys *es.PersonalKeys) ([]*pRegistered, error) {
				var out []*pRegistered
				st := *f.events
				st.Personal = keys
				for _, id := range ids {
					evs, err := st.Get(ctx, id, nil)
					if err != nil {
						return nil, err
					}
					out = append(out, evs[0].(*pRegistered))
				}
				return out, nil
			}
			// The events are under A (the application cipher is not
			// rotated here): read them with the cipher A, the keys with B.
			got, err := read(reopenKeys(t, f, cB))
			if err != nil {
				t.Fatalf("keys under B alone: %v", err)
			}
			if !got[0].Name.Forgotten() {
				t.Error("a forgotten key came back from rotation")
			}
			for _, e := range got[1:] {
				if e.Name.Value() != aliceName {
					t.Errorf("after rotation: %+v", e)
				}
			}
			if _, err := read(reopenKeys(t, f, cA)); !errors.Is(err, es.ErrDecrypt) {
				t.Errorf("keys under A alone after rotation: %v, want ErrDecrypt", err)
			}

			plain := reopenKeys(t, f, nil)
			if _, err := es.RotatePersonalKeys(ctx, plain, rotating, nil); !errors.Is(err, es.ErrProgramming) {
				t.Errorf("unwrapped keys: %v, want ErrProgramming", err)
			}
		})
	}
}

// reopenKeys returns another PersonalKeys on the fixture's keys, with
// cipher c and an empty cache.
func reopenKeys(t *testing.T, f *personalFixture, c es.Cipher) *es.PersonalKeys {
	t.Helper()
	return f.keys.WithCipher(c)
}

// TestOpenAppPersonalData: AppOptions.PersonalData creates the keys
// table with the application's tables, wires the keys into events,
// snapshots and the repository, and Store.RotateKeys re-wraps them.
func TestOpenAppPersonalData(t *testing.T) {
	ctx := context.Background()
	keyA, _ := es.CreateKey(32)
	keyB, _ := es.CreateKey(32)
	env := map[string]string{
		"PERSISTENCE_MODULE": "sqlite", "SQLITE_DBNAME": filepath.Join(t.TempDir(), "crm.db"),
		"CIPHER_KEY": keyA, "IS_SNAPSHOTTING_ENABLED": "y",
	}
	open := func() *es.App[*pCustomer] {
		t.Helper()
		cfg, err := es.LoadConfig("CRM", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		app, err := es.OpenAppConfig[*pCustomer](ctx, cfg, &es.AppOptions{PersonalData: true, AggregateTopic: "crm:Customer",
			Topics: map[string]es.Event{"crm:Registered": &pRegistered{}, "crm:Visited": &pVisited{}, "crm:Referred": &pReferred{}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close() })
		return app
	}
	app := open()
	if app.Personal == nil || app.Events.Personal != app.Personal || app.Snapshots.Personal != app.Personal || app.Store.Personal != app.Personal {
		t.Fatal("PersonalData: keys not wired")
	}
	if app.Personal.Table() != "personal_keys" {
		t.Errorf("table %q", app.Personal.Table())
	}
	alice := uuid.New()
	if _, err := app.Events.Put(ctx, register(alice, aliceName, aliceEmail, "UK")); err != nil {
		t.Fatal(err)
	}
	c, err := app.Load(ctx, alice)
	if err != nil || c.Name.Value() != aliceName {
		t.Fatalf("load: %+v, %v", c, err)
	}
	if err := app.TakeSnapshot(ctx, c); err != nil {
		t.Fatal(err)
	}
	app.Close()

	env["CIPHER_KEY"], env["CIPHER_KEY_PREVIOUS"] = keyB, keyA
	app = open()
	if err := app.Store.RotateKeys(ctx, app.MapperOptions.Cipher.(es.KeyRotator), nil); err != nil {
		t.Fatal(err)
	}
	app.Close()

	delete(env, "CIPHER_KEY_PREVIOUS")
	app = open()
	c, err = app.Load(ctx, alice)
	if err != nil || c.Name.Value() != aliceName || c.Email.Value() != aliceEmail {
		t.Fatalf("load with key B alone: %+v, %v", c, err)
	}
	if err := app.Personal.Forget(ctx, alice, "erasure"); err != nil {
		t.Fatal(err)
	}
	c, err = app.Load(ctx, alice)
	if err != nil || !c.Name.Forgotten() || c.Country != "UK" {
		t.Fatalf("load after Forget: %+v, %v", c, err)
	}
}
