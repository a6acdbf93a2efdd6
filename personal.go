package eventsourcing

// Personal data fields: the Personal[T] type that marks a value of an
// event (or a snapshot state) as personal data of one data subject, and
// how an EventStore seals such values with the subject's data key before
// it maps an event and opens them after it decodes one.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Personal holds one value of personal data of a data subject: a field of
// an event or a snapshot state whose value must become unreadable when the
// subject is forgotten ([PersonalKeys.Forget]), while the rest of the event
// stays as it is. Make one with [NewPersonal]; the zero Personal holds no
// value.
//
// An [EventStore] (or [SnapshotStore]) whose Personal field is set seals
// each Personal value before it maps the event: the value is encoded by the
// mapper's [Transcoder] (so uuid_hex, datetime_iso and every registered
// transcoding apply inside it) and encrypted with AES-256-GCM under the
// subject's data key. The stored state then holds, in the field's place,
// the object
//
//	{"k": KEY, "c": CIPHERTEXT}
//
// where KEY is the data key's random identifier (32 hexadecimal digits,
// unrelated to the subject's ID) and CIPHERTEXT is the standard base64 of
// nonce(12) || tag(16) || ciphertext, the layout of [AESCipher]. A Personal
// holding no value is stored as {}. The rest of the state, the topic, the
// compressor and the application cipher are unchanged.
//
// The subject is the event's originator, unless the field has a struct tag
// personal:"Field" naming a uuid.UUID field that holds the subject's ID: a
// field of the struct that declares the Personal field, or else of the
// event (or snapshot) itself. So one event may carry personal data of
// several subjects. The tag may also be on a field of slice, array, pointer
// or struct type: it then names the subject of the Personal values inside
// it, unless a deeper field has a tag of its own.
//
// Personal values are found in the event's exported fields, in structs
// (embedded or not), pointers to structs, slices and arrays. A Personal in
// a map, or in a field of interface type, is not sealed: the first is
// refused with ErrUnsupportedType, the second is stored as {} (its value is
// lost, never written in plaintext).
//
// Sealing and opening are done by the stores, not by the [Mapper]: a
// Mapper used alone writes a Personal as its stored form only (so a value
// never sealed is written as {} and lost, never in plaintext), and reads
// it back unopened (Valid false, KeyID set).
//
// When an event is read back whose value belongs to a forgotten subject,
// the value is its zero and Forgotten reports true; everything else of the
// event reads as before. Writing such a Personal again (a snapshot of a
// forgotten aggregate) keeps its stored form, still forgotten.
type Personal[T any] struct {
	personalSealed
	value  T              `json:"-"`
	status personalStatus `json:"-"`
}

// personalSealed is the stored form of a Personal: the key identifier and
// the ciphertext. Its fields are what the transcoder writes and reads.
type personalSealed struct {
	K string `json:"k,omitempty"`
	C string `json:"c,omitempty"`
}

type personalStatus uint8

const (
	personalNone      personalStatus = iota // no value (or only its stored form, not yet opened)
	personalValue                           // holds a value
	personalForgotten                       // its subject was forgotten
)

// NewPersonal returns a Personal holding v.
func NewPersonal[T any](v T) Personal[T] {
	return Personal[T]{value: v, status: personalValue}
}

// Value returns the value, or the zero T if p holds none or its subject
// was forgotten.
func (p Personal[T]) Value() T { return p.value }

// Set makes p hold v (a forgotten Personal too: v is sealed with the
// subject's current key when written, which [ErrForgotten] refuses unless
// the subject was renewed).
func (p *Personal[T]) Set(v T) {
	p.value, p.status, p.personalSealed = v, personalValue, personalSealed{}
}

// Valid reports whether p holds a value: it was made by NewPersonal or
// Set, or read back with its subject's key.
func (p Personal[T]) Valid() bool { return p.status == personalValue }

// Forgotten reports whether p was read back after its subject was
// forgotten: its value is lost, and Value returns the zero T.
func (p Personal[T]) Forgotten() bool { return p.status == personalForgotten }

// KeyID returns the identifier of the data key p was read back with (or
// was found forgotten under), or "" for a value not read from a store.
func (p Personal[T]) KeyID() string { return p.K }

// String returns "Personal(…)", "Personal(forgotten)" or "Personal()", so
// that printing an event does not print personal data.
func (p Personal[T]) String() string {
	switch p.status {
	case personalValue:
		return "Personal(…)"
	case personalForgotten:
		return "Personal(forgotten)"
	}
	return "Personal()"
}

