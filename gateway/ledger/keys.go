package ledger

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/veraison/go-cose"
)

// Alg is a signature algorithm a tx may be signed with.
type Alg string

// The algorithms ledgergate accepts (RFC 9053).
const (
	ES256 Alg = "ES256" // ECDSA P-256 with SHA-256
	EdDSA Alg = "EdDSA" // Ed25519
)

// coseAlg maps an Alg to its COSE identifier.
func (a Alg) coseAlg() (cose.Algorithm, error) {
	switch a {
	case ES256:
		return cose.AlgorithmES256, nil
	case EdDSA:
		return cose.AlgorithmEdDSA, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownAlg, string(a))
}

func algFromCOSE(c int64) (Alg, error) {
	switch cose.Algorithm(c) {
	case cose.AlgorithmES256:
		return ES256, nil
	case cose.AlgorithmEdDSA:
		return EdDSA, nil
	}
	return "", fmt.Errorf("%w: cose alg %d", ErrUnknownAlg, c)
}

// ErrUnknownAlg reports an algorithm ledgergate does not accept.
var ErrUnknownAlg = errors.New("ledger: unknown or unsupported algorithm")

// PublicKey is a parsed, supported public key and the algorithm it signs with.
type PublicKey struct {
	Alg Alg
	Key crypto.PublicKey // *ecdsa.PublicKey (P-256) or ed25519.PublicKey
	DER []byte           // SubjectPublicKeyInfo, as stored on the ledger

	// ed is Key expanded for verifying, if Ed25519, made on the first
	// verify (see verify.go): 1.5 KB, kept only for keys that sign.
	ed atomic.Pointer[voi.ExpandedPublicKey]
}

// ParsePublicKey parses a DER SubjectPublicKeyInfo holding a P-256 or
// Ed25519 key.
func ParsePublicKey(der []byte) (*PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("ledger: parse public key: %w", err)
	}
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ecdsa curve %s", ErrUnknownAlg, k.Curve.Params().Name)
		}
		return &PublicKey{Alg: ES256, Key: k, DER: der}, nil
	case ed25519.PublicKey:
		return &PublicKey{Alg: EdDSA, Key: k, DER: der}, nil
	}
	return nil, fmt.Errorf("%w: key type %T", ErrUnknownAlg, k)
}

// ParseEncKey parses a device's encryption key: a DER SubjectPublicKeyInfo
// holding an X25519 key, the HPKE KEM DHKEM(X25519, HKDF-SHA256).
func ParseEncKey(der []byte) (*ecdh.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("ledger: parse encryption key: %w", err)
	}
	if pk, ok := k.(*ecdh.PublicKey); ok && pk.Curve() == ecdh.X25519() {
		return pk, nil
	}
	return nil, fmt.Errorf("%w: encryption key %T, want X25519", ErrUnknownAlg, k)
}

// Fingerprint is the SHA-256 of the key's SubjectPublicKeyInfo.
func (p *PublicKey) Fingerprint() [32]byte { return sha256.Sum256(p.DER) }

// AlgOf tells which Alg a signer's key signs with.
func AlgOf(s crypto.Signer) (Alg, error) {
	switch k := s.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ES256, nil
		}
	case ed25519.PublicKey:
		return EdDSA, nil
	}
	return "", fmt.Errorf("%w: signer key %T", ErrUnknownAlg, s.Public())
}

// MarshalPublicKey returns the DER SubjectPublicKeyInfo of a signer's key.
func MarshalPublicKey(s crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil, fmt.Errorf("ledger: marshal public key: %w", err)
	}
	return der, nil
}
