package membership

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// hkdfSHA256 is RFC 5869 written out with HMAC, independent of crypto/hkdf.
func hkdfSHA256(ikm, salt, info []byte, n int) []byte {
	if salt == nil {
		salt = make([]byte, sha256.Size)
	}
	ext := hmac.New(sha256.New, salt)
	ext.Write(ikm)
	prk := ext.Sum(nil)
	var okm, t []byte
	for i := byte(1); len(okm) < n; i++ {
		exp := hmac.New(sha256.New, prk)
		exp.Write(t)
		exp.Write(info)
		exp.Write([]byte{i})
		t = exp.Sum(nil)
		okm = append(okm, t...)
	}
	return okm[:n]
}

func TestHKDFReferenceMatchesRFC5869(t *testing.T) {
	// RFC 5869, appendix A.1.
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	salt, _ := hex.DecodeString("000102030405060708090a0b0c")
	info, _ := hex.DecodeString("f0f1f2f3f4f5f6f7f8f9")
	want := "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
	if got := hex.EncodeToString(hkdfSHA256(ikm, salt, info, 42)); got != want {
		t.Fatalf("reference HKDF %s, RFC says %s", got, want)
	}
}

func TestKeyFromSecret(t *testing.T) {
	secret := []byte("correct horse battery staple")
	key, err := KeyFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if want := hkdfSHA256(secret, nil, []byte(keyInfo), 32); !bytes.Equal(key, want) {
		t.Fatalf("key %x, want HKDF-SHA256(secret, info %q) = %x", key, keyInfo, want)
	}
	// The classic mistake appends the secret to the hash of nothing: its first
	// 32 bytes are a constant, the same for every secret.
	wrong := sha256.New().Sum(secret)
	if bytes.Equal(key, wrong[:32]) || bytes.Equal(key, secret[:min(32, len(secret))]) {
		t.Fatal("key is the secret or sha256.New().Sum(secret)")
	}
	other, _ := KeyFromSecret([]byte("correct horse battery staplf"))
	if bytes.Equal(key, other) {
		t.Fatal("two secrets give one key")
	}
	withNewline, _ := KeyFromSecret(append(secret, '\n'))
	if bytes.Equal(key, withNewline) {
		t.Fatal("the secret's bytes are not used as they are")
	}
	if _, err := KeyFromSecret([]byte("short")); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ReadKeyFile(path)
	if err != nil || len(key) != 32 {
		t.Fatalf("ReadKeyFile: %x, %v", key, err)
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want a not-exist error", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	if _, err := ReadKeyFile(empty); err == nil {
		t.Fatal("an empty secret file was accepted")
	}
}
