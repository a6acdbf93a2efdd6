package eventsourcing_test

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

const interopKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func TestAESCipher(t *testing.T) {
	c, err := es.NewAESCipherBase64(interopKey)
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte(`{"a":1}`)
	ct, err := c.Encrypt(pt)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != 12+16+len(pt) {
		t.Fatalf("ciphertext is %d bytes, want nonce 12 + tag 16 + %d", len(ct), len(pt))
	}
	if got, err := c.Decrypt(ct); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	if ct2, _ := c.Encrypt(pt); bytes.Equal(ct, ct2) {
		t.Error("two encryptions share a nonce")
	}
	other, _ := es.NewAESCipher(make([]byte, 16))
	damaged := bytes.Clone(ct)
	damaged[len(damaged)-1] ^= 1
	tests := []struct {
		name string
		c    *es.AESCipher
		data []byte
		want string
	}{
		{"wrong key", other, ct, "wrong key"},
		{"damaged", c, damaged, "damaged"},
		{"damaged tag", c, append(append(bytes.Clone(ct[:12]), ct[12]^1), ct[13:]...), "authentication"},
		{"truncated", c, ct[:20], "too short"},
		{"empty", c, nil, "too short"},
	}
	for _, tt := range tests {
		_, err := tt.c.Decrypt(tt.data)
		if !errors.Is(err, es.ErrDecrypt) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrDecrypt saying %q", tt.name, err, tt.want)
		}
	}
	for _, n := range []int{16, 24, 32} {
		k, err := es.CreateKey(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := es.NewAESCipherBase64(k); err != nil {
			t.Errorf("key of %d bytes: %v", n, err)
		}
	}
	for _, n := range []int{0, 15, 33} {
		if _, err := es.NewAESCipher(make([]byte, n)); !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "bytes") {
			t.Errorf("key of %d bytes: %v", n, err)
		}
		if _, err := es.CreateKey(n); err == nil {
			t.Errorf("CreateKey(%d): no error", n)
		}
	}
	if _, err := es.NewAESCipherBase64("not base64!"); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("bad base64: %v", err)
	}
}

func TestZlibCompressor(t *testing.T) {
	data := bytes.Repeat([]byte(`{"event":"sourcing","n":12345}`), 40)
	for _, level := range []int{0, zlib.DefaultCompression, zlib.HuffmanOnly, zlib.BestSpeed, zlib.BestCompression} {
		z := es.ZlibCompressor{Level: level}
		c, err := z.Compress(data)
		if err != nil || len(c) >= len(data) {
			t.Fatalf("level %d: Compress: %d bytes, %v", level, len(c), err)
		}
		// The stream is plain zlib, as Python's zlib.decompress reads it.
		r, err := zlib.NewReader(bytes.NewReader(c))
		if err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: compress/zlib reads %d bytes, %v", level, len(got), err)
		}
		if got, err := z.Decompress(c); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: Decompress: %v", level, err)
		}
	}
	for _, level := range []int{10, -3} {
		if _, err := (es.ZlibCompressor{Level: level}).Compress(data); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("level %d: %v, want ErrProgramming", level, err)
		}
	}

	z := &es.ZlibCompressor{}
	c, err := z.Compress(data)
	if err != nil {
		t.Fatal(err)
	}
	badSum := bytes.Clone(c)
	badSum[len(badSum)-1] ^= 1
	tests := []struct {
		name string
		z    *es.ZlibCompressor
		data []byte
		want string
	}{
		{"truncated", z, c[:len(c)-5], "truncated"},
		{"truncated checksum", z, c[:len(c)-2], "truncated"},
		{"header only", z, c[:2], "truncated"},
		{"empty", z, nil, "truncated"},
		{"checksum", z, badSum, "checksum"},
		{"not zlib", z, []byte("{}"), "not a zlib stream"},
		{"reserved block type", z, []byte{0x78, 0x9c, 0xff, 0xff}, "corrupt"},
		{"trailing bytes", z, append(bytes.Clone(c), 'x'), "1 bytes after the end"},
		{"larger than MaxSize", &es.ZlibCompressor{MaxSize: len(data) - 1}, c, "more than"},
	}
	for _, tt := range tests {
		got, err := tt.z.Decompress(tt.data)
		if !errors.Is(err, es.ErrDecompress) || !strings.Contains(err.Error(), tt.want) || got != nil {
			t.Errorf("%s: %q, %v; want ErrDecompress saying %q", tt.name, got, err, tt.want)
		}
	}
	if got, err := (&es.ZlibCompressor{MaxSize: len(data)}).Decompress(c); err != nil || !bytes.Equal(got, data) {
		t.Errorf("exactly MaxSize: %v", err)
	}
	// A damaged byte anywhere is an error, never different data.
	for i := range c {
		damaged := bytes.Clone(c)
		damaged[i] ^= 0x55
		if got, err := z.Decompress(damaged); err == nil && !bytes.Equal(got, data) {
			t.Fatalf("byte %d damaged: garbage without an error", i)
		} else if err != nil && !errors.Is(err, es.ErrDecompress) {
			t.Fatalf("byte %d damaged: %v, want ErrDecompress", i, err)
		}
	}
}

