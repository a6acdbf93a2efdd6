package transcode

// Encoders: one per Go kind, built once per type and cached; Python float
// and string formatting.

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

type encoderFunc func(e *encodeState, b []byte, v reflect.Value) ([]byte, error)

var (
	bigIntType         = reflect.TypeFor[big.Int]()
	objectType         = reflect.TypeFor[Object]()
	classVersionerType = reflect.TypeFor[classVersioner]()
)

// encodeState is the state of one Encode call. It bounds what the encoder
// accepts to what the decoder reads back, and refuses values that contain
// themselves, which would otherwise recurse until the stack overflows.
type encodeState struct {
	t *Transcoder
	// depth counts the arrays and objects being written, as the decoder
	// counts them: a {"_type_": ..., "_data_": ...} wrapper is one.
	depth int
	// refs counts the pointers, maps and slices being followed. Past
	// cycleCheckAfter, seen holds them, to find a value containing itself
	// (as encoding/json does).
	refs int
	seen map[refKey]struct{}
}

// refKey identifies a pointer, map or slice being encoded.
type refKey struct {
	ptr uintptr
	len int
	typ reflect.Type
}

const (
	// cycleCheckAfter is how many nested pointers, maps and slices are
	// followed before the encoder starts looking for cycles: values nested
	// less deeply pay nothing for it.
	cycleCheckAfter = 1000
	// maxRefs bounds the pointers, maps and slices followed at once, so that
	// a long chain of pointers (which adds no nesting to the JSON) cannot
	// exhaust the stack either.
	maxRefs = 10 * maxDepth
)

var encodeStatePool = sync.Pool{New: func() any { return new(encodeState) }}

func (e *encodeState) release() {
	e.t, e.depth, e.refs = nil, 0, 0
	if len(e.seen) > 0 {
		e.seen = nil
	}
	encodeStatePool.Put(e)
}

// encode appends the JSON of x, which may be nil.
func (e *encodeState) encode(b []byte, x any) ([]byte, error) {
	if x == nil {
		return append(b, "null"...), nil
	}
	v := reflect.ValueOf(x)
	return e.t.encoder(v.Type())(e, b, v)
}

// enter opens an array or object; the caller decrements e.depth when it
// closes it. It refuses nesting the decoder would refuse.
func (e *encodeState) enter(typ reflect.Type) error {
	e.depth++
	if e.depth > maxDepth {
		return fmt.Errorf("%w: %v nested deeper than %d arrays and objects, which is more than the decoder reads", ErrUnsupportedType, typ, maxDepth)
	}
	return nil
}

// follow notes that the encoder follows the pointer, map or slice v; the
// caller calls unfollow with the same key when done. It refuses a value
// that contains itself.
func (e *encodeState) follow(v reflect.Value) (refKey, error) {
	e.refs++
	if e.refs <= cycleCheckAfter {
		return refKey{}, nil
	}
	if e.refs > maxRefs {
		return refKey{}, fmt.Errorf("%w: %v: more than %d pointers, maps and slices nested", ErrUnsupportedType, v.Type(), maxRefs)
	}
	k := refKey{ptr: v.Pointer(), typ: v.Type()}
	if v.Kind() == reflect.Slice {
		k.len = v.Len()
	}
	if _, ok := e.seen[k]; ok {
		return refKey{}, fmt.Errorf("%w: %v value contains itself (a cycle)", ErrUnsupportedType, v.Type())
	}
	if e.seen == nil {
		e.seen = map[refKey]struct{}{}
	}
	e.seen[k] = struct{}{}
	return k, nil
}

func (e *encodeState) unfollow(k refKey) {
	if e.refs > cycleCheckAfter {
		delete(e.seen, k)
	}
	e.refs--
}

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
	fi, loaded := t.enc.LoadOrStore(typ, encoderFunc(func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
		wg.Wait()
		return f(e, b, v)
	}))
	if loaded {
		return fi.(encoderFunc)
	}
	f = t.newEncoder(typ)
	wg.Done()
	t.enc.Store(typ, f)
	return f
}

