package vectors

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
)

// A raw CBOR writer for the negative vectors: it writes exactly what it
// is told (order, lengths, non-minimal forms), where an encoder would
// fix them.

// head is a CBOR initial byte and argument in shortest form.
func head(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= 0xff:
		return []byte{m | 24, byte(n)}
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16([]byte{m | 25}, uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32([]byte{m | 26}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{m | 27}, n)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func cUint(n uint64) []byte { return head(0, n) }
func cInt(n int64) []byte {
	if n < 0 {
		return head(1, uint64(-1-n))
	}
	return head(0, uint64(n))
}
func cBytes(b []byte) []byte { return cat(head(2, uint64(len(b))), b) }
func cText(s string) []byte  { return cat(head(3, uint64(len(s))), []byte(s)) }
func cArr(items ...[]byte) []byte {
	return cat(head(4, uint64(len(items))), cat(items...))
}

// kv is one map entry, key and value already encoded.
type kv struct{ k, v []byte }

func ik(k int64, v []byte) kv { return kv{cInt(k), v} }

// cMap writes the entries in the order given.
func cMap(entries ...kv) []byte {
	out := head(5, uint64(len(entries)))
	for _, e := range entries {
		out = append(out, e.k...)
		out = append(out, e.v...)
	}
	return out
}

// COSE algorithm ids (RFC 9053).
const (
	algES256 = -7
	algEdDSA = -8
)

// coseAlg is the COSE alg of a signing key.
func coseAlg(k crypto.Signer) int64 {
	if _, ok := k.(ed25519.PrivateKey); ok {
		return algEdDSA
	}
	return algES256
}

// protected is the protected header bstr contents: {1: alg, 4: kid}.
func protected(alg int64, kid string) []byte {
	return cMap(ik(1, cInt(alg)), ik(4, cBytes([]byte(kid))))
}

// toBeSigned is the RFC 9052 4.4 Sig_structure with empty external_aad.
func toBeSigned(prot, payload []byte) []byte {
	return cArr(cText("Signature1"), cBytes(prot), cBytes(nil), cBytes(payload))
}

// rawSign signs tbs as COSE does: Ed25519 over tbs; ES256 over SHA-256
// of tbs, RFC 6979, as 32-byte r || 32-byte s.
func rawSign(k crypto.Signer, tbs []byte) []byte {
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(k, tbs)
	case *ecdsa.PrivateKey:
		d := sha256.Sum256(tbs)
		der, err := k.Sign(nil, d[:], crypto.SHA256)
		if err != nil {
			panic("vectors: invariant: " + err.Error())
		}
		r, s := parseDER(der)
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	panic(fmt.Sprintf("vectors: invariant: key %T", k))
}

// parseDER reads an ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as
// crypto/ecdsa writes it.
func parseDER(der []byte) (r, s *big.Int) {
	// 30 len 02 lr r 02 ls s
	i := 2
	lr := int(der[i+1])
	r = new(big.Int).SetBytes(der[i+2 : i+2+lr])
	i += 2 + lr
	ls := int(der[i+1])
	s = new(big.Int).SetBytes(der[i+2 : i+2+ls])
	return r, s
}

// envelope is the tagged COSE_Sign1 with the given parts.
func envelope(prot, unprot, payload, sig []byte) []byte {
	return cat([]byte{0xd2}, cArr(cBytes(prot), unprot, cBytes(payload), cBytes(sig)))
}

// sign1 builds a tx envelope from the specification alone: protected
// {1: alg, 4: kid}, unprotected {}, payload, signature over the
// Sig_structure.
func sign1(k crypto.Signer, kid string, payload []byte) []byte {
	prot := protected(coseAlg(k), kid)
	return envelope(prot, cMap(), payload, rawSign(k, toBeSigned(prot, payload)))
}

const cryptoSHA256 = crypto.SHA256

// ed25519Sign signs with k's Ed25519 key.
func ed25519Sign(k *key, msg []byte) []byte { return ed25519.Sign(k.ed, msg) }
