package ledger

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/veraison/go-cose"
)

// edCase is one Ed25519 verification: a key, a message and a signature.
type edCase struct {
	name          string
	pub, msg, sig []byte
}

// edCorpus reads the edge cases of testdata/ed25519 (see its README).
func edCorpus(t testing.TB) []edCase {
	t.Helper()
	read := func(name string, v any) {
		t.Helper()
		f, err := os.Open(filepath.Join("testdata", "ed25519", name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.NewDecoder(zr).Decode(v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	unhex := func(s string) []byte {
		t.Helper()
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var out []edCase
	var spec []struct{ Message, PubKey, Signature string }
	read("speccheck_cases.json.gz", &spec)
	for _, c := range spec {
		out = append(out, edCase{"speccheck", unhex(c.PubKey), unhex(c.Message), unhex(c.Signature)})
	}
	var zip [][2]string
	read("zip215.json.gz", &zip)
	for _, c := range zip {
		out = append(out, edCase{"zip215", unhex(c[0]), []byte("Zcash"), unhex(c[1])})
	}
	var wp struct {
		TestGroups []struct {
			Key   struct{ Pk string }
			Tests []struct {
				TcID     int `json:"tcId"`
				Msg, Sig string
			}
		}
	}
	read("eddsa_test.json.gz", &wp)
	for _, g := range wp.TestGroups {
		for _, c := range g.Tests {
			out = append(out, edCase{"wycheproof", unhex(g.Key.Pk), unhex(c.Msg), unhex(c.Sig)})
		}
	}
	var cctv []struct{ A, R, S, M string }
	read("ed25519vectors.json.gz", &cctv)
	for _, c := range cctv {
		out = append(out, edCase{"cctv", unhex(c.A), []byte(c.M), append(unhex(c.R), unhex(c.S)...)})
	}
	return out
}

func TestEd25519AsStdlib(t *testing.T) {
	cases := edCorpus(t)
	accepted, cofactoredDiffers := 0, 0
	cofactored := &voi.Options{Verify: voi.VerifyOptionsFIPS_186_5}
	for i, c := range cases {
		if len(c.pub) != ed25519.PublicKeySize {
			continue // crypto/ed25519 panics; ParsePublicKey never makes such a key
		}
		want := ed25519.Verify(c.pub, c.msg, c.sig)
		pk := &PublicKey{Alg: EdDSA, Key: ed25519.PublicKey(c.pub)}
		for _, expand := range []bool{false, true} { // the key as it is, then expanded
			if got := verifySig(pk, c.msg, c.sig, expand); got != want {
				t.Errorf("case %d (%s) pub %x sig %x, expand %v: verified %v, crypto/ed25519 says %v", i, c.name, c.pub, c.sig, expand, got, want)
			}
		}
		if got := voi.VerifyWithOptions(voi.PublicKey(c.pub), c.msg, c.sig, ed25519Opts); got != want {
			t.Errorf("case %d (%s) without an expanded key: verified %v, crypto/ed25519 says %v", i, c.name, got, want)
		}
		if want {
			accepted++
		}
		if voi.VerifyWithOptions(voi.PublicKey(c.pub), c.msg, c.sig, cofactored) != want {
			cofactoredDiffers++
		}
	}
	// The corpus must tell the rules apart, or agreeing on it says little:
	// it has signatures crypto/ed25519 accepts and refuses, and some on
	// which the cofactored equation (RFC 8032's other choice, the one batch
	// verification needs) gives the other verdict.
	if accepted == 0 || accepted == len(cases) || cofactoredDiffers == 0 {
		t.Fatalf("%d cases, %d accepted, %d where cofactored verification differs: the corpus does not discriminate", len(cases), accepted, cofactoredDiffers)
	}
	t.Logf("%d cases, %d accepted, %d where cofactored verification would differ", len(cases), accepted, cofactoredDiffers)
}

// FuzzVerifyAsStdlib holds Ed25519 verification to crypto/ed25519's
// verdict on any key, message and signature.
func FuzzVerifyAsStdlib(f *testing.F) {
	for _, c := range edCorpus(f)[:64] {
		f.Add(c.pub, c.msg, c.sig)
	}
	k := fixedEd25519()
	pub, sig := []byte(k.Public().(ed25519.PublicKey)), ed25519.Sign(k, []byte("m"))
	f.Add(pub[:31], []byte("m"), sig)
	f.Add(append(bytes.Clone(pub), 0), []byte("m"), sig)
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(msg) > 1<<12 {
			return
		}
		pk := &PublicKey{Alg: EdDSA, Key: ed25519.PublicKey(pub)}
		if len(pub) != ed25519.PublicKeySize {
			// crypto/ed25519 panics; nothing verifies with such a key.
			if verifySig(pk, msg, sig, true) {
				t.Fatalf("pub %x of %d bytes msg %x sig %x: verified", pub, len(pub), msg, sig)
			}
			return
		}
		want := ed25519.Verify(pub, msg, sig)
		if got := verifySig(pk, msg, sig, true); got != want {
			t.Fatalf("pub %x msg %x sig %x: verified %v, crypto/ed25519 says %v", pub, msg, sig, got, want)
		}
	})
}

// goCOSEVerify is how Verify checked a signature before verify.go: with
// go-cose, which builds the Sig_structure itself.
func goCOSEVerify(e *envelope, pub *PublicKey) error {
	if pub.Alg != e.alg {
		return ErrBadSignature
	}
	calg, err := e.alg.coseAlg()
	if err != nil {
		return err
	}
	v, err := cose.NewVerifier(calg, pub.Key)
	if err != nil {
		return err
	}
	m := cose.Sign1Message{
		Headers:   cose.Headers{Protected: cose.ProtectedHeader{cose.HeaderLabelAlgorithm: calg}, RawProtected: e.protected, RawUnprotected: emptyMap},
		Payload:   e.payload,
		Signature: e.sig,
	}
	return m.Verify(nil, v)
}

// TestVerifyAsGoCOSE compares Verify with go-cose on valid envelopes of
// every payload length class of the Sig_structure's head, and on each of
// them with a signature byte changed, a signature of the wrong length,
// another key of the same algorithm, and a key of the other one.
func TestVerifyAsGoCOSE(t *testing.T) {
	keys := map[string]crypto.Signer{"ES256": newP256(t), "EdDSA": fixedEd25519()}
	others := map[string]crypto.Signer{"ES256": newP256(t), "EdDSA": ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))}
	checked, refused := 0, 0
	for name, key := range keys {
		pk, err := ParsePublicKey(pubDER(t, key))
		if err != nil {
			t.Fatal(err)
		}
		other, err := ParsePublicKey(pubDER(t, others[name]))
		if err != nil {
			t.Fatal(err)
		}
		cross, err := ParsePublicKey(pubDER(t, keys[map[string]string{"ES256": "EdDSA", "EdDSA": "ES256"}[name]]))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 5, 23, 24, 200, 255, 256, 70_000} {
			body := record("dev-1", 1)
			body.Record.Payload = bytes.Repeat([]byte{'x'}, n)
			env, err := SignTx(key, "dev-1", body)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := DecodeTx(env, 0)
			if err != nil {
				t.Fatal(err)
			}
			same := func(what string, e *envelope, pub *PublicKey) {
				t.Helper()
				got, want := e.verify(pub, true), goCOSEVerify(e, pub)
				if (got == nil) != (want == nil) {
					t.Errorf("%s, payload %d bytes, %s: Verify says %v, go-cose %v", name, n, what, got, want)
				}
				checked++
				if got != nil {
					refused++
				}
			}
			if err := tx.Verify(pk); err != nil {
				t.Fatalf("%s, payload %d bytes: %v", name, n, err)
			}
			same("valid", tx.env, pk)
			same("other key", tx.env, other)
			same("other algorithm", tx.env, cross)
			for i := range tx.env.sig {
				e := *tx.env
				e.sig = bytes.Clone(e.sig)
				e.sig[i] ^= 0x01 << (i % 8)
				same("signature byte changed", &e, pk)
			}
			for _, l := range []int{0, 1, len(tx.env.sig) - 1} {
				e := *tx.env
				e.sig = e.sig[:l]
				same("short signature", &e, pk)
			}
			e := *tx.env
			e.sig = append(bytes.Clone(e.sig), 0)
			same("long signature", &e, pk)
		}
	}
	if refused == 0 || refused == checked {
		t.Fatalf("%d checks, %d refused: the cases do not tell valid from invalid", checked, refused)
	}
}
