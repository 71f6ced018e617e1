package coap

import (
	"encoding/hex"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Observe sequence numbers (RFC 7641 4.4): the registration's answer,
// then the one notification, the receipt.
const (
	obsRegistered = 2
	obsReceipt    = 3
)

// observer is a registration (RFC 7641): for a receipt not committed
// yet, it gets one notification, the receipt, then it ends; for a
// device's manifest (watch is set), a notification each time it changes,
// until it expires.
type observer struct {
	p       *peer
	token   string
	id      [32]byte
	watch   string       // a manifest's watchKey; "" for a receipt
	typ     message.Type // of the registration: a CON one gets CON notifications
	expires time.Time
}

// getReceipt answers GET lg/v1/receipts/<tx id>: 2.05 with the receipt,
// or 4.04 if the tx is not committed. With Observe 0 the request
// registers for the receipt, if there is room: the answer is 2.05 with
// Observe and no payload, and the receipt comes as a notification when
// the tx commits (or a 4.04 after ObserveTimeout). Any other GET ends a
// registration of the same peer and token (RFC 7641 3.6, 4.1).
func (s *Server) getReceipt(p *peer, req *pool.Message, txid string, now time.Time) answer {
	id, err := ledger.ParseHash(txid)
	if err != nil {
		return refuse(ledger.ReasonNotFound, "%q is not a tx id (64 hex digits)", clip(txid, 64))
	}
	if acc, err := req.Accept(); err == nil && acc != message.AppCBOR {
		return refuse(ledger.ReasonNotAcceptable, "a receipt is application/cbor (60)")
	}
	token := string(req.Token())
	obs, err := req.Observe()
	if err != nil || obs != 0 {
		s.unobserve(p, token)
		return s.block2(req, s.receiptAnswer(id))
	}
	// Register first, then look: a commit in between notifies.
	registered := s.observe(p, token, id, req.Type(), now)
	a := s.receiptAnswer(id)
	if a.code == codes.Content || !registered {
		if registered {
			s.unobserve(p, token)
		}
		return s.block2(req, a) // no Observe: not registered (RFC 7641 4.1)
	}
	return answer{code: codes.Content, format: formatNone, reason: resultObserving,
		observe: opt(obsRegistered), maxAge: opt(uint32(s.cfg.ObserveTimeout / time.Second))}
}

// receiptAnswer is 2.05 with the receipt of tx id, or 4.04.
func (s *Server) receiptAnswer(id [32]byte) answer {
	rc, err := s.d.Receipts.Receipt(id)
	if err != nil {
		s.log.Debug("coap receipt", "tx", hex.EncodeToString(id[:]), "error", err)
		return refuse(ledger.ReasonNotFound, "tx %x is not committed", id)
	}
	b, err := rc.Encode()
	if err != nil {
		s.log.Error("coap encode receipt", "error", err)
		return refuse(ledger.ReasonInternal, "the receipt could not be encoded")
	}
	return answer{code: codes.Content, format: int(message.AppCBOR), body: b, etag: etagOf(b), reason: resultAnswered}
}

// observe registers p's token for the receipt of id, replacing p's
// registration with that token; false if there is no room.
func (s *Server) observe(p *peer, token string, id [32]byte, typ message.Type, now time.Time) bool {
	return s.register(&observer{p: p, token: token, id: id, typ: typ, expires: now.Add(s.cfg.ObserveTimeout)})
}

// register adds o, an observation of a receipt (o.id) or of a manifest
// (o.watch), replacing its peer's registration with the same token;
// false if there is no room.
func (s *Server) register(o *observer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	p := o.p
	if old := p.observers[o.token]; old != nil {
		s.removeObserverLocked(old)
	}
	if len(p.observers) >= s.cfg.MaxObservationsPerPeer || s.nobs >= s.cfg.MaxObservations {
		return false
	}
	if p.observers == nil {
		p.observers = map[string]*observer{}
	}
	p.observers[o.token] = o
	if o.watch != "" {
		addTo(s.watching, o.watch, o)
	} else {
		addTo(s.observing, o.id, o)
	}
	s.nobs++
	s.m.observations.Set(float64(s.nobs))
	return true
}

// unobserve ends p's registration with token, if any.
func (s *Server) unobserve(p *peer, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := p.observers[token]; o != nil {
		s.removeObserverLocked(o)
	}
}

func (s *Server) removeObserverLocked(o *observer) {
	if o.p.observers[o.token] != o {
		return
	}
	delete(o.p.observers, o.token)
	if o.watch != "" {
		removeFrom(s.watching, o.watch, o)
	} else {
		removeFrom(s.observing, o.id, o)
	}
	s.nobs--
	s.m.observations.Set(float64(s.nobs))
}

// dropObserversLocked ends p's registrations.
func (s *Server) dropObserversLocked(p *peer) {
	for _, o := range p.observers {
		s.removeObserverLocked(o)
	}
}

// Committed notifies the observers of the receipts of ids, txs that just
// committed. The daemon calls it for every committed block (a commit
// listener on the chain), whichever front end the txs came through. It does not
// block: the notifications are sent by goroutines of their own.
func (s *Server) Committed(ids [][32]byte) {
	s.mu.Lock()
	if s.nobs == 0 {
		s.mu.Unlock()
		return
	}
	var due []*observer
	for _, id := range ids {
		for o := range s.observing[id] {
			due = append(due, o)
		}
	}
	for _, o := range due {
		s.removeObserverLocked(o)
	}
	s.mu.Unlock()
	if len(due) == 0 || !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		answers := map[[32]byte]answer{}
		for _, o := range due {
			a, ok := answers[o.id]
			if !ok {
				a = s.receiptAnswer(o.id)
				a.observe = opt(obsReceipt)
				answers[o.id] = a
			}
			if !s.track() {
				return
			}
			go func() {
				defer s.wg.Done()
				s.m.notifications.WithLabelValues(a.reason).Inc()
				_ = s.send(o.p, o.typ, []byte(o.token), s.firstBlock(a))
			}()
		}
	}()
}

// firstBlock cuts a notification's payload to its first block: the
// client asks for the others with GET and Block2 (RFC 7959 3.4).
func (s *Server) firstBlock(a answer) answer {
	if len(a.body) <= s.cfg.BlockSize {
		return a
	}
	szx, _ := szxOf(s.cfg.BlockSize)
	out := a
	out.body = a.body[:s.cfg.BlockSize]
	out.block2 = opt(block{num: 0, more: true, szx: szx}.encode())
	out.size2 = opt(uint32(len(a.body)))
	return out
}

// expireObservations ends the registrations older than ObserveTimeout:
// a receipt's with a 4.04 without Observe (RFC 7641 3.2: the client is
// no longer registered), sent NON; a manifest's without a word (its
// answers' Max-Age told the client when to register again).
func (s *Server) expireObservations(now time.Time) {
	s.mu.Lock()
	var due []*observer
	for _, set := range s.observing {
		for o := range set {
			if now.After(o.expires) {
				due = append(due, o)
			}
		}
	}
	for _, set := range s.watching {
		for o := range set {
			if now.After(o.expires) {
				s.removeObserverLocked(o)
			}
		}
	}
	for _, o := range due {
		s.removeObserverLocked(o)
	}
	s.mu.Unlock()
	for _, o := range due {
		a := refuse(ledger.ReasonNotFound, "tx %x did not commit within %v", o.id, s.cfg.ObserveTimeout)
		s.m.notifications.WithLabelValues(a.reason).Inc()
		_ = s.send(o.p, message.NonConfirmable, []byte(o.token), a)
	}
}
