package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
)

// frameCases are the byte cases shared by the frame encoder and decoder.
var frameCases = []struct {
	name    string
	typ     frameType
	payload []byte
	wire    []byte
}{
	{"empty message", frameMessage, []byte{}, []byte{0, 0, 0, 0, 1}},
	{"message", frameMessage, []byte("hi"), []byte{0, 0, 0, 2, 1, 'h', 'i'}},
	{"status", frameStatus, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{0, 0, 0, 8, 2, 1, 2, 3, 4, 5, 6, 7, 8}},
	{"fetch request", frameFetchRequest, make([]byte, 12), append([]byte{0, 0, 0, 12, 3}, make([]byte, 12)...)},
	{"fetch response", frameFetchResponse, []byte{1, 'x'}, []byte{0, 0, 0, 2, 4, 1, 'x'}},
	{"blob request", frameBlobRequest, make([]byte, 32), append([]byte{0, 0, 0, 32, 5}, make([]byte, 32)...)},
	{"blob response", frameBlobResponse, []byte{2}, []byte{0, 0, 0, 1, 6, 2}},
	{"snapshot request", frameSnapshotRequest, make([]byte, 16), append([]byte{0, 0, 0, 16, 7}, make([]byte, 16)...)},
	{"snapshot response", frameSnapshotResponse, []byte{2}, []byte{0, 0, 0, 1, 8, 2}},
}

func TestFrameEncode(t *testing.T) {
	for _, c := range frameCases {
		if got := appendFrame(nil, c.typ, c.payload); !bytes.Equal(got, c.wire) {
			t.Errorf("%s: appendFrame = %x, want %x", c.name, got, c.wire)
		}
		var buf bytes.Buffer
		if err := writeFrame(&buf, c.typ, c.payload); err != nil || !bytes.Equal(buf.Bytes(), c.wire) {
			t.Errorf("%s: writeFrame = %x, %v, want %x", c.name, buf.Bytes(), err, c.wire)
		}
	}
}

func TestFrameDecode(t *testing.T) {
	for _, c := range frameCases {
		r := bytes.NewReader(append(append([]byte{}, c.wire...), c.wire...))
		for range 2 { // two frames back to back
			typ, p, err := readFrame(r, 64)
			if err != nil || typ != c.typ || !bytes.Equal(p, c.payload) {
				t.Errorf("%s: readFrame = %v, %x, %v; want %v, %x", c.name, typ, p, err, c.typ, c.payload)
			}
		}
		if _, _, err := readFrame(r, 64); err != io.EOF {
			t.Errorf("%s: readFrame at the end = %v, want io.EOF", c.name, err)
		}
	}
}

func TestFrameDecodeBad(t *testing.T) {
	for _, c := range []struct {
		name string
		wire []byte
		max  int
		want error
	}{
		{"empty", nil, 64, io.EOF},
		{"short header", []byte{0, 0, 0}, 64, io.ErrUnexpectedEOF},
		{"short payload", []byte{0, 0, 0, 2, 1, 'h'}, 64, io.ErrUnexpectedEOF},
		{"no payload", []byte{0, 0, 0, 2, 1}, 64, io.ErrUnexpectedEOF},
		{"one over max", []byte{0, 0, 0, 65, 1}, 64, ErrFrameTooLarge},
		{"huge", []byte{0xff, 0xff, 0xff, 0xff, 1}, DefaultMaxFrame, ErrFrameTooLarge},
		{"type 0", []byte{0, 0, 0, 0, 0}, 64, ErrProtocol},
		{"type 9", []byte{0, 0, 0, 0, 9}, 64, ErrProtocol},
		{"type 255", []byte{0, 0, 0, 0, 255}, 64, ErrProtocol},
	} {
		_, _, err := readFrame(bytes.NewReader(c.wire), c.max)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: readFrame = %v, want %v", c.name, err, c.want)
		}
	}
}

