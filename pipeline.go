package eventsourcing

// This file tells how a store's states were written (plain JSON,
// compressed, encrypted) from the states themselves, so that a store opened
// with another configuration fails at open, and a state that fails to
// decode says what it looks like. Nothing is recorded: the stored bytes
// say it, in stores written by this library and by the Python library
// alike.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Pipeline says how stored states are written: JSON, then optionally
// compressed, then optionally encrypted, as [MapperOptions] configure it.
type Pipeline struct {
	// Compressed: states are compressed (zlib, COMPRESSOR_TOPIC).
	Compressed bool
	// Encrypted: states are encrypted (AES-GCM, CIPHER_KEY).
	Encrypted bool
}

// String describes the pipeline: "plain JSON", "zlib-compressed JSON",
// "encrypted JSON" or "zlib-compressed, then encrypted JSON".
func (p Pipeline) String() string {
	switch {
	case p.Compressed && p.Encrypted:
		return "zlib-compressed, then encrypted JSON"
	case p.Compressed:
		return "zlib-compressed JSON"
	case p.Encrypted:
		return "encrypted JSON"
	}
	return "plain JSON"
}

func pipelineOf(opts *MapperOptions) Pipeline {
	if opts == nil {
		return Pipeline{}
	}
	return Pipeline{Compressed: opts.Compressor != nil, Encrypted: opts.Cipher != nil}
}

// PipelineError reports a store whose states were written with another
// pipeline than the one configured to read it: a mapper so configured
// cannot read them. It matches [ErrProgramming]. Variables names the
// configuration variables to change (EnvCipherKey, EnvCompressorTopic).
type PipelineError struct {
	// Table is the events table, or empty for a recorder that has none.
	Table string
	// NotificationID is the notification whose state was examined.
	NotificationID int64
	// Written is how that state was written. Written.Compressed is false
	// where it cannot be told: a state encrypted under a key that is not
	// configured.
	Written Pipeline
	// Configured is how the configuration reads states.
	Configured Pipeline
	// WrongKey: the state is encrypted, and the configured cipher cannot
	// decrypt it (another key, or another cipher).
	WrongKey bool
	// Mixed: the newest state is as configured, but the oldest (the one
	// examined) is not: the store holds states written with two
	// configurations, and no one configuration reads them all.
	Mixed bool
	// Variables are the variables to set or unset, cipher first.
	Variables []string
}

func (e *PipelineError) Error() string {
	var b strings.Builder
	b.WriteString("eventsourcing: ")
	where := "the store"
	if e.Table != "" {
		where = "the store (table " + e.Table + ")"
	}
	written := e.Written.String() + " states"
	switch {
	case e.WrongKey:
		written = "states encrypted under another key"
	case e.Written.Encrypted && !e.Configured.Encrypted:
		written = "encrypted states (AES-GCM: nonce and ciphertext, neither JSON nor zlib)"
	}
	if e.Mixed {
		fmt.Fprintf(&b, "%s mixes two configurations: its newest state is as configured, but notification %d holds %s, and the configuration reads %s", where, e.NotificationID, written, e.Configured)
	} else {
		fmt.Fprintf(&b, "%s holds %s (notification %d), but the configuration reads %s", where, written, e.NotificationID, e.Configured)
	}
	b.WriteString(": ")
	b.WriteString(adviceText(pipelineAdvice(e.Written, e.Configured, e.WrongKey)))
	return b.String()
}

// Is reports whether target is ErrProgramming.
func (e *PipelineError) Is(target error) bool { return target == ErrProgramming }

// advice is one change to the configuration: the variable, and what to
// do with it.
type advice struct {
	variable, text string
}

