package eventsourcing

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
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
// Decoding accepts any valid JSON (and NaN, Infinity, -Infinity). Into an
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

// Naive is the location of naive datetimes, which have no UTC offset:
// datetime_iso writes a time.Time in this location without an offset, as
// Python writes a naive datetime, and decodes such a datetime into it.
var Naive = time.FixedZone("naive", 0)

// NewTranscoder returns a transcoder with the built-in transcodings
// uuid_hex, datetime_iso and decimal_str.
func NewTranscoder() *Transcoder {
	t := &Transcoder{byType: map[reflect.Type]*transcoding{}, byName: map[string]*transcoding{}}
	must := func(err error) {
		if err != nil {
			panic(err) // the built-ins are valid
		}
	}
	must(RegisterTranscoding(t, Transcoding[uuid.UUID]{Name: "uuid_hex",
		Encode: func(u uuid.UUID) (any, error) { return hexUUID(u), nil },
		Decode: func(d any) (uuid.UUID, error) {
			s, ok := d.(string)
			if !ok {
				return uuid.UUID{}, fmt.Errorf("uuid_hex data is %T, want a string", d)
			}
			return uuid.Parse(s)
		}}))
	must(RegisterTranscoding(t, Transcoding[time.Time]{Name: "datetime_iso",
		Encode: func(v time.Time) (any, error) {
			b, err := appendISO(nil, v)
			return string(b), err
		},
		Decode: func(d any) (time.Time, error) {
			s, ok := d.(string)
			if !ok {
				return time.Time{}, fmt.Errorf("datetime_iso data is %T, want a string", d)
			}
			return parseISO([]byte(s))
		}}))
	must(RegisterTranscoding(t, DecimalTranscoding[Decimal]()))
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
	return nil
}

// DecimalTranscoding returns the decimal_str transcoding for a decimal type
// that marshals to and from text, such as [Decimal] or a third-party
// decimal type: it is written as Python's str(Decimal).
func DecimalTranscoding[T any, PT interface {
	*T
	encoding.TextMarshaler
	encoding.TextUnmarshaler
}]() Transcoding[T] {
	return Transcoding[T]{
		Name: "decimal_str",
		Encode: func(v T) (any, error) {
			b, err := PT(&v).MarshalText()
			return string(b), err
		},
		Decode: func(d any) (T, error) {
			var v T
			s, ok := d.(string)
			if !ok {
				return v, fmt.Errorf("decimal_str data is %T, want a string", d)
			}
			err := PT(&v).UnmarshalText([]byte(s))
			return v, err
		},
	}
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
// [ErrUnsupportedType] that names the Go type of a value it cannot encode.
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
	rv := reflect.ValueOf(v)
	return t.encoder(rv.Type())(t, dst, rv)
}

// Decode decodes JSON into the value v points to. It returns an error
// wrapping [ErrSyntax] (with the byte offset) for invalid JSON,
// [ErrUnknownTranscoding] (naming it) for an unknown "_type_", and
// [ErrDecode] (with the path) for JSON that does not fit v.
func (t *Transcoder) Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Decode needs a non-nil pointer, not %T", ErrProgramming, v)
	}
	d := decodeStatePool.Get().(*decodeState)
	*d = decodeState{t: t, data: data, buf: d.buf[:0]}
	defer func() {
		d.t, d.data = nil, nil
		decodeStatePool.Put(d)
	}()
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

// ---- encoding ----

type encoderFunc func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error)

var (
	bigIntType         = reflect.TypeFor[big.Int]()
	objectType         = reflect.TypeFor[Object]()
	classVersionerType = reflect.TypeFor[ClassVersioner]()
)

func (t *Transcoder) encoder(typ reflect.Type) encoderFunc {
	if f, ok := t.enc.Load(typ); ok {
		return f.(encoderFunc)
	}
	// An indirect placeholder lets recursive types refer to themselves.
	var (
		wg sync.WaitGroup
		f  encoderFunc
	)
	wg.Add(1)
	fi, loaded := t.enc.LoadOrStore(typ, encoderFunc(func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
		wg.Wait()
		return f(t, b, v)
	}))
	if loaded {
		return fi.(encoderFunc)
	}
	f = t.newEncoder(typ)
	wg.Done()
	t.enc.Store(typ, f)
	return f
}

func unsupported(typ reflect.Type, why string) encoderFunc {
	return func(*Transcoder, []byte, reflect.Value) ([]byte, error) {
		return nil, fmt.Errorf("%w: %v%s", ErrUnsupportedType, typ, why)
	}
}

