package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// ErrNoBlob is returned by FetchBlob when the peer does not have the blob.
var ErrNoBlob = errors.New("cluster: peer does not have the blob")

// FetchBlob asks peer for the blob whose SHA-256 is hash, over a connection
// of its own, and returns it only if its bytes hash to hash: a peer that
// sends other bytes is an ErrProtocol. It fails with ErrNoBlob if the peer
// does not have the blob and with ErrRemote if the peer could not serve it.
// FetchBlob honours ctx; it also gives up when the peer sends nothing for
// 10 seconds. It may be called without Run.
func (t *Transport) FetchBlob(ctx context.Context, peer string, hash [32]byte) ([]byte, error) {
	p := t.peer(peer)
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, peer)
	}
	var blob []byte
	err := t.oneShot(ctx, p, alpnBlob, frameBlobRequest, hash[:], frameBlobResponse, func(payload []byte) error {
		resp, err := decodeBlobResponse(payload)
		switch {
		case err != nil:
			return err
		case resp.Err != "":
			return fmt.Errorf("%w: %q", ErrRemote, resp.Err)
		case resp.Missing:
			return ErrNoBlob
		}
		if sum := sha256.Sum256(resp.Blob); sum != hash {
			return fmt.Errorf("%w: blob of %d bytes has SHA-256 %x", ErrProtocol, len(resp.Blob), sum)
		}
		blob = resp.Blob
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: fetch blob %x of %s: %w", hash, peer, err)
	}
	return blob, nil
}

// serveBlob answers one blob request on conn.
func (t *Transport) serveBlob(conn *tls.Conn, p *peer, remote string) {
	log := t.log.With("peer", p.ID, "remote", remote)
	typ, payload, err := readFrame(progressReader{conn, idleTimeout}, blobRequestLen)
	var hash [32]byte
	if err == nil {
		if typ != frameBlobRequest {
			err = fmt.Errorf("%w: %s frame on a blob connection", ErrProtocol, typ)
		} else {
			hash, err = decodeBlobRequest(payload)
		}
	}
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug
		}
		log.Log(context.Background(), level, "blob request refused", "err", err)
		return
	}

	log = log.With("hash", hex.EncodeToString(hash[:]))
	resp := t.answerBlob(hash)
	if resp.Err != "" {
		log.Warn("blob fetch failed", "err", resp.Err)
	}
	if err := writeFrame(progressWriter{conn, writeTimeout}, frameBlobResponse, resp.encode()); err != nil {
		log.Warn("blob response failed", "err", err)
		return
	}
	log.Debug("blob served", "missing", resp.Missing, "bytes", len(resp.Blob))
}

// answerBlob asks the Handler for the blob whose SHA-256 is hash: its bytes
// are the peer's to check. A blob that does not fit in one frame is an
// error.
func (t *Transport) answerBlob(hash [32]byte) blobResponse {
	b, err := t.h.Blob(hash)
	switch {
	case err != nil:
		return blobResponse{Err: errText(err.Error())}
	case b == nil:
		return blobResponse{Missing: true}
	case 1+len(b) > t.cfg.MaxFrame:
		return blobResponse{Err: fmt.Sprintf("blob is %d bytes, more than a frame holds (%d)", len(b), t.cfg.MaxFrame)}
	}
	return blobResponse{Blob: b}
}