// GoString is String, for the %#v verb.
func (p Personal[T]) GoString() string { return p.String() }

// personalField is what *Personal[T] does for the sealing walk.
type personalField interface {
	sealed() *personalSealed
	personalStatus() personalStatus
	encodeValue(t *Transcoder, dst []byte) ([]byte, error)
	decodeValue(t *Transcoder, data []byte) error
	setForgotten()
}

func (p *Personal[T]) sealed() *personalSealed        { return &p.personalSealed }
func (p *Personal[T]) personalStatus() personalStatus { return p.status }
func (p *Personal[T]) encodeValue(t *Transcoder, dst []byte) ([]byte, error) {
	return t.AppendEncode(dst, p.value)
}
func (p *Personal[T]) decodeValue(t *Transcoder, data []byte) error {
	// A JSON string without escapes is its bytes between the quotes: the
	// common case of a personal string, read without the decoder.
	if sp, ok := any(&p.value).(*string); ok && len(data) >= 2 && data[0] == '"' && data[len(data)-1] == '"' &&
		bytes.IndexByte(data[1:len(data)-1], '\\') < 0 && bytes.IndexByte(data[1:len(data)-1], '"') < 0 && utf8.Valid(data) {
		*sp, p.status = string(data[1:len(data)-1]), personalValue
		return nil
	}
	var v T
	if err := t.Decode(data, &v); err != nil {
		return err
	}
	p.value, p.status = v, personalValue
	return nil
}
func (p *Personal[T]) setForgotten() {
	var zero T
	p.value, p.status = zero, personalForgotten
}

var (
	personalFieldType = reflect.TypeFor[personalField]()
	uuidType          = reflect.TypeFor[uuid.UUID]()
)

// isPersonalType reports whether typ is a Personal[T].
func isPersonalType(typ reflect.Type) bool {
	return typ.Kind() == reflect.Struct && reflect.PointerTo(typ).Implements(personalFieldType)
}

// A personal plan says where the Personal values of one event type are.
type pkind uint8

const (
	pkPersonal pkind = iota
	pkStruct
	pkPointer
	pkSlice
	pkArray
)

type pnode struct {
	kind   pkind
	fields []pfield // pkStruct: the fields that hold Personal values
	elem   *pnode   // pkPointer, pkSlice, pkArray
}

type pfield struct {
	index int
	name  string // Go field name, for errors; "" for an embedded struct (its fields are promoted)
	node  *pnode
	// subject, if not nil, locates the subject of the Personal values
	// under the field: in the declaring struct, or in the root.
	subject *subjectRef
}

type subjectRef struct {
	name   string
	inRoot bool
	index  []int
}

// personalPlans caches the plan of each root type (nil: no Personal
// values), or the error that refuses it.
var personalPlans sync.Map // reflect.Type -> personalPlan

type personalPlan struct {
	root *pnode
	err  error
}

// planFor returns where the Personal values of a root struct type are, or
// nil if it holds none.
func planFor(root reflect.Type) (*pnode, error) {
	if p, ok := personalPlans.Load(root); ok {
		pp := p.(personalPlan)
		return pp.root, pp.err
	}
	b := planBuilder{root: root, nodes: map[reflect.Type]*pnode{}, reach: map[reflect.Type]bool{}}
	n, err := b.node(root)
	personalPlans.Store(root, personalPlan{n, err})
	return n, err
}

type planBuilder struct {
	root  reflect.Type
	nodes map[reflect.Type]*pnode
	reach map[reflect.Type]bool
}

// reaches reports whether a value of typ can hold a Personal value where
// the walk looks (not through maps or interfaces). Each answer is a search
// of its own, so that a recursive type is judged whole.
func (b *planBuilder) reaches(typ reflect.Type) bool {
	if r, ok := b.reach[typ]; ok {
		return r
	}
	r := reachesFrom(typ, map[reflect.Type]bool{})
	b.reach[typ] = r
	return r
}

func reachesFrom(typ reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[typ] {
		return false
	}
	seen[typ] = true
	switch {
	case isPersonalType(typ):
		return true
	case typ.Kind() == reflect.Struct:
		for i := range typ.NumField() {
			sf := typ.Field(i)
			if walkedField(sf) && reachesFrom(sf.Type, seen) {
				return true
			}
		}
	case typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array:
		return reachesFrom(typ.Elem(), seen)
	}
	return false
}

// walkedField reports whether the transcoder writes a struct field: an
// exported one or an embedded struct, not tagged "-".
func walkedField(sf reflect.StructField) bool {
	if sf.Tag.Get("json") == "-" {
		return false
	}
	return sf.IsExported() || sf.Anonymous
}