func (t *Transcoder) newEncoder(typ reflect.Type) encoderFunc {
	if tr := t.lookupType(typ); tr != nil {
		return transcodingEncoder(tr)
	}
	switch typ {
	case objectType:
		return encodeObject
	case bigIntType:
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			x := v.Addr().Interface().(*big.Int)
			return x.Append(b, 10), nil
		}
	}
	if typ.Kind() == reflect.Pointer && typ.Elem() == bigIntType {
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			if v.IsNil() {
				return append(b, "null"...), nil
			}
			return v.Interface().(*big.Int).Append(b, 10), nil
		}
	}
	switch typ.Kind() {
	case reflect.Bool:
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			if v.Bool() {
				return append(b, "true"...), nil
			}
			return append(b, "false"...), nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			return strconv.AppendInt(b, v.Int(), 10), nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			return strconv.AppendUint(b, v.Uint(), 10), nil
		}
	case reflect.Float32, reflect.Float64:
		bits := typ.Bits()
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			return appendPyFloat(b, v.Float(), bits), nil
		}
	case reflect.String:
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			return appendPyString(b, v.String())
		}
	case reflect.Struct:
		return t.structEncoder(typ)
	case reflect.Map:
		return t.mapEncoder(typ)
	case reflect.Slice:
		if typ.Elem().Kind() == reflect.Uint8 && t.lookupType(typ.Elem()) == nil {
			return unsupported(typ, " (JSON has no bytes: use a string, or register a Transcoding)")
		}
		fallthrough
	case reflect.Array:
		elem := t.encoder(typ.Elem())
		isSlice := typ.Kind() == reflect.Slice
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			if isSlice && v.IsNil() {
				return append(b, "[]"...), nil
			}
			b = append(b, '[')
			var err error
			for i := range v.Len() {
				if i > 0 {
					b = append(b, ',')
				}
				if b, err = elem(t, b, v.Index(i)); err != nil {
					return nil, err
				}
			}
			return append(b, ']'), nil
		}
	case reflect.Pointer:
		elem := t.encoder(typ.Elem())
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			if v.IsNil() {
				return append(b, "null"...), nil
			}
			return elem(t, b, v.Elem())
		}
	case reflect.Interface:
		return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
			if v.IsNil() {
				return append(b, "null"...), nil
			}
			e := v.Elem()
			return t.encoder(e.Type())(t, b, e)
		}
	}
	return unsupported(typ, "")
}

func transcodingEncoder(tr *transcoding) encoderFunc {
	prefix := append(appendPyStringUnchecked([]byte(`{"_type_":`), tr.name), `,"_data_":`...)
	return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
		b = append(b, prefix...)
		var err error
		switch {
		case tr.typ == uuidType && tr.name == "uuid_hex": // built-ins written directly: no boxing
			var u uuid.UUID
			if v.CanAddr() {
				u = *v.Addr().Interface().(*uuid.UUID)
			} else {
				u = v.Interface().(uuid.UUID)
			}
			b = append(b, '"')
			b = appendHex(b, u)
			return append(b, '"', '}'), nil
		case tr.typ == timeType && tr.name == "datetime_iso":
			var tm *time.Time
			if v.CanAddr() {
				tm = v.Addr().Interface().(*time.Time)
			} else {
				x := v.Interface().(time.Time)
				tm = &x
			}
			b = append(b, '"')
			if b, err = appendISO(b, *tm); err != nil {
				return nil, err
			}
			return append(b, '"', '}'), nil
		}
		data, err := tr.encode(v)
		if err != nil {
			return nil, fmt.Errorf("%w: transcoding %s of %v: %v", ErrUnsupportedType, tr.name, tr.typ, err)
		}
		if b, err = t.AppendEncode(b, data); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	}
}

