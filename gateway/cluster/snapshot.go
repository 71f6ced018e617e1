package cluster

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// ErrNoSnapshot is returned by FetchSnapshot when the peer has no
// certified snapshot to serve.
var ErrNoSnapshot = errors.New("cluster: peer has no certified snapshot")

// Snapshot is a state snapshot as a peer served it: its height, its
// encoding, the encoded proof that it is certified (ledger.SnapshotProof)
// and the encoded membership proof of the chain's member changes
// (ledger.MembershipProof; empty if they never changed), with which the
// snapshot proof is checked after a change. All four are the peer's
// word: the caller verifies the membership proof with the genesis, the
// snapshot proof with the member sets it proves and the encoding against
// the proof's hash before it uses any of them (gateway/snapshot.Accept).
type Snapshot struct {
	Height  uint64
	Data    []byte
	Proof   []byte
	Members []byte
}

// snapshotRequestLen is a snapshot request: height uint64 (0: the newest
// certified) | offset uint64.
const snapshotRequestLen = 16

// Status bytes of a snapshot response.
const (
	snapshotOK   = 0x00
	snapshotErr  = 0x01
	snapshotNone = 0x02
)

// snapshotRequest asks for the bytes of the snapshot at Height (0: the
// newest certified one) from Offset on; the proofs come with offset 0.
type snapshotRequest struct {
	Height, Offset uint64
}

func (r snapshotRequest) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, snapshotRequestLen), r.Height)
	return binary.BigEndian.AppendUint64(b, r.Offset)
}

func decodeSnapshotRequest(p []byte) (snapshotRequest, error) {
	if len(p) != snapshotRequestLen {
		return snapshotRequest{}, fmt.Errorf("%w: snapshot request of %d bytes, want %d", ErrProtocol, len(p), snapshotRequestLen)
	}
	return snapshotRequest{Height: binary.BigEndian.Uint64(p[:8]), Offset: binary.BigEndian.Uint64(p[8:])}, nil
}

// snapshotResponse is a chunk of a snapshot, or word that the server
// has none (None), or its refusal (Err):
//
//	0x00 | height uint64 | total uint64 | proof length uint32 | proof |
//	       members length uint32 | members | chunk
//	0x01 | error text
//	0x02
//
// proof and members are empty but in the first chunk (offset 0).
type snapshotResponse struct {
	Height, Total         uint64
	Proof, Members, Chunk []byte
	None                  bool
	Err                   string
}

const snapshotResponseHeader = 1 + 8 + 8 + 4 + 4

func (r snapshotResponse) encode() []byte {
	switch {
	case r.Err != "":
		return append([]byte{snapshotErr}, r.Err...)
	case r.None:
		return []byte{snapshotNone}
	}
	b := make([]byte, 0, snapshotResponseHeader+len(r.Proof)+len(r.Members)+len(r.Chunk))
	b = append(b, snapshotOK)
	b = binary.BigEndian.AppendUint64(b, r.Height)
	b = binary.BigEndian.AppendUint64(b, r.Total)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Proof)))
	b = append(b, r.Proof...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Members)))
	b = append(b, r.Members...)
	return append(b, r.Chunk...)
}

// decodeSnapshotResponse decodes a snapshot response; proof, members and
// chunk share p's memory.
func decodeSnapshotResponse(p []byte) (snapshotResponse, error) {
	if len(p) == 0 {
		return snapshotResponse{}, fmt.Errorf("%w: empty snapshot response", ErrProtocol)
	}
	switch p[0] {
	case snapshotErr:
		if len(p) == 1 {
			return snapshotResponse{}, fmt.Errorf("%w: snapshot error without text", ErrProtocol)
		}
		return snapshotResponse{Err: string(p[1:])}, nil
	case snapshotNone:
		if len(p) != 1 {
			return snapshotResponse{}, fmt.Errorf("%w: snapshot response: %d trailing bytes", ErrProtocol, len(p)-1)
		}
		return snapshotResponse{None: true}, nil
	case snapshotOK:
	default:
		return snapshotResponse{}, fmt.Errorf("%w: snapshot response status %#x", ErrProtocol, p[0])
	}
	if len(p) < snapshotResponseHeader {
		return snapshotResponse{}, fmt.Errorf("%w: snapshot response of %d bytes", ErrProtocol, len(p))
	}
	r := snapshotResponse{Height: binary.BigEndian.Uint64(p[1:9]), Total: binary.BigEndian.Uint64(p[9:17])}
	n := binary.BigEndian.Uint32(p[17:21])
	rest := p[21:]
	if uint64(n)+4 > uint64(len(rest)) {
		return snapshotResponse{}, fmt.Errorf("%w: snapshot response: proof of %d bytes, %d left", ErrProtocol, n, len(rest))
	}
	r.Proof, rest = rest[:n:n], rest[n:]
	m := binary.BigEndian.Uint32(rest[:4])
	rest = rest[4:]
	if uint64(m) > uint64(len(rest)) {
		return snapshotResponse{}, fmt.Errorf("%w: snapshot response: membership proof of %d bytes, %d left", ErrProtocol, m, len(rest))
	}
	r.Members, r.Chunk = rest[:m:m], rest[m:]
	return r, nil
}