// pipelineAdvice says which variables to change, cipher first, so that a
// store written as written reads.
func pipelineAdvice(written, configured Pipeline, wrongKey bool) []advice {
	var a []advice
	compressionKnown := true
	switch {
	case wrongKey:
		a = append(a, advice{EnvCipherKey, "set " + EnvCipherKey + " (Config.CipherKey) to the key the store was written with"})
		compressionKnown = false
	case written.Encrypted && !configured.Encrypted:
		a = append(a, advice{EnvCipherKey, "set " + EnvCipherKey + " (Config.CipherKey) to the base64 key the store was written with"})
		compressionKnown = false // the plaintext is out of sight
	case !written.Encrypted && configured.Encrypted:
		a = append(a, advice{EnvCipherKey, "unset " + EnvCipherKey + " and " + EnvCipherTopic + " (Config.CipherKey)"})
	}
	if compressionKnown {
		switch {
		case written.Compressed && !configured.Compressed:
			a = append(a, advice{EnvCompressorTopic, "set " + EnvCompressorTopic + "=" + ZlibCompressorTopic + " (Config.Compress)"})
		case !written.Compressed && configured.Compressed:
			a = append(a, advice{EnvCompressorTopic, "unset " + EnvCompressorTopic + " (Config.Compress)"})
		}
	}
	return a
}

// adviceText joins the texts of a.
func adviceText(a []advice) string {
	texts := make([]string, len(a))
	for i, x := range a {
		texts[i] = x.text
	}
	return strings.Join(texts, "; ")
}

// CheckPipeline checks that states written into r can be read with the
// given mapper options (nil: plain JSON): it examines the newest state,
// and the oldest, and returns a *[PipelineError] (matching ErrProgramming)
// naming the variables to set if either was written otherwise. An empty
// recorder, or states that cannot be told (shorter than an AES-GCM
// nonce and tag, damaged), pass. Read errors are returned wrapped.
//
// [Open] and [OpenApp] call it; call it when opening recorders by hand.
func CheckPipeline(ctx context.Context, r ApplicationRecorder, opts *MapperOptions) error {
	var c Cipher
	var z Compressor
	if opts != nil {
		c, z = opts.Cipher, opts.Compressor
	}
	last, err := r.MaxNotificationID(ctx)
	if err != nil {
		return fmt.Errorf("check how the store was written: %w", err)
	}
	if last == 0 {
		return nil
	}
	for _, start := range []int64{last, 0} {
		ns, err := r.SelectNotifications(ctx, start, 1, nil)
		if err != nil {
			return fmt.Errorf("check how the store was written: notification %d: %w", start, err)
		}
		if len(ns) == 0 {
			continue
		}
		ex := examine(ns[0].State, c, z)
		if ex.match || ex.unknown {
			continue
		}
		e := &PipelineError{NotificationID: ns[0].ID, Written: ex.written, Configured: pipelineOf(opts), WrongKey: ex.wrongKey, Mixed: start == 0}
		for _, a := range pipelineAdvice(e.Written, e.Configured, e.WrongKey) {
			e.Variables = append(e.Variables, a.variable)
		}
		if t, ok := r.(interface{ EventsTable() Table }); ok {
			e.Table = t.EventsTable().String()
		}
		return e
	}
	return nil
}

// examination is what examine tells of a stored state.
type examination struct {
	written  Pipeline
	match    bool // the configured cipher and compressor read it
	wrongKey bool // encrypted, but the configured cipher cannot decrypt it
	unknown  bool // it cannot be told how it was written (damaged, or too short)
}