// TestZlibCompressorConcurrent shares pooled writers and readers between
// goroutines; run it with -race.
func TestZlibCompressorConcurrent(t *testing.T) {
	var z es.ZlibCompressor
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				data := []byte(strings.Repeat(fmt.Sprintf("goroutine %d item %d ", g, i), i+1))
				c, err := z.Compress(data)
				if err == nil {
					var got []byte
					if got, err = z.Decompress(c); err == nil && !bytes.Equal(got, data) {
						err = fmt.Errorf("goroutine %d item %d: round trip differs", g, i)
					}
				}
				if _, derr := z.Decompress(c[:len(c)/2]); err == nil && derr == nil {
					err = fmt.Errorf("goroutine %d item %d: truncated stream decompressed", g, i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Events for mapper tests.
type mDeposited struct {
	es.DomainEvent
	Amount es.Decimal `json:"amount"`
	Note   string     `json:"note"`
}

type mRenamed struct { // class version 3: "name" was "title" in version 1, "label" in 2
	es.DomainEvent
	Name string `json:"name"`
}

func (mRenamed) ClassVersion() int { return 3 }

type mValue struct { // registered as a value type by a Mapper[mValue]
	es.DomainEvent
	N int `json:"n"`
}

func TestMapperRoundTrip(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(interopKey)
	aes, _ := es.NewAESCipher(key)
	options := map[string]*es.MapperOptions{
		"plain":    nil,
		"zlib":     {Compressor: &es.ZlibCompressor{}},
		"aes":      {Cipher: aes},
		"zlib+aes": {Compressor: &es.ZlibCompressor{}, Cipher: aes},
	}
	for name, opts := range options {
		t.Run(name, func(t *testing.T) {
			m := es.NewMapper[es.Event](opts)
			if err := m.Register(&mDeposited{}); err != nil {
				t.Fatal(err)
			}
			vm := es.NewMapper[mValue](opts) // a struct value type: only as the mapper's own type
			if err := vm.Register(mValue{}); err != nil {
				t.Fatal(err)
			}
			id := uuid.New()
			ts := time.Date(2024, 3, 1, 9, 0, 0, 1000, time.UTC)
			in := &mDeposited{DomainEvent: es.DomainEvent{Originator: id, Version: 4, Timestamp: ts}, Amount: es.MustParseDecimal("10.50"), Note: "ok"}
			se, err := m.ToStoredEvent(in)
			if err != nil {
				t.Fatal(err)
			}
			if se.Topic != "github.com/seed06b138f8/eventsourcing_test:mDeposited" || se.OriginatorID != id || se.OriginatorVersion != 4 {
				t.Errorf("stored event %+v", se)
			}
			plain := `{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T09:00:00.000001+00:00"},"amount":{"_type_":"decimal_str","_data_":"10.50"},"note":"ok"}`
			if opts == nil && string(se.State) != plain {
				t.Errorf("state %s\nwant %s", se.State, plain)
			}
			if opts != nil && bytes.Contains(se.State, []byte("10.50")) {
				t.Errorf("state is not transformed: %q", se.State)
			}
			out, err := m.FromStoredEvent(se)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := out.(*mDeposited)
			if !ok || got.Originator != id || got.Version != 4 || !got.Timestamp.Equal(ts) || got.Amount != in.Amount || got.Note != "ok" {
				t.Errorf("round trip: %#v", out)
			}
			se, err = vm.ToStoredEvent(mValue{DomainEvent: es.NewDomainEvent(id, 5), N: 3})
			if err != nil {
				t.Fatal(err)
			}
			v, err := vm.FromStoredEvent(se)
			if err != nil || v.N != 3 || v.Version != 5 {
				t.Errorf("value type: %#v, %v", v, err)
			}
		})
	}
}

func TestMapperErrors(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(interopKey)
	aes, _ := es.NewAESCipher(key)
	m := es.NewMapper[es.Event](&es.MapperOptions{Cipher: aes})
	if err := m.Register(&mDeposited{}); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	se, _ := m.ToStoredEvent(&mDeposited{DomainEvent: es.NewDomainEvent(id, 1)})

	unknown := se
	unknown.Topic = "shop:Nothing"
	if _, err := m.FromStoredEvent(unknown); !errors.Is(err, es.ErrUnknownTopic) || !strings.Contains(err.Error(), "shop:Nothing") {
		t.Errorf("unknown topic: %v", err)
	}
	if _, err := m.ToStoredEvent(&mValue{}); !errors.Is(err, es.ErrUnknownTopic) || !strings.Contains(err.Error(), "mValue") {
		t.Errorf("unregistered type: %v", err)
	}
	other, _ := es.NewAESCipher(make([]byte, 32))
	m2 := es.NewMapper[es.Event](&es.MapperOptions{Cipher: other})
	m2.Register(&mDeposited{})
	if _, err := m2.FromStoredEvent(se); !errors.Is(err, es.ErrDecrypt) || !strings.Contains(err.Error(), id.String()) {
		t.Errorf("wrong key: %v", err)
	}
	plain := es.NewMapper[es.Event](nil)
	plain.Register(&mDeposited{})
	for state, want := range map[string]error{`{"note":`: es.ErrSyntax, `{"note":1}`: es.ErrDecode, `{"amount":{"_type_":"x","_data_":1}}`: es.ErrDecode} {
		bad := es.StoredEvent{OriginatorID: id, OriginatorVersion: 1, Topic: se.Topic, State: []byte(state)}
		if _, err := plain.FromStoredEvent(bad); !errors.Is(err, want) {
			t.Errorf("state %s: %v, want %v", state, err, want)
		}
	}
	zm := es.NewMapper[es.Event](&es.MapperOptions{Compressor: &es.ZlibCompressor{}})
	zm.Register(&mDeposited{})
	if _, err := zm.FromStoredEvent(es.StoredEvent{Topic: se.Topic, State: []byte("garbage")}); !errors.Is(err, es.ErrDecompress) {
		t.Errorf("corrupt compressed state: %v", err)
	}
	if err := es.NewMapper[any2](nil).Register(badEvent{}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("type without SetOriginator: %v", err)
	}
	if err := m.RegisterTopic(se.Topic, &mValue{}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("topic registered twice: %v", err)
	}
}

type any2 = es.Event

type badEvent struct{}

func (badEvent) OriginatorID() uuid.UUID  { return uuid.Nil }
func (badEvent) OriginatorVersion() int64 { return 0 }

func TestMapperClassVersions(t *testing.T) {
	m := es.NewMapper[*mRenamed](nil)
	if err := m.RegisterTopic("shop:Renamed", &mRenamed{}); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	se, err := m.ToStoredEvent(&mRenamed{DomainEvent: es.DomainEvent{Originator: id, Version: 1, Timestamp: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}, Name: "x"})
	if err != nil || !strings.HasSuffix(string(se.State), `,"class_version":3}`) {
		t.Fatalf("state %s, %v: want class_version 3 last", se.State, err)
	}
	v1 := es.StoredEvent{OriginatorID: id, OriginatorVersion: 1, Topic: "shop:Renamed", State: []byte(`{"timestamp":{"_type_":"datetime_iso","_data_":"2024-01-01T00:00:00+00:00"},"title":"old"}`)}
	if _, err := m.FromStoredEvent(v1); !errors.Is(err, es.ErrClassVersion) {
		t.Fatalf("version 1 state of a version 3 type without upcasters: %v, want ErrClassVersion", err)
	}
	m.Upcast("shop:Renamed", 1, func(s map[string]any) error { s["label"] = s["title"]; delete(s, "title"); return nil })
	if _, err := m.FromStoredEvent(v1); !errors.Is(err, es.ErrClassVersion) || !strings.Contains(err.Error(), "from class version 2 to 3") {
		t.Errorf("missing step 2->3: %v", err)
	}
	m.Upcast("shop:Renamed", 2, func(s map[string]any) error { s["name"] = s["label"]; delete(s, "label"); return nil })
	for _, state := range []string{string(v1.State), `{"label":"old","class_version":2}`, `{"name":"old","class_version":3}`} {
		e, err := m.FromStoredEvent(es.StoredEvent{OriginatorID: id, OriginatorVersion: 1, Topic: "shop:Renamed", State: []byte(state)})
		if err != nil || e.Name != "old" {
			t.Errorf("upcast %s: %+v, %v", state, e, err)
		}
	}
	if _, err := m.FromStoredEvent(es.StoredEvent{Topic: "shop:Renamed", State: []byte(`{"class_version":4}`)}); !errors.Is(err, es.ErrClassVersion) {
		t.Errorf("newer stored version: %v", err)
	}
}

func FuzzMapperFromStoredEvent(f *testing.F) {
	key, _ := base64.StdEncoding.DecodeString(interopKey)
	aes, _ := es.NewAESCipher(key)
	plain := es.NewMapper[es.Event](nil)
	full := es.NewMapper[es.Event](&es.MapperOptions{Compressor: &es.ZlibCompressor{}, Cipher: aes})
	for _, m := range []*es.Mapper[es.Event]{plain, full} {
		m.Register(&mDeposited{}, &mValue{})
		m.RegisterTopic("shop:Renamed", &mRenamed{})
		m.Upcast("shop:Renamed", 1, func(s map[string]any) error { s["label"] = s["title"]; return nil })
		m.Upcast("shop:Renamed", 2, func(s map[string]any) error { s["name"] = s["label"]; return nil })
		se, _ := m.ToStoredEvent(&mDeposited{DomainEvent: es.NewDomainEvent(uuid.New(), 1), Amount: es.MustParseDecimal("1.5")})
		f.Add(se.Topic, se.State)
	}
	f.Add("shop:Renamed", []byte(`{"title":"x"}`))
	f.Add("github.com/seed06b138f8/eventsourcing_test:mValue", []byte(`{"n":1}`))
	f.Fuzz(func(t *testing.T, topic string, state []byte) {
		for _, m := range []*es.Mapper[es.Event]{plain, full} {
			e, err := m.FromStoredEvent(es.StoredEvent{OriginatorID: uuid.Nil, OriginatorVersion: 1, Topic: topic, State: state})
			if err == nil && e == nil {
				t.Fatal("no error and no event")
			}
		}
	})
}

// TestMapperUpcastOnlyOldStates checks that upcasters run for states below
// the type's class version and never for states at it, however the state
// is written.
func TestMapperUpcastOnlyOldStates(t *testing.T) {
	m := es.NewMapper[*mRenamed](nil)
	if err := m.RegisterTopic("shop:Renamed", &mRenamed{}); err != nil {
		t.Fatal(err)
	}
	var calls []int
	for from := 1; from <= 2; from++ {
		err := m.Upcast("shop:Renamed", from, func(s map[string]any) error {
			calls = append(calls, from)
			if from == 1 {
				s["label"] = s["title"]
			} else {
				s["name"] = s["label"]
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		state string
		calls []int
	}{
		{`{"title":"x"}`, []int{1, 2}},
		{`{"title":"x","class_version":1}`, []int{1, 2}},
		{`{"label":"x","class_version":2}`, []int{2}},
		{`{"name":"x","class_version":3}`, nil},
		{`{"name":"x", "class_version": 3}`, nil},                 // not compact: decoded as a map first
		{`{"class_version":2,"name":"x","class_version":3}`, nil}, // the last key wins, as in Python
		{`{"title":"x","k\",\"class_version":3}`, []int{1, 2}},    // a key that ends like class_version
	}
	for _, tt := range tests {
		calls = nil
		e, err := m.FromStoredEvent(es.StoredEvent{OriginatorID: uuid.New(), OriginatorVersion: 2, Topic: "shop:Renamed", State: []byte(tt.state)})
		if err != nil || e.Name != "x" || e.Version != 2 || !slices.Equal(calls, tt.calls) {
			t.Errorf("%s: %+v, %v, upcasters %v, want %v", tt.state, e, err, calls, tt.calls)
		}
	}

	boom := errors.New("boom")
	m2 := es.NewMapper[*mRenamed](nil)
	if err := m2.RegisterTopic("shop:Renamed", &mRenamed{}); err != nil {
		t.Fatal(err)
	}
	if err := m2.Upcast("shop:Renamed", 1, func(map[string]any) error { return boom }); err != nil {
		t.Fatal(err)
	}
	if err := m2.Upcast("shop:Renamed", 2, func(map[string]any) error { return nil }); err != nil {
		t.Fatal(err)
	}
	_, err := m2.FromStoredEvent(es.StoredEvent{Topic: "shop:Renamed", State: []byte(`{"title":"x"}`)})
	if !errors.Is(err, es.ErrClassVersion) || !errors.Is(err, boom) {
		t.Errorf("failing upcaster: %v, want ErrClassVersion wrapping its error", err)
	}
	bad := []struct {
		name string
		from int
		fn   func(map[string]any) error
	}{
		{"second upcaster for one step", 1, func(map[string]any) error { return nil }},
		{"from version 0", 0, func(map[string]any) error { return nil }},
		{"from version -1", -1, func(map[string]any) error { return nil }},
		{"nil function", 2, nil},
	}
	for _, tt := range bad {
		if err := m2.Upcast("shop:Renamed", tt.from, tt.fn); !errors.Is(err, es.ErrProgramming) {
			t.Errorf("%s: %v, want ErrProgramming", tt.name, err)
		}
	}
}

func TestMapperNilEvent(t *testing.T) {
	m := es.NewMapper[es.Event](nil)
	if err := m.Register(&mDeposited{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		e    es.Event
		want error
	}{
		{"nil pointer", (*mDeposited)(nil), es.ErrProgramming},
		{"nil interface", nil, es.ErrUnknownTopic},
	}
	for _, tt := range tests {
		if _, err := m.ToStoredEvent(tt.e); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := m.Register(nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("Register(nil): %v, want ErrProgramming", err)
	}
}

// TestMapperClassVersionAlwaysChecked checks stored class versions whether
// or not the topic has upcasters: a state newer than its Go type, or older
// with no upcaster chain to the type's version, is ErrClassVersion naming
// the topic and both versions; a state without "class_version" is at
// version 1, as in the Python library.
func TestMapperClassVersionAlwaysChecked(t *testing.T) {
	const renamed = "shop:Renamed"
	newMapper := func(t *testing.T, steps ...int) (*es.Mapper[es.Event], *[]int) {
		t.Helper()
		m := es.NewMapper[es.Event](nil)
		if err := m.Register(&mDeposited{}, &mValue{}); err != nil {
			t.Fatal(err)
		}
		if err := m.RegisterTopic(renamed, &mRenamed{}); err != nil {
			t.Fatal(err)
		}
		calls := new([]int)
		for _, from := range steps {
			if err := m.Upcast(renamed, from, func(s map[string]any) error {
				*calls = append(*calls, from)
				s["name"] = "up"
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		return m, calls
	}
	deposited := es.DefaultTopic(reflect.TypeFor[mDeposited]())
	value := es.DefaultTopic(reflect.TypeFor[mValue]())
	tests := []struct {
		name  string
		steps []int // upcasters registered for renamed
		topic string
		state string
		want  []string // in the error, which wraps ErrClassVersion; nil: no error
		calls []int    // upcasters run
	}{
		{"version 3 type, state without class_version, no upcasters", nil, renamed, `{"name":"x"}`, []string{renamed, "class version 1", "3"}, nil},
		{"version 3 type, state at version 1, no upcasters", nil, renamed, `{"name":"x","class_version":1}`, []string{renamed, "class version 1", "3"}, nil},
		{"version 3 type, state at version 2, no upcasters", nil, renamed, `{"name":"x","class_version":2}`, []string{renamed, "class version 2", "3"}, nil},
		{"version 3 type, state at version 99, no upcasters", nil, renamed, `{"name":"x","class_version":99}`, []string{renamed, "99", "3"}, nil},
		{"version 3 type, state at version 99, with upcasters", []int{1, 2}, renamed, `{"name":"x","class_version":99}`, []string{renamed, "99", "3"}, nil},
		{"version 3 type, state at version 4, not compact", nil, renamed, `{"name":"x", "class_version": 4}`, []string{renamed, "4", "3"}, nil},
		{"chain broken at 2, nothing runs", []int{1}, renamed, `{"name":"x"}`, []string{renamed, "class version 1", "3", "2 to 3"}, nil},
		{"chain broken at 1", []int{2}, renamed, `{"name":"x"}`, []string{renamed, "class version 1", "3", "1 to 2"}, nil},
		{"class_version zero", []int{1, 2}, renamed, `{"name":"x","class_version":0}`, []string{renamed, "class_version"}, nil},
		{"class_version a string", []int{1, 2}, renamed, `{"name":"x","class_version":"3"}`, []string{renamed, "class_version"}, nil},
		{"class_version a float", []int{1, 2}, renamed, `{"name":"x","class_version":3.0}`, []string{renamed, "class_version"}, nil},
		{"class_version null", []int{1, 2}, renamed, `{"name":"x","class_version":null}`, []string{renamed, "class_version"}, nil},
		{"version 1 type, state at version 2", nil, deposited, `{"note":"x","class_version":2}`, []string{deposited, "class version 2", "1"}, nil},
		{"version 1 type, state at version 99", nil, deposited, `{"class_version":99,"note":"x"}`, []string{deposited, "99", "1"}, nil},
		{"version 1 type, another topic, state at version 2", nil, value, `{"n":1,"class_version":2}`, []string{value, "class version 2", "1"}, nil},
		{"version 1 type, escaped key", nil, deposited, `{"note":"x","class_versio\u006e":2}`, []string{deposited, "class version 2", "1"}, nil},
		{"version 1 type, class_version zero", nil, deposited, `{"note":"x","class_version":0}`, []string{deposited, "class_version"}, nil},

		{"version 1 type, no class_version", nil, deposited, `{"note":"x"}`, nil, nil},
		{"version 1 type, class_version 1", nil, deposited, `{"note":"x","class_version":1}`, nil, nil},
		{"version 1 type, class_version in a string", nil, deposited, `{"note":"\"class_version\":2"}`, nil, nil},
		{"version 1 type, class_version in a nested object", nil, deposited, `{"note":"x","nested":{"class_version":2}}`, nil, nil},
		{"version 1 type, escapes elsewhere", nil, deposited, `{"note":"\u0001x"}`, nil, nil},
		{"version 3 type at version 3", nil, renamed, `{"name":"x","class_version":3}`, nil, nil},
		{"version 3 type at version 3, not compact", nil, renamed, `{ "class_version" : 3, "name":"x" }`, nil, nil},
		{"version 3 type, full chain", []int{1, 2}, renamed, `{"name":"x"}`, nil, []int{1, 2}},
		{"version 3 type, last step", []int{1, 2}, renamed, `{"name":"x","class_version":2}`, nil, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, calls := newMapper(t, tt.steps...)
			e, err := m.FromStoredEvent(es.StoredEvent{OriginatorID: uuid.New(), OriginatorVersion: 1, Topic: tt.topic, State: []byte(tt.state)})
			if tt.want == nil {
				if err != nil || e == nil {
					t.Fatalf("%s: %v, %v", tt.state, e, err)
				}
			} else {
				if !errors.Is(err, es.ErrClassVersion) {
					t.Fatalf("%s: %v, want ErrClassVersion", tt.state, err)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q does not say %q", tt.state, err, w)
					}
				}
			}
			if !slices.Equal(*calls, tt.calls) {
				t.Errorf("%s: upcasters run %v, want %v", tt.state, *calls, tt.calls)
			}
		})
	}
}

// TestMapperAtVersionAllocs checks that reading a state already at its
// type's class version costs no more allocations than decoding it, whether
// the type is at version 1 or above.
func TestMapperAtVersionAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts: not in -short mode or under the race detector")
	}
	m := es.NewMapper[es.Event](nil)
	if err := m.Register(&mDeposited{}); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterTopic("shop:Renamed", &mRenamed{}); err != nil {
		t.Fatal(err)
	}
	m.Upcast("shop:Renamed", 1, func(map[string]any) error { return nil })
	m.Upcast("shop:Renamed", 2, func(map[string]any) error { return nil })
	id := uuid.New()
	for _, e := range []es.Event{
		&mDeposited{DomainEvent: es.NewDomainEvent(id, 1), Amount: es.MustParseDecimal("1.5"), Note: "plain"},
		&mDeposited{DomainEvent: es.NewDomainEvent(id, 1), Note: `"class_version":2 in a string \u0041`}, // looked at, not upcast
		&mRenamed{DomainEvent: es.NewDomainEvent(id, 2), Name: "x"},
	} {
		se, err := m.ToStoredEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		tr := m.Transcoder()
		typ := reflect.TypeOf(e).Elem()
		decode := testing.AllocsPerRun(100, func() {
			if err := tr.Decode(se.State, reflect.New(typ).Interface()); err != nil {
				t.Fatal(err)
			}
		})
		mapped := testing.AllocsPerRun(100, func() {
			if _, err := m.FromStoredEvent(se); err != nil {
				t.Fatal(err)
			}
		})
		if mapped > decode {
			t.Errorf("%s: FromStoredEvent %v allocations, decoding alone %v", se.State, mapped, decode)
		}
	}
}

// TestMapperTopicAliases: a type registered under several topics writes
// the first and reads all of them, with the upcasters of its first topic.
func TestMapperTopicAliases(t *testing.T) {
	m := es.NewMapper[es.Event](nil)
	const old, python = "github.com/old/bank:Deposited", "bank:BankAccount.Deposited"
	if err := m.RegisterTopic("bank:Deposited", &mDeposited{}, old, python); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	se, err := m.ToStoredEvent(&mDeposited{DomainEvent: es.NewDomainEvent(id, 1), Note: "n"})
	if err != nil || se.Topic != "bank:Deposited" {
		t.Fatalf("written under %q (%v), want the first topic", se.Topic, err)
	}
	if topic, _ := m.Topic(&mDeposited{}); topic != "bank:Deposited" {
		t.Errorf("Topic: %q", topic)
	}
	for _, topic := range []string{"bank:Deposited", old, python} {
		in := se
		in.Topic = topic
		e, err := m.FromStoredEvent(in)
		if d, ok := e.(*mDeposited); err != nil || !ok || d.Note != "n" || d.OriginatorID() != id {
			t.Errorf("read under %q: %#v, %v", topic, e, err)
		}
	}
	// Registering again with more aliases adds them; a different first
	// topic, or an alias that is another type's topic, is refused.
	if err := m.RegisterTopic("bank:Deposited", &mDeposited{}, "older:Deposited"); err != nil {
		t.Errorf("adding an alias: %v", err)
	}
	if _, err := m.FromStoredEvent(es.StoredEvent{OriginatorID: id, OriginatorVersion: 1, Topic: "older:Deposited", State: se.State}); err != nil {
		t.Errorf("read under the added alias: %v", err)
	}
	if err := m.RegisterTopic(old, &mDeposited{}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("an alias as the written topic: %v", err)
	}
	if err := m.RegisterTopic("shop:Value", &mValue{}, python); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("another type's alias: %v", err)
	}
	if _, err := m.FromStoredEvent(es.StoredEvent{Topic: "shop:Value", State: []byte("{}")}); !errors.Is(err, es.ErrUnknownTopic) {
		t.Errorf("a refused registration left a topic behind: %v", err)
	}

	// Upcasters registered under the first topic apply to states read
	// under an alias.
	m2 := es.NewMapper[es.Event](nil)
	if err := m2.RegisterTopic("shop:Renamed", &mRenamed{}, "shop:Retitled"); err != nil {
		t.Fatal(err)
	}
	m2.Upcast("shop:Renamed", 1, func(s map[string]any) error { s["label"] = s["title"]; delete(s, "title"); return nil })
	m2.Upcast("shop:Renamed", 2, func(s map[string]any) error { s["name"] = s["label"]; delete(s, "label"); return nil })
	e, err := m2.FromStoredEvent(es.StoredEvent{OriginatorID: id, OriginatorVersion: 1, Topic: "shop:Retitled", State: []byte(`{"timestamp":{"_type_":"datetime_iso","_data_":"2024-03-01T12:00:00+00:00"},"title":"t"}`)})
	if r, ok := e.(*mRenamed); err != nil || !ok || r.Name != "t" {
		t.Errorf("upcast under an alias: %#v, %v", e, err)
	}
}
