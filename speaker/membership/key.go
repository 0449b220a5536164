package membership

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"os"
)

// keyInfo binds derived keys to this use: the same secret used elsewhere gives
// an unrelated key. Changing it is a breaking change of the wire format.
const keyInfo = "ironlb memberlist gossip AES-256-GCM key v1"

// MinSecretLen is the shortest secret KeyFromSecret accepts. A derivation adds
// no entropy, so a short secret would make a guessable key.
const MinSecretLen = 16

// KeyFromSecret derives memberlist's 32-byte AES-256 gossip key from a shared
// secret with HKDF-SHA256 (RFC 5869; no salt, info "ironlb memberlist gossip
// AES-256-GCM key v1"). The secret's bytes are used as they are, trailing
// newline included: every speaker reads the same Secret, so they agree. Create
// one with e.g. `openssl rand -base64 32`.
func KeyFromSecret(secret []byte) ([]byte, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("memberlist secret is %d bytes, at least %d are needed", len(secret), MinSecretLen)
	}
	return hkdf.Key(sha256.New, secret, nil, keyInfo, 32)
}

// ReadKeyFile reads a secret file (--memberlist-secret-file, a mounted Secret)
// and derives the gossip key from it with KeyFromSecret.
func ReadKeyFile(path string) ([]byte, error) {
	secret, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading memberlist secret: %w", err)
	}
	key, err := KeyFromSecret(secret)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}
