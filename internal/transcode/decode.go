package transcode

// Decoders: one per Go kind, built once per type and cached.

import (
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

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

// newDecoder builds the decoder of typ: its transcoding's, a refusal, or
// the decoder of its kind.
func (t *Transcoder) newDecoder(typ reflect.Type) decoderFunc {
	if tr := t.lookupType(typ); tr != nil {
		return transcodingDecoder(tr)
	}
	// What the encoder refuses to write, the decoder refuses to fill (with
	// the same error), rather than fill it partly or not at all.
	if err := t.Refusal(typ); err != nil {
		return func(*decodeState, reflect.Value) error { return clonePath(err) }
	}
	switch typ {
	case objectType:
		return decodeObject
	case bigIntType:
		return decodeBigInt
	}
	switch typ.Kind() {
	case reflect.Bool:
		return decodeBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return decodeInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return decodeUint
	case reflect.Float32, reflect.Float64:
		return decodeFloat
	case reflect.String:
		return decodeString
	case reflect.Struct:
		return t.structDecoder(typ)
	case reflect.Map:
		return t.mapDecoder(typ)
	case reflect.Slice, reflect.Array:
		return t.listDecoder(typ)
	case reflect.Pointer:
		return t.pointerDecoder(typ)
	case reflect.Interface:
		return interfaceDecoder(typ)
	}
	return func(d *decodeState, v reflect.Value) error {
		return fmt.Errorf("%w: cannot decode into %v", ErrUnsupportedType, typ)
	}
}

// decodeObject decodes an object into an Object, keeping the order of its
// members (and of the objects nested in it).
func decodeObject(d *decodeState, v reflect.Value) error {
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

// decodeBigInt decodes an integer of any size into a big.Int.
func decodeBigInt(d *decodeState, v reflect.Value) error {
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

// decodeBool decodes true, false or null (false) into a bool.
func decodeBool(d *decodeState, v reflect.Value) error {
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

// decodeInt decodes an integer that fits v's type, or null (0).
func decodeInt(d *decodeState, v reflect.Value) error {
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

// decodeUint decodes a non-negative integer that fits v's type, or null (0).
func decodeUint(d *decodeState, v reflect.Value) error {
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

// decodeFloat decodes a number (NaN and the infinities too), or null (0).
func decodeFloat(d *decodeState, v reflect.Value) error {
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

// decodeString decodes a string, or null ("").
func decodeString(d *decodeState, v reflect.Value) error {
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

// listDecoder decodes an array into a slice or an array of typ (an array's
// elements past the JSON's are zeroed; more JSON elements than it holds
// are an error), or null (a nil slice, a zero array).
func (t *Transcoder) listDecoder(typ reflect.Type) decoderFunc {
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
}

// pointerDecoder decodes into what a pointer of typ points to, allocating
// it if nil; null sets the pointer to nil.
func (t *Transcoder) pointerDecoder(typ reflect.Type) decoderFunc {
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
}

// interfaceDecoder decodes any JSON value into an interface of typ: its
// generic form (or a registered type), which must implement typ.
func interfaceDecoder(typ reflect.Type) decoderFunc {
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
		if err := d.enter(); err != nil {
			return err
		}
		defer func() { d.depth-- }()
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
			return fmt.Errorf("%w: %s data %v: %w", ErrDecode, tr.name, data, err)
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