// TestFrameNoAllocationAhead checks that a frame announcing nearly MaxFrame
// bytes and then stalling costs memory for what arrived, not for what it
// claimed.
func TestFrameNoAllocationAhead(t *testing.T) {
	wire := appendFrame(nil, frameMessage, nil)
	wire[0], wire[1] = 0x03, 0xff // 0x03ff0000 bytes: just under 64 MiB
	wire = append(wire, "only this"...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := readFrame(bytes.NewReader(wire), DefaultMaxFrame)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("readFrame = %v, want io.ErrUnexpectedEOF", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Errorf("allocated %d bytes for a frame that delivered 9", n)
	}
}

func TestFrameLarge(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), (3*readChunk)/16+1)
	wire := appendFrame(nil, frameMessage, payload)
	typ, p, err := readFrame(bytes.NewReader(wire), DefaultMaxFrame)
	if err != nil || typ != frameMessage || !bytes.Equal(p, payload) {
		t.Fatalf("readFrame of %d bytes: %v, %v, equal %v", len(payload), typ, err, bytes.Equal(p, payload))
	}
}

// payloadCases are the byte cases shared by the payload encoders and
// decoders.
var payloadCases = []struct {
	name   string
	encode func() []byte
	decode func([]byte) (any, error)
	value  any
	wire   []byte
}{
	{
		name: "status", value: uint64(0x0102030405060708),
		encode: func() []byte { return encodeStatus(0x0102030405060708) },
		decode: func(p []byte) (any, error) { return decodeStatus(p) },
		wire:   []byte{1, 2, 3, 4, 5, 6, 7, 8},
	},
	{
		name: "fetch request", value: fetchRequest{From: 7, Max: 256},
		encode: fetchRequest{From: 7, Max: 256}.encode,
		decode: func(p []byte) (any, error) { return decodeFetchRequest(p) },
		wire:   []byte{0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 1, 0},
	},
	{
		name: "fetch response, no blocks", value: "blocks []",
		encode: fetchResponse{}.encode,
		decode: decodeResponseString,
		wire:   []byte{0, 0, 0, 0, 0},
	},
	{
		name: "fetch response, blocks", value: `blocks ["ab" ""]`,
		encode: fetchResponse{Blocks: [][]byte{[]byte("ab"), {}}}.encode,
		decode: decodeResponseString,
		wire:   []byte{0, 0, 0, 0, 2, 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 0},
	},
	{
		name: "fetch response, error", value: `error "no"`,
		encode: fetchResponse{Err: "no"}.encode,
		decode: decodeResponseString,
		wire:   []byte{1, 'n', 'o'},
	},
	{
		name: "blob request", value: [32]byte{0: 1, 31: 0xff},
		encode: func() []byte { h := [32]byte{0: 1, 31: 0xff}; return h[:] },
		decode: func(p []byte) (any, error) { return decodeBlobRequest(p) },
		wire:   append([]byte{1}, append(make([]byte, 30), 0xff)...),
	},
	{
		name: "blob response, blob", value: `blob "ab"`,
		encode: blobResponse{Blob: []byte("ab")}.encode,
		decode: decodeBlobString,
		wire:   []byte{0, 'a', 'b'},
	},
	{
		name: "blob response, empty blob", value: `blob ""`,
		encode: blobResponse{Blob: []byte{}}.encode,
		decode: decodeBlobString,
		wire:   []byte{0},
	},
	{
		name: "blob response, missing", value: "missing",
		encode: blobResponse{Missing: true}.encode,
		decode: decodeBlobString,
		wire:   []byte{2},
	},
	{
		name: "blob response, error", value: `error "no"`,
		encode: blobResponse{Err: "no"}.encode,
		decode: decodeBlobString,
		wire:   []byte{1, 'n', 'o'},
	},
	{
		name: "snapshot request", value: snapshotRequest{Height: 9, Offset: 258},
		encode: snapshotRequest{Height: 9, Offset: 258}.encode,
		decode: func(p []byte) (any, error) { return decodeSnapshotRequest(p) },
		wire:   []byte{0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1, 2},
	},
	{
		name: "snapshot response, first chunk", value: `9 of 5: proof "p" members "mm" chunk "abc"`,
		encode: snapshotResponse{Height: 9, Total: 5, Proof: []byte("p"), Members: []byte("mm"), Chunk: []byte("abc")}.encode,
		decode: decodeSnapshotString,
		wire:   []byte{0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 'p', 0, 0, 0, 2, 'm', 'm', 'a', 'b', 'c'},
	},
	{
		name: "snapshot response, later chunk", value: `9 of 5: proof "" members "" chunk "de"`,
		encode: snapshotResponse{Height: 9, Total: 5, Chunk: []byte("de")}.encode,
		decode: decodeSnapshotString,
		wire:   []byte{0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 'd', 'e'},
	},
	{
		name: "snapshot response, none", value: "none",
		encode: snapshotResponse{None: true}.encode,
		decode: decodeSnapshotString,
		wire:   []byte{2},
	},
	{
		name: "snapshot response, error", value: `error "no"`,
		encode: snapshotResponse{Err: "no"}.encode,
		decode: decodeSnapshotString,
		wire:   []byte{1, 'n', 'o'},
	},
}

