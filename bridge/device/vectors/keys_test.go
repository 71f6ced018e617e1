package vectors

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
)

// key is a named key of the vectors, derived from its name so that the
// vectors regenerate identically: the private scalar or seed is
// SHA-256("ledgergate vectors " + name).
type key struct {
	name string
	alg  string // ES256, EdDSA, X25519
	ec   *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
	x    *ecdh.PrivateKey
	raw  []byte // scalar (ES256, X25519) or seed (EdDSA)
}

func newKey(name, alg string) *key {
	raw := sha256.Sum256([]byte("ledgergate vectors " + name))
	k := &key{name: name, alg: alg, raw: raw[:]}
	var err error
	switch alg {
	case "ES256":
		k.ec, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), raw[:])
	case "EdDSA":
		k.ed = ed25519.NewKeyFromSeed(raw[:])
	case "X25519":
		k.x, err = ecdh.X25519().NewPrivateKey(raw[:])
	}
	if err != nil {
		panic("vectors: invariant: key " + name + ": " + err.Error())
	}
	return k
}

// det is an ECDSA key that signs with RFC 6979 deterministic nonces
// whatever random source its caller passes.
type det struct{ *ecdsa.PrivateKey }

func (d det) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil { // go-cose passes none; ES256 and votes hash with SHA-256
		opts = crypto.SHA256
	}
	return d.PrivateKey.Sign(nil, digest, opts)
}

// signer is the key as a deterministic crypto.Signer (nil for X25519).
func (k *key) signer() crypto.Signer {
	switch {
	case k.ec != nil:
		return det{k.ec}
	case k.ed != nil:
		return k.ed
	}
	return nil
}

// plain is the key as a plain crypto.Signer, for the spec-only builder.
func (k *key) plain() crypto.Signer {
	if k.ec != nil {
		return k.ec
	}
	return k.ed
}

func (k *key) private() any {
	switch {
	case k.ec != nil:
		return k.ec
	case k.ed != nil:
		return k.ed
	}
	return k.x
}

func (k *key) public() any {
	switch {
	case k.ec != nil:
		return k.ec.Public()
	case k.ed != nil:
		return k.ed.Public()
	}
	return k.x.PublicKey()
}

// spki is the DER SubjectPublicKeyInfo of the key.
func (k *key) spki() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.public())
	if err != nil {
		panic("vectors: invariant: " + err.Error())
	}
	return der
}

func (k *key) pkcs8() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.private())
	if err != nil {
		panic("vectors: invariant: " + err.Error())
	}
	return der
}

// json is the key's entry in keys.json.
func (k *key) json() map[string]any {
	privName := "scalar"
	if k.alg == "EdDSA" {
		privName = "seed"
	}
	return map[string]any{
		"name": k.name, "alg": k.alg,
		privName: hex.EncodeToString(k.raw),
		"pkcs8":  hex.EncodeToString(k.pkcs8()),
		"spki":   hex.EncodeToString(k.spki()),
	}
}