// FetchSnapshot asks peer for its newest certified snapshot, the proof
// that it is certified and the chain's membership proof, in chunks, each over a connection of its own. A
// snapshot of more than maxBytes, or chunks that do not add up (another
// height or size than the first chunk said, an empty chunk, bytes past
// the end), are an ErrProtocol; a peer without one is ErrNoSnapshot.
// Nothing is verified here: see Snapshot. FetchSnapshot honours ctx;
// each chunk gives up when the peer sends nothing for 10 seconds. It may
// be called without Run.
func (t *Transport) FetchSnapshot(ctx context.Context, peer string, maxBytes int) (*Snapshot, error) {
	p := t.peer(peer)
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, peer)
	}
	var s *Snapshot
	var total uint64
	for s == nil || uint64(len(s.Data)) < total {
		req := snapshotRequest{}
		if s != nil {
			req = snapshotRequest{Height: s.Height, Offset: uint64(len(s.Data))}
		}
		err := t.oneShot(ctx, p, alpnSnapshot, frameSnapshotRequest, req.encode(), frameSnapshotResponse, func(payload []byte) error {
			resp, err := decodeSnapshotResponse(payload)
			switch {
			case err != nil:
				return err
			case resp.Err != "":
				return fmt.Errorf("%w: %q", ErrRemote, resp.Err)
			case resp.None:
				return ErrNoSnapshot
			}
			if s == nil {
				if resp.Height == 0 || resp.Total == 0 || resp.Total > uint64(maxBytes) || len(resp.Proof) == 0 {
					return fmt.Errorf("%w: snapshot at height %d of %d bytes (limit %d), proof of %d bytes", ErrProtocol, resp.Height, resp.Total, maxBytes, len(resp.Proof))
				}
				s = &Snapshot{Height: resp.Height, Proof: resp.Proof, Members: resp.Members, Data: make([]byte, 0, min(resp.Total, 1<<20))}
				total = resp.Total
			} else if resp.Height != s.Height || resp.Total != total || len(resp.Proof) != 0 || len(resp.Members) != 0 {
				return fmt.Errorf("%w: a chunk of the snapshot at %d of %d bytes, after the first said %d of %d", ErrProtocol, resp.Height, resp.Total, s.Height, total)
			}
			if len(resp.Chunk) == 0 || uint64(len(s.Data))+uint64(len(resp.Chunk)) > total {
				return fmt.Errorf("%w: a chunk of %d bytes at offset %d of %d", ErrProtocol, len(resp.Chunk), len(s.Data), total)
			}
			s.Data = append(s.Data, resp.Chunk...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("cluster: fetch snapshot of %s: %w", peer, err)
		}
	}
	return s, nil
}

// serveSnapshot answers one snapshot request on conn.
func (t *Transport) serveSnapshot(conn *tls.Conn, p *peer, remote string) {
	log := t.log.With("peer", p.ID, "remote", remote)
	typ, payload, err := readFrame(progressReader{conn, idleTimeout}, snapshotRequestLen)
	var req snapshotRequest
	if err == nil {
		if typ != frameSnapshotRequest {
			err = fmt.Errorf("%w: %s frame on a snapshot connection", ErrProtocol, typ)
		} else {
			req, err = decodeSnapshotRequest(payload)
		}
	}
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug
		}
		log.Log(context.Background(), level, "snapshot request refused", "err", err)
		return
	}
	resp := t.answerSnapshot(req)
	if resp.Err != "" {
		log.Warn("snapshot fetch failed", "height", req.Height, "offset", req.Offset, "err", resp.Err)
	}
	if err := writeFrame(progressWriter{conn, writeTimeout}, frameSnapshotResponse, resp.encode()); err != nil {
		log.Warn("snapshot response failed", "err", err)
		return
	}
	log.Debug("snapshot served", "height", resp.Height, "offset", req.Offset, "bytes", len(resp.Chunk))
}

// answerSnapshot asks the Handler for the snapshot req names and cuts the
// chunk at req.Offset that fits in one frame.
func (t *Transport) answerSnapshot(req snapshotRequest) snapshotResponse {
	s, err := t.h.Snapshot(req.Height, req.Offset == 0)
	switch {
	case err != nil:
		return snapshotResponse{Err: errText(err.Error())}
	case s == nil || s.Data == nil:
		return snapshotResponse{None: true}
	case req.Offset >= uint64(len(s.Data)):
		return snapshotResponse{Err: fmt.Sprintf("offset %d is past the snapshot's %d bytes", req.Offset, len(s.Data))}
	}
	proof, members := s.Proof, s.Members
	if req.Offset > 0 {
		proof, members = nil, nil
	}
	room := t.cfg.MaxFrame - snapshotResponseHeader - len(proof) - len(members)
	if room <= 0 {
		return snapshotResponse{Err: fmt.Sprintf("the proofs are %d bytes, more than a frame holds (%d)", len(proof)+len(members), t.cfg.MaxFrame)}
	}
	chunk := s.Data[req.Offset:min(uint64(len(s.Data)), req.Offset+uint64(room))]
	return snapshotResponse{Height: s.Height, Total: uint64(len(s.Data)), Proof: proof, Members: members, Chunk: chunk}
}
