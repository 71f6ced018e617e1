package ledger

import (
	"crypto"
	"testing"
)

func BenchmarkDecodeTx(b *testing.B) {
	env, err := SignTx(newP256(b), "dev-1", record("dev-1", 1))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(env)))
	for b.Loop() {
		if _, err := DecodeTx(env, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is one signature check of a decoded tx, on one core.
func BenchmarkVerify(b *testing.B) {
	for name, key := range map[string]crypto.Signer{"ES256": newP256(b), "EdDSA": fixedEd25519()} {
		b.Run(name, func(b *testing.B) {
			env, err := SignTx(key, "dev-1", record("dev-1", 1))
			if err != nil {
				b.Fatal(err)
			}
			tx, err := DecodeTx(env, 0)
			if err != nil {
				b.Fatal(err)
			}
			pk, err := ParsePublicKey(pubDER(b, key))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := tx.Verify(pk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyParallel is signature checking on every core: the
// ceiling for records/s before any other work.
func BenchmarkVerifyParallel(b *testing.B) {
	for name, key := range map[string]crypto.Signer{"ES256": newP256(b), "EdDSA": fixedEd25519()} {
		b.Run(name, func(b *testing.B) {
			env, err := SignTx(key, "dev-1", record("dev-1", 1))
			if err != nil {
				b.Fatal(err)
			}
			pk, err := ParsePublicKey(pubDER(b, key))
			if err != nil {
				b.Fatal(err)
			}
			b.RunParallel(func(pb *testing.PB) {
				tx, err := DecodeTx(env, 0)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if err := tx.Verify(pk); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
		})
	}
}
