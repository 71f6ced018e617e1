package device

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// GenerateKey makes a new key for alg: ES256 (P-256) or EdDSA (Ed25519).
func GenerateKey(alg ledger.Alg) (crypto.Signer, error) {
	switch alg {
	case ledger.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ledger.EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("device: %w: %q", ledger.ErrUnknownAlg, string(alg))
}

// ParseAlg reads an algorithm name as the CLI takes it: es256 or ed25519.
func ParseAlg(s string) (ledger.Alg, error) {
	switch s {
	case "es256", "ES256", "p256", "P-256":
		return ledger.ES256, nil
	case "ed25519", "Ed25519", "eddsa", "EdDSA":
		return ledger.EdDSA, nil
	}
	return "", fmt.Errorf("device: unknown algorithm %q: want es256 or ed25519", s)
}

// WriteKeyPair writes key to path as PKCS#8 PEM (mode 0600) and its public
// key to path+".pub" as SubjectPublicKeyInfo PEM. It refuses to overwrite.
func WriteKeyPair(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("device: encode key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("device: encode public key: %w", err)
	}
	if err := writeNew(path, 0o600, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return err
	}
	return writeNew(path+".pub", 0o644, &pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

func writeNew(path string, mode os.FileMode, b *pem.Block) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("device: create %s: %w", path, err)
	}
	if err := pem.Encode(f, b); err != nil {
		f.Close()
		return fmt.Errorf("device: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("device: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("device: close %s: %w", path, err)
	}
	return nil
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("device: read %s: %w", path, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("device: %s: not a PEM %q block", path, typ)
	}
	return blk.Bytes, nil
}

// LoadKey reads a PKCS#8 PEM private key (P-256 or Ed25519).
func LoadKey(path string) (crypto.Signer, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("device: key %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("device: key %s: %T cannot sign", path, k)
	}
	if _, err := ledger.AlgOf(s); err != nil {
		return nil, fmt.Errorf("device: key %s: %w", path, err)
	}
	return s, nil
}

// LoadPublicKey reads a SubjectPublicKeyInfo PEM and returns its DER.
func LoadPublicKey(path string) ([]byte, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	if _, err := ledger.ParsePublicKey(der); err != nil {
		return nil, fmt.Errorf("device: %s: %w", path, err)
	}
	return der, nil
}
