package ledger

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"math/big"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
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

// BenchmarkVerify is one signature check of a decoded tx, on one core:
// Verify, go-cose with the standard library as Verify was before
// verify.go, the standard library alone over the same Sig_structure, and
// for EdDSA curve25519-voi without the expanded key.
func BenchmarkVerify(b *testing.B) {
	for name, key := range map[string]crypto.Signer{"ES256": newP256(b), "EdDSA": fixedEd25519()} {
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
		tbs, sig := tx.env.toBeSigned(), tx.env.sig
		for impl, verify := range map[string]func() bool{
			"ledger":  func() bool { return tx.Verify(pk) == nil },
			"go-cose": func() bool { return goCOSEVerify(tx.env, pk) == nil },
			"stdlib": func() bool {
				if k, ok := pk.Key.(ed25519.PublicKey); ok {
					return ed25519.Verify(k, tbs, sig)
				}
				d := sha256.Sum256(tbs)
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				return ecdsa.Verify(pk.Key.(*ecdsa.PublicKey), d[:], r, s)
			},
			"voi-unexpanded": func() bool {
				// curve25519-voi as Verify calls it, but expanding the
				// key on every call: what keeping it expanded saves.
				k, ok := pk.Key.(ed25519.PublicKey)
				return ok && voi.VerifyWithOptions(voi.PublicKey(k), tbs, sig, ed25519Opts)
			},
		} {
			if impl == "voi-unexpanded" && name != "EdDSA" {
				continue
			}
			b.Run(name+"/"+impl, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if !verify() {
						b.Fatal("does not verify")
					}
				}
			})
		}
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
