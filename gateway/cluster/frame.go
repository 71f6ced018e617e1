package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// ErrFrameTooLarge is returned for a frame whose length header exceeds the
// receiver's MaxFrame.
var ErrFrameTooLarge = errors.New("cluster: frame too large")

// ErrProtocol is returned for bytes that break the frame format: an unknown
// frame type, a payload of the wrong shape, or a frame not expected on that
// connection.
var ErrProtocol = errors.New("cluster: protocol error")

// frameType is the type byte of a frame.
type frameType byte

const (
	frameMessage       frameType = 1 // a consensus message
	frameStatus        frameType = 2 // height uint64
	frameFetchRequest  frameType = 3 // from uint64 | max uint32
	frameFetchResponse frameType = 4 // 0x00 | count | blocks, or 0x01 | error text
	frameBlobRequest   frameType = 5 // hash [32]byte
	frameBlobResponse  frameType = 6 // 0x00 | blob, 0x01 | error text, or 0x02

	frameSnapshotRequest  frameType = 7 // height uint64 | offset uint64
	frameSnapshotResponse frameType = 8 // 0x00 | height | total | proof length | proof | chunk, 0x01 | error text, or 0x02
)

func (f frameType) String() string {
	switch f {
	case frameMessage:
		return "message"
	case frameStatus:
		return "status"
	case frameFetchRequest:
		return "fetch request"
	case frameFetchResponse:
		return "fetch response"
	case frameBlobRequest:
		return "blob request"
	case frameBlobResponse:
		return "blob response"
	case frameSnapshotRequest:
		return "snapshot request"
	case frameSnapshotResponse:
		return "snapshot response"
	}
	return fmt.Sprintf("type %d", byte(f))
}

const (
	headerLen = 5 // length uint32 | type byte

	// readChunk bounds how much payload memory is allocated ahead of the
	// bytes that actually arrived.
	readChunk = 1 << 20

	statusLen       = 8
	fetchRequestLen = 12
	blobRequestLen  = 32 // a SHA-256 hash

	fetchOK  = 0x00
	fetchErr = 0x01

	blobOK      = 0x00
	blobErr     = 0x01
	blobMissing = 0x02
)

// appendFrame appends a frame holding payload to dst.
func appendFrame(dst []byte, typ frameType, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, byte(typ))
	return append(dst, payload...)
}

// writeFrame writes a frame holding payload to w without copying payload.
func writeFrame(w io.Writer, typ frameType, payload []byte) error {
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[:4], uint32(len(payload)))
	h[4] = byte(typ)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame whose payload is at most max bytes. It returns
// io.EOF only when r ended cleanly before a frame began. A length above max
// is ErrFrameTooLarge and nothing of the payload is read or allocated.
func readFrame(r io.Reader, max int) (frameType, []byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	typ := frameType(h[4])
	if uint64(n) > uint64(max) {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes, max %d", ErrFrameTooLarge, typ, n, max)
	}
	if typ < frameMessage || typ > frameSnapshotResponse {
		return 0, nil, fmt.Errorf("%w: unknown frame %s", ErrProtocol, typ)
	}
	p, err := readPayload(r, int(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("read %s frame: %w", typ, err)
	}
	return typ, p, nil
}

// readPayload reads exactly n bytes, growing the buffer by at most readChunk
// ahead of what arrived, so a peer that announces a large frame and stalls
// does not pin that much memory.
func readPayload(r io.Reader, n int) ([]byte, error) {
	if n <= readChunk {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := make([]byte, 0, readChunk)
	for len(b) < n {
		k := min(n-len(b), readChunk)
		b = slices.Grow(b, k)
		m, err := io.ReadFull(r, b[len(b):len(b)+k])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func encodeStatus(height uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, height)
}

func decodeStatus(p []byte) (uint64, error) {
	if len(p) != statusLen {
		return 0, fmt.Errorf("%w: status of %d bytes, want %d", ErrProtocol, len(p), statusLen)
	}
	return binary.BigEndian.Uint64(p), nil
}

// fetchRequest asks for the blocks [From, From+Max).
type fetchRequest struct {
	From uint64
	Max  uint32
}

func (r fetchRequest) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, fetchRequestLen), r.From)
	return binary.BigEndian.AppendUint32(b, r.Max)
}

func decodeFetchRequest(p []byte) (fetchRequest, error) {
	if len(p) != fetchRequestLen {
		return fetchRequest{}, fmt.Errorf("%w: fetch request of %d bytes, want %d", ErrProtocol, len(p), fetchRequestLen)
	}
	return fetchRequest{From: binary.BigEndian.Uint64(p[:8]), Max: binary.BigEndian.Uint32(p[8:])}, nil
}