func decodeSnapshotString(p []byte) (any, error) {
	r, err := decodeSnapshotResponse(p)
	switch {
	case err != nil:
		return nil, err
	case r.Err != "":
		return `error "` + r.Err + `"`, nil
	case r.None:
		return "none", nil
	}
	return fmt.Sprintf("%d of %d: proof %q members %q chunk %q", r.Height, r.Total, r.Proof, r.Members, r.Chunk), nil
}

func decodeBlobString(p []byte) (any, error) {
	r, err := decodeBlobResponse(p)
	switch {
	case err != nil:
		return nil, err
	case r.Err != "":
		return `error "` + r.Err + `"`, nil
	case r.Missing:
		return "missing", nil
	}
	return `blob "` + string(r.Blob) + `"`, nil
}

func decodeResponseString(p []byte) (any, error) {
	r, err := decodeFetchResponse(p)
	if err != nil {
		return nil, err
	}
	if r.Err != "" {
		return `error "` + r.Err + `"`, nil
	}
	s := "blocks ["
	for i, b := range r.Blocks {
		if i > 0 {
			s += " "
		}
		s += `"` + string(b) + `"`
	}
	return s + "]", nil
}

func TestPayloads(t *testing.T) {
	for _, c := range payloadCases {
		if got := c.encode(); !bytes.Equal(got, c.wire) {
			t.Errorf("%s: encoded %x, want %x", c.name, got, c.wire)
		}
		if got, err := c.decode(c.wire); err != nil || got != c.value {
			t.Errorf("%s: decoded %v, %v, want %v", c.name, got, err, c.value)
		}
	}
}

