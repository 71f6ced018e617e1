package coap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// maxRecordBytes is the largest record taken: MaxRecordBytes, at most
// the chain's max_tx_bytes.
func (s *Server) maxRecordBytes() int {
	limit := s.d.Directory.MaxTxBytes()
	if s.cfg.MaxRecordBytes > 0 && s.cfg.MaxRecordBytes < limit {
		limit = s.cfg.MaxRecordBytes
	}
	return limit
}

// postRecord answers POST lg/v1/data/<stream>: a record, posted as
// postTx does.
func (s *Server) postRecord(p *peer, req *pool.Message, stream string, now time.Time) answer {
	if !ledger.ValidID(stream) {
		return refuse(ledger.ReasonNotFound, "%q is not a stream id", clip(stream, ledger.MaxIDLen))
	}
	return s.postTx(p, req, txPost{resource: "data", key: stream, check: func(env []byte, limit int) (*ledger.Tx, error) {
		// Over CoAP the device is the record's author: UDP carries no
		// identity, and over DTLS the session's key is checked against
		// the author's (submit).
		tx, err := bridge.DecodeTx(env, limit)
		if err != nil {
			return nil, err
		}
		if err := bridge.CheckRecordTx(tx, tx.Author, stream); err != nil {
			return nil, err
		}
		return tx, nil
	}}, now)
}

// txPost is a POST of a device's signed tx: a record or a report.
type txPost struct {
	resource string // in metrics
	// key names the resource's Block1 transfers (with the peer and the
	// Request-Tag): a stream id, or a path with a '/', which no stream
	// id has.
	key string
	// check is the decode-and-check of the tx, at most limit bytes
	// (bridge.CheckRecord, bridge.CheckReport, ...).
	check func(env []byte, limit int) (*ledger.Tx, error)
}

// postTx answers the POST of a tx: it reassembles Block1 transfers,
// checks the tx and commits it. The answer is 2.04 after the commit, or
// a refusal.
func (s *Server) postTx(p *peer, req *pool.Message, tp txPost, now time.Time) answer {
	if cf, err := req.ContentFormat(); err == nil && cf != message.AppCoseSign1 {
		return refuse(ledger.ReasonFormat, "a tx is application/cose; cose-type=\"cose-sign1\" (18), not %d", cf)
	}
	limit := s.maxRecordBytes()
	payload, err := req.ReadBody()
	if err != nil {
		return refuse(ledger.ReasonMalformed, "payload: %v", err)
	}
	var block1 optUint
	if v, err := req.GetOptionUint32(message.Block1); err == nil {
		size1 := -1
		if n, err := req.GetOptionUint32(message.Size1); err == nil {
			size1 = int(n)
		}
		tag, _ := req.GetOptionBytes(optRequestTag)
		body, a, done := s.blocks.put(p, tp.key, string(tag), v, payload, size1, limit, now)
		if !done {
			return a
		}
		payload, block1 = body, opt(v)
	} else if len(payload) > limit {
		a := refuse(ledger.ReasonTooLarge, "a %d-byte tx, at most %d", len(payload), limit)
		a.size1 = opt(uint32(limit))
		return a
	}
	// RFC 7959 2.3: the final response names the last block.
	a := s.submit(p, req, payload, tp, limit, block1, now)
	a.block1 = block1
	return a
}

// submit checks env with tp.check, proposes it and waits up to
// AckWait for its commit: the answer is the commit's (2.04 with the
// receipt, or a refusal), or separate, and the goroutine that waits for
// the commit sends the response, with block1, when it comes.
func (s *Server) submit(p *peer, req *pool.Message, env []byte, tp txPost, limit int, block1 optUint, start time.Time) answer {
	tx, err := tp.check(env, limit)
	if err != nil {
		return s.refusal(err)
	}
	if p.dtls != nil {
		if a, ok := s.checkSession(p, tx.Author); !ok {
			return a
		}
	}
	if !s.track() {
		return refuse(ledger.ReasonUnavailable, "the gateway is shutting down")
	}
	p.mu.Lock()
	full := p.inflight >= s.cfg.MaxInflight
	if !full {
		p.inflight++
	}
	p.mu.Unlock()
	if full {
		s.wg.Done()
		return refuse(ledger.ReasonOverloaded, "%d records of this peer wait for their commits", s.cfg.MaxInflight)
	}
	release := func() {
		p.mu.Lock()
		p.inflight--
		p.mu.Unlock()
	}
	if !s.d.Limiter.Acquire(len(env)) {
		release()
		s.wg.Done()
		return refuse(ledger.ReasonOverloaded, "too many records waiting at this gateway")
	}
	release = func() {
		s.d.Limiter.Release(len(env))
		p.mu.Lock()
		p.inflight--
		p.mu.Unlock()
	}
	t, err := s.d.Committer.Propose(s.ctx, tx)
	if err != nil {
		release()
		s.wg.Done()
		return s.refusal(err)
	}
	w := &waiting{done: make(chan answer, 1)}
	typ, token, size := req.Type(), bytes.Clone(req.Token()), s.answerBlockSize(req)
	go func() {
		defer s.wg.Done()
		rc, err := t.Wait(s.ctx)
		release()
		var a answer
		if err != nil {
			a = s.refusal(err)
		} else {
			a = s.changed(rc, size)
			s.m.latency.Observe(s.now().Sub(start).Seconds())
		}
		if w.deliver(a) {
			return
		}
		if s.ctx.Err() != nil {
			return // no answer: the client sends the record again
		}
		s.m.requests.WithLabelValues(tp.resource, a.reason).Inc()
		a.block1 = block1
		_ = s.send(p, typ, token, a)
	}()
	timer := time.NewTimer(s.cfg.AckWait)
	defer timer.Stop()
	select {
	case a := <-w.done:
		return a
	case <-timer.C:
	}
	if a, ok := w.late(); ok {
		return a
	}
	return answer{separate: true}
}

