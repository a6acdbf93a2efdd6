package eventsourcing

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Naive is the location of naive datetimes, which have no UTC offset:
// datetime_iso writes a time.Time in this location without an offset, as
// Python writes a naive datetime, and decodes such a datetime into it.
var Naive = time.FixedZone("naive", 0)

// registerBuiltins registers uuid_hex, datetime_iso and decimal_str.
func registerBuiltins(t *Transcoder) {
	must := func(err error) {
		if err != nil {
			panic(err) // the built-ins are valid
		}
	}
	must(RegisterTranscoding(t, Transcoding[uuid.UUID]{Name: "uuid_hex",
		Encode: func(u uuid.UUID) (any, error) { return hexUUID(u), nil },
		Decode: func(d any) (uuid.UUID, error) {
			s, ok := d.(string)
			if !ok {
				return uuid.UUID{}, fmt.Errorf("uuid_hex data is %T, want a string", d)
			}
			return uuid.Parse(s)
		}}))
	must(RegisterTranscoding(t, Transcoding[time.Time]{Name: "datetime_iso",
		Encode: func(v time.Time) (any, error) {
			b, err := appendISO(nil, v)
			return string(b), err
		},
		Decode: func(d any) (time.Time, error) {
			s, ok := d.(string)
			if !ok {
				return time.Time{}, fmt.Errorf("datetime_iso data is %T, want a string", d)
			}
			return parseISO([]byte(s))
		}}))
	must(RegisterTranscoding(t, DecimalTranscoding[Decimal]()))
}

