package eventsourcing

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// A Cipher encrypts stored states. Implementations must be safe for
// concurrent use.
type Cipher interface {
	// Encrypt returns the ciphertext of plaintext.
	Encrypt(plaintext []byte) ([]byte, error)
	// Decrypt returns the plaintext of ciphertext, or an error wrapping
	// ErrDecrypt if it cannot be decrypted.
	Decrypt(ciphertext []byte) ([]byte, error)
}

// AES-GCM layout of a stored value, as the Python library writes it:
// nonce || tag || ciphertext, with no associated data.
const (
	aesNonceSize = 12
	aesTagSize   = 16
)

// AESCipher is the Python library's AESCipher: AES in GCM mode with a 16,
// 24 or 32-byte key, a random 12-byte nonce per value, and the stored
// layout nonce(12) || tag(16) || ciphertext.
type AESCipher struct {
	aead cipher.AEAD
}

var _ Cipher = (*AESCipher)(nil)

// NewAESCipher returns an AES-GCM cipher for a 16, 24 or 32-byte key. It
// returns an error wrapping ErrProgramming for a key of another length.
func NewAESCipher(key []byte) (*AESCipher, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: AES key is %d bytes, want 16, 24 or 32", ErrProgramming, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProgramming, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProgramming, err)
	}
	return &AESCipher{aead: aead}, nil
}

// NewAESCipherBase64 returns an AES-GCM cipher for a key given in standard
// base64, as CIPHER_KEY holds it and CreateKey returns it.
func NewAESCipherBase64(key string) (*AESCipher, error) {
	k, err := DecodeKey(key)
	if err != nil {
		return nil, err
	}
	return NewAESCipher(k)
}

// DecodeKey returns the bytes of an AES key given in standard base64, as
// CreateKey returns it and CIPHER_KEY holds it: the form [Config.CipherKey]
// and [NewAESCipher] take. It returns an error wrapping ErrProgramming,
// which does not show the key, if key is not standard base64 or not of
// 16, 24 or 32 bytes.
func DecodeKey(key string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, fmt.Errorf("%w: cipher key is not standard base64: %v", ErrProgramming, err)
	}
	switch len(k) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: AES key is %d bytes, want 16, 24 or 32", ErrProgramming, len(k))
	}
	return k, nil
}

// CreateKey returns a new random AES key of n bytes (16, 24 or 32) in
// standard base64, as the Python library's AESCipher.create_key does: the
// text for CIPHER_KEY. [DecodeKey] gives its bytes, for Config.CipherKey
// (which is the key itself, not its text: the text put there is refused).
func CreateKey(n int) (string, error) {
	switch n {
	case 16, 24, 32:
	default:
		return "", fmt.Errorf("%w: AES key size %d, want 16, 24 or 32", ErrProgramming, n)
	}
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// Encrypt returns nonce || tag || ciphertext of plaintext.
func (c *AESCipher) Encrypt(plaintext []byte) ([]byte, error) {
	n := aesNonceSize + aesTagSize + len(plaintext)
	out := make([]byte, n, n+aesTagSize)
	nonce := out[:aesNonceSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("eventsourcing: nonce: %w", err)
	}
	// Seal writes ciphertext || tag after the nonce and tag slots; the
	// stored layout has the tag first, so move it there.
	sealed := c.aead.Seal(out[aesNonceSize+aesTagSize:aesNonceSize+aesTagSize], nonce, plaintext, nil)
	copy(out[aesNonceSize:aesNonceSize+aesTagSize], sealed[len(plaintext):])
	out = out[:n]
	return out, nil
}

// Decrypt returns the plaintext of nonce || tag || ciphertext. A value too
// short to hold a nonce and tag ("too short"), or one that fails
// authentication (a wrong key, or damaged or truncated data: AES-GCM cannot
// tell these apart), is an error wrapping ErrDecrypt that says which. data is
// not modified.
func (c *AESCipher) Decrypt(data []byte) ([]byte, error) {
	if len(data) < aesNonceSize+aesTagSize {
		return nil, fmt.Errorf("%w: %d bytes is too short for AES-GCM (nonce 12 + tag 16)", ErrDecrypt, len(data))
	}
	nonce, tag, ct := data[:aesNonceSize], data[aesNonceSize:aesNonceSize+aesTagSize], data[aesNonceSize+aesTagSize:]
	buf := make([]byte, 0, len(ct)+aesTagSize)
	buf = append(append(buf, ct...), tag...)
	pt, err := c.aead.Open(buf[:0], nonce, buf, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed: wrong key, or damaged or truncated data: %w", ErrDecrypt, err)
	}
	return pt, nil
}