// waiting hands a commit's answer to the handler while it waits, or
// tells the committing goroutine to send it itself.
type waiting struct {
	mu   sync.Mutex
	gone bool // the handler stopped waiting
	done chan answer
}

// deliver gives a to the waiting handler; false if it stopped waiting.
func (w *waiting) deliver(a answer) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return false
	}
	w.done <- a
	return true
}

// late stops the wait; it returns an answer delivered meanwhile.
func (w *waiting) late() (answer, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gone = true
	select {
	case a := <-w.done:
		return a, true
	default:
		return answer{}, false
	}
}

// changed is the 2.04 of a committed record: the receipt (CBOR) if it
// fits a block of size bytes, or else the tx id (hex, text/plain) with
// the receipt's Location-Path, to GET block-wise.
func (s *Server) changed(rc *ledger.Receipt, size int) answer {
	b, err := rc.Encode()
	if err != nil {
		s.log.Error("coap encode receipt", "error", err)
		return refuse(ledger.ReasonInternal, "the receipt could not be encoded")
	}
	if len(b) <= size {
		return answer{code: codes.Changed, format: int(message.AppCBOR), body: b, reason: resultAccepted}
	}
	id := ledger.TxID(rc.Tx)
	h := hex.EncodeToString(id[:])
	return answer{code: codes.Changed, format: int(message.TextPlain), body: []byte(h), reason: resultAccepted,
		location: []string{"lg", "v1", "receipts", h}}
}

// answerBlockSize is the largest payload of an answer to req: BlockSize,
// or less if the request asks for smaller blocks (RFC 7959 2.4).
func (s *Server) answerBlockSize(req *pool.Message) int {
	size := s.cfg.BlockSize
	if v, err := req.GetOptionUint32(message.Block2); err == nil {
		if b, ok := decodeBlock(v); ok && b.size() < size {
			size = b.size()
		}
	}
	return size
}

// checkSession checks a record's author against the DTLS session: the
// client certificate's key must be the author's enrolled key.
func (s *Server) checkSession(p *peer, author string) (answer, bool) {
	spki, err := p.dtls.peerKey()
	if err != nil {
		return refuse(ledger.ReasonWrongCert, "%v", err), false
	}
	dev, ok := s.d.Directory.Device(author)
	if !ok {
		return refuse("unknown_author", "no device %q", author), false
	}
	if dev.Key == nil || !bytes.Equal(dev.Key.DER, spki) {
		return refuse(ledger.ReasonWrongCert, "the DTLS client certificate's key is not device %s's enrolled key", author), false
	}
	return answer{}, true
}

// send sends a, a separate response or a notification, to the request
// of type typ with token: as CON to a CON request (resent until it is
// acknowledged, MAX_TRANSMIT_SPAN at most), else as NON. It returns
// when it is acknowledged or given up, with an error if it was not
// delivered.
func (s *Server) send(p *peer, typ message.Type, token []byte, a answer) error {
	ctx, cancel := context.WithTimeout(s.ctx, maxTransmitSpan)
	defer cancel()
	m := p.cc.AcquireMessage(ctx)
	defer p.cc.ReleaseMessage(m)
	put(m, a)
	m.SetToken(token)
	if typ == message.Confirmable {
		m.SetType(message.Confirmable)
	} else {
		m.SetType(message.NonConfirmable)
	}
	if err := p.cc.WriteMessage(m); err != nil {
		s.log.Debug("coap response not delivered", "remote", p.cc.RemoteAddr(), "code", a.code, "error", err)
		return err
	}
	return nil
}

// etagOf is the ETag of a representation: its SHA-256, cut to 8 bytes.
func etagOf(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:8]
}

// clip shortens s for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
