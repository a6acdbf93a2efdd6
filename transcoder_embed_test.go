package eventsourcing_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// Fields promoted from embedded structs follow Go's rules, as encoding/json
// resolves them: the shallowest field of a JSON name wins; at the same
// depth a field named by its json tag beats untagged ones; otherwise the
// name is ambiguous, and where encoding/json drops it the transcoder
// refuses the type.
//
// go vet (structtag) rejects the declaration of a struct whose own fields,
// or those of structs it embeds by value, repeat a json tag at the same
// depth. So the ambiguous types declared here embed one struct through a
// pointer, which vet does not follow and which Go and encoding/json count
// at the same depth; TestTranscoderEmbedProbes builds the exact shapes with
// reflect.StructOf.

type shA struct {
	Name string `json:"name"`
	X    int    `json:"x"`
}

type shB struct {
	Name string `json:"name"`
	Y    int    `json:"y"`
}

// shOuter's own Name hides shA's (shallower wins).
type shOuter struct {
	shA
	Name string `json:"name"`
}

// shAmb has two "name" fields at the same depth.
type shAmb struct {
	shA
	*shB
}

// shDeep has shOuter.Name and shB.Name at depth 2 (shA.Name at 3).
type shDeep struct {
	shOuter
	*shB
}

// shWrapA holds shA one level deeper.
type shWrapA struct{ shA }

// shDeeperFirst declares the deeper "name" (shWrapA.shA.Name, depth 3)
// before the shallower one (shB.Name, depth 2): depth decides, not order.
type shDeeperFirst struct {
	shWrapA
	shB
}

type shUntagged struct{ Name string }

type shTagged struct {
	Name string `json:"Name"`
	Z    int    `json:"z"`
}

// shTagWins has two "Name" fields at depth 2, one tagged: it wins, though
// declared second.
type shTagWins struct {
	shUntagged
	shTagged
}

// shTagWinsFlat: the same within one struct.
type shTagWinsFlat struct {
	Plain string
	Named string `json:"Plain"`
}

type shUntagged2 struct{ Name string }

// shAmbUntagged has two untagged "Name" fields at depth 2.
type shAmbUntagged struct {
	shUntagged
	shUntagged2
}

// A diamond: shLeft and shRight both embed shLeaf, which embeds shLeafBase.
type shLeafBase struct {
	Z int `json:"z"`
}
type shLeaf struct{ shLeafBase }
type shLeft struct{ shLeaf }
type shRight struct{ shLeaf }
type shDiamond struct {
	shLeft
	shRight
}

// shAmbHidden embeds the ambiguous shAmbUntagged, but its own Name hides
// both of its.
type shAmbHidden struct {
	shAmbUntagged
	Name string
}

// shAmbInside embeds shAmb and hides nothing: still ambiguous.
type shAmbInside struct {
	shAmb
	W int `json:"w"`
}

