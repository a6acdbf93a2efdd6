package eventsourcing_test

import (
	"errors"
	"strings"
	"testing"

	es "github.com/seed06b138f8/eventsourcing"
)

// TestCipherKeyBase64InConfig: a key from CreateKey (base64 text, as
// CIPHER_KEY holds it) put as it is into Config.CipherKey (bytes) is
// refused, saying to decode it with DecodeKey: the 24 characters of a
// 16-byte key were taken as a 24-byte key, silently, and Python with the
// same CIPHER_KEY would have used another key.
func TestCipherKeyBase64InConfig(t *testing.T) {
	for _, n := range []int{16, 32} {
		key, err := es.CreateKey(n)
		if err != nil {
			t.Fatal(err)
		}
		cfg := es.Config{Name: "a", CipherKey: []byte(key)}
		var ce *es.ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Name != "Config.CipherKey" || !strings.Contains(err.Error(), "DecodeKey") {
			t.Errorf("CipherKey holding CreateKey(%d)'s text: %v, want a ConfigError naming Config.CipherKey and DecodeKey", n, err)
		}
		if _, err := cfg.MapperOptions(); !errors.As(err, &ce) || !strings.Contains(err.Error(), "DecodeKey") {
			t.Errorf("MapperOptions with CreateKey(%d)'s text: %v, want a ConfigError naming DecodeKey", n, err)
		}
	}
}

// TestDecodeKey: DecodeKey gives the bytes of CreateKey's text, which
// Config.CipherKey takes; what is not a key's text is ErrProgramming, and
// the error does not show it.
func TestDecodeKey(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		key, err := es.CreateKey(n)
		if err != nil {
			t.Fatal(err)
		}
		k, err := es.DecodeKey(key)
		if err != nil || len(k) != n {
			t.Fatalf("DecodeKey(CreateKey(%d)): %d bytes, %v", n, len(k), err)
		}
		cfg := es.Config{Name: "a", CipherKey: k}
		if err := cfg.Validate(); err != nil {
			t.Errorf("CipherKey from DecodeKey(CreateKey(%d)): %v", n, err)
		}
		if opts, err := cfg.MapperOptions(); err != nil || opts.Cipher == nil {
			t.Errorf("MapperOptions from DecodeKey(CreateKey(%d)): %v, %v", n, opts, err)
		}
	}
	for _, bad := range []string{"not base64!", "AAECAwQ=", ""} {
		if _, err := es.DecodeKey(bad); !errors.Is(err, es.ErrProgramming) || (bad != "" && strings.Contains(err.Error(), bad)) {
			t.Errorf("DecodeKey(%q): %v, want ErrProgramming not showing the key", bad, err)
		}
	}
}
