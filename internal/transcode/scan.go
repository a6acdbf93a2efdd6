package transcode

// The JSON scanner: tokens, generic values, and the top-level members of an
// object.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"unicode/utf8"
)

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

func (d *decodeState) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.syntaxError(fmt.Sprintf("nesting deeper than %d", maxDepth))
	}
	return nil
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
		return nil, fmt.Errorf("%w: %s data %v: %w", ErrDecode, name, data, err)
	}
	return v.Interface(), nil
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
	if err := d.enter(); err != nil {
		return err
	}
	defer func() { d.depth-- }()
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

// Members calls fn with the key and the raw bytes of the value of each
// top-level member of the JSON object in data, in order, without decoding
// or allocating values (repeated keys are each passed: the last wins, as in
// Python). It returns false, and calls nothing, if data is not an object:
// decoding reports that. An error from fn stops the scan and is returned.
func Members(data []byte, fn func(key, value []byte) error) (bool, error) {
	d := newDecodeState(nil, data)
	defer d.release()
	d.skipSpace()
	if d.peek() != '{' {
		return false, nil
	}
	d.pos++
	for first := true; ; first = false {
		k, more, err := d.nextKey(first)
		if err != nil || !more {
			return true, err
		}
		if !within(d.data, k) {
			k = bytes.Clone(k) // unescaped into the scratch buffer, which skipping reuses
		}
		start := d.pos
		if err := d.skipValue(); err != nil {
			return true, err
		}
		if err := fn(k, d.data[start:d.pos]); err != nil {
			return true, err
		}
	}
}

// String returns the string a raw JSON value holds, and false if the value
// is not a string.
func String(raw []byte) (string, bool, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false, nil
	}
	d := newDecodeState(nil, raw)
	defer d.release()
	b, err := d.readString()
	if err != nil {
		return "", true, err
	}
	return string(b), true, nil
}

// within reports whether s is a subslice of data.
func within(data, s []byte) bool {
	if len(s) == 0 {
		return true
	}
	off := cap(data) - cap(s)
	return off >= 0 && off < len(data) && &data[off] == &s[0]
}

// Validate returns an error wrapping ErrSyntax (with the byte offset) if
// data is not one valid JSON value, and nil if it is.
func Validate(data []byte) error {
	d := newDecodeState(nil, data)
	defer d.release()
	d.skipSpace()
	if err := d.skipValue(); err != nil {
		return err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return d.syntaxError("data after the JSON value")
	}
	return nil
}
