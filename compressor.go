package eventsourcing

// The Compressor interface and zlib, its built-in implementation.

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Compressor compresses and decompresses stored event state. A [Mapper]
// compresses before encrypting and decompresses after decrypting.
// Implementations must be safe for concurrent use.
type Compressor interface {
	// Compress returns the compressed form of data. It does not modify or
	// retain data.
	Compress(data []byte) ([]byte, error)
	// Decompress returns the data that Compress was given, or an error
	// matching ErrDecompress if data is corrupt or truncated. It does not
	// modify or retain data.
	Decompress(data []byte) ([]byte, error)
}

// ZlibCompressor is the zlib (RFC 1950) [Compressor], compatible with the
// Python library's eventsourcing.compressor:ZlibCompressor. The zero value
// compresses at zlib's default level, as the Python library does. It is safe
// for concurrent use.
type ZlibCompressor struct {
	// Level is a compress/zlib level: zlib.BestSpeed (1) to
	// zlib.BestCompression (9), or zlib.HuffmanOnly. Zero (and
	// zlib.DefaultCompression) is the default level, 6; a store that should
	// not be compressed needs no Compressor.
	Level int
	// MaxSize, if positive, limits the size of decompressed data: a stream
	// that inflates to more is an error matching ErrDecompress. It guards
	// against highly compressed input ("zip bombs") from an untrusted store.
	// Zero is no limit.
	MaxSize int
}

var _ Compressor = ZlibCompressor{}

// zlib writers and readers are expensive to make (a writer holds hundreds of
// kilobytes of tables) and cheap to reset, so they are pooled: writers per
// level, from zlib.HuffmanOnly (-2) to zlib.BestCompression (9).
var (
	zlibWriters [zlib.BestCompression - zlib.HuffmanOnly + 1]sync.Pool
	zlibReaders sync.Pool
)

func (z ZlibCompressor) level() int {
	if z.Level == 0 {
		return zlib.DefaultCompression
	}
	return z.Level
}

// Compress returns the zlib stream of data. A Level outside compress/zlib's
// range is an error matching ErrProgramming.
func (z ZlibCompressor) Compress(data []byte) ([]byte, error) {
	level := z.level()
	if level < zlib.HuffmanOnly || level > zlib.BestCompression {
		return nil, fmt.Errorf("%w: zlib level %d, want %d to %d", ErrProgramming, z.Level, zlib.HuffmanOnly, zlib.BestCompression)
	}
	// Small states (most events) grow by at most zlib's framing and a few
	// bytes per stored block; start with room for that.
	buf := bytes.NewBuffer(make([]byte, 0, len(data)/2+64))
	pool := &zlibWriters[level-zlib.HuffmanOnly]
	w, _ := pool.Get().(*zlib.Writer)
	if w == nil {
		var err error
		if w, err = zlib.NewWriterLevel(buf, level); err != nil {
			return nil, fmt.Errorf("zlib level %d: %w", level, err)
		}
	} else {
		w.Reset(buf)
	}
	_, err := w.Write(data)
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("zlib compress: %w", err)
	}
	w.Reset(nil)
	pool.Put(w)
	return buf.Bytes(), nil
}

// Decompress returns the data held in the zlib stream data. A stream that
// is truncated, corrupt (bad header, bad data or checksum mismatch), followed
// by extra bytes, or larger than MaxSize is an error matching ErrDecompress
// that says which.
func (z ZlibCompressor) Decompress(data []byte) ([]byte, error) {
	src := bytes.NewReader(data)
	var r io.ReadCloser
	if pooled, _ := zlibReaders.Get().(io.ReadCloser); pooled != nil {
		if err := pooled.(zlib.Resetter).Reset(src, nil); err != nil {
			src.Reset(nil)
			zlibReaders.Put(pooled)
			return nil, decompressError(err, len(data))
		}
		r = pooled
	} else {
		var err error
		if r, err = zlib.NewReader(src); err != nil {
			return nil, decompressError(err, len(data))
		}
	}
	out, err := z.inflate(r, len(data))
	if err == nil && src.Len() > 0 {
		err = fmt.Errorf("%w: %d bytes after the end of the zlib stream", ErrDecompress, src.Len())
	}
	// A reader whose stream failed is reset before its next use, so it can
	// always go back to the pool; it must not keep data alive there.
	src.Reset(nil)
	zlibReaders.Put(r)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// inflate reads r to its end, within MaxSize.
func (z ZlibCompressor) inflate(r io.Reader, n int) ([]byte, error) {
	// JSON usually compresses by 2 to 4 times.
	size := 4*n + 64
	if z.MaxSize > 0 {
		size = min(size, z.MaxSize+1)
		r = io.LimitReader(r, int64(z.MaxSize)+1)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, decompressError(err, n)
	}
	if z.MaxSize > 0 && buf.Len() > z.MaxSize {
		return nil, fmt.Errorf("%w: zlib stream inflates to more than %d bytes", ErrDecompress, z.MaxSize)
	}
	return buf.Bytes(), nil
}

func decompressError(err error, n int) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: zlib stream of %d bytes is truncated: %w", ErrDecompress, n, err)
	case errors.Is(err, zlib.ErrChecksum):
		return fmt.Errorf("%w: zlib checksum mismatch (damaged data): %w", ErrDecompress, err)
	case errors.Is(err, zlib.ErrHeader), errors.Is(err, zlib.ErrDictionary):
		return fmt.Errorf("%w: not a zlib stream: %w", ErrDecompress, err)
	default:
		return fmt.Errorf("%w: corrupt zlib stream: %w", ErrDecompress, err)
	}
}