func encodeObject(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
	obj := v.Interface().(Object)
	b = append(b, '{')
	var err error
	for i, m := range obj {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendPyString(b, m.Key); err != nil {
			return nil, err
		}
		b = append(b, ':')
		if b, err = t.AppendEncode(b, m.Value); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

type field struct {
	name      string
	key       []byte // "name":
	index     []int
	omitEmpty bool
	typ       reflect.Type
}

// structFields lists a struct type's JSON fields as encoding/json does for
// the simple cases: exported fields, json tag names, embedded structs
// flattened (an outer field hides an inner one of the same name).
func structFields(typ reflect.Type) []field {
	var fields []field
	seen := map[string]bool{}
	var walk func(typ reflect.Type, index []int)
	walk = func(typ reflect.Type, index []int) {
		var embedded []reflect.StructField
		for i := range typ.NumField() {
			sf := typ.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if sf.Anonymous && name == "" {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					embedded = append(embedded, sf)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			key, _ := appendPyString(nil, name)
			fields = append(fields, field{
				name: name, key: append(key, ':'), index: append(slices.Clone(index), i),
				omitEmpty: strings.Contains(opts, "omitempty"), typ: sf.Type,
			})
		}
		for _, sf := range embedded {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			walk(ft, append(slices.Clone(index), sf.Index...))
		}
	}
	walk(typ, nil)
	// Fields keep declaration order, embedded fields where they are
	// declared: re-sort by index path.
	slices.SortStableFunc(fields, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return fields
}

// classVersionOf returns the class version a struct type declares, or 0.
func classVersionOf(typ reflect.Type) int {
	switch {
	case typ.Implements(classVersionerType):
		return reflect.New(typ).Elem().Interface().(ClassVersioner).ClassVersion()
	case reflect.PointerTo(typ).Implements(classVersionerType):
		return reflect.New(typ).Interface().(ClassVersioner).ClassVersion()
	}
	return 0
}

func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

func (t *Transcoder) structEncoder(typ reflect.Type) encoderFunc {
	fields := structFields(typ)
	encs := make([]encoderFunc, len(fields))
	for i, f := range fields {
		encs[i] = t.encoder(f.typ)
	}
	var suffix []byte
	if cv := classVersionOf(typ); cv > 1 {
		suffix = strconv.AppendInt([]byte(`"class_version":`), int64(cv), 10)
	}
	return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
		b = append(b, '{')
		first := true
		var err error
		for i := range fields {
			f := &fields[i]
			fv, ok := fieldByIndex(v, f.index)
			if !ok || (f.omitEmpty && fv.IsZero()) {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, f.key...)
			if b, err = encs[i](t, b, fv); err != nil {
				return nil, err
			}
		}
		if suffix != nil {
			if !first {
				b = append(b, ',')
			}
			b = append(b, suffix...)
		}
		return append(b, '}'), nil
	}
}

func (t *Transcoder) mapEncoder(typ reflect.Type) encoderFunc {
	kt := typ.Key()
	var keyString func(reflect.Value) string
	switch kt.Kind() {
	case reflect.String:
		keyString = func(k reflect.Value) string { return k.String() }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		keyString = func(k reflect.Value) string { return strconv.FormatInt(k.Int(), 10) }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		keyString = func(k reflect.Value) string { return strconv.FormatUint(k.Uint(), 10) }
	default:
		return unsupported(typ, " (map keys must be strings or integers)")
	}
	elem := t.encoder(typ.Elem())
	return func(t *Transcoder, b []byte, v reflect.Value) ([]byte, error) {
		if v.Len() == 0 {
			return append(b, "{}"...), nil
		}
		type kv struct {
			k string
			v reflect.Value
		}
		kvs := make([]kv, 0, v.Len())
		for it := v.MapRange(); it.Next(); {
			kvs = append(kvs, kv{keyString(it.Key()), it.Value()})
		}
		slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
		b = append(b, '{')
		var err error
		for i, e := range kvs {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendPyString(b, e.k); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = elem(t, b, e.v); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
}

// appendPyFloat writes a float as Python's repr does.
func appendPyFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	if f == 0 {
		if math.Signbit(f) {
			return append(b, "-0.0"...)
		}
		return append(b, "0.0"...)
	}
	abs := math.Abs(f)
	if abs >= 1e16 || abs < 1e-4 {
		// Scientific: Go's shortest 'e' form has Python's two-digit
		// exponent (1e+16, 1e-05, 5e-324).
		return strconv.AppendFloat(b, f, 'e', -1, bits)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, bits)
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, '.', '0')
}

const hexDigits = "0123456789abcdef"

// appendPyString writes a JSON string as Python's json.dumps with
// ensure_ascii=False does: only '"', '\\' and control characters are
// escaped. Invalid UTF-8 is an error.
func appendPyString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: string is not valid UTF-8: %q", ErrUnsupportedType, s)
	}
	return appendPyStringUnchecked(b, s), nil
}

func appendPyStringUnchecked(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func hexUUID(u uuid.UUID) string { return string(appendHex(nil, u)) }

func appendHex(b []byte, u uuid.UUID) []byte {
	for _, c := range u {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// appendISO writes a time as Python's datetime.isoformat does, to the
// microsecond (finer precision is truncated: Python has none).
func appendISO(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 1 || y > 9999 {
		return nil, fmt.Errorf("%w: year %d of %v is outside Python's datetime range 1..9999", ErrUnsupportedType, y, t)
	}
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = appendPadded(b, us, 6)
	}
	if t.Location() == Naive {
		return b, nil
	}
	_, off := t.Zone()
	if off < 0 {
		b = append(b, '-')
		off = -off
	} else {
		b = append(b, '+')
	}
	b = appendPadded(b, off/3600, 2)
	b = append(b, ':')
	b = appendPadded(b, off/60%60, 2)
	if off%60 != 0 {
		b = append(b, ':')
		b = appendPadded(b, off%60, 2)
	}
	return b, nil
}

func appendPadded(b []byte, n, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(n), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parseISO parses what Python's datetime.fromisoformat accepts for the
// common forms: YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,9}]]][Z|±HH:MM[:SS[.ffffff]]].
// Without an offset the time is in [Naive].
func parseISO(s []byte) (time.Time, error) {
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid isoformat datetime %q", s)
	}
	p := 0
	num := func(n int) (int, bool) {
		if p+n > len(s) {
			return 0, false
		}
		v := 0
		for _, c := range s[p : p+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		p += n
		return v, true
	}
	lit := func(c byte) bool {
		if p < len(s) && s[p] == c {
			p++
			return true
		}
		return false
	}
	year, ok1 := num(4)
	ok2 := lit('-')
	month, ok3 := num(2)
	ok4 := lit('-')
	day, ok5 := num(2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return bad()
	}
	var hour, minute, sec, nsec int
	loc := Naive
	if p < len(s) {
		if s[p] != 'T' && s[p] != ' ' {
			return bad()
		}
		p++
		var ok bool
		if hour, ok = num(2); !ok || !lit(':') {
			return bad()
		}
		if minute, ok = num(2); !ok {
			return bad()
		}
		if lit(':') {
			if sec, ok = num(2); !ok {
				return bad()
			}
			if lit('.') || lit(',') {
				digits := 0
				for p < len(s) && s[p] >= '0' && s[p] <= '9' {
					if digits < 9 {
						nsec = nsec*10 + int(s[p]-'0')
					}
					digits++
					p++
				}
				if digits == 0 {
					return bad()
				}
				for i := digits; i < 9; i++ {
					nsec *= 10
				}
			}
		}
		if p < len(s) {
			switch {
			case lit('Z'):
				loc = time.UTC
			case s[p] == '+' || s[p] == '-':
				sign := 1
				if s[p] == '-' {
					sign = -1
				}
				p++
				oh, ok1 := num(2)
				ok2 := lit(':')
				om, ok3 := num(2)
				if !(ok1 && ok2 && ok3) {
					return bad()
				}
				off := oh*3600 + om*60
				if lit(':') {
					os, ok := num(2)
					if !ok {
						return bad()
					}
					off += os
					if lit('.') {
						for p < len(s) && s[p] >= '0' && s[p] <= '9' {
							p++
						}
					}
				}
				if off >= 24*3600 {
					return bad()
				}
				if off == 0 {
					loc = time.UTC
				} else {
					loc = time.FixedZone("", sign*off)
				}
			default:
				return bad()
			}
		}
		if p != len(s) {
			return bad()
		}
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 || year < 1 {
		return bad()
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if t.Day() != day {
		return bad() // 2023-02-30
	}
	return t, nil
}

// ---- decoding ----

type decoderFunc func(d *decodeState, v reflect.Value) error

type decodeState struct {
	t    *Transcoder
	data []byte
	pos  int
	buf  []byte // scratch for unescaping strings
	// ordered makes objects decode as Object, keeping key order (when
	// decoding into an Object).
	ordered bool
	depth   int // nesting of arrays and objects
}

// maxDepth bounds the nesting of decoded JSON, so that hostile input
// cannot exhaust the stack.
const maxDepth = 10000

func (d *decodeState) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.syntaxError(fmt.Sprintf("nesting deeper than %d", maxDepth))
	}
	return nil
}

// pathError prefixes a decoding error with where in the value it happened.
type pathError struct {
	path string
	err  error
}

func (e *pathError) Error() string {
	return fmt.Sprintf("%v at %s", e.err, e.path)
}
func (e *pathError) Unwrap() error { return e.err }

func atPath(err error, seg string) error {
	var pe *pathError
	if errors.As(err, &pe) {
		if strings.HasPrefix(pe.path, "[") {
			pe.path = seg + pe.path
		} else {
			pe.path = seg + "." + pe.path
		}
		return err
	}
	return &pathError{path: seg, err: err}
}

func (d *decodeState) syntaxError(msg string) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, d.pos, msg)
}

func (d *decodeState) typeError(want string) error {
	if d.pos >= len(d.data) {
		return d.syntaxError("unexpected end of input")
	}
	found := ""
	{
		switch c := d.data[d.pos]; {
		case c == '{':
			found = "an object"
		case c == '[':
			found = "an array"
		case c == '"':
			found = "a string"
		case c == 't' || c == 'f':
			found = "a boolean"
		case c == 'n':
			found = "null"
		case c == '-' || c == 'N' || c == 'I' || (c >= '0' && c <= '9'):
			found = "a number"
		default:
			return d.syntaxError(fmt.Sprintf("invalid character %q", c))
		}
	}
	return fmt.Errorf("%w: want %s, found %s at offset %d", ErrDecode, want, found, d.pos)
}

func (d *decodeState) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decodeState) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// literal consumes a keyword such as null or true.
func (d *decodeState) literal(word string) bool {
	if len(d.data)-d.pos >= len(word) && string(d.data[d.pos:d.pos+len(word)]) == word {
		d.pos += len(word)
		return true
	}
	return false
}

func (d *decodeState) null() (bool, error) {
	if d.peek() != 'n' {
		return false, nil
	}
	if !d.literal("null") {
		return false, d.syntaxError("invalid literal")
	}
	return true, nil
}

// readString reads a JSON string and returns its bytes, which are valid
// only until the next read (they may alias the input or the scratch
// buffer).
func (d *decodeState) readString() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.syntaxError("want a string")
	}
	d.pos++
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			if !utf8.Valid(s) {
				return nil, fmt.Errorf("%w at offset %d: string is not valid UTF-8", ErrSyntax, start)
			}
			return s, nil
		case c == '\\':
			return d.readEscaped(start)
		case c < 0x20:
			return nil, d.syntaxError("control character in string")
		}
		d.pos++
	}
	return nil, d.syntaxError("unterminated string")
}

