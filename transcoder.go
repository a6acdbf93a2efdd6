package eventsourcing

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// A Transcoder converts Go values to and from JSON, byte for byte as the
// Python eventsourcing library's JSONTranscoder writes it: compact
// separators, raw UTF-8, Python float formatting, NaN and Infinity, and
// values of registered types wrapped as {"_type_": NAME, "_data_": DATA}.
//
// Encoding supports booleans, integers (and *big.Int), floats, strings,
// structs (exported fields, named by their json tags, embedded structs
// flattened, "-" skipped, omitempty honoured), maps with string or integer
// keys (written in sorted key order: use [Object] for another order),
// slices, arrays, pointers, interfaces, [Object], and every type with a
// registered [Transcoding]. Built in are uuid_hex ([uuid.UUID]),
// datetime_iso ([time.Time]) and decimal_str ([Decimal]).
//
// A type that cannot be written without losing what it holds is refused,
// as Python's json raises TypeError, with an error wrapping
// [ErrUnsupportedType] that names it and says to register a Transcoding
// for it (which makes it fine):
//   - a type with its own MarshalJSON or MarshalText (netip.Addr,
//     big.Float, a struct embedding time.Time, a user type), since its own
//     JSON is neither its fields nor its underlying kind, which is all the
//     transcoder would write; *big.Int, an integer, is the exception;
//   - a struct with fields of its own but none exported (and not all
//     tagged "-"), even if a struct it embeds has exported fields (an
//     event embedding [DomainEvent], whose timestamp alone would be
//     written), and a struct embedding such a struct;
//   - []byte: JSON has no bytes;
//   - json.RawMessage: its bytes would be stored as given rather than as
//     Python writes JSON, and could not be read back byte for byte; decode
//     it into an any or an [Object] and store that;
//   - a struct in which a JSON key is ambiguous: fields promoted from
//     embedded structs are resolved by Go's rules (the shallowest wins; at
//     the same depth a json-tagged field beats untagged ones), and where
//     encoding/json would silently drop a key that two fields claim at
//     the same depth, the transcoder refuses the type, naming both
//     fields (give one another json tag).
//
// Such a type is refused wherever it appears, in an empty slice or a nil
// pointer too, and the decoder refuses to decode into it. Other named types
// are written as their kind and read back exactly: a time.Duration is an
// integer number of nanoseconds (Python reads an int, not a timedelta:
// register a Transcoding to write it otherwise); an array of bytes is a
// list of numbers; struct{} and a struct whose fields are all tagged "-"
// are written as {}.
//
// What the encoder writes, the decoder reads back. Both bound nesting at
// 10000 arrays and objects, counted alike (a registered type's
// {"_type_": ..., "_data_": ...} wrapper is one): the encoder refuses a
// value nested deeper. It also refuses a value that contains itself (a
// cycle through pointers, maps or slices, found once the encoder is 1000
// of them deep, as encoding/json does) and a chain of more than 100000
// nested pointers, maps and slices. These errors wrap [ErrUnsupportedType]
// and name the path (struct fields, map keys, indexes, _data_).
//
// Decoding accepts any valid JSON (and NaN, Infinity, -Infinity) nested
// at most 10000 deep. Into an
// interface value it gives nil, bool, string, int64 (or *big.Int beyond
// 64 bits), float64, []any, map[string]any, or the Go type registered for a
// "_type_" name. Struct fields are matched by exact name; unknown keys are
// ignored.
//
// A Transcoder is safe for concurrent use once its transcodings are
// registered. Encoders and decoders are built once per Go type and cached.
type Transcoder struct {
	mu     sync.RWMutex
	byType map[reflect.Type]*transcoding
	byName map[string]*transcoding
	enc    sync.Map // reflect.Type -> encoderFunc
	dec    sync.Map // reflect.Type -> decoderFunc
	// refusals holds why a type cannot be encoded (an error, or nil).
	refusals sync.Map // reflect.Type -> error
}

// Transcoding says how values of a Go type T that JSON cannot express are
// written: as {"_type_": Name, "_data_": Encode(v)}. Encode returns a value
// the transcoder can encode (which may hold values of other registered
// types); Decode receives the decoded DATA (nested registered types already
// restored, objects as map[string]any, integers as int64).
type Transcoding[T any] struct {
	Name   string
	Encode func(T) (any, error)
	Decode func(any) (T, error)
}

type transcoding struct {
	name   string
	typ    reflect.Type
	encode func(reflect.Value) (any, error)
	decode func(any) (reflect.Value, error)
}

// NewTranscoder returns a transcoder with the built-in transcodings
// uuid_hex, datetime_iso and decimal_str.
func NewTranscoder() *Transcoder {
	t := &Transcoder{byType: map[reflect.Type]*transcoding{}, byName: map[string]*transcoding{}}
	registerBuiltins(t)
	return t
}

