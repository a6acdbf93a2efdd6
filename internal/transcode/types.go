package transcode

// Which Go types are written and how: struct fields, refused types, class
// versions.

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
// cannot hold, or is a struct with an ambiguous JSON name (two fields of
// the name at its shallowest depth, both or neither named by a json tag:
// encoding/json drops the name, losing both values). Pointers and
// interfaces are judged by what they point to or hold.
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
	if typ.Kind() != reflect.Struct {
		return nil
	}
	fields, err := resolveFields(typ)
	if err != nil {
		return err
	}
	switch hidden := hiddenState(typ, map[reflect.Type]bool{}); {
	case hidden == typ && len(fields) == 0:
		return fmt.Errorf("%w: %v has no exported fields, so its value would be lost: export them (or tag them json:\"-\"), or %s", ErrUnsupportedType, typ, register)
	case hidden == typ:
		return fmt.Errorf("%w: %v has no exported fields of its own (only those of the structs it embeds), so its own values would be lost: export them (or tag them json:\"-\"), or %s", ErrUnsupportedType, typ, register)
	case hidden != nil:
		return fmt.Errorf("%w: %v embeds %v, which has no exported fields, so its values would be lost: export them (or tag them json:\"-\"), or %s", ErrUnsupportedType, typ, hidden, register)
	}
	return nil
}

// refusal returns why no value of typ can be encoded, or nil: typ is
// refused, or so is a type that its values always hold (a struct field,
// or the element of a slice, array, map or pointer, even an empty or nil
// one). It is worked out once per type, over all the types reachable
// from it, so a recursive type is judged whole.
// Refusal says why values of typ cannot be encoded (an error wrapping
// ErrUnsupportedType), or returns nil.
func (t *Transcoder) Refusal(typ reflect.Type) error {
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

// hiddenState returns the struct, typ or one it embeds (at any depth),
// whose own fields (those not tagged "-", embedded structs aside) are all
// unexported, so that its values would be lost, or nil. A struct with no
// fields of its own hides nothing; one with an exported field of its own
// is written, its unexported fields dropped, as encoding/json drops them.
// An event embedding DomainEvent, whose Timestamp is exported, is refused
// if its own fields are all unexported.
func hiddenState(typ reflect.Type, walking map[reflect.Type]bool) reflect.Type {
	walking[typ] = true
	own, exported := 0, 0
	var embedded []reflect.Type
	for i := range typ.NumField() {
		sf := typ.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name, _, _ := strings.Cut(tag, ","); sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			embedded = append(embedded, ft)
			continue
		}
		own++
		if sf.IsExported() {
			exported++
		}
	}
	if own > 0 && exported == 0 {
		return typ
	}
	for _, ft := range embedded {
		if walking[ft] {
			continue
		}
		if h := hiddenState(ft, walking); h != nil {
			return h
		}
	}
	return nil
}

type field struct {
	name      string
	key       []byte // "name":
	index     []int
	omitEmpty bool
	typ       reflect.Type
}

// structFields lists a struct type's JSON fields: exported fields named
// by their json tags, "-" skipped, embedded structs flattened, in the
// order of their declaration. A name of fields promoted from embedded
// structs is resolved as Go resolves a selector, and as encoding/json
// does: the shallowest field wins; at the same depth, the one named by
// its json tag beats untagged ones. A name still ambiguous is left out,
// as encoding/json leaves it out; resolveFields says which, and
// refusedType refuses such a type.
func structFields(typ reflect.Type) []field {
	fields, _ := resolveFields(typ)
	return fields
}

// A candidate is a field that may be the one of its JSON name.
type candidate struct {
	field
	tagged bool   // named by its json tag
	goPath string // its Go selector from the struct: Inner.Name
}

// resolveFields lists typ's JSON fields (see structFields) and, for the
// first JSON name two fields claim at the same depth, an error wrapping
// ErrUnsupportedType that names both.
func resolveFields(typ reflect.Type) ([]field, error) {
	cands := fieldCandidates(typ)
	// Fields keep declaration order, embedded fields where they are
	// declared: sort by index path.
	slices.SortStableFunc(cands, func(a, b candidate) int { return slices.Compare(a.index, b.index) })
	byName := map[string][]int{}
	var names []string // in the order of their first fields
	for i, c := range cands {
		if byName[c.name] == nil {
			names = append(names, c.name)
		}
		byName[c.name] = append(byName[c.name], i)
	}
	winner, ambiguous := chooseFields(typ, cands, names, byName)
	var fields []field
	for i, c := range cands {
		if winner[c.name] == i {
			fields = append(fields, c.field)
		}
	}
	return fields, ambiguous
}

