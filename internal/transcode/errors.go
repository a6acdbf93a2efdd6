package transcode

// The engine's errors, exported by the root as its mapping sentinels.

import "errors"

// The errors of the JSON engine. The root package exports them as its
// mapping sentinels (eventsourcing.ErrSyntax and the others are these
// values), so errors.Is matches them through either name.
var (
	// ErrUnsupportedType: a value of a Go type the transcoder cannot encode
	// or decode.
	ErrUnsupportedType = errors.New("eventsourcing: unsupported type")
	// ErrUnknownTranscoding: JSON names a "_type_" that has no registered
	// transcoding.
	ErrUnknownTranscoding = errors.New("eventsourcing: unknown transcoding")
	// ErrSyntax: the data is not valid JSON.
	ErrSyntax = errors.New("eventsourcing: invalid JSON")
	// ErrDecode: valid JSON that does not fit the Go type it is decoded
	// into, or a transcoding rejected its data.
	ErrDecode = errors.New("eventsourcing: cannot decode")
	// ErrInvalidArgument: the caller passed what can never work (Decode
	// into a value that is not a non-nil pointer). The root package maps it
	// to ErrProgramming.
	ErrInvalidArgument = errors.New("eventsourcing: invalid argument")
)
