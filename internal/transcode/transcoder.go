package transcode

// The Transcoder engine: registrations, caches, Encode and Decode.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// A Transcoder converts Go values to and from JSON, byte for byte as the
// Python eventsourcing library's JSONTranscoder writes it. The user-facing
// contract is documented on eventsourcing.Transcoder, which wraps it.
type Transcoder struct {
	mu     sync.RWMutex
	byType map[reflect.Type]*transcoding
	byName map[string]*transcoding
	enc    sync.Map // reflect.Type -> encoderFunc
	dec    sync.Map // reflect.Type -> decoderFunc
	// refusals holds why a type cannot be encoded (an error, or nil).
	refusals sync.Map // reflect.Type -> error
}

type transcoding struct {
	name   string
	typ    reflect.Type
	encode func(reflect.Value) (any, error)
	decode func(any) (reflect.Value, error)
}

// New returns a transcoder with the built-in transcodings uuid_hex and
// datetime_iso.
func New() *Transcoder {
	t := &Transcoder{byType: map[reflect.Type]*transcoding{}, byName: map[string]*transcoding{}}
	registerBuiltins(t)
	return t
}

// Register registers how values of typ are transcoded: as
// {"_type_": name, "_data_": encode(v)}, and back with decode. A later
// registration for the same type or name replaces the earlier one; for a
// name, decoding into an interface gives the type registered last.
func (t *Transcoder) Register(name string, typ reflect.Type, encode func(reflect.Value) (any, error), decode func(any) (reflect.Value, error)) {
	rt := &transcoding{name: name, typ: typ, encode: encode, decode: decode}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byType[typ] = rt
	t.byName[name] = rt
	t.enc.Clear()
	t.dec.Clear()
	t.refusals.Clear()
}

// HasTranscoding reports whether typ has a registered transcoding.
func (t *Transcoder) HasTranscoding(typ reflect.Type) bool { return t.lookupType(typ) != nil }

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

// GetBuffer returns a pooled buffer for encoding; PutBuffer returns it.
func GetBuffer() *[]byte { return encBufPool.Get().(*[]byte) }

// PutBuffer returns a buffer from GetBuffer to the pool, unless it grew
// past 64 KiB.
func PutBuffer(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		encBufPool.Put(bp)
	}
}

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
		return fmt.Errorf("%w: Decode needs a non-nil pointer, not %T", ErrInvalidArgument, v)
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
