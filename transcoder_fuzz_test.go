package eventsourcing_test

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	es "github.com/seed06b138f8/eventsourcing"
)

// The transcoder's nesting limit, in arrays and objects.
const fuzzLimit = 10000

// countdown is registered with a transcoding whose Encode returns its own
// type: countdown(n) is written as n+1 nested wrappers around 0.
type countdown int

func countdownTranscoding() es.Transcoding[countdown] {
	return es.Transcoding[countdown]{Name: "countdown",
		Encode: func(c countdown) (any, error) {
			if c > 0 {
				return c - 1, nil
			}
			return 0, nil
		},
		Decode: func(d any) (countdown, error) {
			if c, ok := d.(countdown); ok {
				return c + 1, nil
			}
			return 0, nil
		}}
}

// fuzzNode's JSON names are in sorted order, so that it is written exactly
// as the map it decodes into is: the fuzz target can compare bytes.
type fuzzNode struct {
	Any  any                  `json:"any"`
	Kids []*fuzzNode          `json:"kids"`
	Map  map[string]*fuzzNode `json:"map"`
	Name string               `json:"name"`
	Next *fuzzNode            `json:"next"`
}

// valueBuilder builds a Go value from fuzz bytes: scalars, slices, maps,
// arrays, pointers, interfaces, structs, Objects, registered types, long
// chains of one kind of container (to reach the nesting limit), and
// references back to a container being built (cycles). It works out what
// the transcoder must do with the value: refuse it (a cycle, invalid UTF-8,
// nesting beyond the limit) or encode it.
type valueBuilder struct {
	data   []byte
	nodes  int // values built; bounded
	chains int // long chains built; bounded
	// level is the number of arrays and objects the value being built is
	// in, as the transcoder counts them; maxLevel the deepest reached.
	level, maxLevel int
	open            []any // containers being built, which a value may refer back to
	cyclic, invalid bool  // the value contains itself, or an invalid string or date
}

func (b *valueBuilder) byte() byte {
	if len(b.data) == 0 {
		return 0
	}
	c := b.data[0]
	b.data = b.data[1:]
	return c
}

func (b *valueBuilder) uint64() uint64 {
	var x uint64
	for range 8 {
		x = x<<8 | uint64(b.byte())
	}
	return x
}

// nest accounts for n levels of arrays or objects around what fn builds.
func (b *valueBuilder) nest(n int, fn func()) {
	b.level += n
	b.maxLevel = max(b.maxLevel, b.level)
	fn()
	b.level -= n
}

// building makes c referable from the values fn builds.
func (b *valueBuilder) building(c any, fn func()) {
	b.open = append(b.open, c)
	fn()
	b.open = b.open[:len(b.open)-1]
}

func (b *valueBuilder) string() string {
	n := int(b.byte() % 8)
	s := make([]byte, 0, n)
	for range n {
		s = append(s, b.byte())
	}
	if !utf8.Valid(s) {
		b.invalid = true
	}
	return string(s)
}

// key is a map key: valid UTF-8, so that map keys alone do not make most
// values invalid.
func (b *valueBuilder) key() string {
	n := int(b.byte() % 4)
	s := make([]rune, n)
	for i := range s {
		s[i] = rune(b.byte()%64) + '0'
	}
	return string(s)
}

