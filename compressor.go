package eventsourcing

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
)

// A Compressor compresses stored states before they are encrypted.
// Implementations must be safe for concurrent use.
type Compressor interface {
	// Compress returns the compressed form of data.
	Compress(data []byte) ([]byte, error)
	// Decompress returns the data, or an error wrapping ErrDecompress if
	// compressed is corrupt or truncated.
	Decompress(compressed []byte) ([]byte, error)
}

// ZlibCompressor is the Python library's ZlibCompressor: a zlib stream
// (RFC 1950), which Python's zlib.decompress reads.
type ZlibCompressor struct {
	// Level is the zlib compression level; zero means the default level.
	Level int
}

var _ Compressor = (*ZlibCompressor)(nil)

// Compress returns the zlib stream of data.
func (z *ZlibCompressor) Compress(data []byte) ([]byte, error) {
	level := z.Level
	if level == 0 {
		level = zlib.DefaultCompression
	}
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, level)
	if err != nil {
		return nil, fmt.Errorf("%w: zlib level %d", ErrProgramming, z.Level)
	}
	w.Write(data) // writes to a bytes.Buffer do not fail
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decompress returns the data of a zlib stream. A corrupt or truncated
// stream, or data after its end, is an error wrapping ErrDecompress.
func (z *ZlibCompressor) Decompress(compressed []byte) ([]byte, error) {
	br := bytes.NewReader(compressed)
	r, err := zlib.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: zlib header: %v", ErrDecompress, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%w: zlib data: %v", ErrDecompress, err)
	}
	if err := r.Close(); err != nil {
		return nil, fmt.Errorf("%w: zlib data: %v", ErrDecompress, err)
	}
	if br.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the end of the zlib stream", ErrDecompress, br.Len())
	}
	return out, nil
}