// RegisterTranscoding registers how values of type T are transcoded. A
// later registration for the same type or name replaces the earlier one;
// for a name, decoding into an interface gives the type registered last.
// Register transcodings before the transcoder is first used. It returns an
// error wrapping [ErrProgramming] if the name is empty or a function is nil.
func RegisterTranscoding[T any](t *Transcoder, tr Transcoding[T]) error {
	if tr.Name == "" || tr.Encode == nil || tr.Decode == nil {
		return fmt.Errorf("%w: transcoding for %v needs a name, Encode and Decode", ErrProgramming, reflect.TypeFor[T]())
	}
	typ := reflect.TypeFor[T]()
	rt := &transcoding{
		name: tr.Name,
		typ:  typ,
		encode: func(v reflect.Value) (any, error) {
			return tr.Encode(v.Interface().(T))
		},
		decode: func(d any) (reflect.Value, error) {
			v, err := tr.Decode(d)
			if err != nil {
				return reflect.Value{}, err
			}
			return reflect.ValueOf(&v).Elem(), nil
		},
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byType[typ] = rt
	t.byName[tr.Name] = rt
	t.enc.Clear()
	t.dec.Clear()
	t.refusals.Clear()
	return nil
}

// Object is a JSON object whose members keep their order, as a Python dict
// does: write a dict in a given key order with it (maps are written in
// sorted key order), and decode into it to keep the stored order (objects
// nested in it decode as Objects too; a transcoding's Decode still receives
// maps).
type Object []Member

// Member is one key and value of an [Object].
type Member struct {
	Key   string
	Value any
}

func (t *Transcoder) lookupType(typ reflect.Type) *transcoding {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byType[typ]
}

func (t *Transcoder) lookupName(name string) *transcoding {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byName[name]
}

var encBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Encode returns the JSON of v. It returns an error wrapping
// [ErrUnsupportedType] that names the Go type of a value it cannot encode
// and where in v it is: a value of an unsupported type, a value nested too
// deeply for the decoder, or a value that contains itself.
func (t *Transcoder) Encode(v any) ([]byte, error) {
	bp := encBufPool.Get().(*[]byte)
	b, err := t.AppendEncode((*bp)[:0], v)
	if err != nil {
		encBufPool.Put(bp)
		return nil, err
	}
	out := slices.Clone(b)
	if cap(b) <= 64<<10 {
		*bp = b
		encBufPool.Put(bp)
	}
	return out, nil
}

// AppendEncode appends the JSON of v to dst.
func (t *Transcoder) AppendEncode(dst []byte, v any) ([]byte, error) {
	if v == nil {
		return append(dst, "null"...), nil
	}
	e := encodeStatePool.Get().(*encodeState)
	e.t = t
	b, err := e.encode(dst, v)
	e.release()
	return b, err
}

// Decode decodes JSON into the value v points to. It returns an error
// wrapping [ErrSyntax] (with the byte offset) for invalid JSON or nesting
// deeper than 10000 arrays and objects, [ErrUnknownTranscoding] (naming it)
// for an unknown "_type_", [ErrDecode] (with the path) for JSON that does
// not fit v, and [ErrUnsupportedType] for a v of a type the encoder refuses.
func (t *Transcoder) Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Decode needs a non-nil pointer, not %T", ErrProgramming, v)
	}
	d := newDecodeState(t, data)
	defer d.release()
	d.skipSpace()
	if err := t.decoder(rv.Type().Elem())(d, rv.Elem()); err != nil {
		return err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.syntaxError("data after the JSON value")
	}
	return nil
}

var decodeStatePool = sync.Pool{New: func() any { return new(decodeState) }}

// newDecodeState returns a pooled decoder of data; release returns it.
func newDecodeState(t *Transcoder, data []byte) *decodeState {
	d := decodeStatePool.Get().(*decodeState)
	*d = decodeState{t: t, data: data, buf: d.buf[:0]}
	return d
}

// release returns d to the pool, keeping its buffer.
func (d *decodeState) release() {
	d.t, d.data = nil, nil
	decodeStatePool.Put(d)
}

// maxDepth bounds the nesting of decoded JSON, so that hostile input
// cannot exhaust the stack.
const maxDepth = 10000

// pathError adds to an error where in the value it happened: a path such
// as a.b[1].c, of struct field names, map keys and slice indexes.
type pathError struct {
	segs []string // innermost first
	err  error
}

// pathKeep is how many segments are shown at each end of a long path.
const pathKeep = 8

func (e *pathError) Error() string {
	var b strings.Builder
	n := len(e.segs)
	for i := n - 1; i >= 0; i-- {
		seg := e.segs[i]
		switch {
		case n > 2*pathKeep+1 && i == n-1-pathKeep: // elide the middle
			fmt.Fprintf(&b, "...(%d more)...", n-2*pathKeep)
			i = pathKeep - 1
			seg = e.segs[i]
		case i < n-1 && !strings.HasPrefix(seg, "["):
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return fmt.Sprintf("%v at %s", e.err, b.String())
}

func (e *pathError) Unwrap() error { return e.err }

// atPath adds seg in front of err's path.
func atPath(err error, seg string) error {
	var pe *pathError
	if errors.As(err, &pe) {
		pe.segs = append(pe.segs, seg)
		return err
	}
	return &pathError{segs: []string{seg}, err: err}
}