func (d *decodeState) readEscaped(start int) ([]byte, error) {
	b := append(d.buf[:0], d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			d.buf = b
			if !utf8.Valid(b) {
				return nil, fmt.Errorf("%w at offset %d: string is not valid UTF-8", ErrSyntax, start)
			}
			return b, nil
		case c < 0x20:
			return nil, d.syntaxError("control character in string")
		case c != '\\':
			b = append(b, c)
			d.pos++
			continue
		}
		d.pos++
		if d.pos >= len(d.data) {
			break
		}
		e := d.data[d.pos]
		d.pos++
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return nil, d.syntaxError("invalid \\u escape")
			}
			if r >= 0xd800 && r < 0xdc00 && d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
				save := d.pos
				d.pos += 2
				if r2, ok := d.hex4(); ok && r2 >= 0xdc00 && r2 < 0xe000 {
					r = (r-0xd800)<<10 + (r2 - 0xdc00) + 0x10000
				} else {
					d.pos = save
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				return nil, d.syntaxError("lone surrogate in \\u escape (Go strings cannot hold it)")
			}
			b = utf8.AppendRune(b, r)
		default:
			return nil, d.syntaxError(fmt.Sprintf("invalid escape \\%c", e))
		}
	}
	return nil, d.syntaxError("unterminated string")
}