// refuse returns an encoder that fails with err.
func refuse(err error) encoderFunc {
	return func(*encodeState, []byte, reflect.Value) ([]byte, error) { return nil, clonePath(err) }
}

// clonePath returns a copy of a cached error that callers may add a path to.
func clonePath(err error) error {
	if pe, ok := err.(*pathError); ok {
		return &pathError{segs: slices.Clone(pe.segs), err: pe.err}
	}
	return err
}

// typeAtPath is atPath for a cached error: it leaves err as it is.
func typeAtPath(err error, seg string) error {
	if pe, ok := err.(*pathError); ok {
		return &pathError{segs: append(slices.Clone(pe.segs), seg), err: pe.err}
	}
	return &pathError{segs: []string{seg}, err: err}
}

func indexSegment(i int) string { return "[" + strconv.Itoa(i) + "]" }

// newEncoder builds the encoder of typ: its transcoding's, a refusal, or
// the encoder of its kind.
func (t *Transcoder) newEncoder(typ reflect.Type) encoderFunc {
	if tr := t.lookupType(typ); tr != nil {
		return transcodingEncoder(tr)
	}
	if err := t.Refusal(typ); err != nil {
		return refuse(err)
	}
	switch typ {
	case objectType:
		return encodeObject
	case bigIntType:
		return encodeBigInt
	}
	if typ.Kind() == reflect.Pointer && typ.Elem() == bigIntType {
		return encodeBigIntPointer
	}
	switch typ.Kind() {
	case reflect.Bool:
		return encodeBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return encodeInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return encodeUint
	case reflect.Float32, reflect.Float64:
		bits := typ.Bits()
		return func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
			return appendPyFloat(b, v.Float(), bits), nil
		}
	case reflect.String:
		return encodeString
	case reflect.Struct:
		return t.structEncoder(typ)
	case reflect.Map:
		return t.mapEncoder(typ)
	case reflect.Slice, reflect.Array:
		return t.listEncoder(typ)
	case reflect.Pointer:
		return t.pointerEncoder(typ)
	case reflect.Interface:
		return encodeInterface
	}
	return refuse(fmt.Errorf("%w: %v: JSON has no form for a %v", ErrUnsupportedType, typ, typ.Kind()))
}

// encodeBigInt writes a big.Int as a JSON integer of any size.
func encodeBigInt(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	if v.CanAddr() {
		return v.Addr().Interface().(*big.Int).Append(b, 10), nil
	}
	x := v.Interface().(big.Int) // a copy sharing its digits: only read
	return x.Append(b, 10), nil
}

// encodeBigIntPointer writes a *big.Int as an integer, or null if nil.
func encodeBigIntPointer(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	if v.IsNil() {
		return append(b, "null"...), nil
	}
	return v.Interface().(*big.Int).Append(b, 10), nil
}

func encodeBool(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	if v.Bool() {
		return append(b, "true"...), nil
	}
	return append(b, "false"...), nil
}

func encodeInt(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	return strconv.AppendInt(b, v.Int(), 10), nil
}

func encodeUint(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	return strconv.AppendUint(b, v.Uint(), 10), nil
}

func encodeString(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	return appendPyString(b, v.String())
}

// listEncoder writes a slice or an array of typ as a JSON array, refusing
// a slice that contains itself.
func (t *Transcoder) listEncoder(typ reflect.Type) encoderFunc {
	elem := t.encoder(typ.Elem())
	isSlice := typ.Kind() == reflect.Slice
	return func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
		if err := e.enter(typ); err != nil {
			return nil, err
		}
		var k refKey
		if isSlice {
			var err error
			if k, err = e.follow(v); err != nil {
				return nil, err
			}
		}
		b = append(b, '[')
		var err error
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = elem(e, b, v.Index(i)); err != nil {
				return nil, atPath(err, indexSegment(i))
			}
		}
		if isSlice {
			e.unfollow(k)
		}
		e.depth--
		return append(b, ']'), nil
	}
}

