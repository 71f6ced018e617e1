package ledger

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Signature checks. A tx's signature is checked once per gateway, and at
// full load that is the largest part of a gateway's CPU (docs/benchmarks.md,
// "The commit path"), so the check does no more than the crypto needs:
// the Sig_structure is written straight from the envelope's bytes in one
// allocation, and an Ed25519 key is expanded once, when it first verifies.
//
// The verdicts are those go-cose v1.3.0 gives (Sign1Message.Verify with
// the verifier of the key's algorithm), hence those of crypto/ecdsa and
// crypto/ed25519: TestVerifyAsGoCOSE and FuzzVerifyAsStdlib hold the two
// side by side.

// sigContext is the start of a COSE_Sign1's Sig_structure (RFC 9052
// section 4.4): an array of four, and the context text "Signature1".
var sigContext = []byte{0x84, 0x6a, 'S', 'i', 'g', 'n', 'a', 't', 'u', 'r', 'e', '1'}

// toBeSigned is the envelope's Sig_structure, ["Signature1", protected,
// external_aad, payload] with no external data, as go-cose encodes it.
// openEnvelope accepts only deterministic encodings, so the protected
// header is copied as it is, as go-cose does for a deterministic one.
func (e *envelope) toBeSigned() []byte {
	n := len(e.payload)
	b := make([]byte, 0, len(sigContext)+len(e.protected)+1+9+n)
	b = append(b, sigContext...)
	b = append(b, e.protected...)
	b = append(b, 0x40) // external_aad: h''
	b = AppendCBORHead(b, 2, uint64(n))
	return append(b, e.payload...)
}

// AppendCBORHead appends the head of a CBOR data item of major type
// major (0–7) with argument v, in its shortest form (RFC 8949 section
// 4.2.1): what deterministic encoding writes before a byte string's bytes.
func AppendCBORHead(b []byte, major byte, v uint64) []byte {
	m := major << 5
	switch {
	case v < 24:
		return append(b, m|byte(v))
	case v <= 0xff:
		return append(b, m|24, byte(v))
	case v <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(v))
	case v <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), v)
}

// ed25519Opts are the verification rules of crypto/ed25519 (RFC 8032
// with the cofactorless equation, canonical S and R, any encoding of A),
// in curve25519-voi, whose verification costs about half of the
// standard library's. They exclude batch verification: it needs the
// cofactored equation, which accepts signatures crypto/ed25519 refuses.
var ed25519Opts = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// expanded returns pub's Ed25519 key expanded for verifying (about 10 µs
// off each verify, for 1.5 KB and 20 µs once); nil if the key is not a
// point, and then no signature verifies with it. Two goroutines may both
// expand a new key: the results are the same.
func (pub *PublicKey) expanded(k ed25519.PublicKey) *voi.ExpandedPublicKey {
	if x := pub.ed.Load(); x != nil {
		return x
	}
	x, err := voi.NewExpandedPublicKey(voi.PublicKey(k))
	if err != nil {
		return nil
	}
	pub.ed.Store(x)
	return x
}

// verifySig checks sig over msg with pub, whose algorithm the envelope's
// header names. An Ed25519 key is verified expanded if it was expanded
// already, or if expand says to expand it.
func verifySig(pub *PublicKey, msg, sig []byte, expand bool) bool {
	switch k := pub.Key.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return false
		}
		x := pub.ed.Load()
		if x == nil && expand {
			x = pub.expanded(k)
		}
		if x != nil {
			return voi.VerifyExpandedWithOptions(x, msg, sig, ed25519Opts)
		}
		return voi.VerifyWithOptions(voi.PublicKey(k), msg, sig, ed25519Opts)
	case *ecdsa.PublicKey:
		// ES256 (RFC 9053 section 2.1): r and s of 32 bytes each.
		if len(sig) != 64 {
			return false
		}
		d := sha256.Sum256(msg)
		var der [72]byte
		asn1, ok := es256DER(der[:0], sig)
		return ok && ecdsa.VerifyASN1(k, d[:], asn1)
	}
	return false
}

// es256DER appends to dst the ASN.1 DER form (SEQUENCE of two INTEGERs)
// of the raw ES256 signature r || s, as ecdsa.Verify makes it from
// r.Bytes() and s.Bytes() before it calls ecdsa.VerifyASN1: the same
// check, without the two big.Ints and the encoder's allocations (about
// a quarter of a message's allocations). ok is false if r or s is zero,
// which ecdsa.Verify refuses.
func es256DER(dst, sig []byte) (der []byte, ok bool) {
	r, s := trimZeros(sig[:32]), trimZeros(sig[32:])
	if len(r) == 0 || len(s) == 0 {
		return nil, false
	}
	n := derIntLen(r) + derIntLen(s)
	dst = append(dst, 0x30, byte(n)) // n ≤ 70: the short form
	dst = appendDERInt(dst, r)
	return appendDERInt(dst, s), true
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// derIntLen is the encoded length of the positive integer with minimal
// big-endian bytes v: tag, length, a 0x00 if the top bit is set, v.
func derIntLen(v []byte) int {
	return 2 + int(v[0]>>7) + len(v)
}

func appendDERInt(dst, v []byte) []byte {
	dst = append(dst, 0x02, byte(int(v[0]>>7)+len(v)))
	if v[0]&0x80 != 0 {
		dst = append(dst, 0)
	}
	return append(dst, v...)
}