func (d *decodeState) hex4() (rune, bool) {
	if d.pos+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

// readNumber reads a JSON number (or NaN, Infinity, -Infinity) and reports
// whether it is an integer.
func (d *decodeState) readNumber() (tok []byte, isInt bool, err error) {
	start := d.pos
	for _, w := range []string{"NaN", "Infinity", "-Infinity"} {
		if d.literal(w) {
			return d.data[start:d.pos], false, nil
		}
	}
	p := d.pos
	if p < len(d.data) && d.data[p] == '-' {
		p++
	}
	digits := func() int {
		n := 0
		for p < len(d.data) && d.data[p] >= '0' && d.data[p] <= '9' {
			p++
			n++
		}
		return n
	}
	intStart := p
	n := digits()
	if n == 0 || (n > 1 && d.data[intStart] == '0') {
		d.pos = start
		return nil, false, d.syntaxError("invalid number")
	}
	isInt = true
	if p < len(d.data) && d.data[p] == '.' {
		p++
		isInt = false
		if digits() == 0 {
			d.pos = p
			return nil, false, d.syntaxError("invalid number")
		}
	}
	if p < len(d.data) && (d.data[p] == 'e' || d.data[p] == 'E') {
		p++
		isInt = false
		if p < len(d.data) && (d.data[p] == '+' || d.data[p] == '-') {
			p++
		}
		if digits() == 0 {
			d.pos = p
			return nil, false, d.syntaxError("invalid number")
		}
	}
	d.pos = p
	return d.data[start:p], isInt, nil
}

func parseFloatToken(tok []byte) (float64, error) {
	switch string(tok) {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, err
	}
	return f, nil // out of range: ±Inf, as Python's float() gives
}

// skipValue skips one JSON value, checking its syntax.
func (d *decodeState) skipValue() error {
	_, err := d.parseAny(true)
	return err
}

// parseAny parses a JSON value into its generic Go form. With discard, it
// only checks syntax (and builds nothing).
func (d *decodeState) parseAny(discard bool) (any, error) {
	d.skipSpace()
	if c := d.peek(); c == '{' || c == '[' {
		if err := d.enter(); err != nil {
			return nil, err
		}
		defer func() { d.depth-- }()
	}
	switch c := d.peek(); {
	case c == '{':
		return d.parseObject(discard)
	case c == '[':
		d.pos++
		var list []any
		if !discard {
			list = []any{}
		}
		d.skipSpace()
		if d.peek() == ']' {
			d.pos++
			return list, nil
		}
		for i := 0; ; i++ {
			v, err := d.parseAny(discard)
			if err != nil {
				return nil, atPath(err, "["+strconv.Itoa(i)+"]")
			}
			if !discard {
				list = append(list, v)
			}
			d.skipSpace()
			switch d.peek() {
			case ',':
				d.pos++
			case ']':
				d.pos++
				return list, nil
			default:
				return nil, d.syntaxError("want , or ] in array")
			}
		}
	case c == '"':
		s, err := d.readString()
		if err != nil || discard {
			return nil, err
		}
		return string(s), nil
	case c == 't':
		if d.literal("true") {
			return true, nil
		}
	case c == 'f':
		if d.literal("false") {
			return false, nil
		}
	case c == 'n':
		if d.literal("null") {
			return nil, nil
		}
	case c == '-' || c == 'N' || c == 'I' || (c >= '0' && c <= '9'):
		tok, isInt, err := d.readNumber()
		if err != nil || discard {
			return nil, err
		}
		if isInt {
			if n, err := strconv.ParseInt(string(tok), 10, 64); err == nil {
				return n, nil
			}
			n, _ := new(big.Int).SetString(string(tok), 10)
			return n, nil
		}
		return parseFloatToken(tok)
	case c == 0:
		return nil, d.syntaxError("unexpected end of input")
	}
	return nil, d.syntaxError(fmt.Sprintf("invalid character %q", d.peek()))
}

// parseObject parses an object; one with exactly the keys _type_ and
// _data_ is restored through the transcoding registered under _type_.
func (d *decodeState) parseObject(discard bool) (any, error) {
	d.pos++ // '{'
	var members []Member
	for first := true; ; first = false {
		k, more, err := d.nextKey(first)
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		if discard {
			if _, err := d.parseAny(true); err != nil {
				return nil, atPath(err, string(k))
			}
			continue
		}
		key := string(k)
		v, err := d.parseAny(false)
		if err != nil {
			return nil, atPath(err, key)
		}
		members = append(members, Member{key, v})
	}
	if discard {
		return nil, nil
	}
	if len(members) == 2 {
		var name, data any
		var hasName, hasData bool
		for _, m := range members {
			switch m.Key {
			case "_type_":
				name, hasName = m.Value, true
			case "_data_":
				data, hasData = m.Value, true
			}
		}
		if hasName && hasData {
			if s, ok := name.(string); ok {
				return d.t.restore(s, unordered(data))
			}
		}
	}
	if d.ordered {
		if members == nil {
			return Object{}, nil
		}
		return Object(members), nil
	}
	obj := make(map[string]any, len(members))
	for _, m := range members {
		obj[m.Key] = m.Value
	}
	return obj, nil
}

// unordered turns Objects (decoded in ordered mode) into maps, the form
// transcodings receive.
func unordered(v any) any {
	switch x := v.(type) {
	case Object:
		m := make(map[string]any, len(x))
		for _, mem := range x {
			m[mem.Key] = unordered(mem.Value)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = unordered(e)
		}
	}
	return v
}

func (t *Transcoder) restore(name string, data any) (any, error) {
	tr := t.lookupName(name)
	if tr == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTranscoding, name)
	}
	v, err := tr.decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s data %v: %v", ErrDecode, name, data, err)
	}
	return v.Interface(), nil
}

func (t *Transcoder) decoder(typ reflect.Type) decoderFunc {
	if f, ok := t.dec.Load(typ); ok {
		return f.(decoderFunc)
	}
	var (
		wg sync.WaitGroup
		f  decoderFunc
	)
	wg.Add(1)
	fi, loaded := t.dec.LoadOrStore(typ, decoderFunc(func(d *decodeState, v reflect.Value) error {
		wg.Wait()
		return f(d, v)
	}))
	if loaded {
		return fi.(decoderFunc)
	}
	f = t.newDecoder(typ)
	wg.Done()
	t.dec.Store(typ, f)
	return f
}

