package eventsourcing_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// Vectors whose Python value has no natural Go counterpart, and what the
// transcoder does with them:
//   - dict_int_key: a Python dict with the int key 1 is written {"1":"a"};
//     Go writes a map[int]string the same way, and decoding gives the string
//     key back (as in Python: roundtrip_equal is false there too).
//   - tuple: Go has no tuples; a []any is written as the same JSON list, and
//     decoding gives a list (Python too gives lists back).
//   - int_beyond_uint64: a *big.Int in Go; decoding into any gives *big.Int
//     for integers beyond int64.
//   - float NaN/Infinity: float64 NaN and ±Inf, written NaN/Infinity as Python
//     writes them.
//   - datetime_naive: a time.Time in the es.Naive location.
//
// Python strings may hold lone surrogates, which Go strings cannot; no
// vector has one, and decoding a \ud800 escape without its pair is ErrSyntax.
func newVectorTranscoder(t testing.TB) *es.Transcoder {
	tr := es.NewTranscoder()
	registerInteropTranscodings(t, tr)
	return tr
}

func TestTranscoderVectors(t *testing.T) {
	m := loadManifest(t)
	tr := newVectorTranscoder(t)
	for _, raw := range m["transcoder_vectors"].([]any) {
		v := asMap(raw)
		name := v["name"].(string)
		t.Run(name, func(t *testing.T) {
			in := typedValue(t, v["input_typed"])
			if name == "dict_int_key" {
				in = map[int]string{1: "a"}
			}
			want := v["encoded_utf8"].(string)
			got, err := tr.Encode(in)
			if err != nil {
				t.Fatalf("Encode(%#v): %v", in, err)
			}
			if string(got) != want {
				t.Fatalf("Encode:\n got %s\nwant %s", got, want)
			}
			var back any
			if err := tr.Decode([]byte(want), &back); err != nil {
				t.Fatalf("Decode(%s): %v", want, err)
			}
			if wantDecoded := typedValue(t, v["decoded_typed"]); !sameValue(back, wantDecoded) {
				t.Fatalf("Decode(%s) = %#v, want %#v", want, back, wantDecoded)
			}
			// What was decoded encodes back to the same bytes where key order
			// allows (maps are written in sorted order).
			if again, err := tr.Encode(back); err != nil || (string(again) != want && !strings.Contains(name, "dict")) {
				t.Errorf("re-encode: %s, %v; want %s", again, err, want)
			}
		})
	}
	for _, raw := range m["transcoder_decode_only_vectors"].([]any) {
		v := asMap(raw)
		t.Run("decode_only/"+v["name"].(string), func(t *testing.T) {
			var back any
			if err := tr.Decode([]byte(v["input_utf8"].(string)), &back); err != nil {
				t.Fatal(err)
			}
			want := typedValue(t, v["decoded_typed"])
			if d, ok := want.(es.Decimal); ok { // compare canonical decimal text
				if g, ok := back.(es.Decimal); !ok || g.String() != d.String() {
					t.Fatalf("got %#v, want %s", back, d)
				}
				return
			}
			if !sameValue(back, want) {
				t.Fatalf("got %#v, want %#v", back, want)
			}
		})
	}
}

type inner struct {
	N int `json:"n"`
}

type embedded struct {
	E string `json:"e"`
}

type sample struct {
	es.DomainEvent
	embedded
	Name     string            `json:"name"`
	Skip     string            `json:"-"`
	Opt      string            `json:"opt,omitempty"`
	Ptr      *inner            `json:"ptr"`
	List     []inner           `json:"list"`
	Map      map[string]uint16 `json:"map"`
	Arr      [2]bool           `json:"arr"`
	Any      any               `json:"any"`
	When     time.Time         `json:"when"`
	ID       uuid.UUID         `json:"id"`
	Big      *big.Int          `json:"big"`
	F32      float32           `json:"f32"`
	Untagged int8
	private  int
}

type hiddenInner struct {
	X int `json:"x"`
}

type withHidden struct {
	*hiddenInner
	Y int `json:"y"`
}

type versioned struct {
	A int `json:"a"`
}

