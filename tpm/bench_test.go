package tpm

import (
	"crypto"
	"crypto/sha256"
	"testing"
)

// BenchmarkSwtpmSign measures TPM2_Sign through swtpm over its Unix socket:
// "password" is a key without auth value (one command per signature),
// "salted" a key with one (StartAuthSession, then Sign in a salted,
// encrypting HMAC session). It reports signatures per second; ns/op is the
// latency of one signature.
func BenchmarkSwtpmSign(b *testing.B) {
	for _, bc := range []struct {
		name string
		auth []byte
	}{
		{"password", nil},
		{"salted", []byte("bench-auth")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp := newSwtpm(b).open(bc.auth)
			if _, err := tp.CreateKey(); err != nil {
				b.Fatal(err)
			}
			s, err := tp.Signer()
			if err != nil {
				b.Fatal(err)
			}
			d := sha256.Sum256([]byte("bench"))
			for b.Loop() {
				if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sig/s")
		})
	}
}
