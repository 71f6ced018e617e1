package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// Signer is a node identity key.
type Signer interface {
	crypto.Signer
	// Hardware reports whether the private key is held by hardware.
	Hardware() bool
	// Describe says where the key lives, for logs and status.
	Describe() string
}

// SoftwareSigner is an ECDSA P-256 key held in memory, loaded from a file.
type SoftwareSigner struct {
	key  *ecdsa.PrivateKey
	path string
}

var _ Signer = (*SoftwareSigner)(nil)

// Public returns the public key.
func (s *SoftwareSigner) Public() crypto.PublicKey { return s.key.Public() }

// Sign signs digest (ASN.1 DER signature).
func (s *SoftwareSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.key.Sign(r, digest, opts)
}

// Hardware is false: this key is in memory and in a file.
func (s *SoftwareSigner) Hardware() bool { return false }

// Describe names the key file.
func (s *SoftwareSigner) Describe() string {
	return "software key, not hardware-backed (" + s.path + ")"
}

// ErrNoKey reports that a key file does not exist.
var ErrNoKey = errors.New("tpm: no key file")

// LoadSoftwareKey reads a PKCS#8 PEM ECDSA P-256 key.
func LoadSoftwareKey(path string) (*SoftwareSigner, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: read key %s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("tpm: key %s: not a PKCS#8 PEM \"PRIVATE KEY\"", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tpm: key %s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("tpm: key %s: node keys must be ECDSA P-256", path)
	}
	return &SoftwareSigner{key: ec, path: path}, nil
}

// CreateSoftwareKey generates a P-256 key and writes it to path (mode
// 0600). It refuses to overwrite an existing file.
func CreateSoftwareKey(path string) (*SoftwareSigner, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tpm: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("tpm: encode key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tpm: create key %s: %w", path, err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("tpm: write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("tpm: sync key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("tpm: close key %s: %w", path, err)
	}
	return &SoftwareSigner{key: k, path: path}, nil
}