func (b *valueBuilder) value() any {
	if len(b.data) == 0 || b.nodes >= 300 {
		return nil
	}
	b.nodes++
	switch b.byte() % 20 {
	case 0:
		return nil
	case 1:
		return b.byte()%2 == 1
	case 2:
		return int64(b.uint64()) >> (b.byte() % 64)
	case 3:
		return math.Float64frombits(b.uint64())
	case 4:
		return b.string()
	case 5:
		s := make([]any, b.byte()%4)
		b.nest(1, func() {
			b.building(s, func() {
				for i := range s {
					s[i] = b.value()
				}
			})
		})
		return s
	case 6:
		m := map[string]any{}
		n := int(b.byte() % 4)
		b.nest(1, func() {
			b.building(m, func() {
				for range n {
					if k := b.key(); m[k] == nil { // a value overwritten would not count
						m[k] = b.value()
					}
				}
			})
		})
		return m
	case 7:
		p := new(any)
		b.building(p, func() { *p = b.value() })
		return p
	case 8:
		return b.node()
	case 9:
		keys := make([]string, b.byte()%4)
		for i := range keys {
			keys[i] = b.key()
		}
		slices.Sort(keys) // sorted and unique: written as the map it decodes into
		keys = slices.Compact(keys)
		obj := make(es.Object, len(keys))
		b.nest(1, func() {
			b.building(obj, func() {
				for i, k := range keys {
					obj[i] = es.Member{Key: k, Value: b.value()}
				}
			})
		})
		return obj
	case 10:
		var v box
		b.nest(1, func() { v.V = b.value() })
		return v
	case 11:
		n := int(b.byte() % 8)
		b.nest(n+1, func() {})
		return countdown(n)
	case 12:
		if len(b.open) == 0 {
			return nil
		}
		b.cyclic = true
		return b.open[int(b.byte())%len(b.open)]
	case 13:
		return b.chain()
	case 14:
		return b.registered()
	case 15:
		k := int(b.byte() % 24)
		k = min(k, len(b.data))
		n := new(big.Int).SetBytes(b.data[:k])
		b.data = b.data[k:]
		if b.byte()%2 == 1 {
			n.Neg(n)
		}
		switch b.byte() % 3 {
		case 0:
			return *n
		case 1:
			return (*big.Int)(nil)
		}
		return n
	case 16:
		m := map[int64]any{}
		n := int(b.byte() % 4)
		b.nest(1, func() {
			b.building(m, func() {
				for range n {
					if k := int64(int8(b.byte())); m[k] == nil {
						m[k] = b.value()
					}
				}
			})
		})
		return m
	case 17:
		return b.uint64()
	case 18:
		var a [2]any
		b.nest(1, func() {
			a[0] = b.value()
			a[1] = b.value()
		})
		return a
	default:
		return math.Float32frombits(uint32(b.uint64()))
	}
}

// node builds a *fuzzNode, whose kids, map and next may refer back to a
// node being built.
func (b *valueBuilder) node() *fuzzNode {
	n := &fuzzNode{Name: b.key()}
	flags := b.byte()
	b.nest(1, func() {
		b.building(n, func() {
			if flags&1 != 0 {
				n.Any = b.value()
			}
			if flags&2 != 0 {
				n.Next = b.nodeOrRef()
			}
			b.nest(1, func() { // kids: [], even when nil
				if flags&4 != 0 {
					n.Kids = make([]*fuzzNode, b.byte()%3)
					for i := range n.Kids {
						n.Kids[i] = b.nodeOrRef()
					}
				}
			})
			b.nest(1, func() { // map: {}, even when nil
				if flags&8 != 0 {
					n.Map = map[string]*fuzzNode{}
					for range b.byte() % 3 {
						if k := b.key(); n.Map[k] == nil {
							n.Map[k] = b.nodeOrRef()
						}
					}
				}
			})
		})
	})
	return n
}

func (b *valueBuilder) nodeOrRef() *fuzzNode {
	if b.byte()%4 == 0 {
		for i := len(b.open) - 1; i >= 0; i-- {
			if n, ok := b.open[i].(*fuzzNode); ok {
				b.cyclic = true
				return n
			}
		}
	}
	if len(b.data) == 0 || b.nodes >= 300 {
		return nil
	}
	b.nodes++
	return b.node()
}

// chain builds up to 20100 containers of one kind nested in each other,
// often just around the nesting limit.
func (b *valueBuilder) chain() any {
	if b.chains >= 2 {
		return nil
	}
	b.chains++
	kind := b.byte() % 7
	n := int(b.byte())
	switch n % 4 {
	case 0:
		n = fuzzLimit - 12 + n/4%24
	case 1:
		n = (n<<8 | int(b.byte())) % 20100
	default:
		n = int(b.byte()) // short chains are cheaper to fuzz
	}
	if n == 0 {
		return nil
	}
	switch kind {
	case 5: // countdown(n-1) is n nested wrappers
		b.nest(n, func() {})
		return countdown(n - 1)
	case 6: // pointers add no nesting
		v := b.value()
		for range n {
			p := new(any)
			*p = v
			v = p
		}
		return v
	}
	var leaf any
	b.nest(n, func() {
		if kind == 2 {
			b.nest(1, func() {}) // the innermost node's kids [] and map {}
		}
		leaf = b.value()
	})
	if kind == 2 {
		node := &fuzzNode{Any: leaf}
		for range n - 1 {
			node = &fuzzNode{Next: node}
		}
		return node
	}
	v := leaf
	for range n {
		switch kind {
		case 0:
			v = []any{v}
		case 1:
			v = map[string]any{"k": v}
		case 3:
			v = box{v}
		case 4:
			v = es.Object{{Key: "k", Value: v}}
		}
	}
	return v
}

