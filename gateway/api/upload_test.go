package api

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// TestPublishHead: the head the CLI sends is the start of the CBOR map
// {1: tx, 2: bytes} in deterministic encoding, and readPublishHead takes
// it back, for lengths at each width of a CBOR length.
func TestPublishHead(t *testing.T) {
	for _, n := range []int{0, 23, 24, 255, 256, 65535, 65536, 100_000} {
		env := bytes.Repeat([]byte{0xd2}, 40)
		data := bytes.Repeat([]byte{7}, n)
		want, err := cbor.Marshal(struct {
			Tx   []byte `cbor:"1,keyasint"`
			Blob []byte `cbor:"2,keyasint"`
		}{env, data})
		if err != nil {
			t.Fatal(err)
		}
		body := append(PublishHead(env, int64(n)), data...)
		if !bytes.Equal(body, want) {
			t.Fatalf("%d bytes: PublishHead differs from the CBOR encoding", n)
		}
		r := bufio.NewReader(bytes.NewReader(body))
		gotEnv, size, err := readPublishHead(r, 64, 1<<20)
		if err != nil || !bytes.Equal(gotEnv, env) || size != int64(n) || r.Buffered() > n {
			t.Fatalf("%d bytes: readPublishHead = %x, %d, %v", n, gotEnv, size, err)
		}
	}
}

// TestReadPublishHeadRefuses: what is not the head of a deterministic
// {1: tx, 2: bytes}, or is over the bounds, is refused.
func TestReadPublishHeadRefuses(t *testing.T) {
	for _, c := range []struct {
		name     string
		body     []byte
		tooLarge bool
	}{
		{"empty", nil, false},
		{"not a map", []byte{0x82, 0x01, 0x02}, false},
		{"key 2 first", []byte{0xa2, 0x02, 0x40, 0x01, 0x40}, false},
		{"tx not bytes", []byte{0xa2, 0x01, 0x61, 'x', 0x02, 0x40}, false},
		{"indefinite tx", []byte{0xa2, 0x01, 0x5f, 0x41, 'x', 0xff, 0x02, 0x40}, false},
		{"long form of a short length", []byte{0xa2, 0x01, 0x58, 0x01, 'x', 0x02, 0x40}, false},
		{"body ends in the tx", []byte{0xa2, 0x01, 0x45, 'x'}, false},
		{"body ends in a length", []byte{0xa2, 0x01, 0x41, 'x', 0x02, 0x5a, 0x00}, false},
		{"tx over the bound", append([]byte{0xa2, 0x01, 0x58, 65}, make([]byte, 65)...), true},
		{"bytes over the bound", []byte{0xa2, 0x01, 0x41, 'x', 0x02, 0x5b, 1, 0, 0, 0, 0, 0, 0, 0}, true},
	} {
		_, _, err := readPublishHead(bufio.NewReader(bytes.NewReader(c.body)), 64, 1<<20)
		he, ok := err.(*headError)
		if !ok || he.tooLarge != c.tooLarge {
			t.Errorf("%s: err = %v, want a headError with tooLarge %v", c.name, err, c.tooLarge)
		}
	}
}

// FuzzReadPublishHead: no input makes the decoder panic, allocate more
// than its bound, or return what does not re-encode to the bytes it read.
func FuzzReadPublishHead(f *testing.F) {
	f.Add(append(PublishHead([]byte("tx"), 3), "abc"...))
	f.Add([]byte{0xa2, 0x01, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 4096 {
			return
		}
		r := bufio.NewReader(bytes.NewReader(body))
		env, size, err := readPublishHead(r, 1024, 1<<20)
		if err != nil {
			return
		}
		if len(env) > 1024 || size < 0 || size > 1<<20 {
			t.Fatalf("out of bounds: tx %d bytes, size %d", len(env), size)
		}
		head := PublishHead(env, size)
		if !bytes.Equal(body[:len(head)], head) {
			t.Fatalf("read %x as tx %x and size %d, which encode to %x", body, env, size, head)
		}
	})
}