func TestPayloadsBad(t *testing.T) {
	for _, c := range []struct {
		name   string
		decode func([]byte) (any, error)
		wire   []byte
	}{
		{"status short", func(p []byte) (any, error) { return decodeStatus(p) }, make([]byte, 7)},
		{"status long", func(p []byte) (any, error) { return decodeStatus(p) }, make([]byte, 9)},
		{"fetch request short", func(p []byte) (any, error) { return decodeFetchRequest(p) }, make([]byte, 11)},
		{"fetch request long", func(p []byte) (any, error) { return decodeFetchRequest(p) }, make([]byte, 13)},
		{"fetch response empty", decodeResponseString, nil},
		{"fetch response status 2", decodeResponseString, []byte{2, 0, 0, 0, 0}},
		{"fetch response error without text", decodeResponseString, []byte{1}},
		{"fetch response without count", decodeResponseString, []byte{0, 0, 0}},
		{"fetch response count lies", decodeResponseString, []byte{0, 0xff, 0xff, 0xff, 0xff}},
		{"fetch response block truncated", decodeResponseString, []byte{0, 0, 0, 0, 1, 0, 0, 0, 5, 'a', 'b'}},
		{"fetch response length truncated", decodeResponseString, []byte{0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}},
		{"fetch response trailing bytes", decodeResponseString, []byte{0, 0, 0, 0, 0, 9}},
		{"blob request short", func(p []byte) (any, error) { return decodeBlobRequest(p) }, make([]byte, 31)},
		{"blob request long", func(p []byte) (any, error) { return decodeBlobRequest(p) }, make([]byte, 33)},
		{"blob response empty", decodeBlobString, nil},
		{"blob response status 3", decodeBlobString, []byte{3, 'a'}},
		{"blob response error without text", decodeBlobString, []byte{1}},
		{"blob response missing with trailing bytes", decodeBlobString, []byte{2, 0}},
		{"snapshot request short", func(p []byte) (any, error) { return decodeSnapshotRequest(p) }, make([]byte, 15)},
		{"snapshot request long", func(p []byte) (any, error) { return decodeSnapshotRequest(p) }, make([]byte, 17)},
		{"snapshot response empty", decodeSnapshotString, nil},
		{"snapshot response status 3", decodeSnapshotString, []byte{3}},
		{"snapshot response error without text", decodeSnapshotString, []byte{1}},
		{"snapshot response none with trailing bytes", decodeSnapshotString, []byte{2, 0}},
		{"snapshot response short header", decodeSnapshotString, append([]byte{0}, make([]byte, 23)...)},
		{"snapshot response proof length lies", decodeSnapshotString, append(append([]byte{0}, make([]byte, 16)...), 0, 0, 0, 2, 'p', 0, 0, 0)},
		{"snapshot response no members length", decodeSnapshotString, append(append([]byte{0}, make([]byte, 16)...), 0, 0, 0, 1, 'p', 0, 0, 0)},
		{"snapshot response members length lies", decodeSnapshotString, append(append([]byte{0}, make([]byte, 16)...), 0, 0, 0, 1, 'p', 0, 0, 0, 2, 'm')},
	} {
		if v, err := c.decode(c.wire); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: decoded %v, %v; want ErrProtocol", c.name, v, err)
		}
	}
}

// FuzzFrame feeds arbitrary bytes to the frame reader and every payload
// decoder: none may panic, and whatever decodes must encode back to the
// same bytes.
func FuzzFrame(f *testing.F) {
	for _, c := range frameCases {
		f.Add(c.wire)
	}
	for _, c := range payloadCases {
		f.Add(c.wire)
		f.Add(appendFrame(nil, frameFetchResponse, c.wire))
		f.Add(appendFrame(nil, frameBlobResponse, c.wire))
		f.Add(appendFrame(nil, frameSnapshotResponse, c.wire))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		typ, payload, err := readFrame(bytes.NewReader(data), 4096)
		if err == nil {
			if got := appendFrame(nil, typ, payload); !bytes.Equal(got, data[:len(got)]) {
				t.Fatalf("frame %x re-encodes as %x", data[:len(got)], got)
			}
		}
		for _, p := range [][]byte{payload, data} {
			if h, err := decodeStatus(p); err == nil && !bytes.Equal(encodeStatus(h), p) {
				t.Fatalf("status %x re-encodes as %x", p, encodeStatus(h))
			}
			if r, err := decodeFetchRequest(p); err == nil && !bytes.Equal(r.encode(), p) {
				t.Fatalf("fetch request %x re-encodes as %x", p, r.encode())
			}
			if r, err := decodeFetchResponse(p); err == nil && !bytes.Equal(r.encode(), p) {
				t.Fatalf("fetch response %x re-encodes as %x", p, r.encode())
			}
			if h, err := decodeBlobRequest(p); err == nil && !bytes.Equal(h[:], p) {
				t.Fatalf("blob request %x decodes as %x", p, h)
			}
			if r, err := decodeBlobResponse(p); err == nil && !bytes.Equal(r.encode(), p) {
				t.Fatalf("blob response %x re-encodes as %x", p, r.encode())
			}
			if r, err := decodeSnapshotRequest(p); err == nil && !bytes.Equal(r.encode(), p) {
				t.Fatalf("snapshot request %x re-encodes as %x", p, r.encode())
			}
			if r, err := decodeSnapshotResponse(p); err == nil && !bytes.Equal(r.encode(), p) {
				t.Fatalf("snapshot response %x re-encodes as %x", p, r.encode())
			}
		}
	})
}