// pointerEncoder writes what a pointer of typ points to, or null if nil,
// refusing a pointer that leads back to itself.
func (t *Transcoder) pointerEncoder(typ reflect.Type) encoderFunc {
	elem := t.encoder(typ.Elem())
	return func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
		if v.IsNil() {
			return append(b, "null"...), nil
		}
		k, err := e.follow(v)
		if err != nil {
			return nil, err
		}
		if b, err = elem(e, b, v.Elem()); err != nil {
			return nil, err
		}
		e.unfollow(k)
		return b, nil
	}
}

// encodeInterface writes the value an interface holds, or null if nil.
func encodeInterface(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	if v.IsNil() {
		return append(b, "null"...), nil
	}
	x := v.Elem()
	return e.t.encoder(x.Type())(e, b, x)
}

func transcodingEncoder(tr *transcoding) encoderFunc {
	prefix := append(appendPyStringUnchecked([]byte(`{"_type_":`), tr.name), `,"_data_":`...)
	return func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
		if err := e.enter(tr.typ); err != nil {
			return nil, err
		}
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
			e.depth--
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
			e.depth--
			return append(b, '"', '}'), nil
		}
		data, err := tr.encode(v)
		if err != nil {
			return nil, fmt.Errorf("%w: transcoding %s of %v: %w", ErrUnsupportedType, tr.name, tr.typ, err)
		}
		if b, err = e.encode(b, data); err != nil {
			return nil, atPath(err, "_data_")
		}
		e.depth--
		return append(b, '}'), nil
	}
}

func encodeObject(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
	if err := e.enter(objectType); err != nil {
		return nil, err
	}
	k, err := e.follow(v)
	if err != nil {
		return nil, err
	}
	b = append(b, '{')
	for i := range v.Len() {
		m := v.Index(i).Addr().Interface().(*Member)
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendPyString(b, m.Key); err != nil {
			return nil, err
		}
		b = append(b, ':')
		if b, err = e.encode(b, m.Value); err != nil {
			return nil, atPath(err, m.Key)
		}
	}
	e.unfollow(k)
	e.depth--
	return append(b, '}'), nil
}

func (t *Transcoder) structEncoder(typ reflect.Type) encoderFunc {
	fields := structFields(typ)
	encs := make([]encoderFunc, len(fields))
	for i, f := range fields {
		encs[i] = t.encoder(f.typ)
	}
	var suffix []byte
	if cv := ClassVersionOf(typ); cv > 1 {
		suffix = strconv.AppendInt([]byte(`"class_version":`), int64(cv), 10)
	}
	return func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
		if err := e.enter(typ); err != nil {
			return nil, err
		}
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
			if b, err = encs[i](e, b, fv); err != nil {
				return nil, atPath(err, f.name)
			}
		}
		if suffix != nil {
			if !first {
				b = append(b, ',')
			}
			b = append(b, suffix...)
		}
		e.depth--
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
		return refuse(fmt.Errorf("%w: %v (map keys must be strings or integers)", ErrUnsupportedType, typ))
	}
	elem := t.encoder(typ.Elem())
	return func(e *encodeState, b []byte, v reflect.Value) ([]byte, error) {
		if err := e.enter(typ); err != nil {
			return nil, err
		}
		if v.Len() == 0 {
			e.depth--
			return append(b, "{}"...), nil
		}
		ref, err := e.follow(v)
		if err != nil {
			return nil, err
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
		for i, m := range kvs {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendPyString(b, m.k); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = elem(e, b, m.v); err != nil {
				return nil, atPath(err, m.k)
			}
		}
		e.unfollow(ref)
		e.depth--
		return append(b, '}'), nil
	}
}

// appendPyFloat writes a float as Python's repr does. A float32 is written
// as the float64 nearest its shortest decimal form (Python has no float32),
// which reads back and is written again the same.
func appendPyFloat(b []byte, f float64, bits int) []byte {
	if bits == 32 && !math.IsNaN(f) && !math.IsInf(f, 0) {
		var buf [32]byte
		f, _ = strconv.ParseFloat(string(strconv.AppendFloat(buf[:0], f, 'g', -1, 32)), 64)
		bits = 64
	}
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
