package eventsourcing

import (
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