// TestTranscoderEmbedResolved checks the non-ambiguous cases: the bytes
// are encoding/json's, and they decode back into the fields they came from.
func TestTranscoderEmbedResolved(t *testing.T) {
	tr := es.NewTranscoder()
	for _, c := range []struct {
		name string
		v    any
		want string
	}{
		{"shallower wins", shOuter{shA: shA{Name: "a", X: 1}, Name: "outer"}, `{"x":1,"name":"outer"}`},
		{"shallower wins though declared after a deeper one",
			shDeeperFirst{shWrapA: shWrapA{shA{Name: "a", X: 1}}, shB: shB{Name: "b", Y: 2}}, `{"x":1,"name":"b","y":2}`},
		{"tagged beats untagged at the same depth",
			shTagWins{shUntagged{Name: "plain"}, shTagged{Name: "tagged", Z: 3}}, `{"Name":"tagged","z":3}`},
		{"tagged beats untagged in one struct", shTagWinsFlat{Plain: "plain", Named: "tagged"}, `{"Plain":"tagged"}`},
		{"an ambiguous name hidden by a shallower one",
			shAmbHidden{shAmbUntagged{shUntagged{"u"}, shUntagged2{"v"}}, "n"}, `{"Name":"n"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			std, err := json.Marshal(c.v)
			if err != nil || string(std) != c.want {
				t.Fatalf("encoding/json: %s, %v; the test expects %s", std, err, c.want)
			}
			b, err := tr.Encode(c.v)
			if err != nil || string(b) != c.want {
				t.Fatalf("Encode(%#v) = %s, %v; want %s", c.v, b, err, c.want)
			}
			// Decoding fills the winning fields only, as encoding/json does.
			got := reflect.New(reflect.TypeOf(c.v))
			want := reflect.New(reflect.TypeOf(c.v))
			if err := tr.Decode(b, got.Interface()); err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if err := json.Unmarshal(b, want.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Errorf("Decode(%s) = %+v, encoding/json gives %+v", b, got.Elem(), want.Elem())
			}
		})
	}
}

// TestTranscoderEmbedAmbiguous checks that a type with an ambiguous JSON
// name is refused, on encoding and on decoding, wherever it is nested,
// with an error that names the type, the key and the competing fields.
func TestTranscoderEmbedAmbiguous(t *testing.T) {
	amb := shAmb{shA{Name: "a", X: 1}, &shB{Name: "b", Y: 2}}
	ambWant := []string{"shAmb", `JSON key "name" is ambiguous`, "shA.Name and shB.Name", "json tag"}
	for _, c := range []struct {
		name string
		v    any
		want []string // in the error
	}{
		{"two tagged at depth 2", amb, ambWant},
		{"pointer to it", &amb, ambWant},
		{"shallower ones tie at depth 2", shDeep{shOuter{shA{Name: "a", X: 1}, "mid"}, &shB{Name: "b", Y: 2}},
			[]string{"shDeep", `JSON key "name"`, "shOuter.Name and shB.Name"}},
		{"two untagged at depth 2", shAmbUntagged{shUntagged{"u"}, shUntagged2{"v"}},
			[]string{"shAmbUntagged", `JSON key "Name"`, "shUntagged.Name and shUntagged2.Name"}},
		{"the same struct reached twice", shDiamond{}, []string{"shDiamond", `JSON key "z"`,
			"shLeft.shLeaf.shLeafBase.Z and shRight.shLeaf.shLeafBase.Z"}},
		{"embedded deeper", shAmbInside{shAmb: amb, W: 1},
			[]string{"shAmbInside", `JSON key "name"`, "shAmb.shA.Name and shAmb.shB.Name"}},
		{"a field's field", struct {
			Inner struct {
				A shAmb `json:"a"`
			} `json:"inner"`
		}{}, append(ambWant, "at inner.a")},
		{"slice element", struct {
			L []shAmb `json:"l"`
		}{[]shAmb{amb}}, append(ambWant, "at l")},
		{"empty slice", struct {
			L []shAmb `json:"l"`
		}{}, append(ambWant, "at l")},
		{"map value", struct {
			M map[string]shAmb `json:"m"`
		}{map[string]shAmb{"k": amb}}, append(ambWant, "at m")},
		{"nil pointer", struct {
			P *shAmb `json:"p"`
		}{}, append(ambWant, "at p")},
		{"pointer", struct {
			P *shAmb `json:"p"`
		}{&amb}, append(ambWant, "at p")},
		{"in an interface", []any{1, amb}, append(ambWant, "at [1]")},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := es.NewTranscoder()
			err := wantEncodeRefused(t, tr, c.v, c.want...)
			if _, ok := c.v.([]any); ok {
				return // decodes as []any
			}
			// The decoder refuses the type with the same error, whatever
			// the input, even before anything was encoded.
			for _, tr := range []*es.Transcoder{tr, es.NewTranscoder()} {
				for _, in := range []string{`{"name":"a","x":1,"y":2}`, `{}`, `null`} {
					target := reflect.New(reflect.TypeOf(c.v))
					if derr := tr.Decode([]byte(in), target.Interface()); derr == nil || derr.Error() != err.Error() {
						t.Errorf("Decode(%s) into %T: %v, want %v", in, c.v, derr, err)
					}
				}
			}
		})
	}
}

// shAmbEvent is an event type with an ambiguous JSON name.
type shAmbEvent struct {
	es.DomainEvent
	shA
	*shB
}

// TestMapperEmbedAmbiguous checks that the mapper refuses to register an
// event type with an ambiguous JSON name, and that its transcoder neither
// writes nor reads one.
func TestMapperEmbedAmbiguous(t *testing.T) {
	m := es.NewMapper[es.Event](nil)
	if err := m.Register(&shAmbEvent{}); !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), "shA.Name and shB.Name") {
		t.Errorf("Register: %v, want ErrUnsupportedType naming shA.Name and shB.Name", err)
	}
	e := &shAmbEvent{DomainEvent: es.NewDomainEvent(uuid.New(), 1), shA: shA{Name: "a"}, shB: &shB{Name: "b"}}
	if _, err := m.Transcoder().Encode(e); !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), "shA.Name and shB.Name") {
		t.Errorf("Encode: %v, want ErrUnsupportedType naming shA.Name and shB.Name", err)
	}
	state := []byte(`{"timestamp":{"_type_":"datetime_iso","_data_":"2024-01-02T03:04:05+00:00"},"name":"a"}`)
	if err := m.Transcoder().Decode(state, new(shAmbEvent)); !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), "shA.Name and shB.Name") {
		t.Errorf("Decode: %v, want ErrUnsupportedType naming shA.Name and shB.Name", err)
	}
}

// Exported copies of shA, shB and shOuter, for reflect.StructOf.
type (
	ShProbeA struct {
		Name string `json:"name"`
		X    int    `json:"x"`
	}
	ShProbeB struct {
		Name string `json:"name"`
		Y    int    `json:"y"`
	}
	ShProbeOuter struct {
		ShProbeA
		Name string `json:"name"`
	}
)

// TestTranscoderEmbedProbes checks the exact shapes that vet does not let
// be declared: struct{ shA; shB }, struct{ shOuter; shB }, and two fields
// tagged alike in one struct.
func TestTranscoderEmbedProbes(t *testing.T) {
	embed := func(v any) reflect.StructField {
		typ := reflect.TypeOf(v)
		return reflect.StructField{Name: typ.Name(), Type: typ, Anonymous: true}
	}
	a, b := ShProbeA{Name: "a", X: 1}, ShProbeB{Name: "b", Y: 2}
	outer := ShProbeOuter{a, "mid"}
	for _, c := range []struct {
		name   string
		fields []reflect.StructField
		values []any
		want   []string // in the error
	}{
		{"struct{ shA; shB }", []reflect.StructField{embed(a), embed(b)}, []any{a, b},
			[]string{`JSON key "name" is ambiguous`, "ShProbeA.Name and ShProbeB.Name at the same depth"}},
		{"struct{ shOuter; shB }", []reflect.StructField{embed(outer), embed(b)}, []any{outer, b},
			[]string{`JSON key "name" is ambiguous`, "ShProbeOuter.Name and ShProbeB.Name at the same depth"}},
		{"two fields tagged alike", []reflect.StructField{
			{Name: "N1", Type: reflect.TypeFor[int](), Tag: `json:"n"`},
			{Name: "N2", Type: reflect.TypeFor[int](), Tag: `json:"n"`},
		}, []any{1, 2}, []string{`JSON key "n" is ambiguous`, "N1 and N2 at the same depth"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			typ := reflect.StructOf(c.fields)
			v := reflect.New(typ)
			for i, x := range c.values {
				v.Elem().Field(i).Set(reflect.ValueOf(x))
			}
			tr := es.NewTranscoder()
			out, err := tr.Encode(v.Elem().Interface())
			if !errors.Is(err, es.ErrUnsupportedType) {
				t.Fatalf("Encode(%v) = %s, %v; want ErrUnsupportedType", typ, out, err)
			}
			t.Log(err)
			for _, w := range append(c.want, typ.String()) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if derr := tr.Decode([]byte(`{"name":"x","n":1}`), v.Interface()); derr == nil || derr.Error() != err.Error() {
				t.Errorf("Decode into %v: %v, want %v", typ, derr, err)
			}
		})
	}
}