// mapHolds reports whether typ is (or holds, where the walk looks) a map
// whose values hold Personal values.
func (b *planBuilder) mapHolds(typ reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[typ] {
		return false
	}
	seen[typ] = true
	switch typ.Kind() {
	case reflect.Map:
		return b.reaches(typ.Elem()) || b.mapHolds(typ.Elem(), seen)
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return b.mapHolds(typ.Elem(), seen)
	case reflect.Struct:
		for i := range typ.NumField() {
			sf := typ.Field(i)
			if walkedField(sf) && b.mapHolds(sf.Type, seen) {
				return true
			}
		}
	}
	return false
}

func (b *planBuilder) node(typ reflect.Type) (*pnode, error) {
	if n, ok := b.nodes[typ]; ok {
		return n, nil
	}
	if typ == b.root && b.mapHolds(typ, map[reflect.Type]bool{}) {
		return nil, fmt.Errorf("%w: %v holds Personal values in a map, which cannot be sealed: use a slice of structs", ErrUnsupportedType, typ)
	}
	if !b.reaches(typ) {
		return nil, nil
	}
	n := &pnode{}
	b.nodes[typ] = n
	switch {
	case isPersonalType(typ):
		n.kind = pkPersonal
	case typ.Kind() == reflect.Struct:
		n.kind = pkStruct
		for i := range typ.NumField() {
			sf := typ.Field(i)
			if !walkedField(sf) || !b.reaches(sf.Type) {
				continue
			}
			if !sf.IsExported() && sf.Type.Kind() != reflect.Struct {
				return nil, fmt.Errorf("%w: %v: Personal values under the unexported embedded pointer %s cannot be sealed: embed the struct, or export it", ErrUnsupportedType, typ, sf.Name)
			}
			child, err := b.node(sf.Type)
			if err != nil {
				return nil, err
			}
			f := pfield{index: i, name: sf.Name, node: child}
			if sf.Anonymous && child.kind == pkStruct {
				f.name = ""
			}
			if name, ok := sf.Tag.Lookup("personal"); ok {
				ref, err := b.subject(typ, sf.Name, name)
				if err != nil {
					return nil, err
				}
				f.subject = ref
			}
			n.fields = append(n.fields, f)
		}
	case typ.Kind() == reflect.Pointer:
		n.kind = pkPointer
	case typ.Kind() == reflect.Slice:
		n.kind = pkSlice
	case typ.Kind() == reflect.Array:
		n.kind = pkArray
	}
	if n.kind == pkPointer || n.kind == pkSlice || n.kind == pkArray {
		elem, err := b.node(typ.Elem())
		if err != nil {
			return nil, err
		}
		n.elem = elem
	}
	return n, nil
}

// subject resolves the personal:"name" tag of field in struct typ.
func (b *planBuilder) subject(typ reflect.Type, field, name string) (*subjectRef, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: %v.%s: personal:%q %s", ErrProgramming, typ, field, name, why)
	}
	if name == "" {
		return nil, bad("names no field (omit the tag to mean the originator)")
	}
	for _, in := range []struct {
		typ  reflect.Type
		root bool
	}{{typ, false}, {b.root, true}} {
		sf, ok := in.typ.FieldByName(name)
		if !ok {
			continue
		}
		if !sf.IsExported() {
			return nil, bad("names an unexported field")
		}
		if sf.Type != uuidType {
			return nil, bad(fmt.Sprintf("names a field of type %v, want uuid.UUID", sf.Type))
		}
		return &subjectRef{name: name, inRoot: in.root, index: sf.Index}, nil
	}
	return nil, bad(fmt.Sprintf("names no field of %v or %v", typ, b.root))
}

// personalWalk seals or opens the Personal values of one event.
type personalWalk struct {
	ctx   context.Context
	keys  *PersonalKeys
	t     *Transcoder
	root  reflect.Value // the root struct
	clone bool          // copy pointers and slices before writing below them
	seal  bool
	// lastKey is the last key sealed or opened with: the fields of one
	// event are mostly of one subject.
	lastKey *personalKey
}

