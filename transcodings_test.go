package eventsourcing_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
)

type temperature struct{ kelvin float64 }

type temperatureEvent struct {
	T temperature `json:"t"`
}

// TestTranscodingErrorsUnwrap: an error a Transcoding's Encode or Decode
// returns is wrapped, not flattened into text, so that callers can match
// their own sentinel errors with errors.Is.
func TestTranscodingErrorsUnwrap(t *testing.T) {
	errBelowZero := errors.New("below absolute zero")
	tr := es.NewTranscoder()
	if err := es.RegisterTranscoding(tr, es.Transcoding[temperature]{Name: "kelvin",
		Encode: func(v temperature) (any, error) {
			if v.kelvin < 0 {
				return nil, errBelowZero
			}
			return v.kelvin, nil
		},
		Decode: func(d any) (temperature, error) {
			f, err := strconv.ParseFloat(fmt.Sprint(d), 64)
			if err != nil {
				return temperature{}, err
			}
			if f < 0 {
				return temperature{}, errBelowZero
			}
			return temperature{f}, nil
		}}); err != nil {
		t.Fatal(err)
	}
	_, err := tr.Encode(temperatureEvent{T: temperature{-1}})
	if !errors.Is(err, errBelowZero) || !errors.Is(err, es.ErrUnsupportedType) {
		t.Errorf("Encode: %v; want an error matching the transcoding's error and ErrUnsupportedType", err)
	}
	var v temperatureEvent
	err = tr.Decode([]byte(`{"t":{"_type_":"kelvin","_data_":-5}}`), &v)
	if !errors.Is(err, errBelowZero) || !errors.Is(err, es.ErrDecode) {
		t.Errorf("Decode: %v; want an error matching the transcoding's error and ErrDecode", err)
	}
	if err := tr.Decode([]byte(`{"t":{"_type_":"kelvin","_data_":3.5}}`), &v); err != nil || v.T.kelvin != 3.5 {
		t.Errorf("Decode: %v, %v", v, err)
	}
}
