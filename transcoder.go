package eventsourcing

// The Transcoder: Python-compatible JSON for states, and the transcodings
// of types JSON cannot express. The engine is internal/transcode.

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/seed06b138f8/eventsourcing/internal/transcode"
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
//
// The zero Transcoder is ready to use, as one from NewTranscoder; a nil
// *Transcoder returns errors wrapping [ErrProgramming].
type Transcoder struct {
	once sync.Once
	e    *transcode.Transcoder
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

// NewTranscoder returns a transcoder with the built-in transcodings
// uuid_hex, datetime_iso and decimal_str.
func NewTranscoder() *Transcoder {
	t := new(Transcoder)
	t.engine()
	return t
}

// engine returns the transcoder's engine, made on first use.
func (t *Transcoder) engine() *transcode.Transcoder {
	t.once.Do(func() {
		t.e = transcode.New()
		dec := DecimalTranscoding[Decimal]()
		transcode.RegisterFunc(t.e, dec.Name, dec.Encode, dec.Decode)
	})
	return t.e
}

// RegisterTranscoding registers how values of type T are transcoded. A
// later registration for the same type or name replaces the earlier one;
// for a name, decoding into an interface gives the type registered last.
// Register transcodings before the transcoder is first used. It returns an
// error wrapping [ErrProgramming] if t is nil, the name is empty or a
// function is nil.
func RegisterTranscoding[T any](t *Transcoder, tr Transcoding[T]) error {
	if err := t.check(); err != nil {
		return err
	}
	if tr.Name == "" || tr.Encode == nil || tr.Decode == nil {
		return fmt.Errorf("%w: transcoding for %v needs a name, Encode and Decode", ErrProgramming, reflect.TypeFor[T]())
	}
	transcode.RegisterFunc(t.engine(), tr.Name, tr.Encode, tr.Decode)
	return nil
}

// Object is a JSON object whose members keep their order, as a Python dict
// does: write a dict in a given key order with it (maps are written in
// sorted key order), and decode into it to keep the stored order (objects
// nested in it decode as Objects too; a transcoding's Decode still receives
// maps).
type Object = transcode.Object

// Member is one key and value of an [Object].
type Member = transcode.Member

// Naive is the location of naive datetimes, which have no UTC offset:
// datetime_iso writes a time.Time in this location without an offset, as
// Python writes a naive datetime, and decodes such a datetime into it.
// Compare locations with it; do not reassign it (the transcoder keeps the
// original).
var Naive = transcode.Naive

// Encode returns the JSON of v. It returns an error wrapping
// [ErrUnsupportedType] that names the Go type of a value it cannot encode
// and where in v it is: a value of an unsupported type, a value nested too
// deeply for the decoder, or a value that contains itself.
func (t *Transcoder) Encode(v any) ([]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	return t.engine().Encode(v)
}

// AppendEncode appends the JSON of v to dst, with the errors of Encode.
func (t *Transcoder) AppendEncode(dst []byte, v any) ([]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	return t.engine().AppendEncode(dst, v)
}

// Decode decodes JSON into the value v points to. It returns an error
// wrapping [ErrSyntax] (with the byte offset) for invalid JSON or nesting
// deeper than 10000 arrays and objects, [ErrUnknownTranscoding] (naming it)
// for an unknown "_type_", [ErrDecode] (with the path) for JSON that does
// not fit v, and [ErrUnsupportedType] for a v of a type the encoder refuses.
// A v that is not a non-nil pointer is an error wrapping [ErrProgramming].
func (t *Transcoder) Decode(data []byte, v any) error {
	if err := t.check(); err != nil {
		return err
	}
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Decode needs a non-nil pointer, not %T", ErrProgramming, v)
	}
	return t.engine().Decode(data, v)
}

// decodeState decodes a stored state into v, as Decode does, except that a
// state that is not JSON at all is an error wrapping ErrSyntax even where
// the decoder met a value of the wrong type first (ciphertext that starts
// with a digit): what failed is that the state is not JSON.
func (t *Transcoder) decodeState(data []byte, v any) error {
	err := t.Decode(data, v)
	if errors.Is(err, ErrDecode) {
		if serr := transcode.Validate(data); serr != nil {
			return serr
		}
	}
	return err
}

// check reports a nil Transcoder.
func (t *Transcoder) check() error {
	if t == nil {
		return fmt.Errorf("%w: nil Transcoder", ErrProgramming)
	}
	return nil
}

// hasTranscoding reports whether typ has a registered transcoding.
func (t *Transcoder) hasTranscoding(typ reflect.Type) bool { return t.engine().HasTranscoding(typ) }
