// Package identity holds a host's identity: its X25519 key pair (the same key
// WireGuard uses), the peer ID that encodes the whole public key, and the
// overlay addresses derived from it.
package identity

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/curve25519"

	"github.com/punchd/punchd/internal/secret"
)

// KeySize is the size of X25519 keys.
const KeySize = 32

// PrivateKey is an X25519 private key, clamped as WireGuard expects.
type PrivateKey [KeySize]byte

// PublicKey is an X25519 public key; it is a host's identity.
type PublicKey [KeySize]byte

// GeneratePrivateKey returns a new random, clamped private key.
func GeneratePrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("generate key: %w", err)
	}
	k.clamp()
	return k, nil
}

func (k *PrivateKey) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// PublicKey derives the public key.
func (k PrivateKey) PublicKey() PublicKey {
	var p PublicKey
	pub, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only possible for a low-order point, which the basepoint is not.
		panic("identity: X25519 with basepoint failed: " + err.Error())
	}
	copy(p[:], pub)
	return p
}

// IsZero reports whether the key is unset.
func (k PrivateKey) IsZero() bool { return k == PrivateKey{} }

// Hex is the key as wireguard-go's UAPI wants it.
func (k PrivateKey) Hex() string { return hex.EncodeToString(k[:]) }

// Hex is the key as wireguard-go's UAPI wants it.
func (p PublicKey) Hex() string { return hex.EncodeToString(p[:]) }

// Less orders keys bytewise; ControlsICE goes by this order.
func (p PublicKey) Less(q PublicKey) bool { return bytes.Compare(p[:], q[:]) < 0 }

// ControlsICE reports whether self takes the ICE controlling role toward
// peer: the larger key controls. The controlling side starts the ICE
// attempts and chooses the path, and its Bind sends the held WireGuard
// initiation when a path appears (the controlled side waits, so the two
// do not cross initiations). Both ends compute the same answer from the
// two public keys, without asking anyone.
func ControlsICE(self, peer PublicKey) bool { return peer.Less(self) }

// IsZero reports whether the key is unset.
func (p PublicKey) IsZero() bool { return p == PublicKey{} }

const keyFileName = "private.key"

// LoadOrCreate reads the private key from stateDir, creating the directory
// (0700) and a new key (0600) on first use. created reports a new key.
func LoadOrCreate(stateDir string) (key PrivateKey, created bool, err error) {
	path := filepath.Join(stateDir, keyFileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := parseKeyFile(b)
		if err != nil {
			return key, false, fmt.Errorf("key file %s: %w; restore it from a backup or move it away to create a new identity", path, err)
		}
		return key, false, nil
	case errors.Is(err, fs.ErrPermission):
		return key, false, fmt.Errorf("read key file %s: %w; run as its owner (or root), or pass --state-dir", path, err)
	case !errors.Is(err, fs.ErrNotExist):
		return key, false, fmt.Errorf("read key file %s: %w", path, err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return key, false, fmt.Errorf("create state dir %s: %w; pass a writable --state-dir", stateDir, err)
	}
	if key, err = GeneratePrivateKey(); err != nil {
		return key, false, err
	}
	if err := writeKeyFile(path, key); err != nil {
		return key, false, err
	}
	return key, true, nil
}

// KeyFileWarning says when the private key file in stateDir may be read by
// group or others (a key copied in with cp, a umask of 022 and a manual
// edit): whoever reads it can impersonate this host. "" when it is fine or
// does not exist yet.
func KeyFileWarning(stateDir string) string {
	w, err := secret.ReadableByOthers(filepath.Join(stateDir, keyFileName))
	if err != nil {
		return fmt.Sprintf("cannot check the key file's permissions: %v", err)
	}
	if w != "" {
		return "private key " + w + " (whoever reads it can impersonate this host)"
	}
	return ""
}

// writeKeyFile writes atomically (temp file + rename) so a crash never
// leaves half a key, and with 0600 from the start so the key is never
// readable by others, not even for a moment.
func writeKeyFile(path string, key PrivateKey) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".private.key-*")
	if err != nil {
		return fmt.Errorf("write key file %s: %w; pass a writable --state-dir", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key[:]) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	// Link instead of rename: two `punchd id` racing on first use must end
	// with one key, not one each.
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}

func parseKeyFile(b []byte) (PrivateKey, error) {
	var k PrivateKey
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return k, fmt.Errorf("not a base64 key: %w", err)
	}
	if len(raw) != KeySize {
		return k, fmt.Errorf("key is %d bytes, want %d", len(raw), KeySize)
	}
	copy(k[:], raw)
	if k.IsZero() {
		return k, errors.New("key is all zeros")
	}
	k.clamp()
	return k, nil
}
