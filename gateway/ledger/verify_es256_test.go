package ledger

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"testing"
)

// stdES256 is how verifySig checked an ES256 signature before it built
// the DER form itself: r and s as big.Ints through ecdsa.Verify.
func stdES256(k *ecdsa.PublicKey, msg, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	d := sha256.Sum256(msg)
	return ecdsa.Verify(k, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

// es256Cases are raw signatures that exercise the DER encoding: valid
// ones (a few thousand, so that r or s with leading zero bytes and with
// the top bit set both occur), zero, one, the group order and above, and
// bit flips.
func es256Cases(t testing.TB) (*ecdsa.PublicKey, []byte, [][]byte) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("es256 der")
	d := sha256.Sum256(msg)
	var sigs [][]byte
	var leading, high int
	for i := 0; i < 3000; i++ {
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		if sig[0] == 0 || sig[32] == 0 {
			leading++
		}
		if sig[0]&0x80 != 0 || sig[32]&0x80 != 0 {
			high++
		}
		sigs = append(sigs, sig)
	}
	if leading == 0 || high == 0 {
		t.Fatalf("3000 signatures: %d with a leading zero byte, %d with the top bit set", leading, high)
	}
	n := elliptic.P256().Params().N
	good := sigs[0]
	num := func(v *big.Int) []byte { return v.FillBytes(make([]byte, 32)) }
	for _, r := range [][]byte{make([]byte, 32), num(big.NewInt(1)), num(n), num(new(big.Int).Sub(n, big.NewInt(1))), num(new(big.Int).Add(n, big.NewInt(1)))} {
		sigs = append(sigs, append(append([]byte{}, r...), good[32:]...), append(append([]byte{}, good[:32]...), r...))
	}
	ones := make([]byte, 64)
	for i := range ones {
		ones[i] = 0xff
	}
	sigs = append(sigs, ones, make([]byte, 64))
	for i := 0; i < 64; i++ {
		flip := append([]byte{}, good...)
		flip[i] ^= 1 << (i % 8)
		sigs = append(sigs, flip)
	}
	return &k.PublicKey, msg, sigs
}

// TestES256AsBigInt: the DER form verifySig builds gives the verdict
// ecdsa.Verify gives on r and s as big.Ints, for every case.
func TestES256AsBigInt(t *testing.T) {
	k, msg, sigs := es256Cases(t)
	pub := &PublicKey{Alg: ES256, Key: k}
	valid := 0
	for _, sig := range sigs {
		want := stdES256(k, msg, sig)
		if got := verifySig(pub, msg, sig, true); got != want {
			t.Fatalf("sig %x: verified %v, ecdsa.Verify says %v", sig, got, want)
		}
		if want {
			valid++
		}
	}
	if valid < 3000 || valid == len(sigs) {
		t.Fatalf("%d of %d cases valid: the cases do not test both verdicts", valid, len(sigs))
	}
}

func FuzzES256AsBigInt(f *testing.F) {
	k, msg, sigs := es256Cases(f)
	for _, sig := range sigs[len(sigs)-80:] {
		f.Add(msg, sig)
	}
	f.Add(msg, sigs[0][:63])
	pub := &PublicKey{Alg: ES256, Key: k}
	f.Fuzz(func(t *testing.T, m, sig []byte) {
		want := stdES256(k, m, sig)
		if got := verifySig(pub, m, sig, true); got != want {
			t.Fatalf("msg %x sig %x: verified %v, ecdsa.Verify says %v", m, sig, got, want)
		}
	})
}