// DecimalTranscoding returns the decimal_str transcoding for a decimal type
// that marshals to and from text, such as [Decimal] or a third-party
// decimal type: it is written as Python's str(Decimal).
func DecimalTranscoding[T any, PT interface {
	*T
	encoding.TextMarshaler
	encoding.TextUnmarshaler
}]() Transcoding[T] {
	return Transcoding[T]{
		Name: "decimal_str",
		Encode: func(v T) (any, error) {
			b, err := PT(&v).MarshalText()
			return string(b), err
		},
		Decode: func(d any) (T, error) {
			var v T
			s, ok := d.(string)
			if !ok {
				return v, fmt.Errorf("decimal_str data is %T, want a string", d)
			}
			err := PT(&v).UnmarshalText([]byte(s))
			return v, err
		},
	}
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
	p := 0
	num := func(n int) (int, bool) {
		if p+n > len(s) {
			return 0, false
		}
		v := 0
		for _, c := range s[p : p+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		p += n
		return v, true
	}
	lit := func(c byte) bool {
		if p < len(s) && s[p] == c {
			p++
			return true
		}
		return false
	}
	year, ok1 := num(4)
	ok2 := lit('-')
	month, ok3 := num(2)
	ok4 := lit('-')
	day, ok5 := num(2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return bad()
	}
	var hour, minute, sec, nsec int
	loc := Naive
	if p < len(s) {
		if s[p] != 'T' && s[p] != ' ' {
			return bad()
		}
		p++
		var ok bool
		if hour, ok = num(2); !ok || !lit(':') {
			return bad()
		}
		if minute, ok = num(2); !ok {
			return bad()
		}
		if lit(':') {
			if sec, ok = num(2); !ok {
				return bad()
			}
			if lit('.') || lit(',') {
				digits := 0
				for p < len(s) && s[p] >= '0' && s[p] <= '9' {
					if digits < 9 {
						nsec = nsec*10 + int(s[p]-'0')
					}
					digits++
					p++
				}
				if digits == 0 {
					return bad()
				}
				for i := digits; i < 9; i++ {
					nsec *= 10
				}
			}
		}
		if p < len(s) {
			switch {
			case lit('Z'):
				loc = time.UTC
			case s[p] == '+' || s[p] == '-':
				sign := 1
				if s[p] == '-' {
					sign = -1
				}
				p++
				oh, ok1 := num(2)
				ok2 := lit(':')
				om, ok3 := num(2)
				if !(ok1 && ok2 && ok3) {
					return bad()
				}
				off := oh*3600 + om*60
				if lit(':') {
					os, ok := num(2)
					if !ok {
						return bad()
					}
					off += os
					if lit('.') {
						for p < len(s) && s[p] >= '0' && s[p] <= '9' {
							p++
						}
					}
				}
				if off >= 24*3600 {
					return bad()
				}
				if off == 0 {
					loc = time.UTC
				} else {
					loc = time.FixedZone("", sign*off)
				}
			default:
				return bad()
			}
		}
		if p != len(s) {
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

var (
	uuidType = reflect.TypeFor[uuid.UUID]()
	timeType = reflect.TypeFor[time.Time]()
)

// Decimal is a decimal number kept as the text Python's str(Decimal) gives
// ("100.00", "-0", "1E+3"), so that it is written back exactly as read. It
// is transcoded as decimal_str. Convert it to and from a decimal type of
// your choice with its text, or register that type with
// [DecimalTranscoding].
type Decimal struct{ s string }

// ParseDecimal parses a decimal number as Python's decimal.Decimal does and
// returns it in canonical form (ParseDecimal("1e3") is "1E+3"). It returns
// an error wrapping [ErrDecode] for text that is not a decimal number.
func ParseDecimal(s string) (Decimal, error) {
	c, err := canonicalDecimal(s)
	if err != nil {
		return Decimal{}, err
	}
	return Decimal{c}, nil
}

// MustParseDecimal is ParseDecimal for constants; it panics on error.
func MustParseDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// String returns the decimal's canonical text; the zero Decimal is "0".
func (d Decimal) String() string {
	if d.s == "" {
		return "0"
	}
	return d.s
}

// MarshalText implements [encoding.TextMarshaler].
func (d Decimal) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (d *Decimal) UnmarshalText(b []byte) error {
	c, err := canonicalDecimal(string(b))
	if err != nil {
		return err
	}
	d.s = c
	return nil
}

// canonicalDecimal gives Python's str(Decimal(s)).
func canonicalDecimal(s string) (string, error) {
	in := s
	s = strings.TrimSpace(s)
	sign := ""
	if s != "" && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = "-"
		}
		s = s[1:]
	}
	switch strings.ToLower(s) {
	case "inf", "infinity":
		return sign + "Infinity", nil
	case "nan":
		return sign + "NaN", nil
	case "snan":
		return sign + "sNaN", nil
	}
	mant, expStr, hasExp := strings.Cut(strings.ReplaceAll(s, "_", ""), "e")
	if !hasExp {
		mant, expStr, hasExp = strings.Cut(mant, "E")
	}
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expStr)
		if err != nil {
			return "", fmt.Errorf("%w: invalid decimal %q", ErrDecode, in)
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	if digits == "" {
		return "", fmt.Errorf("%w: invalid decimal %q", ErrDecode, in)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("%w: invalid decimal %q", ErrDecode, in)
		}
	}
	exp -= len(frac)
	coeff := strings.TrimLeft(digits, "0")
	if coeff == "" {
		coeff = "0"
	}
	// Python's to-sci-string.
	leftdigits := exp + len(coeff)
	dotplace := 1
	if exp <= 0 && leftdigits > -6 {
		dotplace = leftdigits
	}
	var intpart, fracpart string
	switch {
	case dotplace <= 0:
		intpart, fracpart = "0", "."+strings.Repeat("0", -dotplace)+coeff
	case dotplace >= len(coeff):
		intpart = coeff + strings.Repeat("0", dotplace-len(coeff))
	default:
		intpart, fracpart = coeff[:dotplace], "."+coeff[dotplace:]
	}
	e := ""
	if leftdigits != dotplace {
		e = fmt.Sprintf("E%+d", leftdigits-dotplace)
	}
	return sign + intpart + fracpart + e, nil
}
