package eventsourcing

// Decimal, a decimal number kept as Python writes it, and the decimal_str
// transcoding.

import (
	"encoding"
	"fmt"
	"strconv"
	"strings"
)

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
