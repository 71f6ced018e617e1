package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// FuzzNodePublic feeds public areas, as a TPM (or whatever answers at the
// device) returns them from TPM2_ReadPublic, to the decoding and checks
// Signer and CreateKey rely on. Nothing may panic, and whatever passes as a
// node key must give a usable P-256 public key.
func FuzzNodePublic(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	good := nodeKeyTemplate()
	good.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: k.X.FillBytes(make([]byte, 32))},
		Y: tpm2.TPM2BECCParameter{Buffer: k.Y.FillBytes(make([]byte, 32))},
	})
	f.Add(tpm2.Marshal(good))
	f.Add(tpm2.Marshal(tpm2.ECCSRKTemplate))
	f.Add(tpm2.Marshal(tpm2.RSASRKTemplate))
	f.Add(tpm2.Marshal(nodeKeyTemplate()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 { // TPM_PT_MAX_RESPONSE_SIZE on common TPMs
			return
		}
		pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
		if err != nil {
			return
		}
		tpm2.ObjectName(pub)
		if checkNodeKey(pub) != nil {
			return
		}
		key, err := eccPublicKey(pub)
		if err != nil || key.Curve != elliptic.P256() {
			t.Fatalf("accepted as a node key, yet no P-256 key: %v", err)
		}
	})
}
