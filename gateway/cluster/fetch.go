package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ErrRemote is returned by Fetch and FetchBlob when the peer answered with
// an error.
var ErrRemote = errors.New("cluster: peer could not serve the request")

const (
	// MaxFetchBlocks is the most blocks one Fetch asks for and one answer
	// holds.
	MaxFetchBlocks = 256

	maxErrText = 512 // bytes of error text in a fetch or blob response
)

// Fetch asks peer for the encoded blocks [from, from+max) over a connection
// of its own. max is capped at MaxFetchBlocks, and the peer answers with as
// many as fit in a frame, so it may return fewer, or none if the peer does
// not have block from. Fetch honours ctx; it also gives up when the peer
// sends nothing for 10 seconds. It may be called without Run.
func (t *Transport) Fetch(ctx context.Context, peer string, from uint64, max int) ([][]byte, error) {
	p := t.peer(peer)
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, peer)
	}
	if max <= 0 {
		return nil, fmt.Errorf("cluster: fetch from %s: max %d, want more than 0", peer, max)
	}
	max = min(max, MaxFetchBlocks)
	req := fetchRequest{From: from, Max: uint32(max)}
	var blocks [][]byte
	err := t.oneShot(ctx, p, alpnFetch, frameFetchRequest, req.encode(), frameFetchResponse, func(payload []byte) error {
		resp, err := decodeFetchResponse(payload)
		if err != nil {
			return err
		}
		if resp.Err != "" {
			return fmt.Errorf("%w: %q", ErrRemote, resp.Err)
		}
		if len(resp.Blocks) > max {
			return fmt.Errorf("%w: %d blocks in answer to a request for %d", ErrProtocol, len(resp.Blocks), max)
		}
		blocks = resp.Blocks
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: fetch blocks from %d of %s: %w", from, peer, err)
	}
	return blocks, nil
}

// oneShot sends peer p one request frame over a connection of its own
// (ALPN proto) and hands the payload of the one response frame, which
// must be of type want, to answer. It honours ctx and gives up when the
// peer sends nothing for idleTimeout; an error caused by Close is
// ErrClosed, one caused by ctx is ctx's error.
func (t *Transport) oneShot(ctx context.Context, p *peer, proto string, reqType frameType, req []byte, want frameType, answer func([]byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.stopCtx, cancel)()
	err := t.exchange(ctx, p, proto, reqType, req, want, answer)
	switch {
	case err == nil:
		return nil
	case t.stopCtx.Err() != nil:
		return ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

func (t *Transport) exchange(ctx context.Context, p *peer, proto string, reqType frameType, req []byte, want frameType, answer func([]byte) error) error {
	cert, err := t.identity()
	if err != nil {
		return err
	}
	conn, err := t.dial(ctx, cert, p, proto)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	// Cancellation and ctx's deadline close the connection; each read and
	// write has its own deadline besides.
	defer context.AfterFunc(ctx, func() { conn.Close() })()

	w := progressWriter{conn, writeTimeout}
	if _, err := w.Write(appendFrame(nil, reqType, req)); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	typ, payload, err := readFrame(progressReader{conn, idleTimeout}, t.cfg.MaxFrame)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read response: %w", err)
	}
	if typ != want {
		return fmt.Errorf("%w: %s frame in answer to a %s", ErrProtocol, typ, reqType)
	}
	return answer(payload)
}

// serveFetch answers one fetch request on conn.
func (t *Transport) serveFetch(conn *tls.Conn, p *peer, remote string) {
	log := t.log.With("peer", p.ID, "remote", remote)
	typ, payload, err := readFrame(progressReader{conn, idleTimeout}, fetchRequestLen)
	var req fetchRequest
	if err == nil {
		if typ != frameFetchRequest {
			err = fmt.Errorf("%w: %s frame on a fetch connection", ErrProtocol, typ)
		} else {
			req, err = decodeFetchRequest(payload)
		}
	}
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug
		}
		log.Log(context.Background(), level, "fetch request refused", "err", err)
		return
	}

	resp := t.answerFetch(req)
	if resp.Err != "" {
		log.Warn("fetch failed", "from", req.From, "max", req.Max, "err", resp.Err)
	}
	if err := writeFrame(progressWriter{conn, writeTimeout}, frameFetchResponse, resp.encode()); err != nil {
		log.Warn("fetch response failed", "from", req.From, "err", err)
		return
	}
	log.Debug("fetch served", "from", req.From, "max", req.Max, "blocks", len(resp.Blocks))
}

// answerFetch asks the Handler for the blocks req names and keeps as many
// as fit in one frame: at least one if it has any, or an error if the first
// alone is too large.
func (t *Transport) answerFetch(req fetchRequest) fetchResponse {
	n := int(min(req.Max, MaxFetchBlocks))
	if n == 0 {
		return fetchResponse{}
	}
	blocks, err := t.h.Blocks(req.From, n)
	if err != nil {
		return fetchResponse{Err: errText(err.Error())}
	}
	blocks = blocks[:min(len(blocks), n)]
	size := fetchResponseSize(nil)
	for i, b := range blocks {
		size += 4 + len(b)
		if size > t.cfg.MaxFrame {
			if i == 0 {
				return fetchResponse{Err: fmt.Sprintf("block %d is %d bytes, more than a frame holds (%d)", req.From, len(b), t.cfg.MaxFrame)}
			}
			blocks = blocks[:i]
			break
		}
	}
	return fetchResponse{Blocks: blocks}
}

// errText is s fit for a fetch or blob response: not empty, valid UTF-8, at
// most maxErrText bytes.
func errText(s string) string {
	if len(s) > maxErrText {
		s = s[:maxErrText]
	}
	s = strings.ToValidUTF8(s, "")
	if s == "" {
		s = "unknown error"
	}
	return s
}
