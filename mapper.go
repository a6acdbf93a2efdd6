package eventsourcing

// Mapper: domain events to stored events and back (topics, class versions
// and upcasting, then compression and encryption).

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/seed06b138f8/eventsourcing/internal/transcode"
)

// MapperOptions configures a [Mapper]. The zero value (and nil) maps to
// plain JSON with a new [Transcoder].
type MapperOptions struct {
	// Transcoder writes and reads states; nil means NewTranscoder().
	Transcoder *Transcoder
	// Compressor, if not nil, compresses states before encryption.
	Compressor Compressor
	// Cipher, if not nil, encrypts states.
	Cipher Cipher
}

// A Mapper converts domain events of type E to stored events and back. E is
// usually an interface that every event type of an application implements
// (or [Event] itself); each concrete event type is registered under a
// topic. The zero Mapper is ready to use and maps plain JSON, as
// NewMapper(nil) does. A Mapper is safe for concurrent use once its types
// are registered, and must not be copied after first use.
type Mapper[E Event] struct {
	once       sync.Once // sets a zero Mapper's transcoder
	transcoder *Transcoder
	compressor Compressor
	cipher     Cipher

	mu        sync.RWMutex
	topics    map[reflect.Type]string
	types     map[string]*eventType
	upcasters map[string]map[int]func(map[string]any) error
}

type eventType struct {
	topic        string       // the topic it is written under (others are aliases)
	typ          reflect.Type // as registered: a struct type or a pointer to one
	elem         reflect.Type // the struct type
	ptr          bool
	classVersion int
	// cvSuffix is how a state at classVersion ends (`,"class_version":N}`)
	// when classVersion > 1, so reading an up-to-date state needs no upcast.
	cvSuffix []byte
}

// NewMapper returns a mapper with the given options (nil for plain JSON).
func NewMapper[E Event](opts *MapperOptions) *Mapper[E] {
	m := &Mapper[E]{
		topics:    map[reflect.Type]string{},
		types:     map[string]*eventType{},
		upcasters: map[string]map[int]func(map[string]any) error{},
	}
	if opts != nil {
		m.transcoder, m.compressor, m.cipher = opts.Transcoder, opts.Compressor, opts.Cipher
	}
	m.init()
	return m
}

// init gives a zero Mapper its transcoder; every method that uses the
// transcoder calls it first.
func (m *Mapper[E]) init() {
	m.once.Do(func() {
		if m.transcoder == nil {
			m.transcoder = NewTranscoder()
		}
	})
}

// Transcoder returns the mapper's transcoder, to register transcodings for
// the types its events hold.
func (m *Mapper[E]) Transcoder() *Transcoder {
	m.init()
	return m.transcoder
}

// DefaultTopic returns the topic an event type is registered under by
// Register: its package path and type name in the Python form
// "path:Name", such as "github.com/you/bank:Deposited".
func DefaultTopic(typ reflect.Type) string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return typ.PkgPath() + ":" + typ.Name()
}

// Register registers the types of the given events (only their types
// matter: give pointers, &Deposited{}) under their default topics. See
// RegisterTopic.
func (m *Mapper[E]) Register(events ...E) error {
	for _, e := range events {
		typ := reflect.TypeOf(e)
		if typ == nil {
			return fmt.Errorf("%w: Register: nil event", ErrProgramming)
		}
		if err := m.RegisterTopic(DefaultTopic(typ), e); err != nil {
			return err
		}
	}
	return nil
}