// fetchResponse is either blocks or, when Err is not empty, the server's
// refusal.
type fetchResponse struct {
	Blocks [][]byte
	Err    string
}

// fetchResponseSize is the encoded size of an OK response holding blocks.
func fetchResponseSize(blocks [][]byte) int {
	n := 1 + 4
	for _, b := range blocks {
		n += 4 + len(b)
	}
	return n
}

func (r fetchResponse) encode() []byte {
	if r.Err != "" {
		return append([]byte{fetchErr}, r.Err...)
	}
	b := make([]byte, 0, fetchResponseSize(r.Blocks))
	b = append(b, fetchOK)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Blocks)))
	for _, blk := range r.Blocks {
		b = binary.BigEndian.AppendUint32(b, uint32(len(blk)))
		b = append(b, blk...)
	}
	return b
}

// decodeFetchResponse decodes a fetch response. The blocks share p's memory.
func decodeFetchResponse(p []byte) (fetchResponse, error) {
	if len(p) == 0 {
		return fetchResponse{}, fmt.Errorf("%w: empty fetch response", ErrProtocol)
	}
	switch p[0] {
	case fetchErr:
		if len(p) == 1 {
			return fetchResponse{}, fmt.Errorf("%w: fetch error without text", ErrProtocol)
		}
		return fetchResponse{Err: string(p[1:])}, nil
	case fetchOK:
	default:
		return fetchResponse{}, fmt.Errorf("%w: fetch response status %#x", ErrProtocol, p[0])
	}
	rest := p[1:]
	if len(rest) < 4 {
		return fetchResponse{}, fmt.Errorf("%w: fetch response without count", ErrProtocol)
	}
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	// Each block takes at least its 4-byte length: a larger count is a lie,
	// and must not size an allocation.
	if uint64(count) > uint64(len(rest)/4) {
		return fetchResponse{}, fmt.Errorf("%w: fetch response claims %d blocks in %d bytes", ErrProtocol, count, len(rest))
	}
	blocks := make([][]byte, 0, count)
	for i := range count {
		if len(rest) < 4 {
			return fetchResponse{}, fmt.Errorf("%w: fetch response block %d: truncated length", ErrProtocol, i)
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return fetchResponse{}, fmt.Errorf("%w: fetch response block %d: %d bytes, %d left", ErrProtocol, i, n, len(rest))
		}
		blocks = append(blocks, rest[:n:n])
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return fetchResponse{}, fmt.Errorf("%w: fetch response: %d trailing bytes", ErrProtocol, len(rest))
	}
	return fetchResponse{Blocks: blocks}, nil
}

func decodeBlobRequest(p []byte) ([32]byte, error) {
	if len(p) != blobRequestLen {
		return [32]byte{}, fmt.Errorf("%w: blob request of %d bytes, want %d", ErrProtocol, len(p), blobRequestLen)
	}
	return [32]byte(p), nil
}

// blobResponse is the blob, or, when Missing, word that the server does not
// have it, or, when Err is not empty, the server's refusal.
type blobResponse struct {
	Blob    []byte
	Missing bool
	Err     string
}

func (r blobResponse) encode() []byte {
	switch {
	case r.Err != "":
		return append([]byte{blobErr}, r.Err...)
	case r.Missing:
		return []byte{blobMissing}
	}
	return append(append(make([]byte, 0, 1+len(r.Blob)), blobOK), r.Blob...)
}

// decodeBlobResponse decodes a blob response. The blob shares p's memory.
func decodeBlobResponse(p []byte) (blobResponse, error) {
	if len(p) == 0 {
		return blobResponse{}, fmt.Errorf("%w: empty blob response", ErrProtocol)
	}
	switch p[0] {
	case blobOK:
		return blobResponse{Blob: p[1:]}, nil
	case blobErr:
		if len(p) == 1 {
			return blobResponse{}, fmt.Errorf("%w: blob error without text", ErrProtocol)
		}
		return blobResponse{Err: string(p[1:])}, nil
	case blobMissing:
		if len(p) != 1 {
			return blobResponse{}, fmt.Errorf("%w: blob response: %d trailing bytes", ErrProtocol, len(p)-1)
		}
		return blobResponse{Missing: true}, nil
	}
	return blobResponse{}, fmt.Errorf("%w: blob response status %#x", ErrProtocol, p[0])
}
