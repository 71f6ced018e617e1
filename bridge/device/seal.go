package device

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Sealing: a message (a configuration, or anything one device sends
// another) is encrypted once with a fresh content key, and the content key
// is sealed with HPKE (RFC 9180, base mode) to each recipient's encryption
// key. The suite is fixed: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-256-GCM; the content is AES-256-GCM too.

// sealedSuite names the one suite in a sealed message, for agility.
const sealedSuite = 1

// hpkeInfo binds the HPKE context to this use.
var hpkeInfo = []byte("ledgergate sealed v1")

// maxRecipients bounds a sealed message's recipients (a group's members
// and the operators).
const maxRecipients = 10_000

// sealed is a sealed message as CBOR.
type sealed struct {
	Suite      uint16      `cbor:"1,keyasint"`
	Recipients []recipient `cbor:"2,keyasint"`
	Nonce      []byte      `cbor:"3,keyasint"`
	Ciphertext []byte      `cbor:"4,keyasint"`
}

// recipient is the content key sealed to one encryption key.
type recipient struct {
	Key     []byte `cbor:"1,keyasint"` // SHA-256 of the recipient's SubjectPublicKeyInfo
	Wrapped []byte `cbor:"2,keyasint"` // HPKE enc || ciphertext of the content key
}

// ErrNotRecipient is returned by Open when the message was not sealed to
// the key.
var ErrNotRecipient = errors.New("device: not sealed to this key")

// ErrSealed reports a sealed message that does not decode or decrypt.
var ErrSealed = errors.New("device: malformed sealed message")

func suite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES256GCM()
}

// Seal encrypts plaintext so that the holder of the private key of any of
// the encryption keys (X25519 SubjectPublicKeyInfo, as enrolled) can read
// it. Duplicate keys are sealed to once.
func Seal(encKeys [][]byte, plaintext []byte) ([]byte, error) {
	if len(encKeys) == 0 {
		return nil, errors.New("device: seal: no recipients")
	}
	if len(encKeys) > maxRecipients {
		return nil, fmt.Errorf("device: seal: %d recipients, at most %d", len(encKeys), maxRecipients)
	}
	cek := make([]byte, 32)
	rand.Read(cek)
	_, kdf, aead := suite()
	msg := sealed{Suite: sealedSuite}
	seen := map[[32]byte]bool{}
	for _, der := range encKeys {
		pub, err := ledger.ParseEncKey(der)
		if err != nil {
			return nil, fmt.Errorf("device: seal: %w", err)
		}
		fp := sha256.Sum256(der)
		if seen[fp] {
			continue
		}
		seen[fp] = true
		hp, err := hpke.NewDHKEMPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("device: seal: %w", err)
		}
		wrapped, err := hpke.Seal(hp, kdf, aead, hpkeInfo, cek)
		if err != nil {
			return nil, fmt.Errorf("device: seal: %w", err)
		}
		msg.Recipients = append(msg.Recipients, recipient{Key: fp[:], Wrapped: wrapped})
	}
	gcm, err := contentAEAD(cek)
	if err != nil {
		return nil, err
	}
	msg.Nonce = make([]byte, gcm.NonceSize())
	rand.Read(msg.Nonce)
	msg.Ciphertext = gcm.Seal(nil, msg.Nonce, plaintext, hpkeInfo)
	return cborEnc.Marshal(msg)
}

// Open decrypts a sealed message with the private encryption key.
func Open(key *ecdh.PrivateKey, msg []byte) ([]byte, error) {
	var m sealed
	if err := cborDec.Unmarshal(msg, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	if m.Suite != sealedSuite {
		return nil, fmt.Errorf("%w: suite %d", ErrSealed, m.Suite)
	}
	der, err := x509.MarshalPKIXPublicKey(key.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("device: open: %w", err)
	}
	fp := sha256.Sum256(der)
	var wrapped []byte
	for _, r := range m.Recipients {
		if bytes.Equal(r.Key, fp[:]) {
			wrapped = r.Wrapped
			break
		}
	}
	if wrapped == nil {
		return nil, ErrNotRecipient
	}
	_, kdf, aead := suite()
	hk, err := hpke.NewDHKEMPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("device: open: %w", err)
	}
	cek, err := hpke.Open(hk, kdf, aead, hpkeInfo, wrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: content key: %v", ErrSealed, err)
	}
	gcm, err := contentAEAD(cek)
	if err != nil {
		return nil, err
	}
	if len(m.Nonce) != gcm.NonceSize() {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrSealed, len(m.Nonce))
	}
	pt, err := gcm.Open(nil, m.Nonce, m.Ciphertext, hpkeInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: content: %v", ErrSealed, err)
	}
	return pt, nil
}

func contentAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: content key of %d bytes", ErrSealed, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return cipher.NewGCM(b)
}

// cborEnc and cborDec code sealed messages: deterministic, and bounded
// against hostile input.
var (
	cborEnc = must(cbor.CoreDetEncOptions().EncMode())
	cborDec = must(cbor.DecOptions{
		DupMapKey: cbor.DupMapKeyEnforcedAPF, IndefLength: cbor.IndefLengthForbidden,
		MaxNestedLevels: 8, MaxArrayElements: maxRecipients, MaxMapPairs: 16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode())
)

func must[T any](v T, err error) T {
	if err != nil {
		panic("device: invariant: cbor mode: " + err.Error())
	}
	return v
}

// GenerateEncKey makes a new encryption key (X25519).
func GenerateEncKey() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }

// EncPublicKey is the SubjectPublicKeyInfo of an encryption key, as
// enrolled.
func EncPublicKey(k *ecdh.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("device: encode encryption key: %w", err)
	}
	return der, nil
}

// WriteEncKeyPair writes an encryption key to path as PKCS#8 PEM (mode
// 0600) and its public key to path+".pub". It refuses to overwrite.
func WriteEncKeyPair(path string, k *ecdh.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("device: encode encryption key: %w", err)
	}
	pub, err := EncPublicKey(k)
	if err != nil {
		return err
	}
	if err := writeNew(path, 0o600, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return err
	}
	return writeNew(path+".pub", 0o644, &pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

// LoadEncKey reads an encryption key written by WriteEncKeyPair.
func LoadEncKey(path string) (*ecdh.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("device: encryption key %s: %w", path, err)
	}
	ek, ok := k.(*ecdh.PrivateKey)
	if !ok || ek.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("device: encryption key %s: %T, want X25519", path, k)
	}
	return ek, nil
}

// LoadEncPublicKey reads an encryption public key (X25519
// SubjectPublicKeyInfo PEM) and returns its DER.
func LoadEncPublicKey(path string) ([]byte, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	if _, err := ledger.ParseEncKey(der); err != nil {
		return nil, fmt.Errorf("device: %s: %w", path, err)
	}
	return der, nil
}
