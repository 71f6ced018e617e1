package ledger

import (
	"bytes"
	"crypto"
	"math"
	"reflect"
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

// sameBody fails unless recordBody's answer on b, when it has one, is
// unmarshal's. It reports whether the fast path answered.
func sameBody(t *testing.T, b []byte) bool {
	t.Helper()
	r, chain, ok := recordBody(b)
	if !ok {
		return false
	}
	var want Body
	if err := unmarshal(b, &want); err != nil {
		t.Fatalf("%x: recordBody accepts, unmarshal: %v", b, err)
	}
	if got := (Body{Kind: KindRecord, ChainID: chain, Record: r}); !reflect.DeepEqual(got, want) {
		t.Fatalf("%x: recordBody %+v %+v, unmarshal %+v %+v", b, got, got.Record, want, want.Record)
	}
	return true
}

// TestRecordBodyAsDecoder: the encoding of every record, across the
// lengths and values where a CBOR head grows, with and without its
// optional fields, takes the fast path with unmarshal's result; every
// truncation and one-byte change of the small ones takes it only where
// unmarshal accepts the same.
func TestRecordBodyAsDecoder(t *testing.T) {
	var bodies []*Body
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536} {
		for _, v := range []int64{0, 23, 24, 255, 256, 65535, 65536, 1 << 32, math.MaxInt64} {
			b := record(strings.Repeat("d", min(n, MaxIDLen)), uint64(v))
			b.ChainID = strings.Repeat("c", n%300)
			b.Record.Stream = strings.Repeat("é", n%100)
			b.Record.Time = -v
			b.Record.Payload = bytes.Repeat([]byte{0xa5}, n)
			if n == 1 {
				b.Record.ContentType = ""
			}
			if v == 24 {
				b.Record.Time, b.Record.Seq = v, math.MaxUint64
			}
			bodies = append(bodies, b)
		}
	}
	bodies = append(bodies, &Body{Kind: KindRecord, ChainID: testChain, Record: &Record{DeviceID: "d", Stream: "s", Time: math.MinInt64}})
	for _, b := range bodies {
		enc, err := marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if !sameBody(t, enc) {
			t.Fatalf("%x: a record's encoding does not take the fast path", enc)
		}
		if len(enc) > 300 {
			continue
		}
		for i := range enc {
			sameBody(t, enc[:i])
			for _, x := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
				d := append([]byte{}, enc...)
				d[i] ^= x
				sameBody(t, d)
			}
		}
		sameBody(t, append(append([]byte{}, enc...), 0))
	}
	// Other kinds, and a record with an empty optional field, go the slow way.
	other, err := marshal(&Body{Kind: KindRevoke, ChainID: testChain, Revoke: &Revoke{DeviceID: "d"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := recordBody(other); ok {
		t.Error("recordBody accepts a revoke")
	}
	emptyType := []byte{0xa3, 0x01, 0x6b, 'd', 'a', 't', 'a', '.', 'r', 'e', 'c', 'o', 'r', 'd', 0x02, 0x61, 'c', 0x06,
		0xa5, 0x01, 0x61, 'd', 0x02, 0x61, 's', 0x03, 0x01, 0x04, 0x01, 0x05, 0x60}
	if _, _, ok := recordBody(emptyType); ok {
		t.Error("recordBody accepts an empty content type")
	}
	emptyType[len(emptyType)-1] = 0x61
	if !sameBody(t, append(emptyType, 'x')) {
		t.Error("recordBody refuses a record with a content type")
	}
}

// FuzzRecordBody: whatever the fast path accepts, unmarshal accepts
// with the same values.
func FuzzRecordBody(f *testing.F) {
	for _, b := range []*Body{record("dev-1", 1), record(strings.Repeat("d", 24), 1<<40)} {
		enc, err := marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		sameBody(t, data)
	})
}
