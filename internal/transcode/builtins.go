package transcode

// The built-in transcodings uuid_hex and datetime_iso, and the datetime
// parser.

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Naive is the location of naive datetimes, which have no UTC offset:
// datetime_iso writes a time.Time in this location without an offset, as
// Python writes a naive datetime, and decodes such a datetime into it.
var Naive = time.FixedZone("naive", 0)

// registerBuiltins registers uuid_hex and datetime_iso.
func registerBuiltins(t *Transcoder) {
	RegisterFunc(t, "uuid_hex",
		func(u uuid.UUID) (any, error) { return hexUUID(u), nil },
		func(d any) (uuid.UUID, error) {
			s, ok := d.(string)
			if !ok {
				return uuid.UUID{}, fmt.Errorf("uuid_hex data is %T, want a string", d)
			}
			return uuid.Parse(s)
		})
	RegisterFunc(t, "datetime_iso",
		func(v time.Time) (any, error) {
			b, err := appendISO(nil, v)
			return string(b), err
		},
		func(d any) (time.Time, error) {
			s, ok := d.(string)
			if !ok {
				return time.Time{}, fmt.Errorf("datetime_iso data is %T, want a string", d)
			}
			return parseISO([]byte(s))
		})
}

// RegisterFunc registers the transcoding of values of type T named name:
// encode returns what is written as "_data_", decode restores a T from it.
func RegisterFunc[T any](t *Transcoder, name string, encode func(T) (any, error), decode func(any) (T, error)) {
	t.Register(name, reflect.TypeFor[T](),
		func(v reflect.Value) (any, error) { return encode(v.Interface().(T)) },
		func(d any) (reflect.Value, error) {
			v, err := decode(d)
			if err != nil {
				return reflect.Value{}, err
			}
			return reflect.ValueOf(&v).Elem(), nil
		})
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
	sc := isoScanner{s: s}
	year, ok1 := sc.num(4)
	ok2 := sc.lit('-')
	month, ok3 := sc.num(2)
	ok4 := sc.lit('-')
	day, ok5 := sc.num(2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return bad()
	}
	var hour, minute, sec, nsec int
	loc := Naive
	if sc.more() {
		if !sc.lit('T') && !sc.lit(' ') {
			return bad()
		}
		var ok bool
		if hour, minute, sec, nsec, ok = sc.clock(); !ok {
			return bad()
		}
		if sc.more() {
			if loc, ok = sc.offset(); !ok {
				return bad()
			}
		}
		if sc.more() {
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

// isoScanner reads an isoformat datetime from left to right.
type isoScanner struct {
	s []byte
	p int // the next byte to read
}

func (sc *isoScanner) more() bool { return sc.p < len(sc.s) }

// num reads exactly n decimal digits.
func (sc *isoScanner) num(n int) (int, bool) {
	if sc.p+n > len(sc.s) {
		return 0, false
	}
	v := 0
	for _, c := range sc.s[sc.p : sc.p+n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	sc.p += n
	return v, true
}

// lit reads the byte c if it is next.
func (sc *isoScanner) lit(c byte) bool {
	if sc.p < len(sc.s) && sc.s[sc.p] == c {
		sc.p++
		return true
	}
	return false
}

// digits skips decimal digits and returns how many there were.
func (sc *isoScanner) digits() int {
	start := sc.p
	for sc.p < len(sc.s) && sc.s[sc.p] >= '0' && sc.s[sc.p] <= '9' {
		sc.p++
	}
	return sc.p - start
}

// clock reads HH:MM, optionally followed by :SS and a fraction of a second
// after '.' or ',' (digits past the ninth are dropped).
func (sc *isoScanner) clock() (hour, minute, sec, nsec int, ok bool) {
	if hour, ok = sc.num(2); !ok || !sc.lit(':') {
		return 0, 0, 0, 0, false
	}
	if minute, ok = sc.num(2); !ok {
		return 0, 0, 0, 0, false
	}
	if !sc.lit(':') {
		return hour, minute, 0, 0, true
	}
	if sec, ok = sc.num(2); !ok {
		return 0, 0, 0, 0, false
	}
	if sc.lit('.') || sc.lit(',') {
		start := sc.p
		n := sc.digits()
		if n == 0 {
			return 0, 0, 0, 0, false
		}
		for _, c := range sc.s[start : start+min(n, 9)] {
			nsec = nsec*10 + int(c-'0')
		}
		for i := n; i < 9; i++ {
			nsec *= 10
		}
	}
	return hour, minute, sec, nsec, true
}

// offset reads the UTC offset after the time: Z, or +HH:MM or -HH:MM
// optionally followed by :SS and a fraction (ignored), less than a day.
// A zero offset is UTC.
func (sc *isoScanner) offset() (*time.Location, bool) {
	if sc.lit('Z') {
		return time.UTC, true
	}
	sign := 1
	switch {
	case sc.lit('-'):
		sign = -1
	case sc.lit('+'):
	default:
		return nil, false
	}
	oh, ok1 := sc.num(2)
	ok2 := sc.lit(':')
	om, ok3 := sc.num(2)
	if !(ok1 && ok2 && ok3) {
		return nil, false
	}
	off := oh*3600 + om*60
	if sc.lit(':') {
		os, ok := sc.num(2)
		if !ok {
			return nil, false
		}
		off += os
		if sc.lit('.') {
			sc.digits()
		}
	}
	switch {
	case off >= 24*3600:
		return nil, false
	case off == 0:
		return time.UTC, true
	}
	return time.FixedZone("", sign*off), true
}

var (
	uuidType = reflect.TypeFor[uuid.UUID]()
	timeType = reflect.TypeFor[time.Time]()
)
