package ledger

import (
	"bytes"
	"crypto"
	"strings"
	"testing"
)

// sameEnvelope fails unless openCanonical's answer on b, when it has one,
// is decodeEnvelope's: the fast path may only pass what the library
// accepts, field for field. It reports whether the fast path answered.
func sameEnvelope(t *testing.T, b []byte) bool {
	t.Helper()
	fast := openCanonical(b)
	if fast == nil {
		return false
	}
	slow, err := decodeEnvelope(b)
	if err != nil {
		t.Fatalf("%x: openCanonical accepts, decodeEnvelope: %v", b, err)
	}
	if fast.alg != slow.alg || fast.kid != slow.kid || !bytes.Equal(fast.protected, slow.protected) ||
		!bytes.Equal(fast.payload, slow.payload) || !bytes.Equal(fast.sig, slow.sig) {
		t.Fatalf("%x: openCanonical %+v, decodeEnvelope %+v", b, fast, slow)
	}
	return true
}

// TestOpenCanonicalAsDecoder: every envelope signEnvelope makes, at the
// lengths where a CBOR head grows (kid 23/24 bytes, payload 23/24,
// 255/256 and 65535/65536 bytes), takes the fast path with the library's
// result; every truncation and every one-byte change of the small ones
// takes it only where the library accepts the same.
func TestOpenCanonicalAsDecoder(t *testing.T) {
	es := newP256(t)
	for _, signer := range []crypto.Signer{es, fixedEd25519()} {
		for _, kidLen := range []int{1, 23, 24, MaxIDLen} {
			for _, payLen := range []int{1, 23, 24, 255, 256, 65535, 65536} {
				kid := strings.Repeat("k", kidLen)
				env, err := signEnvelope(signer, kid, bytes.Repeat([]byte{0xa5}, payLen))
				if err != nil {
					t.Fatal(err)
				}
				if !sameEnvelope(t, env) {
					t.Fatalf("%T kid %d payload %d: a signed envelope does not take the fast path", signer, kidLen, payLen)
				}
				if payLen > 256 {
					continue
				}
				for i := range env {
					sameEnvelope(t, env[:i])
					for _, x := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
						d := append([]byte{}, env...)
						d[i] ^= x
						sameEnvelope(t, d)
					}
				}
				sameEnvelope(t, append(append([]byte{}, env...), 0))
			}
		}
	}
	// Lengths not in shortest form, and indefinite ones.
	for _, b := range [][]byte{
		{0xd2, 0x84, 0x58, 0x06, 0xa2, 0x01, 0x26, 0x04, 0x41, 'a', 0xa0, 0x41, 1, 0x41, 1},
		{0xd2, 0x84, 0x47, 0xa2, 0x01, 0x26, 0x04, 0x58, 0x01, 'a', 0xa0, 0x41, 1, 0x41, 1},
		{0xd2, 0x84, 0x46, 0xa2, 0x01, 0x26, 0x04, 0x41, 'a', 0xa0, 0x59, 0x00, 0x01, 1, 0x41, 1},
		{0xd2, 0x84, 0x46, 0xa2, 0x01, 0x26, 0x04, 0x41, 'a', 0xa0, 0x41, 1, 0x5a, 0, 0, 0, 1, 1},
		{0xd2, 0x84, 0x46, 0xa2, 0x01, 0x26, 0x04, 0x41, 'a', 0xa0, 0x5b, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x41, 1},
		{0xd2, 0x84, 0x46, 0xa2, 0x01, 0x26, 0x04, 0x41, 'a', 0xa0, 0x5f, 0x41, 1, 0xff, 0x41, 1},
	} {
		if openCanonical(b) != nil {
			t.Errorf("%x: openCanonical accepts a length not in shortest form", b)
		}
	}
	// The same in shortest form is accepted by both.
	if !sameEnvelope(t, []byte{0xd2, 0x84, 0x46, 0xa2, 0x01, 0x26, 0x04, 0x41, 'a', 0xa0, 0x41, 1, 0x41, 1}) {
		t.Error("a minimal envelope does not take the fast path")
	}
}

// FuzzOpenCanonical: whatever the fast path accepts, the library accepts
// with the same fields.
func FuzzOpenCanonical(f *testing.F) {
	for _, b := range []*Body{record("dev-1", 1), record(strings.Repeat("d", 24), 2)} {
		env, err := SignTx(fixedEd25519(), b.Record.DeviceID, b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		sameEnvelope(t, data)
	})
}