// examine tells how a stored state was written, given the cipher and
// compressor configured to read it (either may be nil). A state the
// configured cipher decrypts is encrypted (AES-GCM authenticates); one a
// compressor inflates, and whose result is JSON, is compressed; JSON is
// plain; anything else long enough for a nonce and tag is taken to be
// encrypted.
func examine(state []byte, c Cipher, z Compressor) examination {
	configured := Pipeline{Encrypted: c != nil, Compressed: z != nil}
	inner, encrypted := state, false
	if c != nil {
		if p, err := c.Decrypt(state); err == nil {
			inner, encrypted = p, true
		}
	}
	var ex examination
	switch k := stateKind(inner, z); {
	case k == kindJSON:
		ex.written = Pipeline{Encrypted: encrypted}
	case k == kindCompressed:
		ex.written = Pipeline{Encrypted: encrypted, Compressed: true}
	case encrypted || k == kindDamaged || len(inner) < aesNonceSize+aesTagSize:
		// Decrypted, but neither JSON nor compressed; or damaged JSON or
		// zlib; or too short to be ciphertext: not a pipeline question.
		ex.unknown = true
	case c != nil:
		ex.written, ex.wrongKey = Pipeline{Encrypted: true}, true
	default:
		ex.written = Pipeline{Encrypted: true}
	}
	ex.match = !ex.unknown && !ex.wrongKey && ex.written == configured
	return ex
}

// Kinds of stored bytes, as stateKind tells them.
const (
	kindOpaque     = iota // neither JSON nor compressed: ciphertext, or garbage
	kindJSON              // valid JSON
	kindCompressed        // compressed JSON
	kindDamaged           // starts like JSON or zlib, but does not read as either
)

// detectMaxSize bounds what stateKind inflates.
const detectMaxSize = 64 << 20

// stateKind tells what b is: JSON, compressed JSON (by z, if not nil, or
// by zlib), or neither.
func stateKind(b []byte, z Compressor) int {
	if json.Valid(b) {
		return kindJSON
	}
	if z != nil {
		if out, err := z.Decompress(b); err == nil && json.Valid(out) {
			return kindCompressed
		}
	}
	if zlibHeader(b) {
		out, err := ZlibCompressor{MaxSize: detectMaxSize}.Decompress(b)
		switch {
		case err == nil && json.Valid(out):
			return kindCompressed
		case err == nil:
			return kindDamaged // a valid zlib stream (its checksum holds) of something else
		}
		// A zlib header by chance (1 in about 500 random byte pairs).
	}
	if len(b) > 0 && b[0] == '{' && utf8.Valid(b[:max(len(b)-3, 1)]) {
		// A JSON object cut short (perhaps inside a character at its end)
		// or damaged. Ciphertext starts with '{' once in 256 times, but is
		// almost never valid UTF-8 too.
		return kindDamaged
	}
	return kindOpaque
}

// zlibHeader reports whether b starts with a zlib header (RFC 1950):
// deflate, a window of at most 32 KiB, no preset dictionary, and the check
// bits.
func zlibHeader(b []byte) bool {
	return len(b) >= 2 && b[0]&0x0f == 8 && b[0]>>4 <= 7 && b[1]&0x20 == 0 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

// withStateHint adds to an error decoding state (decrypting, decompressing
// or parsing it) what the state looks like and which variable to change,
// when it was written with another pipeline than c and z read. Other
// errors are returned as they are.
func withStateHint(err error, state []byte, c Cipher, z Compressor) error {
	if err == nil || !(errors.Is(err, ErrDecrypt) || errors.Is(err, ErrDecompress) || errors.Is(err, ErrSyntax)) {
		return err
	}
	ex := examine(state, c, z)
	if ex.match || ex.unknown {
		return err
	}
	looks := "like " + ex.written.String()
	switch {
	case ex.wrongKey:
		looks = "encrypted under another key"
	case ex.written.Encrypted && c == nil:
		looks = "encrypted (AES-GCM: nonce and ciphertext, neither JSON nor zlib)"
	}
	configured := Pipeline{Encrypted: c != nil, Compressed: z != nil}
	hint := "the stored state looks " + looks + ", but is read as " + configured.String() + ": " +
		adviceText(pipelineAdvice(ex.written, configured, ex.wrongKey))
	return &hintedError{err: err, hint: hint}
}

// hintedError is an error with a hint at its end.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintedError) Unwrap() error { return e.err }
