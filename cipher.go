package eventsourcing

// The application cipher: AES-GCM (AESCipher), its keys, and key rotation
// support.

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
//
// An AESCipher made by [NewAESCipherKeys] also holds previous keys, for
// key rotation: it encrypts with the current key and decrypts with
// whichever key authenticates the value (AES-GCM's tag tells), so that a
// store written under an old key stays readable while [RotateKeys]
// re-encrypts it.
type AESCipher struct {
	aead     cipher.AEAD
	previous []cipher.AEAD // older keys, tried in order after aead
}

var (
	_ Cipher     = (*AESCipher)(nil)
	_ KeyRotator = (*AESCipher)(nil)
)

// A KeyRotator is a Cipher that can tell a value encrypted under its
// current key from one under a previous key, and re-encrypt the latter:
// what [RotateKeys] needs. Implementations must be safe for concurrent use.
type KeyRotator interface {
	Cipher
	// Reencrypt returns data's plaintext encrypted under the current key
	// and true if data is encrypted under a previous key, or nil and
	// false if it is under the current key already. It returns an error
	// wrapping ErrDecrypt if no key decrypts data. data is not modified.
	Reencrypt(data []byte) ([]byte, bool, error)
}

// NewAESCipher returns an AES-GCM cipher for a 16, 24 or 32-byte key. It
// returns an error wrapping ErrProgramming for a key of another length.
func NewAESCipher(key []byte) (*AESCipher, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &AESCipher{aead: aead}, nil
}

// NewAESCipherKeys returns an AES-GCM cipher that encrypts with current
// and decrypts with current or any of previous, tried in order: the
// cipher of a store whose key is being rotated (CIPHER_KEY and
// CIPHER_KEY_PREVIOUS). With no previous keys it is [NewAESCipher]. It
// returns an error wrapping ErrProgramming, naming the key by its
// position and never showing it, for a key that is not of 16, 24 or 32
// bytes.
func NewAESCipherKeys(current []byte, previous ...[]byte) (*AESCipher, error) {
	c, err := NewAESCipher(current)
	if err != nil {
		return nil, fmt.Errorf("current key: %w", err)
	}
	for i, k := range previous {
		aead, err := newGCM(k)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		c.previous = append(c.previous, aead)
	}
	return c, nil
}

// newGCM returns AES-GCM under key.
func newGCM(key []byte) (cipher.AEAD, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: AES key is %d bytes, want 16, 24 or 32", ErrProgramming, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProgramming, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProgramming, err)
	}
	return aead, nil
}

// PreviousKeys returns how many previous keys the cipher holds.
func (c *AESCipher) PreviousKeys() int { return len(c.previous) }

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
		return nil, fmt.Errorf("%w: cipher key is not standard base64: %w", ErrProgramming, err)
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

// Decrypt returns the plaintext of nonce || tag || ciphertext, decrypted
// with the current key or, failing that, with a previous key. A value too
// short to hold a nonce and tag ("too short"), or one that no key
// authenticates (a wrong key, or damaged or truncated data: AES-GCM cannot
// tell these apart), is an error wrapping ErrDecrypt that says which. data
// is not modified.
func (c *AESCipher) Decrypt(data []byte) ([]byte, error) {
	pt, _, err := c.open(data)
	return pt, err
}

// Reencrypt returns data's plaintext encrypted under the current key and
// true if a previous key decrypts data, or nil and false if the current
// key does. A value no key decrypts is an error wrapping ErrDecrypt. The
// plaintext (for a compressed store, the zlib stream) is unchanged, so
// another reader with the current key reads the same bytes.
func (c *AESCipher) Reencrypt(data []byte) ([]byte, bool, error) {
	pt, current, err := c.open(data)
	if err != nil || current {
		return nil, false, err
	}
	out, err := c.Encrypt(pt)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// open decrypts nonce || tag || ciphertext with the first key that
// authenticates it, and reports whether that was the current key.
func (c *AESCipher) open(data []byte) (pt []byte, current bool, err error) {
	if len(data) < aesNonceSize+aesTagSize {
		return nil, false, fmt.Errorf("%w: %d bytes is too short for AES-GCM (nonce 12 + tag 16)", ErrDecrypt, len(data))
	}
	nonce, tag, ct := data[:aesNonceSize], data[aesNonceSize:aesNonceSize+aesTagSize], data[aesNonceSize+aesTagSize:]
	buf := make([]byte, 0, len(ct)+aesTagSize)
	buf = append(append(buf, ct...), tag...)
	// With no other key to try, open in place (one allocation); a failed
	// Open may overwrite its destination, so with previous keys each try
	// gets a destination of its own.
	var dst []byte
	if len(c.previous) == 0 {
		dst = buf[:0]
	}
	pt, err = c.aead.Open(dst, nonce, buf, nil)
	if err == nil {
		return pt, true, nil
	}
	for _, aead := range c.previous {
		if pt, perr := aead.Open(nil, nonce, buf, nil); perr == nil {
			return pt, false, nil
		}
	}
	what := "wrong key"
	if len(c.previous) > 0 {
		what = fmt.Sprintf("none of the %d keys (current and previous) opens it", 1+len(c.previous))
	}
	return nil, false, fmt.Errorf("%w: authentication failed: %s, or damaged or truncated data: %w", ErrDecrypt, what, err)
}
