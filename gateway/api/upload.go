package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// An upload is a POST of a signed tx with the off-chain bytes it names:
// a config.set with its sealed blob (POST /api/v1/configs), a
// firmware.publish with its image (POST /api/v1/firmware). The body is
// the CBOR map {1: tx, 2: bytes}, deterministically encoded (RFC 8949
// 4.2.1: definite lengths in their shortest form, key 1 first), so that
// the gateway reads it as a stream: the tx first, at most max_tx_bytes,
// which it checks (signature, author, state) before it reads a byte of
// the rest; then the length of the bytes, which must fit the bound (and
// for an image be the size the manifest names); then the bytes, straight
// to a temporary file in the blob store, hashed on the way and stored
// only if their SHA-256 is the one the tx names. Nothing an
// unauthenticated client sends is held in memory beyond its tx, and at
// most DefaultMaxUploads uploads (SetMaxUploads) are read at once: the
// others are answered 503 overloaded with Retry-After.

// DefaultMaxUploads is how many uploads are read at once unless
// SetMaxUploads says otherwise.
const DefaultMaxUploads = 2

// Upload timing: a client has the server's read timeout (30 s) to send
// its headers and tx; once the tx is checked, uploadTimeout to send the
// rest and read the answer.
const uploadTimeout = 10 * time.Minute

// retryUpload is the Retry-After, in seconds, of an upload refused
// because MaxUploads others are being read.
const retryUpload = "5"

// SetMaxUploads sets how many uploads are read at once (at least 1). It
// must be called before the server serves.
func (s *Server) SetMaxUploads(n int) { s.uploads = make(chan struct{}, max(n, 1)) }

// PublishHead is the start of an upload's body: the CBOR map header, key
// 1 and the tx, key 2 and the head of a byte string of size bytes. The
// body is PublishHead followed by those bytes.
func PublishHead(env []byte, size int64) []byte {
	b := []byte{0xa2, 0x01}
	b = ledger.AppendCBORHead(b, 2, uint64(len(env)))
	b = append(b, env...)
	b = append(b, 0x02)
	return ledger.AppendCBORHead(b, 2, uint64(size))
}

// headError is an upload body that does not start as PublishHead does.
type headError struct {
	tooLarge bool // the tx or the bytes are over their bound
	msg      string
}

func (e *headError) Error() string { return "api: upload: " + e.msg }

// readPublishHead reads PublishHead from r: the tx (at most maxTx bytes)
// and the length of the bytes that follow (at most maxBytes). It
// decodes outside bytes and is fuzzed: it must never panic, and it
// allocates only the tx.
func readPublishHead(r *bufio.Reader, maxTx int, maxBytes int64) ([]byte, int64, error) {
	for _, want := range []byte{0xa2, 0x01} {
		if b, err := r.ReadByte(); err != nil || b != want {
			return nil, 0, &headError{msg: "want a deterministic CBOR map {1: tx, 2: bytes}"}
		}
	}
	n, err := readBytesHead(r)
	if err != nil {
		return nil, 0, err
	}
	if n > uint64(maxTx) {
		return nil, 0, &headError{tooLarge: true, msg: fmt.Sprintf("tx of %d bytes, at most %d", n, maxTx)}
	}
	env := make([]byte, n)
	if _, err := io.ReadFull(r, env); err != nil {
		return nil, 0, &headError{msg: "the body ends in the tx"}
	}
	if b, err := r.ReadByte(); err != nil || b != 0x02 {
		return nil, 0, &headError{msg: "want key 2 after the tx"}
	}
	size, err := readBytesHead(r)
	if err != nil {
		return nil, 0, err
	}
	if size > uint64(maxBytes) {
		return nil, 0, &headError{tooLarge: true, msg: fmt.Sprintf("%d bytes after the tx, at most %d", size, maxBytes)}
	}
	return env, int64(size), nil
}

// readBytesHead reads the head of a definite-length byte string in its
// shortest form and returns its length.
func readBytesHead(r *bufio.Reader) (uint64, error) {
	b, err := r.ReadByte()
	if err != nil || b>>5 != 2 {
		return 0, &headError{msg: "want a byte string"}
	}
	ai := b & 0x1f
	if ai < 24 {
		return uint64(ai), nil
	}
	if ai > 27 {
		return 0, &headError{msg: "want a definite-length byte string"}
	}
	var buf [8]byte
	k := 1 << (ai - 24) // 1, 2, 4 or 8 bytes
	if _, err := io.ReadFull(r, buf[8-k:]); err != nil {
		return 0, &headError{msg: "the body ends in a length"}
	}
	v := binary.BigEndian.Uint64(buf[:])
	if least := [...]uint64{24, 0x100, 0x10000, 0x100000000}[ai-24]; v < least {
		return 0, &headError{msg: "a length not in its shortest form (RFC 8949 4.2.1)"}
	}
	return v, nil
}

// countingReader counts the bytes read through it and keeps its
// reader's error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// publish serves an upload (see the top of this file). check checks the
// tx, given the size of the bytes that follow it, before any of them is
// read; put stores the bytes; then the tx is submitted and the answer is
// its receipt, once committed.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, maxBytes int64, what string,
	check func(env []byte, size int64) (*ledger.Tx, error), put func(tx *ledger.Tx, r io.Reader, size int64) error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/cbor" {
		writeError(w, http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/cbor")
		return
	}
	body := &countingReader{r: r.Body}
	br := bufio.NewReader(body)
	env, size, err := readPublishHead(br, s.info.MaxTxBytes, maxBytes)
	if err != nil {
		var he *headError
		switch {
		case body.err != nil:
			writeError(w, http.StatusBadRequest, "bad_request", "read body: "+body.err.Error())
		case errors.As(err, &he) && he.tooLarge:
			writeError(w, http.StatusRequestEntityTooLarge, string(ledger.ReasonTooLarge), he.msg)
		default:
			writeError(w, http.StatusBadRequest, "bad_request", err.Error()+" ({1: "+what+"})")
		}
		return
	}
	tx, err := check(env, size)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	select {
	case s.uploads <- struct{}{}:
	default:
		w.Header().Set("Retry-After", retryUpload)
		writeError(w, http.StatusServiceUnavailable, string(ledger.ReasonOverloaded),
			fmt.Sprintf("%d uploads are being received; send again later", cap(s.uploads)))
		return
	}
	ctl := http.NewResponseController(w)
	_ = ctl.SetReadDeadline(time.Now().Add(uploadTimeout)) // not every ResponseWriter can
	_ = ctl.SetWriteDeadline(time.Now().Add(uploadTimeout))
	start := body.n - int64(br.Buffered())
	err = put(tx, br, size)
	<-s.uploads
	if err != nil {
		if body.err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "read body: "+body.err.Error())
			return
		}
		s.writeErr(w, err)
		return
	}
	if read := body.n - int64(br.Buffered()) - start; read == size {
		// The store read the bytes (it skips a blob it has): nothing
		// may follow them.
		if _, err := br.ReadByte(); err != io.EOF {
			writeError(w, http.StatusBadRequest, "bad_request", "bytes after the map {1: "+what+"}")
			return
		}
	}
	rc, err := s.ledger.SubmitTx(r.Context(), tx)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeReceipt(w, r, rc)
}
