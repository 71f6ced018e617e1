package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
)

// The Ed25519 rule of docs/protocol.md (section 4, EdDSA) written out
// naively: S below the group order L, any decodable encoding of A,
// k = SHA-512(R || A || M) mod L, and [S]B - [k]A encoded byte for byte
// equal to R. It uses constant-time multiplications and big.Int
// arithmetic, none of the vartime double-scalar code verifySig runs.

// groupOrder is L = 2^252 + 27742317777372353535851937790883648493.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

// leInt reads a little-endian integer.
func leInt(b []byte) *big.Int {
	be := slices.Clone(b)
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

// leBytes writes x below 2^256 as 32 little-endian bytes.
func leBytes(x *big.Int) []byte {
	b := x.FillBytes(make([]byte, 32))
	slices.Reverse(b)
	return b
}

// refScalar is x mod L as a scalar.
func refScalar(x *big.Int) *scalar.Scalar {
	s, err := scalar.NewFromCanonicalBytes(leBytes(new(big.Int).Mod(x, groupOrder)))
	if err != nil {
		panic("ledger: invariant: a number below L is a canonical scalar: " + err.Error())
	}
	return s
}

// refPoint decodes a point from any of its encodings, canonical or not.
func refPoint(enc []byte) (*curve.EdwardsPoint, bool) {
	var c curve.CompressedEdwardsY
	if _, err := c.SetBytes(enc); err != nil {
		return nil, false
	}
	var p curve.EdwardsPoint
	if _, err := p.SetCompressedY(&c); err != nil {
		return nil, false
	}
	return &p, true
}

// refEncode is p's canonical encoding.
func refEncode(p *curve.EdwardsPoint) []byte {
	var c curve.CompressedEdwardsY
	c.SetEdwardsPoint(p)
	return c[:]
}

// refBase is the Ed25519 base point B.
func refBase() *curve.EdwardsPoint {
	b, _ := refPoint(curve.ED25519_BASEPOINT_COMPRESSED[:])
	return b
}

// refK is k = SHA-512(R || A || M) mod L.
func refK(r, pub, msg []byte) *big.Int {
	h := sha512.New()
	h.Write(r)
	h.Write(pub)
	h.Write(msg)
	return new(big.Int).Mod(leInt(h.Sum(nil)), groupOrder)
}

// refVerify is the rule: does sig verify msg under pub.
func refVerify(pub, msg, sig []byte) bool {
	if len(pub) != 32 || len(sig) != 64 {
		return false
	}
	s := leInt(sig[32:])
	if s.Cmp(groupOrder) >= 0 {
		return false
	}
	a, ok := refPoint(pub)
	if !ok {
		return false
	}
	var sb, ka, r curve.EdwardsPoint
	sb.Mul(refBase(), refScalar(s))
	ka.Mul(a, refScalar(refK(sig[:32], pub, msg)))
	r.Sub(&sb, &ka)
	return bytes.Equal(refEncode(&r), sig[:32])
}

// TestEd25519Rule checks verifySig, crypto/ed25519 and the naive rule
// above against each other on cases built for each choice RFC 8032
// leaves open, and checks that each kind of case gets the verdict the
// protocol names: so a change of rule in any of the three fails here.
func TestEd25519Rule(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'e', 'd', '2', '5', '5', '1', '9'}))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	type edRuleCase struct {
		kind          string
		pub, msg, sig []byte
	}
	var cases []edRuleCase
	add := func(kind string, pub, msg, sig []byte) {
		cases = append(cases, edRuleCase{kind, pub, msg, sig})
	}

	// RFC 8032 section 7.1, TEST 1, 2 and 3.
	for _, v := range []struct{ seed, pub, msg, sig string }{
		{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
		{"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
			"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
	} {
		seed, _ := hex.DecodeString(v.seed)
		pub, _ := hex.DecodeString(v.pub)
		msg, _ := hex.DecodeString(v.msg)
		sig, _ := hex.DecodeString(v.sig)
		k := ed25519.NewKeyFromSeed(seed)
		if !bytes.Equal(k.Public().(ed25519.PublicKey), pub) || !bytes.Equal(ed25519.Sign(k, msg), sig) {
			t.Fatalf("RFC 8032 vector %s: key or signature differs from crypto/ed25519's", v.pub)
		}
		add("rfc8032", pub, msg, sig)
	}

	// Random keys and messages, signed, and each with one bit flipped
	// in the key, the message or the signature.
	type signer struct {
		pub []byte
		a   *big.Int // the secret scalar: A = [a]B
		key ed25519.PrivateKey
	}
	var signers []signer
	for range 32 {
		k := ed25519.NewKeyFromSeed(randBytes(ed25519.SeedSize))
		h := sha512.Sum512(k.Seed())
		h[0] &= 248
		h[31] &= 127
		h[31] |= 64
		signers = append(signers, signer{pub: k.Public().(ed25519.PublicKey), a: leInt(h[:32]), key: k})
	}
	for _, s := range signers {
		msg := randBytes(rng.IntN(300))
		sig := ed25519.Sign(s.key, msg)
		add("valid", s.pub, msg, sig)
		for part := range 3 {
			flipped := [][]byte{bytes.Clone(s.pub), bytes.Clone(msg), bytes.Clone(sig)}
			f := flipped[part]
			if len(f) == 0 {
				continue
			}
			bit := rng.IntN(8 * len(f))
			f[bit/8] ^= 1 << (bit % 8)
			add("bit flipped", flipped[0], flipped[1], flipped[2])
		}
		// S + L: the same equation mod L, not canonical.
		s2 := new(big.Int).Add(leInt(sig[32:]), groupOrder)
		add("S >= L", s.pub, msg, append(bytes.Clone(sig[:32]), leBytes(s2)...))
		// S with its top bit set.
		top := bytes.Clone(sig)
		top[63] |= 0x80
		add("S >= L", s.pub, msg, top)
		// Wrong lengths.
		add("wrong length", s.pub, msg, sig[:63])
		add("wrong length", s.pub, msg, append(bytes.Clone(sig), 0))
		add("wrong length", s.pub[:31], msg, sig)
		add("wrong length", append(bytes.Clone(s.pub), 0), msg, sig)
		// A small-order R: R the identity, S = k·a, so [S]B - [k]A = O.
		id := refEncode(new(curve.EdwardsPoint).Identity())
		k := refK(id, s.pub, msg)
		sR := new(big.Int).Mod(new(big.Int).Mul(k, s.a), groupOrder)
		add("small-order R", s.pub, msg, append(bytes.Clone(id), leBytes(sR)...))
	}

	// The eight points of small order, and their encodings.
	t8, ok := refPoint(mustHex(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"))
	if !ok || !t8.IsSmallOrder() {
		t.Fatal("the order-8 point does not decode")
	}
	var torsion [][]byte
	p := new(curve.EdwardsPoint).Identity()
	for range 8 {
		torsion = append(torsion, bytes.Clone(refEncode(p)))
		p.Add(p, t8)
	}
	// Small-order A with S = 0: verifies when R encodes -[k]A.
	for _, a := range torsion {
		for _, r := range torsion {
			for m := range 4 {
				add("small-order A", a, fmt.Appendf(nil, "m%d", m), append(bytes.Clone(r), make([]byte, 32)...))
			}
		}
	}
	// Non-canonical encodings (y >= p, which fits for y < 19), with
	// either sign bit: as A with each small-order R and S = 0, and as R
	// with the identity as A.
	var nonCanonical [][]byte
	for y := range 19 {
		for _, sign := range []byte{0, 0x80} {
			enc := leBytes(new(big.Int).Add(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19)), big.NewInt(int64(y))))
			enc[31] |= sign
			if _, ok := refPoint(enc); ok {
				nonCanonical = append(nonCanonical, enc)
			}
		}
	}
	if len(nonCanonical) == 0 {
		t.Fatal("no non-canonical encoding decodes")
	}
	for _, a := range nonCanonical {
		for _, r := range torsion {
			for m := range 2 {
				add("non-canonical A", a, fmt.Appendf(nil, "m%d", m), append(bytes.Clone(r), make([]byte, 32)...))
			}
		}
	}
	for _, r := range nonCanonical {
		add("non-canonical R", torsion[0], []byte("m"), append(bytes.Clone(r), make([]byte, 32)...))
	}
	// Mixed-order A = [a]B + T8, signed as an RFC 8032 signer would with
	// a: the cofactorless equation holds only when [k]T8 = O.
	for i, s := range signers[:4] {
		var ab, mixed curve.EdwardsPoint
		ab.Mul(refBase(), refScalar(s.a))
		mixed.Add(&ab, t8)
		pub := bytes.Clone(refEncode(&mixed))
		for m := range 16 {
			msg := fmt.Appendf(nil, "mixed %d %d", i, m)
			r := new(big.Int).Mod(leInt(randBytes(64)), groupOrder)
			var rb curve.EdwardsPoint
			rb.Mul(refBase(), refScalar(r))
			renc := bytes.Clone(refEncode(&rb))
			k := refK(renc, pub, msg)
			sv := new(big.Int).Mod(new(big.Int).Add(r, new(big.Int).Mul(k, s.a)), groupOrder)
			add("mixed-order A", pub, msg, append(renc, leBytes(sv)...))
		}
	}
	// A that is not a point: y whose x^2 has no root.
	for y := int64(2); y < 40; y++ {
		enc := leBytes(big.NewInt(y))
		if _, ok := refPoint(enc); !ok {
			add("A not a point", enc, []byte("m"), append(bytes.Clone(torsion[0]), make([]byte, 32)...))
		}
	}

	verdicts := map[string][2]int{} // kind -> refused, accepted
	for i, c := range cases {
		want := refVerify(c.pub, c.msg, c.sig)
		got := verifySig(&PublicKey{Alg: EdDSA, Key: ed25519.PublicKey(c.pub)}, c.msg, c.sig, true)
		if got != want {
			t.Errorf("case %d (%s) pub %x msg %x sig %x: verified %v, the rule says %v", i, c.kind, c.pub, c.msg, c.sig, got, want)
		}
		if len(c.pub) == ed25519.PublicKeySize { // crypto/ed25519 panics on other lengths
			if std := ed25519.Verify(c.pub, c.msg, c.sig); std != want {
				t.Errorf("case %d (%s) pub %x msg %x sig %x: crypto/ed25519 says %v, the rule says %v", i, c.kind, c.pub, c.msg, c.sig, std, want)
			}
		}
		v := verdicts[c.kind]
		if want {
			v[1]++
		} else {
			v[0]++
		}
		verdicts[c.kind] = v
	}
	// What the protocol names, kind by kind: "all" accepted, "none", or
	// "some" (each verdict at least once).
	for kind, expect := range map[string]string{
		"rfc8032":         "all",
		"valid":           "all",
		"small-order R":   "all",
		"bit flipped":     "none",
		"S >= L":          "none",
		"wrong length":    "none",
		"non-canonical R": "none",
		"A not a point":   "none",
		"small-order A":   "some",
		"non-canonical A": "some",
		"mixed-order A":   "some",
	} {
		v := verdicts[kind]
		refused, accepted := v[0], v[1]
		ok := map[string]bool{"all": refused == 0 && accepted > 0, "none": accepted == 0 && refused > 0, "some": accepted > 0 && refused > 0}[expect]
		if !ok {
			t.Errorf("%s: %d accepted, %d refused; want %s accepted", kind, accepted, refused, expect)
		}
	}
	t.Logf("%d cases: %v (refused, accepted)", len(cases), verdicts)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
