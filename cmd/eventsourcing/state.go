package main

// This file reads stored states as the application does: decrypted with
// the configured cipher, decompressed with the configured compressor, and
// parsed by the library's transcoder; and says, when one does not read,
// which setting would read it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	es "github.com/seed06b138f8/eventsourcing"
)

// stateDecoder opens stored states with the configuration's cipher and
// compressor.
type stateDecoder struct {
	cipher     es.Cipher
	compressor es.Compressor
	transcoder *es.Transcoder
}

func newStateDecoder(cfg *es.Config) (*stateDecoder, error) {
	opts, err := cfg.MapperOptions()
	if err != nil {
		return nil, err
	}
	return &stateDecoder{cipher: opts.Cipher, compressor: opts.Compressor, transcoder: es.NewTranscoder()}, nil
}

// describe says how states are read, as the configuration says.
func (d *stateDecoder) describe() string {
	switch {
	case d.cipher != nil && d.compressor != nil:
		return "zlib-compressed, then AES-GCM encrypted JSON (COMPRESSOR_TOPIC and CIPHER_KEY set)"
	case d.cipher != nil:
		return "AES-GCM encrypted JSON (CIPHER_KEY set), not compressed"
	case d.compressor != nil:
		return "zlib-compressed JSON (COMPRESSOR_TOPIC set), not encrypted"
	}
	return "plain JSON (neither CIPHER_KEY nor COMPRESSOR_TOPIC set)"
}

// plaintext decrypts and decompresses a stored state. Its errors say what
// is wrong and, where the bytes tell, which setting reads them.
func (d *stateDecoder) plaintext(state []byte) ([]byte, error) {
	var err error
	if d.cipher != nil {
		if state, err = d.cipher.Decrypt(state); err != nil {
			if looksPlain(state) {
				return nil, fmt.Errorf("cannot decrypt: the state is not encrypted (unset CIPHER_KEY and CIPHER_TOPIC if the store is not): %w", err)
			}
			return nil, fmt.Errorf("cannot decrypt: CIPHER_KEY is not the key the state was written with, or the ciphertext is damaged or truncated: %w", err)
		}
	}
	if d.compressor != nil {
		plain := state
		if state, err = d.compressor.Decompress(state); err != nil {
			if json.Valid(plain) {
				return nil, fmt.Errorf("cannot decompress: the state is JSON, not compressed (unset COMPRESSOR_TOPIC if the store is not compressed): %w", err)
			}
			return nil, fmt.Errorf("cannot decompress: %w", err)
		}
	}
	return state, nil
}

// looksPlain reports whether a state is JSON or a zlib stream.
func looksPlain(b []byte) bool {
	return (len(b) > 0 && b[0] == '{') || zlibHeader(b)
}

// zlibHeader reports whether b starts with a zlib header (RFC 1950: deflate,
// and a check of the first two bytes).
func zlibHeader(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// objectSyntax is decoded into to check a state's syntax: a JSON object,
// whose members are skipped.
type objectSyntax struct{}

// snapshotSyntax is the Python library's snapshot state: the aggregate's
// topic and its state, an object.
type snapshotSyntax struct {
	Topic *string   `json:"topic"`
	State *struct{} `json:"state"`
}

// check reads a stored state through to the transcoder: it decrypts,
// decompresses and parses it as the library's JSON (a JSON object; NaN and
// Infinity accepted as Python writes them), and restores the values of the
// built-in transcodings (uuid_hex, datetime_iso, decimal_str). custom
// reports a value of a transcoding the application registers itself,
// which the tool cannot check further. With snapshot, the state must have
// the Python library's snapshot layout.
func (d *stateDecoder) check(state []byte, snapshot bool) (custom bool, err error) {
	plain, err := d.plaintext(state)
	if err != nil {
		return false, err
	}
	if snapshot {
		var s snapshotSyntax
		if err := d.transcoder.Decode(plain, &s); err != nil {
			return false, d.syntaxError(plain, err)
		}
		if s.Topic == nil || *s.Topic == "" || s.State == nil {
			return false, errors.New(`not a snapshot state: want an object with "topic" and "state" (the Python library's snapshot layout)`)
		}
	} else {
		var s objectSyntax
		if err := d.transcoder.Decode(plain, &s); err != nil {
			return false, d.syntaxError(plain, err)
		}
	}
	var v any
	switch err := d.transcoder.Decode(plain, &v); {
	case err == nil:
		return false, nil
	case errors.Is(err, es.ErrUnknownTranscoding):
		return true, nil
	default:
		return false, fmt.Errorf("the JSON does not decode: %w", err)
	}
}

// syntaxError says why plain is not a JSON object, and what it looks like.
func (d *stateDecoder) syntaxError(plain []byte, err error) error {
	switch {
	case d.cipher == nil && !looksPlain(plain) && len(plain) >= 28:
		return fmt.Errorf("not JSON: the state looks encrypted (set CIPHER_KEY to the store's key): %w", err)
	case d.compressor == nil && zlibHeader(plain):
		return fmt.Errorf("not JSON: the state is zlib-compressed (set COMPRESSOR_TOPIC=%s): %w", es.ZlibCompressorTopic, err)
	}
	return fmt.Errorf("not a JSON object: %w", err)
}

// jsonState returns a plaintext state for a JSON line: as it is if it is
// strict JSON, else (Python's NaN and Infinity) as a JSON string.
func jsonState(plain []byte) json.RawMessage {
	if json.Valid(plain) {
		var b bytes.Buffer
		if json.Compact(&b, plain) == nil {
			return b.Bytes()
		}
	}
	s, _ := json.Marshal(string(plain))
	return s
}