func (t *Transcoder) newDecoder(typ reflect.Type) decoderFunc {
	if tr := t.lookupType(typ); tr != nil {
		return transcodingDecoder(tr)
	}
	switch typ {
	case objectType:
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetZero()
				return err
			}
			if d.peek() != '{' {
				return d.typeError("an object")
			}
			saved := d.ordered
			d.ordered = true
			defer func() { d.ordered = saved }()
			obj := Object{}
			err := d.decodeMembers(func(key string) error {
				x, err := d.parseAny(false)
				if err == nil {
					obj = append(obj, Member{key, x})
				}
				return err
			})
			v.Set(reflect.ValueOf(obj))
			return err
		}
	case bigIntType:
		return func(d *decodeState, v reflect.Value) error {
			tok, isInt, err := d.readNumberAs("an integer")
			if err != nil {
				return err
			}
			if !isInt {
				return fmt.Errorf("%w: want an integer, found %s", ErrDecode, tok)
			}
			v.Addr().Interface().(*big.Int).SetString(string(tok), 10)
			return nil
		}
	}
	switch typ.Kind() {
	case reflect.Bool:
		return func(d *decodeState, v reflect.Value) error {
			switch {
			case d.literal("true"):
				v.SetBool(true)
			case d.literal("false"):
				v.SetBool(false)
			case d.literal("null"):
				v.SetBool(false)
			default:
				return d.typeError("a boolean")
			}
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetInt(0)
				return err
			}
			tok, isInt, err := d.readNumberAs("an integer")
			if err != nil {
				return err
			}
			n, perr := strconv.ParseInt(string(tok), 10, 64)
			if !isInt || perr != nil || v.OverflowInt(n) {
				return fmt.Errorf("%w: %s does not fit %v", ErrDecode, tok, v.Type())
			}
			v.SetInt(n)
			return nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetUint(0)
				return err
			}
			tok, isInt, err := d.readNumberAs("an integer")
			if err != nil {
				return err
			}
			n, perr := strconv.ParseUint(string(tok), 10, 64)
			if !isInt || perr != nil || v.OverflowUint(n) {
				return fmt.Errorf("%w: %s does not fit %v", ErrDecode, tok, v.Type())
			}
			v.SetUint(n)
			return nil
		}
	case reflect.Float32, reflect.Float64:
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetFloat(0)
				return err
			}
			tok, _, err := d.readNumberAs("a number")
			if err != nil {
				return err
			}
			f, err := parseFloatToken(tok)
			if err != nil {
				return fmt.Errorf("%w: %s is not a number", ErrDecode, tok)
			}
			v.SetFloat(f)
			return nil
		}
	case reflect.String:
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetString("")
				return err
			}
			if d.peek() != '"' {
				return d.typeError("a string")
			}
			s, err := d.readString()
			if err != nil {
				return err
			}
			v.SetString(string(s))
			return nil
		}
	case reflect.Struct:
		return t.structDecoder(typ)
	case reflect.Map:
		return t.mapDecoder(typ)
	case reflect.Slice, reflect.Array:
		if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8 && t.lookupType(typ.Elem()) == nil {
			break
		}
		elem := t.decoder(typ.Elem())
		isSlice := typ.Kind() == reflect.Slice
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetZero()
				return err
			}
			if d.peek() != '[' {
				return d.typeError("an array")
			}
			if err := d.enter(); err != nil {
				return err
			}
			defer func() { d.depth-- }()
			d.pos++
			if isSlice {
				v.SetLen(0)
				if v.IsNil() {
					v.Set(reflect.MakeSlice(typ, 0, 0))
				}
			}
			d.skipSpace()
			if d.peek() == ']' {
				d.pos++
				if !isSlice {
					v.SetZero()
				}
				return nil
			}
			for i := 0; ; i++ {
				d.skipSpace()
				var ev reflect.Value
				if isSlice {
					if v.Len() == v.Cap() {
						v.Grow(1)
					}
					v.SetLen(i + 1)
					ev = v.Index(i)
					ev.SetZero()
				} else if i < v.Len() {
					ev = v.Index(i)
				} else {
					return fmt.Errorf("%w: more than %d elements for %v", ErrDecode, v.Len(), typ)
				}
				if err := elem(d, ev); err != nil {
					return atPath(err, "["+strconv.Itoa(i)+"]")
				}
				d.skipSpace()
				switch d.peek() {
				case ',':
					d.pos++
				case ']':
					d.pos++
					if !isSlice {
						for j := i + 1; j < v.Len(); j++ {
							v.Index(j).SetZero()
						}
					}
					return nil
				default:
					return d.syntaxError("want , or ] in array")
				}
			}
		}
	case reflect.Pointer:
		elem := t.decoder(typ.Elem())
		return func(d *decodeState, v reflect.Value) error {
			if null, err := d.null(); null || err != nil {
				v.SetZero()
				return err
			}
			if v.IsNil() {
				v.Set(reflect.New(typ.Elem()))
			}
			return elem(d, v.Elem())
		}
	case reflect.Interface:
		return func(d *decodeState, v reflect.Value) error {
			x, err := d.parseAny(false)
			if err != nil {
				return err
			}
			if x == nil {
				v.SetZero()
				return nil
			}
			xv := reflect.ValueOf(x)
			if !xv.Type().AssignableTo(typ) {
				return fmt.Errorf("%w: %T does not implement %v", ErrDecode, x, typ)
			}
			v.Set(xv)
			return nil
		}
	}
	return func(d *decodeState, v reflect.Value) error {
		return fmt.Errorf("%w: cannot decode into %v", ErrUnsupportedType, typ)
	}
}