// fieldCandidates lists every exported field that could give typ a JSON
// key, embedded structs' too.
func fieldCandidates(typ reflect.Type) []candidate {
	// Breadth first, one depth at a time, as encoding/json's typeFields:
	// a struct type embedded at a depth where it was already walked has
	// only deeper copies of names already found. A struct type reached
	// more than once at the same depth is walked twice (only twice, as
	// two are enough to make its names ambiguous).
	type embedding struct {
		typ   reflect.Type
		index []int
		path  []string // Go field names
	}
	var cands []candidate
	visited := map[reflect.Type]bool{}
	for current := []embedding{{typ: typ}}; len(current) > 0; {
		var next []embedding
		walked := map[reflect.Type]int{}
		for _, s := range current {
			if visited[s.typ] || walked[s.typ] == 2 {
				continue
			}
			walked[s.typ]++
			for i := range s.typ.NumField() {
				sf := s.typ.Field(i)
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				index := append(slices.Clone(s.index), i)
				path := append(slices.Clone(s.path), sf.Name)
				if sf.Anonymous && name == "" {
					ft := sf.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if ft.Kind() == reflect.Struct {
						next = append(next, embedding{ft, index, path})
						continue
					}
				}
				if !sf.IsExported() {
					continue
				}
				tagged := name != ""
				if !tagged {
					name = sf.Name
				}
				key, _ := appendPyString(nil, name)
				cands = append(cands, candidate{
					field: field{
						name: name, key: append(key, ':'), index: index,
						omitEmpty: strings.Contains(opts, "omitempty"), typ: sf.Type,
					},
					tagged: tagged, goPath: strings.Join(path, "."),
				})
			}
		}
		for t := range walked {
			visited[t] = true
		}
		current = next
	}
	return cands
}

// chooseFields picks, for each JSON name, the index in cands of the field
// that has it, or -1 if the name is ambiguous: the shallowest field wins,
// and at the same depth the one named by its json tag. The error names the
// first ambiguous name.
func chooseFields(typ reflect.Type, cands []candidate, names []string, byName map[string][]int) (map[string]int, error) {
	winner := make(map[string]int, len(names))
	var ambiguous error
	for _, name := range names {
		// The shallowest fields of the name, the tagged ones if any.
		var top []int
		for _, j := range byName[name] {
			d := &cands[j]
			if len(top) == 0 {
				top = append(top, j)
				continue
			}
			t := &cands[top[0]]
			switch {
			case len(d.index) > len(t.index):
			case len(d.index) < len(t.index):
				top = append(top[:0], j)
			case d.tagged == t.tagged:
				top = append(top, j)
			case d.tagged:
				top = append(top[:0], j)
			}
		}
		if len(top) == 1 {
			winner[name] = top[0]
			continue
		}
		winner[name] = -1
		if ambiguous == nil {
			paths := make([]string, len(top))
			for k, j := range top {
				paths[k] = cands[j].goPath
			}
			ambiguous = fmt.Errorf("%w: %v: JSON key %q is ambiguous: %s and %s at the same depth; give one a different json tag",
				ErrUnsupportedType, typ, name, strings.Join(paths[:len(paths)-1], ", "), paths[len(paths)-1])
		}
	}
	return winner, ambiguous
}

// classVersioner is eventsourcing.ClassVersioner: an event type that
// declares the version of its state layout.
type classVersioner interface{ ClassVersion() int }

// ClassVersionOf returns the class version a struct type declares, or 0.
func ClassVersionOf(typ reflect.Type) int {
	switch {
	case typ.Implements(classVersionerType):
		return reflect.New(typ).Elem().Interface().(classVersioner).ClassVersion()
	case reflect.PointerTo(typ).Implements(classVersionerType):
		return reflect.New(typ).Interface().(classVersioner).ClassVersion()
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