// registered builds a value of a built-in registered type.
func (b *valueBuilder) registered() any {
	var v any
	b.nest(1, func() {
		switch b.byte() % 3 {
		case 0:
			var u uuid.UUID
			for i := range u {
				u[i] = b.byte()
			}
			v = u
		case 1:
			const minSec, maxSec = -62135596800, 253402300799 // years 1 to 9999 UTC
			sec := minSec + int64(b.uint64()%(maxSec-minSec+1))
			tm := time.Unix(sec, int64(b.uint64()%1e9))
			switch b.byte() % 3 {
			case 0:
				tm = tm.UTC()
			case 1:
				tm = tm.In(time.FixedZone("", int(int32(b.uint64()))%(24*3600)))
			default:
				tm = tm.In(es.Naive)
			}
			if tm.Year() < 1 || tm.Year() > 9999 {
				b.invalid = true // out of Python's range in that zone
			}
			v = tm
		default:
			digits := []byte("0123456789")
			s := make([]byte, 0, 12)
			for range b.byte() % 10 {
				s = append(s, digits[b.byte()%10])
			}
			if b.byte()%2 == 1 {
				s = append(s, '.', '5')
			}
			if len(s) == 0 {
				s = append(s, '0')
			}
			v = es.MustParseDecimal(string(s))
		}
	})
	return v
}

func newFuzzTranscoder(tb testing.TB) *es.Transcoder {
	tr := es.NewTranscoder()
	for _, err := range []error{
		es.RegisterTranscoding(tr, boxTranscoding()),
		es.RegisterTranscoding(tr, countdownTranscoding()),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return tr
}

// FuzzTranscoderEncode builds arbitrary values (nested maps, slices,
// pointers, interfaces, structs, Objects, registered types, cycles, nesting
// around the limit) and checks that the encoder never panics, refuses
// exactly the values it must (with ErrUnsupportedType), and that every
// value it accepts decodes back, into any and into the value's own type,
// and encodes again to the same bytes.
func FuzzTranscoderEncode(f *testing.F) {
	f.Add([]byte{5, 3, 4, 2, 'h', 'i', 12, 0})  // a slice containing itself
	f.Add([]byte{7, 12, 0})                     // a pointer to itself
	f.Add([]byte{8, 0, 2, 0})                   // a node referring to itself
	f.Add([]byte{13, 0, 48})                    // 10000 slices
	f.Add([]byte{13, 0, 52})                    // 10001 slices
	f.Add([]byte{13, 3, 44, 14, 0})             // boxes around a uuid at the limit
	f.Add([]byte{13, 5, 48})                    // countdown at the limit
	f.Add([]byte{13, 2, 44})                    // nodes at the limit
	f.Add([]byte{13, 6, 1, 0xff, 7, 12, 0})     // a long pointer chain around a cycle
	f.Add([]byte{9, 3, 1, 'a', 1, 'b', 1, 'b'}) // an Object
	f.Add([]byte{15, 17, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 1, 0})
	f.Add([]byte{19, 0, 0, 0, 0, 0x38, 0xd1, 0xb7, 0x17}) // float32 nearest 1e-4
	tr := newFuzzTranscoder(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		b := &valueBuilder{data: data}
		v := b.value()
		mustRefuse := b.cyclic || b.invalid || b.maxLevel > fuzzLimit
		enc, err := tr.Encode(v)
		if err != nil {
			if !errors.Is(err, es.ErrUnsupportedType) {
				t.Fatalf("Encode: %v, want ErrUnsupportedType", err)
			}
			if !mustRefuse {
				t.Fatalf("Encode refused a value nested %d deep, without cycles or invalid strings: %v", b.maxLevel, err)
			}
			return
		}
		if mustRefuse {
			t.Fatalf("Encode accepted a value it must refuse (cycle %v, invalid %v, nesting %d): %.200s", b.cyclic, b.invalid, b.maxLevel, enc)
		}
		var back any
		if err := tr.Decode(enc, &back); err != nil {
			t.Fatalf("cannot decode what was encoded: %v\n%.300s", err, enc)
		}
		again, err := tr.Encode(back)
		if err != nil || !bytes.Equal(again, enc) {
			t.Fatalf("decoded into any and encoded again: %v\n got %.300s\nwant %.300s", err, again, enc)
		}
		if v == nil {
			return
		}
		typed := reflect.New(reflect.TypeOf(v))
		if err := tr.Decode(enc, typed.Interface()); err != nil {
			t.Fatalf("cannot decode into %T what was encoded: %v\n%.300s", v, err, enc)
		}
		again, err = tr.Encode(typed.Elem().Interface())
		if err != nil || !bytes.Equal(again, enc) {
			t.Fatalf("decoded into %T and encoded again: %v\n got %.300s\nwant %.300s", v, err, again, enc)
		}
	})
}