func (versioned) ClassVersion() int { return 3 }

func TestTranscoderStructs(t *testing.T) {
	tr := es.NewTranscoder()
	when := time.Date(2024, 3, 1, 9, 0, 0, 123456000, time.FixedZone("", 3600))
	in := sample{
		DomainEvent: es.DomainEvent{Originator: uuid.New(), Version: 7, Timestamp: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		embedded:    embedded{E: "emb"}, Name: "n", Skip: "x", Ptr: &inner{1}, List: []inner{{2}, {3}},
		Map: map[string]uint16{"b": 2, "a": 1}, Arr: [2]bool{true, false}, Any: []any{"x", int64(1)},
		When: when, ID: uuid.MustParse("b2723fe2-c01a-40d2-875e-a3aac6a09ff5"), Big: big.NewInt(5), F32: 0.5, Untagged: -3, private: 9,
	}
	b, err := tr.Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"timestamp":{"_type_":"datetime_iso","_data_":"2024-01-01T00:00:00+00:00"},"e":"emb","name":"n","ptr":{"n":1},"list":[{"n":2},{"n":3}],"map":{"a":1,"b":2},"arr":[true,false],"any":["x",1],"when":{"_type_":"datetime_iso","_data_":"2024-03-01T09:00:00.123456+01:00"},"id":{"_type_":"uuid_hex","_data_":"b2723fe2c01a40d2875ea3aac6a09ff5"},"big":5,"f32":0.5,"Untagged":-3}`
	if string(b) != want {
		t.Fatalf("Encode:\n got %s\nwant %s", b, want)
	}
	var out sample
	if err := tr.Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	in.Originator, in.Version, in.Skip, in.private = uuid.Nil, 0, "", 0
	if !out.When.Equal(in.When) || out.Big.Cmp(in.Big) != 0 {
		t.Errorf("decoded %+v", out)
	}
	out.When, in.When, out.Big, in.Big = time.Time{}, time.Time{}, nil, nil
	gotJSON, _ := json.Marshal(out)
	wantJSON, _ := json.Marshal(in)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("round trip:\n got %s\nwant %s", gotJSON, wantJSON)
	}

	b, err = tr.Encode(versioned{A: 1})
	if err != nil || string(b) != `{"a":1,"class_version":3}` {
		t.Errorf("class version: %s, %v", b, err)
	}
	var v versioned
	if err := tr.Decode([]byte(`{"a":2,"class_version":3,"extra":{"x":[1]}}`), &v); err != nil || v.A != 2 {
		t.Errorf("decode ignoring unknown keys: %+v, %v", v, err)
	}
	b, err = tr.Encode(struct {
		S []int          `json:"s"`
		M map[string]int `json:"m"`
		P *int           `json:"p"`
	}{})
	if err != nil || string(b) != `{"s":[],"m":{},"p":null}` {
		t.Errorf("nil slice, map, pointer: %s, %v", b, err)
	}
}

func TestTranscoderErrors(t *testing.T) {
	tr := es.NewTranscoder()
	type unsupported struct {
		C chan int `json:"c"`
	}
	for _, v := range []any{[]byte("x"), make(chan int), unsupported{}, map[float64]int{1: 1}, func() {}, "\xff"} {
		_, err := tr.Encode(v)
		if !errors.Is(err, es.ErrUnsupportedType) {
			t.Errorf("Encode(%T): %v, want ErrUnsupportedType", v, err)
		}
	}
	if _, err := tr.Encode([]byte("x")); err == nil || !strings.Contains(err.Error(), "[]uint8") {
		t.Errorf("error does not name the type: %v", err)
	}
	if _, err := tr.Encode(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, es.ErrUnsupportedType) {
		t.Errorf("year 10000: %v", err)
	}
	var anyV any
	syntax := []string{``, `{`, `[1,]`, `{"a" 1}`, `"abc`, `01`, `1.`, `-`, `tru`, `{"a":1}x`, `"\x"`, `"\ud800"`, "\"a\x01\"", `[1 2]`, `{"a":1,}`}
	for _, in := range syntax {
		err := tr.Decode([]byte(in), &anyV)
		if !errors.Is(err, es.ErrSyntax) || !strings.Contains(err.Error(), "offset") {
			t.Errorf("Decode(%q): %v, want ErrSyntax with an offset", in, err)
		}
	}
	err := tr.Decode([]byte(`{"_type_":"money_as_str","_data_":"1"}`), &anyV)
	if !errors.Is(err, es.ErrUnknownTranscoding) || !strings.Contains(err.Error(), "money_as_str") {
		t.Errorf("unknown _type_: %v", err)
	}
	var s struct {
		A struct {
			B []int `json:"b"`
		} `json:"a"`
	}
	err = tr.Decode([]byte(`{"a":{"b":[1,"x"]}}`), &s)
	if !errors.Is(err, es.ErrDecode) || !strings.Contains(err.Error(), "a.b[1]") {
		t.Errorf("type mismatch: %v, want ErrDecode at a.b[1]", err)
	}
	var small struct {
		N int8 `json:"n"`
	}
	if err := tr.Decode([]byte(`{"n":300}`), &small); !errors.Is(err, es.ErrDecode) {
		t.Errorf("overflow: %v", err)
	}
	var u uuid.UUID
	if err := tr.Decode([]byte(`{"_type_":"datetime_iso","_data_":"2024-01-01"}`), &u); !errors.Is(err, es.ErrDecode) {
		t.Errorf("wrong _type_ for a uuid: %v", err)
	}
	if err := tr.Decode([]byte(`{"_type_":"uuid_hex","_data_":"nope"}`), &u); !errors.Is(err, es.ErrDecode) {
		t.Errorf("bad uuid: %v", err)
	}
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	if err := tr.Decode([]byte(deep), &anyV); !errors.Is(err, es.ErrSyntax) {
		t.Errorf("deep nesting: %v, want ErrSyntax", err)
	}
	var hidden withHidden
	if err := tr.Decode([]byte(`{"x":1,"y":2}`), &hidden); !errors.Is(err, es.ErrDecode) {
		t.Errorf("embedded pointer to an unexported struct: %v, want ErrDecode", err)
	}
	if err := tr.Decode([]byte(`{"_type_":1,"_data_":"x"}`), &u); !errors.Is(err, es.ErrDecode) {
		t.Errorf("non-string _type_: %v, want ErrDecode", err)
	}
	if err := tr.Decode([]byte(`1`), nil); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("nil target: %v", err)
	}
}

func TestDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"100.00": "100.00", "1e3": "1E+3", "1E+3": "1E+3", "-0": "-0", "0.000001": "0.000001", "0.0000001": "1E-7",
		"1.5E-10": "1.5E-10", "0100": "100", "-.5": "-0.5", "12345678901234567890.123456789": "12345678901234567890.123456789",
		"1.10": "1.10", "0.00": "0.00", "+7": "7", "1_000": "1000", "NaN": "NaN", "-Infinity": "-Infinity", "123E-2": "1.23",
		"5E+2": "5E+2", "0E-7": "0E-7",
	} {
		d, err := es.ParseDecimal(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDecimal(%q) = %s, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "1.2.3", "1e", "--1", "1e+x"} {
		if _, err := es.ParseDecimal(bad); !errors.Is(err, es.ErrDecode) {
			t.Errorf("ParseDecimal(%q): %v, want ErrDecode", bad, err)
		}
	}
}

func TestTranscoderNaiveAndOffsets(t *testing.T) {
	tr := es.NewTranscoder()
	for _, s := range []string{"2024-01-02T03:04:05", "2024-01-02T03:04:05.000500", "2024-06-30T23:59:59.999999+05:30", "1999-12-31T16:00:00-08:00"} {
		in := `{"_type_":"datetime_iso","_data_":"` + s + `"}`
		var tm time.Time
		if err := tr.Decode([]byte(in), &tm); err != nil {
			t.Fatal(err)
		}
		out, err := tr.Encode(tm)
		if err != nil || string(out) != in {
			t.Errorf("%s: re-encoded %s, %v", in, out, err)
		}
	}
}

func FuzzTranscoderDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x",null,true]}`, `{"_type_":"uuid_hex","_data_":"b2723fe2c01a40d2875ea3aac6a09ff5"}`,
		`{"_type_":"datetime_iso","_data_":"2024-01-02T03:04:05.123+01:00"}`, `{"_type_":"decimal_str","_data_":"1E+3"}`,
		`"\ud83d\udc08"`, `[NaN,Infinity,-Infinity,18446744073709551617]`, `{"_type_":"address_as_dict","_data_":{"line1":"a","city":"b","postcode":"c","country":"d","location":null}}`} {
		f.Add([]byte(s))
	}
	tr := newVectorTranscoder(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if err := tr.Decode(data, &v); err != nil {
			return
		}
		// Whatever decodes must encode, and decode again to the same value.
		b, err := tr.Encode(v)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", v, err)
		}
		var again any
		if err := tr.Decode(b, &again); err != nil {
			t.Fatalf("cannot decode own output %s: %v", b, err)
		}
		var s sample
		_ = tr.Decode(data, &s) // must not panic
	})
}

type cyclicNode struct {
	Name string      `json:"name"`
	Next *cyclicNode `json:"next"`
}

// selfEmbedding embeds a pointer to its own type.
type selfEmbedding struct {
	*selfEmbedding
	X int `json:"x"`
}

// selfEncoding is registered with a transcoding whose Encode returns a value
// of its own type: encoding it never ends.
type selfEncoding struct{ N int }

func TestTranscoderRefusesCycles(t *testing.T) {
	tr := es.NewTranscoder()
	if err := es.RegisterTranscoding(tr, es.Transcoding[selfEncoding]{Name: "self",
		Encode: func(s selfEncoding) (any, error) { return s, nil },
		Decode: func(any) (selfEncoding, error) { return selfEncoding{}, nil }}); err != nil {
		t.Fatal(err)
	}
	node := &cyclicNode{Name: "a"}
	node.Next = &cyclicNode{Name: "b", Next: node}
	m := map[string]any{"x": 1}
	m["self"] = m
	s := []any{1, nil}
	s[1] = s
	var p any
	p = &p
	obj := es.Object{{Key: "a", Value: nil}}
	obj[0].Value = obj
	for _, c := range []struct {
		name string
		v    any
		want string // in the error
	}{
		{"pointer", node, "next.next.next"},
		{"map", m, "self.self.self"},
		{"slice", s, "[1][1][1]"},
		{"pointer to itself", &p, "cycle"},
		{"Object", obj, "a.a.a"},
		{"map inside a struct", struct {
			M map[string]any `json:"m"`
		}{m}, "m.self.self"},
		{"transcoding returning its own type", selfEncoding{}, "_data_._data_"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := tr.Encode(c.v)
			if !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Encode: %v, want ErrUnsupportedType naming %q", err, c.want)
			}
			t.Log(err)
			if len(err.Error()) > 1000 {
				t.Errorf("error of %d bytes: %.300s...", len(err.Error()), err)
			}
		})
	}
	// A struct type embedding a pointer to itself has its own fields once.
	b, err := tr.Encode(selfEmbedding{X: 1, selfEmbedding: &selfEmbedding{X: 2}})
	if err != nil || string(b) != `{"x":1}` {
		t.Errorf("self-embedding struct: %s, %v", b, err)
	}
	// Shared, acyclic values are fine.
	shared := &cyclicNode{Name: "s"}
	b, err = tr.Encode([]any{shared, shared, map[string]any{"a": shared}})
	if err != nil || string(b) != `[{"name":"s","next":null},{"name":"s","next":null},{"a":{"name":"s","next":null}}]` {
		t.Errorf("shared value: %s, %v", b, err)
	}
}

// deepMap is a recursive map type, decoded without going through any.
type deepMap map[string]deepMap

// box is registered as "box": its data is its value, so boxes nest
// {"_type_":"box","_data_":{"_type_":"box",...}}.
type box struct{ V any }

func boxTranscoding() es.Transcoding[box] {
	return es.Transcoding[box]{Name: "box",
		Encode: func(b box) (any, error) { return b.V, nil },
		Decode: func(d any) (box, error) { return box{d}, nil }}
}