func (w *personalWalk) walk(n *pnode, v reflect.Value, subject uuid.UUID) error {
	switch n.kind {
	case pkPersonal:
		pf := v.Addr().Interface().(personalField)
		if w.seal {
			return w.sealOne(pf, subject)
		}
		return w.openOne(pf)
	case pkStruct:
		for _, f := range n.fields {
			s := subject
			if f.subject != nil && w.seal { // opening needs the key ID only
				var err error
				if s, err = w.subjectOf(f, v); err != nil {
					return err
				}
			}
			if err := w.walk(f.node, v.Field(f.index), s); err != nil {
				if f.name == "" {
					return err
				}
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	case pkPointer:
		if v.IsNil() {
			return nil
		}
		if w.clone {
			p := reflect.New(v.Type().Elem())
			p.Elem().Set(v.Elem())
			v.Set(p)
		}
		return w.walk(n.elem, v.Elem(), subject)
	case pkSlice:
		if v.Len() == 0 {
			return nil
		}
		if w.clone {
			s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(s, v)
			v.Set(s)
		}
		fallthrough
	case pkArray:
		for i := range v.Len() {
			if err := w.walk(n.elem, v.Index(i), subject); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// subjectOf reads the subject a field's tag names.
func (w *personalWalk) subjectOf(f pfield, v reflect.Value) (uuid.UUID, error) {
	from := v
	if f.subject.inRoot {
		from = w.root
	}
	for i, x := range f.subject.index {
		if i > 0 && from.Kind() == reflect.Pointer {
			if from.IsNil() {
				return uuid.UUID{}, fmt.Errorf("%w: the subject field %s is behind a nil pointer", ErrProgramming, f.subject.name)
			}
			from = from.Elem()
		}
		from = from.Field(x)
	}
	return from.Interface().(uuid.UUID), nil
}

func (w *personalWalk) sealOne(pf personalField, subject uuid.UUID) error {
	if pf.personalStatus() != personalValue {
		return nil // none: {}; forgotten: its stored form, as read
	}
	if w.keys == nil {
		return errNoPersonalKeys
	}
	if subject == (uuid.UUID{}) {
		return fmt.Errorf("%w: personal data of the zero UUID (its subject's ID, the originator's or the tagged field's, is unset)", ErrProgramming)
	}
	key := w.lastKey
	if key == nil || key.subject != subject {
		var err error
		if key, err = w.keys.subjectKey(w.ctx, subject); err != nil {
			return err
		}
		w.lastKey = key
	}
	bp := personalBufPool.Get().(*[]byte)
	defer putPersonalBuf(bp)
	plain, err := pf.encodeValue(w.t, (*bp)[:0])
	if err != nil {
		return err
	}
	*bp = plain
	ct, err := key.aead.Encrypt(plain)
	if err != nil {
		return fmt.Errorf("seal personal data: %w", err)
	}
	*pf.sealed() = personalSealed{K: key.id, C: base64.StdEncoding.EncodeToString(ct)}
	return nil
}

func (w *personalWalk) openOne(pf personalField) error {
	s := pf.sealed()
	if s.K == "" && s.C == "" {
		return nil // no value
	}
	if w.keys == nil {
		return errNoPersonalKeys
	}
	if !validKeyID(s.K) {
		return fmt.Errorf("%w: personal data: key identifier %q is not 32 hexadecimal digits", ErrDecode, s.K)
	}
	key, err := w.keyByID(s.K)
	if err != nil {
		return err
	}
	if key == nil {
		pf.setForgotten()
		return nil
	}
	bp := personalBufPool.Get().(*[]byte)
	defer putPersonalBuf(bp)
	buf := slices.Grow((*bp)[:0], base64.StdEncoding.DecodedLen(len(s.C)))[:base64.StdEncoding.DecodedLen(len(s.C))]
	n, err := base64.StdEncoding.Decode(buf, []byte(s.C))
	if err != nil {
		return fmt.Errorf("%w: personal data under key %s: ciphertext is not base64: %w", ErrDecode, s.K, err)
	}
	*bp = buf
	plain, err := key.aead.Decrypt(buf[:n])
	if err != nil {
		return fmt.Errorf("personal data under key %s: %w", s.K, err)
	}
	return pf.decodeValue(w.t, plain)
}

// personalBufPool holds buffers for plaintexts and decoded ciphertexts.
var personalBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// putPersonalBuf returns a buffer to the pool, unless it grew large,
// cleared: it held personal data in plaintext.
func putPersonalBuf(bp *[]byte) {
	clear(*bp)
	if cap(*bp) <= 64<<10 {
		personalBufPool.Put(bp)
	}
}

// keyByID is keys.keyByID, remembering the last key of the walk: the
// fields of one event are mostly of one subject.
func (w *personalWalk) keyByID(id string) (*personalKey, error) {
	if w.lastKey != nil && w.lastKey.id == id {
		return w.lastKey, nil
	}
	key, err := w.keys.keyByID(w.ctx, id)
	if key != nil {
		w.lastKey = key
	}
	return key, err
}

var errNoPersonalKeys = fmt.Errorf("%w: the event holds personal data (Personal values) but the store has no Personal key store", ErrProgramming)

// rootStruct returns the struct value of an event, and whether it is one
// (a struct or a non-nil pointer to one).
func rootStruct(rv reflect.Value) (reflect.Value, bool) {
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		return rv.Elem(), true
	}
	return rv, rv.Kind() == reflect.Struct
}

// personalPlanOf returns the value of an event, the struct it is or points
// to, and that struct's plan of Personal fields: nil if it has none (or e
// is not a struct or a pointer to one).
func personalPlanOf(e any) (rv, sv reflect.Value, plan *pnode, err error) {
	rv = reflect.ValueOf(e)
	if !rv.IsValid() {
		return rv, sv, nil, nil
	}
	sv, ok := rootStruct(rv)
	if !ok {
		return rv, sv, nil, nil
	}
	plan, err = planFor(sv.Type())
	return rv, sv, plan, err
}

// sealPersonal returns e, or, if it holds Personal values, a copy of it
// with them sealed under their subjects' keys: e itself is not changed.
// keys may be nil if e holds no Personal value.
func sealPersonal[E any](ctx context.Context, keys *PersonalKeys, t *Transcoder, e E, originator uuid.UUID) (E, error) {
	rv, sv, plan, err := personalPlanOf(e)
	if err != nil || plan == nil {
		return e, err
	}
	c := reflect.New(sv.Type()) // the copy, written below
	c.Elem().Set(sv)
	w := personalWalk{ctx: ctx, keys: keys, t: t, root: c.Elem(), clone: true, seal: true}
	if err := w.walk(plan, c.Elem(), originator); err != nil {
		return e, fmt.Errorf("personal data: %w", err)
	}
	if rv.Kind() == reflect.Pointer {
		return c.Interface().(E), nil
	}
	return c.Elem().Interface().(E), nil
}

// openPersonal opens the Personal values of a decoded event in place (a
// pointer), or in a copy (a struct value), which it returns.
func openPersonal[E any](ctx context.Context, keys *PersonalKeys, t *Transcoder, e E, originator uuid.UUID) (E, error) {
	rv, sv, plan, err := personalPlanOf(e)
	if err != nil || plan == nil {
		return e, err
	}
	target := sv
	if rv.Kind() != reflect.Pointer {
		target = reflect.New(sv.Type()).Elem()
		target.Set(sv)
	}
	w := personalWalk{ctx: ctx, keys: keys, t: t, root: target}
	if err := w.walk(plan, target, originator); err != nil {
		return e, fmt.Errorf("personal data: %w", err)
	}
	if rv.Kind() == reflect.Pointer {
		return e, nil
	}
	return target.Interface().(E), nil
}

// ForgottenFields returns the paths (Go field names, such as "Email" or
// "Owners[1].Name") of the Personal values in e whose subjects were
// forgotten, or nil if there are none: a way to tell what of an event
// read back was lost without knowing its fields. e is an event, a
// snapshot, or any struct or pointer to one.
func ForgottenFields(e any) []string {
	rv := reflect.ValueOf(e)
	if !rv.IsValid() {
		return nil
	}
	sv, ok := rootStruct(rv)
	if !ok {
		return nil
	}
	plan, err := planFor(sv.Type())
	if err != nil || plan == nil {
		return nil
	}
	var out []string
	var visit func(n *pnode, v reflect.Value, path string)
	visit = func(n *pnode, v reflect.Value, path string) {
		switch n.kind {
		case pkPersonal:
			var pf personalField
			if v.CanAddr() {
				pf = v.Addr().Interface().(personalField)
			} else {
				c := reflect.New(v.Type())
				c.Elem().Set(v)
				pf = c.Interface().(personalField)
			}
			if pf.personalStatus() == personalForgotten {
				out = append(out, path)
			}
		case pkStruct:
			for _, f := range n.fields {
				p := f.name
				switch {
				case f.name == "":
					p = path
				case path != "":
					p = path + "." + f.name
				}
				visit(f.node, v.Field(f.index), p)
			}
		case pkPointer:
			if !v.IsNil() {
				visit(n.elem, v.Elem(), path)
			}
		case pkSlice, pkArray:
			for i := range v.Len() {
				visit(n.elem, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	visit(plan, sv, "")
	return out
}