func (d *decodeState) readNumberAs(want string) ([]byte, bool, error) {
	c := d.peek()
	if !(c == '-' || c == 'N' || c == 'I' || (c >= '0' && c <= '9')) {
		return nil, false, d.typeError(want)
	}
	return d.readNumber()
}

// nextKey reads the key of an object's next member, after the '{' (first)
// or after the previous member's value, and leaves the decoder at the
// member's value. It reports false at the object's closing '}'. The key is
// valid until the next read.
func (d *decodeState) nextKey(first bool) ([]byte, bool, error) {
	d.skipSpace()
	switch c := d.peek(); {
	case c == '}':
		d.pos++
		return nil, false, nil
	case !first && c == ',':
		d.pos++
		d.skipSpace()
	case !first:
		return nil, false, d.syntaxError("want , or } in object")
	}
	k, err := d.readString()
	if err != nil {
		return nil, false, err
	}
	d.skipSpace()
	if d.peek() != ':' {
		return nil, false, d.syntaxError("want : after object key")
	}
	d.pos++
	d.skipSpace()
	return k, true, nil
}

// decodeMembers walks an object's members, calling fn with each key with
// the decoder positioned at the value.
func (d *decodeState) decodeMembers(fn func(key string) error) error {
	d.pos++ // '{'
	for first := true; ; first = false {
		k, more, err := d.nextKey(first)
		if !more || err != nil {
			return err
		}
		key := string(k)
		if err := fn(key); err != nil {
			return atPath(err, key)
		}
	}
}

func (t *Transcoder) structDecoder(typ reflect.Type) decoderFunc {
	fields := structFields(typ)
	byName := make(map[string]int, len(fields))
	decs := make([]decoderFunc, len(fields))
	for i, f := range fields {
		byName[f.name] = i
		decs[i] = t.decoder(f.typ)
	}
	return func(d *decodeState, v reflect.Value) error {
		if null, err := d.null(); null || err != nil {
			return err
		}
		if d.peek() != '{' {
			return d.typeError("an object")
		}
		if err := d.enter(); err != nil {
			return err
		}
		defer func() { d.depth-- }()
		d.pos++
		for first := true; ; first = false {
			k, more, err := d.nextKey(first)
			if !more || err != nil {
				return err
			}
			i, known := byName[string(k)] // no allocation for the lookup
			var key string
			if !known {
				key = string(k)
			}
			if known {
				fv := v
				for j, x := range fields[i].index {
					if j > 0 && fv.Kind() == reflect.Pointer {
						if fv.IsNil() {
							if !fv.CanSet() {
								return fmt.Errorf("%w: cannot set field %s through a nil embedded pointer to an unexported struct in %v", ErrDecode, fields[i].name, typ)
							}
							fv.Set(reflect.New(fv.Type().Elem()))
						}
						fv = fv.Elem()
					}
					fv = fv.Field(x)
				}
				if err := decs[i](d, fv); err != nil {
					return atPath(err, fields[i].name)
				}
			} else if err := d.skipValue(); err != nil {
				return atPath(err, key)
			}
		}
	}
}

func (t *Transcoder) mapDecoder(typ reflect.Type) decoderFunc {
	kt := typ.Key()
	switch kt.Kind() {
	case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	default:
		return func(d *decodeState, v reflect.Value) error {
			return fmt.Errorf("%w: cannot decode into %v (map keys must be strings or integers)", ErrUnsupportedType, typ)
		}
	}
	elem := t.decoder(typ.Elem())
	return func(d *decodeState, v reflect.Value) error {
		if null, err := d.null(); null || err != nil {
			v.SetZero()
			return err
		}
		if d.peek() != '{' {
			return d.typeError("an object")
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(typ))
		}
		ev := reflect.New(typ.Elem()).Elem()
		return d.decodeMembers(func(key string) error {
			kv := reflect.New(kt).Elem()
			switch kt.Kind() {
			case reflect.String:
				kv.SetString(key)
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				n, err := strconv.ParseInt(key, 10, 64)
				if err != nil || kv.OverflowInt(n) {
					return fmt.Errorf("%w: key %q is not a %v", ErrDecode, key, kt)
				}
				kv.SetInt(n)
			default:
				n, err := strconv.ParseUint(key, 10, 64)
				if err != nil || kv.OverflowUint(n) {
					return fmt.Errorf("%w: key %q is not a %v", ErrDecode, key, kt)
				}
				kv.SetUint(n)
			}
			ev.SetZero()
			if err := elem(d, ev); err != nil {
				return err
			}
			v.SetMapIndex(kv, ev)
			return nil
		})
	}
}

