package eventsourcing_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

type (
	regBytes struct {
		es.DomainEvent
		Data []byte `json:"data"`
	}
	regPoint     struct{ X, Y int }
	regStructKey struct {
		es.DomainEvent
		Seen map[regPoint]int `json:"seen"`
	}
	regMarshaler struct {
		es.DomainEvent
		Addr netip.Addr `json:"addr"`
	}
	regNested struct {
		es.DomainEvent
		Items []struct {
			Raw []byte `json:"raw"`
		} `json:"items"`
	}
	regFine struct {
		es.DomainEvent
		Name string `json:"name"`
		Note any    `json:"note"`
	}
)

// TestRegisterRefusesUnstorableTypes: an event type the transcoder cannot
// write is refused at Register and RegisterTopic, with the error writing
// one would give (ErrUnsupportedType, naming the type and the field), and
// nothing is registered. (Such types were accepted, and failed at the
// first Put.)
func TestRegisterRefusesUnstorableTypes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		event es.Event
		want  string // in both errors
	}{
		{"bytes", &regBytes{}, "[]uint8"},
		{"map with struct keys", &regStructKey{}, "map keys"},
		{"MarshalText type", &regMarshaler{}, "netip.Addr"},
		{"bytes in a slice of structs", &regNested{}, "[]uint8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			put, err := es.NewMapper[es.Event](nil).Transcoder().Encode(tt.event)
			if !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("encoding: %s, %v; want ErrUnsupportedType naming %s", put, err, tt.want)
			}
			m := es.NewMapper[es.Event](nil)
			regErr := m.Register(tt.event)
			if !errors.Is(regErr, es.ErrUnsupportedType) || !errors.Is(regErr, es.ErrProgramming) || !strings.Contains(regErr.Error(), err.Error()) {
				t.Errorf("Register: %v\nwant ErrProgramming and ErrUnsupportedType with %q", regErr, err)
			}
			if err := m.RegisterTopic("x:Y", tt.event); !errors.Is(err, es.ErrUnsupportedType) {
				t.Errorf("RegisterTopic: %v, want ErrUnsupportedType", err)
			}
			if _, err := m.Topic(tt.event); !errors.Is(err, es.ErrUnknownTopic) {
				t.Errorf("refused type is registered: Topic says %v", err)
			}
		})
	}
	// A field of interface type is checked when a value is written: what
	// it holds is known only then.
	m := es.NewMapper[es.Event](nil)
	if err := m.Register(&regFine{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ToStoredEvent(&regFine{DomainEvent: es.NewDomainEvent(uuid.New(), 1), Note: []byte("x")}); !errors.Is(err, es.ErrUnsupportedType) {
		t.Errorf("bytes in an interface field: %v, want ErrUnsupportedType at Put", err)
	}
	// A transcoding registered first makes the type fine.
	m = es.NewMapper[es.Event](nil)
	if err := es.RegisterTranscoding(m.Transcoder(), es.Transcoding[netip.Addr]{Name: "ip",
		Encode: func(a netip.Addr) (any, error) { return a.String(), nil },
		Decode: func(v any) (netip.Addr, error) { return netip.ParseAddr(v.(string)) }}); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(&regMarshaler{}); err != nil {
		t.Errorf("Register after the transcoding: %v", err)
	}
}

type regValue struct {
	es.DomainEvent
	N int `json:"n"`
}

// TestRegisterValueType: registering a struct value where the mapper's
// event type is an interface (which the pointer satisfies too) is refused
// at registration, saying to register a pointer: events are pointers
// (Trigger takes them, the repository saves them), and they are read back
// in the registered form. (Register(Opened{}) was accepted, and Save
// failed with "no topic registered for event type *Opened".) A mapper of
// the value type itself takes it.
func TestRegisterValueType(t *testing.T) {
	m := es.NewMapper[es.Event](nil)
	err := m.Register(regValue{})
	if !errors.Is(err, es.ErrProgramming) || !strings.Contains(err.Error(), "&regValue{}") {
		t.Errorf("Register(regValue{}): %v, want ErrProgramming saying to register &regValue{}", err)
	}
	if err := m.RegisterTopic("x:V", regValue{}); !errors.Is(err, es.ErrProgramming) {
		t.Errorf("RegisterTopic(regValue{}): %v, want ErrProgramming", err)
	}
	if err := m.Register(&regValue{}); err != nil {
		t.Errorf("Register(&regValue{}): %v", err)
	}
	vm := es.NewMapper[regValue](nil)
	if err := vm.Register(regValue{}); err != nil {
		t.Fatalf("Mapper[regValue].Register(regValue{}): %v", err)
	}
	id := uuid.New()
	se, err := vm.ToStoredEvent(regValue{DomainEvent: es.NewDomainEvent(id, 2), N: 7})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := vm.FromStoredEvent(se); err != nil || out.N != 7 || out.Version != 2 || out.Originator != id {
		t.Errorf("value mapper round trip: %+v, %v", out, err)
	}
}

type (
	regHidden struct {
		es.DomainEvent
		owner   string
		balance int64
	}
	regHiddenInner    struct{ owner string }
	regHiddenEmbedded struct {
		es.DomainEvent
		regHiddenInner
	}
	regSkipped struct {
		es.DomainEvent
		cache map[string]int `json:"-"`
	}
	regSomeExported struct {
		es.DomainEvent
		Owner string `json:"owner"`
		cache map[string]int
	}
	regMarker struct{ es.DomainEvent }
)

// TestRegisterRefusesHiddenState: an event whose own fields are all
// unexported is refused (it stored its timestamp alone, silently: the
// embedded DomainEvent's exported Timestamp let it through), at
// registration and when encoding, as a struct embedded in it whose
// fields are all unexported is; unexported fields tagged "-", beside
// exported ones, and events with no fields of their own are fine.
func TestRegisterRefusesHiddenState(t *testing.T) {
	for _, tt := range []struct {
		name  string
		event es.Event
		want  string
	}{
		{"own fields unexported", &regHidden{}, "regHidden"},
		{"embedded struct's fields unexported", &regHiddenEmbedded{}, "regHiddenInner"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := es.NewMapper[es.Event](nil)
			if err := m.Register(tt.event); !errors.Is(err, es.ErrUnsupportedType) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Register: %v, want ErrUnsupportedType naming %s", err, tt.want)
			}
			if b, err := m.Transcoder().Encode(tt.event); !errors.Is(err, es.ErrUnsupportedType) {
				t.Errorf("Encode: %s, %v; want ErrUnsupportedType", b, err)
			}
		})
	}
	for _, e := range []es.Event{&regSkipped{}, &regSomeExported{}, &regMarker{}} {
		if err := es.NewMapper[es.Event](nil).Register(e); err != nil {
			t.Errorf("Register(%T): %v", e, err)
		}
	}
}