type deepEvent struct {
	es.DomainEvent
	Data any `json:"data"`
}

// TestTranscoderDepthSymmetry checks that the encoder accepts exactly the
// nesting the decoder reads back (10000 arrays and objects, a registered
// type's {"_type_","_data_"} wrapper counting as one), for each way of
// nesting and for decoding into any and into the value's own type.
func TestTranscoderDepthSymmetry(t *testing.T) {
	const limit = 10000
	tr := es.NewTranscoder()
	if err := es.RegisterTranscoding(tr, boxTranscoding()); err != nil {
		t.Fatal(err)
	}
	id := uuid.MustParse("b2723fe2-c01a-40d2-875e-a3aac6a09ff5")
	shapes := []struct {
		name string
		// nest returns a value whose JSON is n arrays or objects deep.
		nest func(n int) any
	}{
		{"slices", func(n int) any {
			var v any = []any{}
			for range n - 1 {
				v = []any{v}
			}
			return v
		}},
		{"nil slice at the bottom", func(n int) any {
			var v any = []int(nil)
			for range n - 1 {
				v = []any{1, v}
			}
			return v
		}},
		{"maps", func(n int) any {
			v := map[string]any{}
			for range n - 1 {
				v = map[string]any{"k": v}
			}
			return v
		}},
		{"typed maps", func(n int) any {
			v := deepMap{}
			for range n - 1 {
				v = deepMap{"k": v}
			}
			return v
		}},
		{"structs through pointers", func(n int) any {
			var v *cyclicNode
			for range n {
				v = &cyclicNode{Name: "x", Next: v}
			}
			return v
		}},
		{"Objects", func(n int) any {
			v := es.Object{}
			for range n - 1 {
				v = es.Object{{Key: "k", Value: v}}
			}
			return v
		}},
		{"wrappers", func(n int) any {
			var v any = box{1}
			for range n - 1 {
				v = box{v}
			}
			return v
		}},
		{"uuid at the bottom", func(n int) any {
			var v any = id
			for range n - 1 {
				v = []any{v}
			}
			return v
		}},
	}
	for _, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			v := s.nest(limit)
			b, err := tr.Encode(v)
			if err != nil {
				t.Fatalf("Encode at depth %d: %v", limit, err)
			}
			var back any
			if err := tr.Decode(b, &back); err != nil {
				t.Fatalf("Decode into any at depth %d: %v", limit, err)
			}
			typed := reflect.New(reflect.TypeOf(v))
			if err := tr.Decode(b, typed.Interface()); err != nil {
				t.Fatalf("Decode into %T at depth %d: %v", v, limit, err)
			}
			again, err := tr.Encode(typed.Elem().Interface())
			if err != nil || string(again) != string(b) {
				t.Fatalf("re-encoded %T differs (%v)", v, err)
			}

			over := s.nest(limit + 1)
			if _, err := tr.Encode(over); !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), "10000") {
				t.Fatalf("Encode at depth %d: %v, want ErrUnsupportedType naming the limit", limit+1, err)
			}
			// The decoder refuses the same depth, into any and into the type.
			deeper := "[" + string(b) + "]"
			if err := tr.Decode([]byte(deeper), &back); !errors.Is(err, es.ErrSyntax) {
				t.Errorf("Decode into any at depth %d: %v, want ErrSyntax", limit+1, err)
			}
			deeper = `{"_type_":"box","_data_":` + string(b) + "}"
			typed = reflect.New(reflect.TypeOf(box{}))
			if err := tr.Decode([]byte(deeper), typed.Interface()); !errors.Is(err, es.ErrSyntax) {
				t.Errorf("Decode into box at depth %d: %v, want ErrSyntax", limit+1, err)
			}
			typed = reflect.New(reflect.TypeOf(v))
			if err := tr.Decode(mustEncode(t, tr, over, limit), typed.Interface()); !errors.Is(err, es.ErrSyntax) {
				t.Errorf("Decode into %T at depth %d: %v, want ErrSyntax", v, limit+1, err)
			}
		})
	}

	// Through a mapper: what ToStoredEvent accepts, FromStoredEvent reads.
	m := es.NewMapper[es.Event](&es.MapperOptions{Transcoder: tr})
	if err := m.RegisterTopic("deep", &deepEvent{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{limit - 1, limit, 20000} {
		ev := &deepEvent{DomainEvent: es.NewDomainEvent(id, 1), Data: shapes[0].nest(n)}
		se, err := m.ToStoredEvent(ev)
		if n >= limit { // the event's own object is one more level
			if !errors.Is(err, es.ErrUnsupportedType) {
				t.Errorf("ToStoredEvent with data %d deep: %v, want ErrUnsupportedType", n, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ToStoredEvent with data %d deep: %v", n, err)
		}
		if _, err := m.FromStoredEvent(se); err != nil {
			t.Errorf("FromStoredEvent of what ToStoredEvent wrote: %v", err)
		}
	}
}

// mustEncode encodes a value nested one level deeper than the encoder
// allows, by hand: the value's contents at the limit, inside its own kind
// of container.
func mustEncode(t *testing.T, tr *es.Transcoder, over any, limit int) []byte {
	t.Helper()
	var inner any
	switch v := over.(type) {
	case []any:
		inner = v[len(v)-1]
	case map[string]any:
		inner = v["k"]
	case deepMap:
		inner = v["k"]
	case *cyclicNode:
		inner = v.Next
	case es.Object:
		inner = v[0].Value
	case box:
		inner = v.V
	default:
		t.Fatalf("no container %T", over)
	}
	b, err := tr.Encode(inner)
	if err != nil {
		t.Fatalf("Encode at depth %d: %v", limit, err)
	}
	switch over.(type) {
	case []any:
		if s := over.([]any); len(s) == 2 {
			return []byte("[1," + string(b) + "]")
		}
		return []byte("[" + string(b) + "]")
	case *cyclicNode:
		return []byte(`{"name":"x","next":` + string(b) + "}")
	case box:
		return []byte(`{"_type_":"box","_data_":` + string(b) + "}")
	}
	return []byte(`{"k":` + string(b) + "}")
}

// jsonMarshaled has exported fields and its own MarshalJSON.
type jsonMarshaled struct{ X int }

func (j jsonMarshaled) MarshalJSON() ([]byte, error) { return []byte(`"custom"`), nil }

// level is an integer that marshals itself as text (through its pointer).
type level int

func (l *level) MarshalText() ([]byte, error) { return []byte("high"), nil }

// secret holds its state in unexported fields.
type secret struct{ s string }

// stamped embeds time.Time, whose MarshalJSON it thereby has.
type stamped struct {
	time.Time
	N int `json:"n"`
}

// wantEncodeRefused checks that tr refuses to encode v with an error
// wrapping ErrUnsupportedType that says each of want, the same error each
// time (a cached error is not added to), and returns it.
func wantEncodeRefused(t *testing.T, tr *es.Transcoder, v any, want ...string) error {
	t.Helper()
	b, err := tr.Encode(v)
	if !errors.Is(err, es.ErrUnsupportedType) {
		t.Fatalf("Encode(%#v) = %s, %v; want ErrUnsupportedType", v, b, err)
	}
	t.Log(err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if _, err2 := tr.Encode(v); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Encode: %v, first %v", err2, err)
	}
	return err
}

// skipped has only fields tagged "-": deliberately nothing to write.
type skipped struct {
	cache map[string]int `json:"-"`
	Temp  int            `json:"-"`
}

func TestTranscoderRefusesOpaqueTypes(t *testing.T) {
	tr := es.NewTranscoder()
	addr := netip.MustParseAddr("192.0.2.1")
	for _, c := range []struct {
		name string
		v    any
		want []string // in the error
	}{
		{"netip.Addr", addr, []string{"netip.Addr", "MarshalText", "RegisterTranscoding"}},
		{"netip.Addr field", struct {
			A netip.Addr `json:"a"`
		}{addr}, []string{"netip.Addr", "at a"}},
		{"zero netip.Addr in a slice", []netip.Addr{{}}, []string{"netip.Addr"}},
		{"no netip.Addr in a slice", []netip.Addr{}, []string{"netip.Addr"}},
		{"no netip.Addr in a map", map[string]netip.Addr{}, []string{"netip.Addr"}},
		{"*big.Float", big.NewFloat(1.5), []string{"big.Float"}},
		{"nil *big.Float field", struct {
			F *big.Float `json:"f"`
		}{}, []string{"big.Float", "at f"}},
		{"netip.Addr in an interface", []any{1, addr}, []string{"netip.Addr", "at [1]"}}, // decodes as []any
		{"user type with MarshalJSON", map[string]any{"j": jsonMarshaled{1}}, []string{"jsonMarshaled", "MarshalJSON", "at j"}},
		{"user type with MarshalJSON itself", jsonMarshaled{1}, []string{"jsonMarshaled", "MarshalJSON"}},
		{"integer type with MarshalText", level(2), []string{"level", "MarshalText"}},
		{"struct with unexported fields only", secret{"x"}, []string{"secret", "no exported fields"}},
		{"struct embedding time.Time", stamped{time.Now(), 1}, []string{"stamped", "MarshalJSON"}},
		{"nested", struct {
			Inner struct {
				S []secret `json:"s"`
			} `json:"inner"`
		}{}, []string{"secret", "at inner.s"}},
		{"[]byte", []byte("x"), []string{"[]uint8", "RegisterTranscoding"}},
		{"json.RawMessage", json.RawMessage(`{"a":1}`), []string{"json.RawMessage", "Object"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := wantEncodeRefused(t, tr, c.v, c.want...)
			// Nor does the decoder fill such a type, with the same error.
			switch c.v.(type) {
			case []any, map[string]any:
				return
			}
			b, _ := json.Marshal(c.v)
			target := reflect.New(reflect.TypeOf(c.v))
			if derr := tr.Decode(b, target.Interface()); derr == nil || derr.Error() != err.Error() {
				t.Errorf("Decode(%s) into %T: %v, want %v", b, c.v, derr, err)
			}
		})
	}

	// With a transcoding registered, the same types are fine.
	if err := es.RegisterTranscoding(tr, es.Transcoding[netip.Addr]{Name: "ip_address",
		Encode: func(a netip.Addr) (any, error) { return a.String(), nil },
		Decode: func(d any) (netip.Addr, error) { s, _ := d.(string); return netip.ParseAddr(s) }}); err != nil {
		t.Fatal(err)
	}
	if err := es.RegisterTranscoding(tr, es.Transcoding[[]byte]{Name: "bytes_hex",
		Encode: func(b []byte) (any, error) { return hex.EncodeToString(b), nil },
		Decode: func(d any) ([]byte, error) { s, _ := d.(string); return hex.DecodeString(s) }}); err != nil {
		t.Fatal(err)
	}
	type withAddr struct {
		A    netip.Addr   `json:"a"`
		List []netip.Addr `json:"list"`
		B    []byte       `json:"b"`
	}
	in := withAddr{A: addr, List: []netip.Addr{addr}, B: []byte{1, 2}}
	b, err := tr.Encode(in)
	want := `{"a":{"_type_":"ip_address","_data_":"192.0.2.1"},"list":[{"_type_":"ip_address","_data_":"192.0.2.1"}],"b":{"_type_":"bytes_hex","_data_":"0102"}}`
	if err != nil || string(b) != want {
		t.Fatalf("registered: %s, %v", b, err)
	}
	var out withAddr
	if err := tr.Decode(b, &out); err != nil || out.A != addr || out.List[0] != addr || string(out.B) != "\x01\x02" {
		t.Errorf("registered round trip: %+v, %v", out, err)
	}
}

// TestTranscoderEdgeTypes pins what happens to the types that are neither
// plain JSON nor refused.
func TestTranscoderEdgeTypes(t *testing.T) {
	tr := es.NewTranscoder()
	type durations struct {
		D time.Duration            `json:"d"`
		M map[string]time.Duration `json:"m"`
	}
	// time.Duration is an int64 of nanoseconds with no MarshalText: it is
	// written as that integer and reads back exactly.
	in := durations{D: 1500 * time.Millisecond, M: map[string]time.Duration{"max": -time.Nanosecond}}
	b, err := tr.Encode(in)
	if err != nil || string(b) != `{"d":1500000000,"m":{"max":-1}}` {
		t.Fatalf("time.Duration: %s, %v", b, err)
	}
	var out durations
	if err := tr.Decode(b, &out); err != nil || out.D != in.D || out.M["max"] != in.M["max"] {
		t.Errorf("time.Duration round trip: %+v, %v", out, err)
	}
	// An empty struct has nothing to lose: {} and back.
	b, err = tr.Encode(map[string]struct{}{"a": {}})
	if err != nil || string(b) != `{"a":{}}` {
		t.Errorf("struct{}: %s, %v", b, err)
	}
	var set map[string]struct{}
	if err := tr.Decode(b, &set); err != nil || len(set) != 1 {
		t.Errorf("struct{} round trip: %v, %v", set, err)
	}
	// A struct whose fields are all tagged "-" is written as {} by choice.
	if b, err := tr.Encode(skipped{Temp: 1}); err != nil || string(b) != `{}` {
		t.Errorf("all fields skipped: %s, %v", b, err)
	}
	// *big.Int is an integer, however large; by value too.
	n, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	b, err = tr.Encode([]any{n, *n, (*big.Int)(nil)})
	if err != nil || string(b) != `[-123456789012345678901234567890,-123456789012345678901234567890,null]` {
		t.Errorf("big.Int: %s, %v", b, err)
	}
	// Fixed-size byte arrays are lists of numbers, and read back.
	b, err = tr.Encode([3]byte{1, 2, 255})
	var arr [3]byte
	if err != nil || string(b) != `[1,2,255]` || tr.Decode(b, &arr) != nil || arr != [3]byte{1, 2, 255} {
		t.Errorf("[3]byte: %s, %v, %v", b, err, arr)
	}
}

// TestTranscoderFloat32 checks that a float32 is written as the float64
// nearest its shortest decimal form, as Python would write that number, so
// that it reads back and is written again the same.
func TestTranscoderFloat32(t *testing.T) {
	tr := es.NewTranscoder()
	for f, want := range map[float32]string{
		0.1: "0.1", 1e-4: "0.0001", 1e-5: "1e-05", 1e16: "1e+16", 9.999999e15: "9999999000000000.0",
		3.4028235e38: "3.4028235e+38", 1e-45: "1e-45", 16777217: "16777216.0", -0.5: "-0.5",
	} {
		b, err := tr.Encode(f)
		if err != nil || string(b) != want {
			t.Errorf("Encode(float32 %v) = %s, %v; want %s", f, b, err, want)
			continue
		}
		var back any
		if err := tr.Decode(b, &back); err != nil {
			t.Fatal(err)
		}
		if again, err := tr.Encode(back); err != nil || string(again) != want {
			t.Errorf("float32 %v: re-encoded %s, %v; want %s", f, again, err, want)
		}
	}
}

// tree is recursive and holds a refused type.
type tree struct {
	Kids []tree      `json:"kids"`
	Addr *netip.Addr `json:"addr"`
}

// TestTranscoderRefusesRecursiveTypes checks that a type is refused
// whatever path through a recursive type first built its encoder.
func TestTranscoderRefusesRecursiveTypes(t *testing.T) {
	for _, first := range []any{tree{}, []tree{}, map[string]tree{}} {
		tr := es.NewTranscoder()
		_, _ = tr.Encode(first)
		for _, v := range []any{[]tree{}, tree{}, map[string][]tree{}, &tree{}} {
			if _, err := tr.Encode(v); !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), "netip.Addr") {
				t.Errorf("after %T, Encode(%T): %v, want ErrUnsupportedType naming netip.Addr", first, v, err)
			}
			target := reflect.New(reflect.TypeOf(v))
			if err := tr.Decode([]byte(`[]`), target.Interface()); !errors.Is(err, es.ErrUnsupportedType) {
				t.Errorf("after %T, Decode into %T: %v, want ErrUnsupportedType", first, v, err)
			}
		}
	}
}