// transcodingDecoder decodes {"_type_": name, "_data_": data} into a value
// of the transcoding's type; uuid_hex and datetime_iso are parsed straight
// from the input.
func transcodingDecoder(tr *transcoding) decoderFunc {
	fast := tr.typ == uuidType || tr.typ == timeType
	return func(d *decodeState, v reflect.Value) error {
		if null, err := d.null(); null || err != nil {
			v.SetZero()
			return err
		}
		if d.peek() != '{' {
			return d.typeError(`a {"_type_": "` + tr.name + `", "_data_": ...} object`)
		}
		d.pos++
		var (
			data          any
			hasName, done bool
		)
		for first := true; ; first = false {
			k, more, err := d.nextKey(first)
			if err != nil {
				return err
			}
			if !more {
				break
			}
			switch string(k) {
			case "_type_":
				if d.peek() != '"' {
					return fmt.Errorf("%w: _type_ of a %s object is not a string", ErrDecode, tr.name)
				}
				s, err := d.readString()
				if err != nil {
					return atPath(err, "_type_")
				}
				if string(s) != tr.name {
					return fmt.Errorf("%w: _type_ %q, want %q for %v", ErrDecode, s, tr.name, tr.typ)
				}
				hasName = true
			case "_data_":
				if fast && d.peek() == '"' {
					if err := decodeBuiltin(d, tr, v); err != nil {
						return atPath(err, "_data_")
					}
					done = true
					break
				}
				if data, err = d.parseAny(false); err != nil {
					return atPath(err, "_data_")
				}
			default:
				return fmt.Errorf("%w: unexpected key %q in a %s object", ErrDecode, k, tr.name)
			}
		}
		if !hasName {
			return fmt.Errorf("%w: %s object without _type_", ErrDecode, tr.name)
		}
		if done {
			return nil
		}
		x, err := tr.decode(data)
		if err != nil {
			return fmt.Errorf("%w: %s data %v: %v", ErrDecode, tr.name, data, err)
		}
		v.Set(x)
		return nil
	}
}

// decodeBuiltin parses uuid_hex and datetime_iso data in place.
func decodeBuiltin(d *decodeState, tr *transcoding, v reflect.Value) error {
	s, err := d.readString()
	if err != nil {
		return err
	}
	if tr.typ == uuidType {
		u, err := uuid.ParseBytes(s)
		if err != nil {
			return fmt.Errorf("%w: uuid_hex %q: %v", ErrDecode, s, err)
		}
		if v.CanAddr() {
			*v.Addr().Interface().(*uuid.UUID) = u
		} else {
			v.Set(reflect.ValueOf(u))
		}
		return nil
	}
	tm, err := parseISO(s)
	if err != nil {
		return fmt.Errorf("%w: datetime_iso: %v", ErrDecode, err)
	}
	if v.CanAddr() {
		*v.Addr().Interface().(*time.Time) = tm
	} else {
		v.Set(reflect.ValueOf(tm))
	}
	return nil
}

var (
	uuidType = reflect.TypeFor[uuid.UUID]()
	timeType = reflect.TypeFor[time.Time]()
)

// Decimal is a decimal number kept as the text Python's str(Decimal) gives
// ("100.00", "-0", "1E+3"), so that it is written back exactly as read. It
// is transcoded as decimal_str. Convert it to and from a decimal type of
// your choice with its text, or register that type with
// [DecimalTranscoding].
type Decimal struct{ s string }

// ParseDecimal parses a decimal number as Python's decimal.Decimal does and
// returns it in canonical form (ParseDecimal("1e3") is "1E+3"). It returns
// an error wrapping [ErrDecode] for text that is not a decimal number.
func ParseDecimal(s string) (Decimal, error) {
	c, err := canonicalDecimal(s)
	if err != nil {
		return Decimal{}, err
	}
	return Decimal{c}, nil
}

// MustParseDecimal is ParseDecimal for constants; it panics on error.
func MustParseDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// String returns the decimal's canonical text; the zero Decimal is "0".
func (d Decimal) String() string {
	if d.s == "" {
		return "0"
	}
	return d.s
}

// MarshalText implements [encoding.TextMarshaler].
func (d Decimal) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (d *Decimal) UnmarshalText(b []byte) error {
	c, err := canonicalDecimal(string(b))
	if err != nil {
		return err
	}
	d.s = c
	return nil
}

// canonicalDecimal gives Python's str(Decimal(s)).
func canonicalDecimal(s string) (string, error) {
	in := s
	s = strings.TrimSpace(s)
	sign := ""
	if s != "" && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = "-"
		}
		s = s[1:]
	}
	switch strings.ToLower(s) {
	case "inf", "infinity":
		return sign + "Infinity", nil
	case "nan":
		return sign + "NaN", nil
	case "snan":
		return sign + "sNaN", nil
	}
	mant, expStr, hasExp := strings.Cut(strings.ReplaceAll(s, "_", ""), "e")
	if !hasExp {
		mant, expStr, hasExp = strings.Cut(mant, "E")
	}
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expStr)
		if err != nil {
			return "", fmt.Errorf("%w: invalid decimal %q", ErrDecode, in)
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" {
		return "", fmt.Errorf("%w: invalid decimal %q", ErrDecode, in)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("%w: invalid decimal %q", ErrDecode, in)
		}
	}
	exp -= len(frac)
	coeff := strings.TrimLeft(digits, "0")
	if coeff == "" {
		coeff = "0"
	}
	// Python's to-sci-string.
	leftdigits := exp + len(coeff)
	dotplace := 1
	if exp <= 0 && leftdigits > -6 {
		dotplace = leftdigits
	}
	var intpart, fracpart string
	switch {
	case dotplace <= 0:
		intpart, fracpart = "0", "."+strings.Repeat("0", -dotplace)+coeff
	case dotplace >= len(coeff):
		intpart = coeff + strings.Repeat("0", dotplace-len(coeff))
	default:
		intpart, fracpart = coeff[:dotplace], "."+coeff[dotplace:]
	}
	e := ""
	if leftdigits != dotplace {
		e = fmt.Sprintf("E%+d", leftdigits-dotplace)
	}
	return sign + intpart + fracpart + e, nil
}