// RegisterTopic registers the type of event under topic, and under any
// aliases. Events of the type are written under topic; stored events of
// topic or of an alias are decoded into new values of the type: a pointer
// to a struct whose pointer has the method SetOriginator(uuid.UUID, int64)
// (embed [DomainEvent]). A struct value type is taken only by a mapper
// whose E is that struct type: where E is an interface, the pointer is an
// E too, and events are pointers (Trigger takes them, and the repository
// saves them), while they are read back in the registered form.
//
// The transcoder must be able to write the type: a type it refuses (a
// []byte field, a map with struct keys, a type with its own MarshalJSON,
// own fields all unexported: see [Transcoder]) is refused here, with the
// error writing an event of it would give, wrapping ErrUnsupportedType.
// Register the transcodings such types need first. Values held in fields
// of interface type are checked when written, as is everything if a
// transcoding is registered later.
//
// Aliases keep events readable that were written under another topic:
// before a package was renamed or moved (the default topic is the import
// path), or by a Python application. Upcasters registered under topic
// apply to events read under its aliases too. Registering a type again
// under the same topic adds aliases.
//
// It returns an error wrapping ErrProgramming, and registers nothing, if
// the type does not qualify (with ErrUnsupportedType too, if the
// transcoder refuses it), a topic is empty, the type is registered
// already under another topic, or topic or an alias is registered already
// for another type.
func (m *Mapper[E]) RegisterTopic(topic string, event E, aliases ...string) error {
	typ := reflect.TypeOf(event)
	if typ == nil {
		return fmt.Errorf("%w: RegisterTopic %q: nil event", ErrProgramming, topic)
	}
	et := newEventType(topic, typ)
	if topic == "" || slices.Contains(aliases, "") {
		return fmt.Errorf("%w: empty topic for %v", ErrProgramming, typ)
	}
	if et.elem.Kind() != reflect.Struct {
		return fmt.Errorf("%w: event type %v is not a struct or a pointer to one", ErrProgramming, typ)
	}
	if !reflect.PointerTo(et.elem).Implements(reflect.TypeFor[originatorSetter]()) {
		return fmt.Errorf("%w: event type %v has no method SetOriginator(uuid.UUID, int64) on its pointer (embed eventsourcing.DomainEvent)", ErrProgramming, typ)
	}
	if !et.ptr && reflect.TypeFor[E]().Kind() == reflect.Interface {
		return fmt.Errorf("%w: event type %v is registered as a struct value: register a pointer to it (&%s{}), the form events take (Trigger and the repository give pointers, and events are read back in the registered form)",
			ErrProgramming, typ, typ.Name())
	}
	m.init()
	if err := m.transcoder.engine().Refusal(et.elem); err != nil {
		return fmt.Errorf("%w: event type %v cannot be stored: %w", ErrProgramming, typ, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.types == nil { // a zero Mapper
		m.types, m.topics = map[string]*eventType{}, map[reflect.Type]string{}
	}
	if old, ok := m.topics[typ]; ok && old != topic {
		return fmt.Errorf("%w: %v is registered already under topic %q", ErrProgramming, typ, old)
	}
	all := append([]string{topic}, aliases...)
	for _, t := range all {
		if old, ok := m.types[t]; ok && old.typ != typ {
			return fmt.Errorf("%w: topic %q is registered already for %v", ErrProgramming, t, old.typ)
		}
	}
	if old, ok := m.types[topic]; ok {
		et = old // registered again: its aliases join the same type
	}
	for _, t := range all {
		m.types[t] = et
	}
	m.topics[typ] = topic
	return nil
}

// Upcast registers fn to bring a stored state of topic from class version
// fromVersion to fromVersion+1 (a state without "class_version" is at
// version 1). When an event is read whose stored version is below its
// type's class version, each step's function runs in turn on the state
// decoded as a map without its "class_version" key (values of registered
// types restored; JSON integers are int64, other numbers float64), then the
// map is decoded into the type. Every step from the stored version to the
// type's must be registered, or reading fails with [ErrClassVersion] before
// any runs; a state at the type's version is decoded directly. It returns
// an error wrapping ErrProgramming if fn is nil, fromVersion is below 1, or
// an upcaster for the same topic and version is registered already.
func (m *Mapper[E]) Upcast(topic string, fromVersion int, fn func(state map[string]any) error) error {
	if fromVersion < 1 || fn == nil {
		return fmt.Errorf("%w: upcaster for %q needs a version >= 1 and a function", ErrProgramming, topic)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.upcasters == nil { // a zero Mapper
		m.upcasters = map[string]map[int]func(map[string]any) error{}
	}
	if m.upcasters[topic] == nil {
		m.upcasters[topic] = map[int]func(map[string]any) error{}
	}
	if _, ok := m.upcasters[topic][fromVersion]; ok {
		return fmt.Errorf("%w: an upcaster for %q from class version %d is registered already", ErrProgramming, topic, fromVersion)
	}
	m.upcasters[topic][fromVersion] = fn
	return nil
}

// Topic returns the topic the event's type is registered under, or an
// error wrapping ErrUnknownTopic that names the type.
func (m *Mapper[E]) Topic(e E) (string, error) {
	typ := reflect.TypeOf(e)
	m.mu.RLock()
	topic, ok := m.topics[typ]
	m.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("%w: no topic registered for event type %v", ErrUnknownTopic, typ)
	}
	return topic, nil
}

// ToStoredEvent maps an event to a stored event: its topic, and its state
// (the transcoded fields, without originator ID and version) compressed
// then encrypted as configured. An event whose type is not registered is
// an error wrapping ErrUnknownTopic, a nil pointer one wrapping
// ErrProgramming; transcoding errors (ErrUnsupportedType) name the event.
func (m *Mapper[E]) ToStoredEvent(e E) (StoredEvent, error) {
	topic, err := m.Topic(e)
	if err != nil {
		return StoredEvent{}, err
	}
	if v := reflect.ValueOf(e); v.Kind() == reflect.Pointer && v.IsNil() {
		return StoredEvent{}, fmt.Errorf("%w: nil %v event", ErrProgramming, v.Type())
	}
	m.init()
	se := StoredEvent{OriginatorID: e.OriginatorID(), OriginatorVersion: e.OriginatorVersion(), Topic: topic}
	bp := transcode.GetBuffer()
	defer transcode.PutBuffer(bp)
	state, err := m.transcoder.AppendEncode((*bp)[:0], e)
	if err != nil {
		return StoredEvent{}, fmt.Errorf("event %s v%d (%s): %w", se.OriginatorID, se.OriginatorVersion, topic, err)
	}
	*bp = state
	if m.compressor == nil && m.cipher == nil {
		se.State = slices.Clone(state)
		return se, nil
	}
	if m.compressor != nil {
		if state, err = m.compressor.Compress(state); err != nil {
			return StoredEvent{}, fmt.Errorf("event %s v%d (%s): compress: %w", se.OriginatorID, se.OriginatorVersion, topic, err)
		}
	}
	if m.cipher != nil {
		if state, err = m.cipher.Encrypt(state); err != nil {
			return StoredEvent{}, fmt.Errorf("event %s v%d (%s): encrypt: %w", se.OriginatorID, se.OriginatorVersion, topic, err)
		}
	}
	se.State = state
	return se, nil
}

// FromStoredEvent maps a stored event back to a domain event: it decrypts
// and decompresses the state, decodes it into a new value of the type
// registered for the topic (upcasting older class versions), and sets the
// originator ID and version. The state's class version ("class_version",
// 1 if absent, as in the Python library) is always checked against the
// type's ([ClassVersioner], 1 if not implemented): a newer stored version,
// an older one without upcasters for every step to the type's version (see
// Upcast), or a "class_version" that is not a positive integer is an error
// wrapping ErrClassVersion that names the topic and both versions. Other
// errors wrap ErrUnknownTopic, ErrDecrypt, ErrDecompress, ErrSyntax,
// ErrDecode or ErrUnknownTranscoding. All name the event.
func (m *Mapper[E]) FromStoredEvent(s StoredEvent) (E, error) {
	var zero E
	e, err := m.fromStoredEvent(s)
	if err != nil {
		err = withStateHint(err, s.State, m.cipher, m.compressor) // pipeline.go
		return zero, fmt.Errorf("event %s v%d (%s): %w", s.OriginatorID, s.OriginatorVersion, s.Topic, err)
	}
	return e, nil
}

func (m *Mapper[E]) fromStoredEvent(s StoredEvent) (E, error) {
	var zero E
	m.init()
	m.mu.RLock()
	et, ok := m.types[s.Topic]
	var ups map[int]func(map[string]any) error
	if ok {
		// An alias's events are upcast as the type's topic says, unless
		// upcasters were registered under the alias itself.
		if ups = m.upcasters[et.topic]; ups == nil {
			ups = m.upcasters[s.Topic]
		}
	}
	m.mu.RUnlock()
	if !ok {
		return zero, fmt.Errorf("%w: %q", ErrUnknownTopic, s.Topic)
	}
	state, err := m.plaintext(s.State)
	if err != nil {
		return zero, err
	}
	if state, err = m.atClassVersion(s.Topic, et, ups, state); err != nil {
		return zero, err
	}
	v := reflect.New(et.elem)
	if err := m.transcoder.decodeState(state, v.Interface()); err != nil {
		return zero, err
	}
	v.Interface().(originatorSetter).SetOriginator(s.OriginatorID, s.OriginatorVersion)
	if et.ptr {
		return v.Interface().(E), nil
	}
	return v.Elem().Interface().(E), nil
}

// newEventType describes typ (a struct or a pointer to one, not checked
// here) as written under topic, with its class version.
func newEventType(topic string, typ reflect.Type) *eventType {
	et := &eventType{typ: typ, elem: typ, topic: topic}
	if typ.Kind() == reflect.Pointer {
		et.elem, et.ptr = typ.Elem(), true
	}
	et.classVersion = max(transcode.ClassVersionOf(et.elem), 1)
	if et.classVersion > 1 {
		et.cvSuffix = fmt.Appendf(nil, `,"class_version":%d}`, et.classVersion)
	}
	return et
}

// atClassVersion returns a stored state of topic at et's class version:
// as it is if it is there already, upcast by ups if it is older. A newer
// one, an older one without an upcaster for every step, or a
// "class_version" that is not a positive integer is an error wrapping
// ErrClassVersion.
func (m *Mapper[E]) atClassVersion(topic string, et *eventType, ups map[int]func(map[string]any) error, state []byte) ([]byte, error) {
	if et.atVersion(state) {
		return state, nil
	}
	version, err := m.storedClassVersion(topic, state)
	if err != nil {
		return nil, err
	}
	switch {
	case version > et.classVersion:
		return nil, fmt.Errorf("%w: stored class version %d of topic %q is newer than %v's class version %d", ErrClassVersion, version, topic, et.typ, et.classVersion)
	case version < et.classVersion:
		return m.upcast(topic, et, ups, version, state)
	}
	return state, nil
}

// classVersionKey is the member of a stored state that holds its class
// version; a state without it is at version 1.
var classVersionKey = []byte(`"class_version"`)

// unicodeEscape starts the only JSON escapes that can spell a key's letters.
var unicodeEscape = []byte(`\u`)

// atVersion reports, without decoding, that a state is surely at the type's
// class version, so that reading it needs neither a look at its
// "class_version" nor an upcast. For a type above version 1 the state must
// end with et.cvSuffix: in valid JSON that can only be the top-level
// object's last member (a quote after a comma outside a string opens a
// key, and the final brace closes the top-level object), and the last of
// repeated keys wins, as in Python; invalid JSON fails to decode either
// way. For a type at version 1 the state must not hold "class_version" at
// all, nor any \u escape (which could spell the key).
func (et *eventType) atVersion(state []byte) bool {
	if et.classVersion > 1 {
		return bytes.HasSuffix(state, et.cvSuffix)
	}
	return !bytes.Contains(state, classVersionKey) && !bytes.Contains(state, unicodeEscape)
}

// storedClassVersion returns the class version a stored state declares in
// its top-level "class_version" member (the last, if repeated), or 1 if it
// has none, as the Python library reads it. A value that is not a positive
// integer is an error wrapping ErrClassVersion. It allocates nothing on
// success: values are skipped, not built.
func (m *Mapper[E]) storedClassVersion(topic string, state []byte) (int, error) {
	var raw []byte // the last class_version value
	if _, err := transcode.Members(state, func(k, v []byte) error {
		if string(k) == "class_version" {
			raw = v
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if raw == nil {
		return 1, nil
	}
	version := 0
	for i, c := range raw {
		if c < '0' || c > '9' || i >= 9 {
			version = 0
			break
		}
		version = version*10 + int(c-'0')
	}
	if version < 1 {
		return 0, fmt.Errorf("%w: topic %q: stored class_version %s is not a positive integer", ErrClassVersion, topic, raw)
	}
	return version, nil
}

// upcast brings a state at class version from, below the type's, up to
// the type's class version. It checks that the whole chain of upcasters
// is registered before running any, and removes "class_version" from the
// state before the first runs, as the Python library does.
func (m *Mapper[E]) upcast(topic string, et *eventType, ups map[int]func(map[string]any) error, from int, state []byte) ([]byte, error) {
	for v := from; v < et.classVersion; v++ {
		if ups[v] == nil {
			return nil, fmt.Errorf("%w: no upcaster chain for topic %q from stored class version %d to %v's class version %d: no upcaster from class version %d to %d",
				ErrClassVersion, topic, from, et.typ, et.classVersion, v, v+1)
		}
	}
	var obj map[string]any
	if err := m.transcoder.Decode(state, &obj); err != nil {
		return nil, err
	}
	delete(obj, "class_version")
	for v := from; v < et.classVersion; v++ {
		if err := ups[v](obj); err != nil {
			return nil, fmt.Errorf("%w: upcasting %q from class version %d: %w", ErrClassVersion, topic, v, err)
		}
	}
	return m.transcoder.Encode(obj)
}

// plaintext decrypts and decompresses a stored state, as the mapper's
// options say.
func (m *Mapper[E]) plaintext(state []byte) ([]byte, error) {
	var err error
	if m.cipher != nil {
		if state, err = m.cipher.Decrypt(state); err != nil {
			return nil, err
		}
	}
	if m.compressor != nil {
		if state, err = m.compressor.Decompress(state); err != nil {
			return nil, err
		}
	}
	return state, nil
}
