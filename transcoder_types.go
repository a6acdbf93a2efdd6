package eventsourcing

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Which Go types the transcoder writes, and how: the JSON fields of a
// struct, and the types it refuses because their values would be lost.

var (
	jsonMarshalerType = reflect.TypeFor[interface{ MarshalJSON() ([]byte, error) }]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// refusedType says why values of typ, which has no registered transcoding,
// cannot be written without losing what they hold, or returns nil. Such a
// type has its own MarshalJSON or MarshalText (its JSON is not its fields or
// its underlying kind: netip.Addr, big.Float, a struct embedding time.Time),
// or keeps its state in unexported fields only, or is bytes, which JSON
// cannot hold. Pointers and interfaces are judged by what they point to or
// hold.
func refusedType(typ reflect.Type) error {
	switch typ.Kind() {
	case reflect.Pointer, reflect.Interface:
		return nil
	}
	switch typ {
	case bigIntType, objectType:
		return nil
	}
	register := fmt.Sprintf("register a Transcoding[%v] for it with RegisterTranscoding", typ)
	if typ.PkgPath() == "encoding/json" && typ.Name() == "RawMessage" {
		return fmt.Errorf("%w: %v: raw JSON would be stored neither as Python writes JSON nor read back byte for byte: "+
			"put the value decoded into an any or an Object instead, or %s", ErrUnsupportedType, typ, register)
	}
	if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8 {
		return fmt.Errorf("%w: %v: JSON has no bytes: use a string, or %s", ErrUnsupportedType, typ, register)
	}
	for _, m := range []struct {
		name string
		typ  reflect.Type
	}{{"MarshalJSON", jsonMarshalerType}, {"MarshalText", textMarshalerType}} {
		if typ.Implements(m.typ) || reflect.PointerTo(typ).Implements(m.typ) {
			return fmt.Errorf("%w: %v has its own %s, which the transcoder does not call, so its value would be written wrongly or lost: %s",
				ErrUnsupportedType, typ, m.name, register)
		}
	}
	if typ.Kind() == reflect.Struct && len(structFields(typ)) == 0 && hidesState(typ, map[reflect.Type]bool{}) {
		return fmt.Errorf("%w: %v has no exported fields, so its value would be lost: export them, or %s", ErrUnsupportedType, typ, register)
	}
	return nil
}

// refusal returns why no value of typ can be encoded, or nil: typ is
// refused, or so is a type that its values always hold (a struct field,
// or the element of a slice, array, map or pointer, even an empty or nil
// one). It is worked out once per type, over all the types reachable
// from it, so a recursive type is judged whole.
func (t *Transcoder) refusal(typ reflect.Type) error {
	if err, ok := t.refusals.Load(typ); ok {
		err, _ := err.(error)
		return err
	}
	err := t.findRefusal(typ, map[reflect.Type]bool{})
	t.refusals.Store(typ, err)
	return err
}

func (t *Transcoder) findRefusal(typ reflect.Type, visited map[reflect.Type]bool) error {
	if visited[typ] {
		return nil
	}
	visited[typ] = true
	if t.lookupType(typ) != nil {
		return nil
	}
	if err := refusedType(typ); err != nil {
		return err
	}
	switch typ.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return t.findRefusal(typ.Elem(), visited)
	case reflect.Map:
		switch typ.Key().Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			return fmt.Errorf("%w: %v (map keys must be strings or integers)", ErrUnsupportedType, typ)
		}
		return t.findRefusal(typ.Elem(), visited)
	case reflect.Struct:
		for _, f := range structFields(typ) {
			if err := t.findRefusal(f.typ, visited); err != nil {
				return typeAtPath(err, f.name)
			}
		}
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("%w: %v: JSON has no form for a %v", ErrUnsupportedType, typ, typ.Kind())
	}
	return nil
}

// hidesState reports whether a struct has an unexported field not tagged
// "-", directly or in an embedded struct.
func hidesState(typ reflect.Type, walking map[reflect.Type]bool) bool {
	walking[typ] = true
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if sf.Tag.Get("json") == "-" {
			continue
		}
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sf.Anonymous && ft.Kind() == reflect.Struct {
			if !walking[ft] && hidesState(ft, walking) {
				return true
			}
			continue
		}
		if !sf.IsExported() {
			return true
		}
	}
	return false
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
	walking := map[reflect.Type]bool{typ: true} // the structs on the walk's path
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
			if walking[ft] {
				continue // a struct embedding a pointer to itself: its fields are there already
			}
			walking[ft] = true
			walk(ft, append(slices.Clone(index), sf.Index...))
			delete(walking, ft)
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
