package coap

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// devicePrefix is the parent of a device's resources:
// lg/v1/<device>/... as the MQTT topics. The ids "data", "receipts" and "cluster"
// name the resources of every device instead (see serve).
const devicePrefix = "lg/v1/"

// manifest is a device's observable answer: its configuration or its
// firmware offer.
type manifest struct {
	level string // config or firmware: the resource under the device
	what  string // for refusals
	read  func(a bridge.Answers, device string) ([]byte, error)
}

var (
	configManifest   = manifest{level: "config", what: "configuration", read: bridge.Answers.Config}
	firmwareManifest = manifest{level: "firmware", what: "firmware to install", read: bridge.Answers.Firmware}
	manifests        = [...]manifest{configManifest, firmwareManifest}
)

// watchKey names the observers of device's manifest m.
func watchKey(m manifest, device string) string { return m.level + "/" + device }

// serveDevice routes a request for lg/v1/<device>/<rest>:
//
//	GET  config                 the ConfigAnswer of its configuration; observable
//	GET  config/verify?h=<hex>  the ConfigAnswer about a configuration hash
//	GET  config/blob            its current configuration's sealed blob
//	GET  config/blob/<sha256>   a sealed blob of its configurations
//	POST config/report          a config.report tx
//	GET  keys/<other>           the KeysAnswer of device other
//	GET  firmware               the FirmwareAnswer of what it may install; observable
//	GET  firmware/<sha256>      a firmware image
//	POST firmware/report        a firmware.report tx
//	POST rekey                  a device.rekey tx
func (s *Server) serveDevice(p *peer, req *pool.Message, device, rest string, now time.Time) (string, answer) {
	// allowed checks the method of resource and who asks.
	allowed := func(resource string, want codes.Code) (answer, bool) {
		if req.Code() != want {
			return refuse(ledger.ReasonMethod, "%s<device>/%s takes %v", devicePrefix, resource, want), false
		}
		return s.mayAsk(p, device)
	}
	level, arg, _ := strings.Cut(rest, "/")
	oneSegment := arg != "" && !strings.Contains(arg, "/")
	switch {
	case rest == "config" || rest == "firmware":
		m := configManifest
		if rest == "firmware" {
			m = firmwareManifest
		}
		if a, ok := allowed(rest, codes.GET); !ok {
			return rest, a
		}
		return rest, s.getManifest(p, req, device, m, now)
	case rest == "config/verify":
		if a, ok := allowed(rest, codes.GET); !ok {
			return "verify", a
		}
		return "verify", s.verifyConfig(req, device)
	case rest == "config/blob" || strings.HasPrefix(rest, "config/blob/") && !strings.Contains(rest[len("config/blob/"):], "/"):
		if a, ok := allowed("config/blob", codes.GET); !ok {
			return "blob", a
		}
		return "blob", s.getBlob(req, device, strings.TrimPrefix(strings.TrimPrefix(rest, "config/blob"), "/"))
	case rest == "config/report" || rest == "firmware/report":
		if a, ok := allowed(rest, codes.POST); !ok {
			return "report", a
		}
		check := bridge.CheckReport
		if rest == "firmware/report" {
			check = bridge.CheckFirmwareReport
		}
		return "report", s.postTx(p, req, txPost{resource: "report", key: device + "/" + rest,
			check: func(env []byte, limit int) (*ledger.Tx, error) { return check(env, device, limit) }}, now)
	case rest == "rekey":
		if a, ok := allowed(rest, codes.POST); !ok {
			return "rekey", a
		}
		return "rekey", s.postTx(p, req, txPost{resource: "rekey", key: device + "/" + rest,
			check: func(env []byte, limit int) (*ledger.Tx, error) { return bridge.CheckRekey(env, device, limit) }}, now)
	case level == "keys" && oneSegment:
		if a, ok := allowed("keys/<other>", codes.GET); !ok {
			return "keys", a
		}
		return "keys", s.getKeys(req, device, arg)
	case level == "firmware" && oneSegment:
		if a, ok := allowed("firmware/<sha256>", codes.GET); !ok {
			return "image", a
		}
		return "image", s.getImage(req, arg)
	}
	return "other", refuse(ledger.ReasonNotFound, "no such resource")
}

// mayAsk checks that p may ask about device, or post its reports: over
// UDP anyone may, as on the HTTP API (the answers are proofs anyone may
// check, the blobs are sealed to their devices, and reports are signed);
// over DTLS only the device whose enrolled key is the session's. An
// unknown device is 4.04.
func (s *Server) mayAsk(p *peer, device string) (answer, bool) {
	if !ledger.ValidID(device) {
		return refuse(ledger.ReasonNotFound, "%q is not a device id", clip(device, ledger.MaxIDLen)), false
	}
	dev, ok := s.d.Directory.Device(device)
	if !ok {
		return refuse(ledger.ReasonNotFound, "no device %q", device), false
	}
	if p.dtls == nil {
		return answer{}, true
	}
	spki, err := p.dtls.peerKey()
	if err != nil {
		return refuse(ledger.ReasonWrongCert, "%v", err), false
	}
	if dev.Key == nil || !bytes.Equal(dev.Key.DER, spki) {
		return refuse(ledger.ReasonWrongCert, "the DTLS client certificate's key is not device %s's enrolled key", device), false
	}
	if dev.Revoked {
		return refuse(ledger.ReasonRevoked, "device %s is revoked", device), false
	}
	return answer{}, true
}

// accepts checks the request's Accept option against the resource's one
// format.
func accepts(req *pool.Message, mt message.MediaType) (answer, bool) {
	if acc, err := req.Accept(); err == nil && acc != mt {
		return refuse(ledger.ReasonNotAcceptable, "this resource is content format %d", mt), false
	}
	return answer{}, true
}

// askRefusal is the refusal of an Answers or Images error.
func (s *Server) askRefusal(err error) answer {
	if s.ctx.Err() != nil {
		return refuse(ledger.ReasonUnavailable, "the gateway is shutting down")
	}
	reason := ledger.ReasonOf(err)
	if reason == ledger.ReasonInternal {
		s.log.Warn("coap answer failed", "error", err)
		return refuse(reason, "the gateway could not answer")
	}
	var re *ledger.RefusedError
	if errors.As(err, &re) {
		return refuse(reason, "%s", re.Detail)
	}
	return refuse(reason, "%v", err)
}

// noAnswers is the refusal of a gateway without Answers.
func noAnswers(what string) answer {
	return refuse(ledger.ReasonNotFound, "this gateway does not serve %s", what)
}

// cbor is a 2.05 with a CBOR answer and its ETag.
func cbor(b []byte) answer {
	return answer{code: codes.Content, format: int(message.AppCBOR), body: b, etag: etagOf(b), reason: resultAnswered}
}

// getManifest answers GET lg/v1/<device>/config or /firmware: 2.05 with
// the manifest (CBOR), or 4.04 if there is none. With Observe 0 the
// request registers for changes, if there is room: the answer is 2.05
// with Observe and Max-Age ObserveTimeout, and the manifest, or no
// payload if there is none yet; a notification follows each time it
// changes (no payload: there is none any more), until ObserveTimeout
// after the registration or the last notification. Observe 1 ends the
// registration (RFC 7641 4.1).
func (s *Server) getManifest(p *peer, req *pool.Message, device string, m manifest, now time.Time) answer {
	if a, ok := accepts(req, message.AppCBOR); !ok {
		return a
	}
	if s.d.Answers == nil {
		return noAnswers(m.what)
	}
	token := string(req.Token())
	obs, err := req.Observe()
	if err != nil || obs != 0 {
		if err == nil && obs == 1 {
			s.unobserve(p, token)
		}
		b, err := m.read(s.d.Answers, device)
		if err != nil {
			return s.askRefusal(err)
		}
		if len(b) == 0 {
			return refuse(ledger.ReasonNotFound, "device %s has no %s", device, m.what)
		}
		return s.block2(req, cbor(b))
	}
	// Register first, then read: a change in between notifies.
	registered := s.watch(p, token, watchKey(m, device), req.Type(), now)
	s.manifestMu.Lock()
	b, err := m.read(s.d.Answers, device)
	seq := s.nextSeqLocked()
	s.manifestMu.Unlock()
	if err != nil || !registered {
		if registered {
			s.unobserve(p, token)
		}
		if err != nil {
			return s.askRefusal(err)
		}
		if len(b) == 0 {
			return refuse(ledger.ReasonNotFound, "device %s has no %s", device, m.what)
		}
		return s.block2(req, cbor(b)) // no Observe: not registered (RFC 7641 4.1)
	}
	return s.block2(req, s.notification(b, seq))
}

// notification is a manifest answer with Observe seq: 2.05 with the
// manifest, or without payload if there is none.
func (s *Server) notification(b []byte, seq uint32) answer {
	a := answer{code: codes.Content, format: formatNone, reason: resultObserving}
	if len(b) > 0 {
		a = cbor(b)
	}
	a.observe = opt(seq)
	a.maxAge = opt(uint32(s.cfg.ObserveTimeout / time.Second))
	return a
}

// nextSeqLocked numbers a manifest read under manifestMu (RFC 7641 4.4:
// 24 bits, increasing).
func (s *Server) nextSeqLocked() uint32 {
	s.obsSeq = (s.obsSeq + 1) & 0xffffff
	return s.obsSeq
}

// watch registers p's token for changes of the manifest named key,
// replacing p's registration with that token; false if there is no room.
func (s *Server) watch(p *peer, token, key string, typ message.Type, now time.Time) bool {
	return s.register(&observer{p: p, token: token, watch: key, typ: typ, expires: now.Add(s.cfg.ObserveTimeout)})
}

// Changed notifies the observers of the manifests (configuration,
// firmware) of devices, whose answers may have changed: the daemon calls
// it on the commit path with what the MQTT front end republishes
// (directory.Affected). It does not block. A manifest that cannot be
// read is not notified; one whose device is gone ends its registrations
// with a 4.04.
func (s *Server) Changed(devices []string) {
	if s.d.Answers == nil || len(devices) == 0 {
		return
	}
	type due struct {
		m   manifest
		dev string
		obs []*observer
	}
	var work []due
	s.mu.Lock()
	for _, d := range devices {
		for _, m := range manifests {
			if set := s.watching[watchKey(m, d)]; len(set) > 0 {
				obs := make([]*observer, 0, len(set))
				for o := range set {
					obs = append(obs, o)
				}
				work = append(work, due{m: m, dev: d, obs: obs})
			}
		}
	}
	s.mu.Unlock()
	if len(work) == 0 || !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		for _, w := range work {
			if s.ctx.Err() != nil {
				return
			}
			s.manifestMu.Lock()
			b, err := w.m.read(s.d.Answers, w.dev)
			seq := s.nextSeqLocked()
			s.manifestMu.Unlock()
			a, end := s.notification(b, seq), false
			if err != nil {
				if ledger.ReasonOf(err) != ledger.ReasonNotFound {
					s.log.Warn("coap manifest", "device", w.dev, "manifest", w.m.level, "error", err)
					continue
				}
				a, end = s.askRefusal(err), true // without Observe: the registration ends
			}
			s.notify(w.obs, a, end)
		}
	}()
}

// notify sends a to the manifest observers obs, each on a goroutine of
// its own, and renews their registrations; end, or a CON notification
// not acknowledged, ends them (RFC 7641 4.5). A notification is CON to a
// CON registration, except one that carries only the first block of a
// larger manifest: that is NON (RFC 7641 4.5 leaves the type to the
// server), because a client answers it with the GET of the next block
// (RFC 7959 3.4), and go-coap's client puts that GET in the ACK of a CON
// notification, which is no request.
func (s *Server) notify(obs []*observer, a answer, end bool) {
	now := s.now()
	s.mu.Lock()
	for _, o := range obs {
		if end {
			s.removeObserverLocked(o)
		} else {
			o.expires = now.Add(s.cfg.ObserveTimeout)
		}
	}
	s.mu.Unlock()
	first := s.firstBlock(a)
	for _, o := range obs {
		if !s.track() {
			return
		}
		typ := o.typ
		if first.block2.set {
			typ = message.NonConfirmable
		}
		go func() {
			defer s.wg.Done()
			s.m.notifications.WithLabelValues(a.reason).Inc()
			if err := s.send(o.p, typ, []byte(o.token), first); err != nil && typ == message.Confirmable {
				s.mu.Lock()
				s.removeObserverLocked(o)
				s.mu.Unlock()
			}
		}()
	}
}

// verifyConfig answers GET lg/v1/<device>/config/verify?h=<64 hex
// digits>: the ConfigAnswer about that configuration hash.
func (s *Server) verifyConfig(req *pool.Message, device string) answer {
	if a, ok := accepts(req, message.AppCBOR); !ok {
		return a
	}
	if s.d.Answers == nil {
		return noAnswers("configurations")
	}
	var hash []byte
	for _, o := range req.Options() {
		if o.ID != message.URIQuery {
			continue
		}
		if v, ok := bytes.CutPrefix(o.Value, []byte("h=")); ok {
			h, err := ledger.ParseHash(string(v))
			if err != nil {
				return refuse(ledger.ReasonMalformed, "h=%q: want a SHA-256, 64 hex digits", clip(string(v), 64))
			}
			hash = h[:]
		}
	}
	if hash == nil {
		return refuse(ledger.ReasonMalformed, "no Uri-Query h=<SHA-256, 64 hex digits>")
	}
	b, err := s.d.Answers.VerifyConfig(device, hash)
	if err != nil {
		return s.askRefusal(err)
	}
	return s.block2(req, cbor(b))
}

// getBlob answers GET lg/v1/<device>/config/blob[/<sha256>]: the sealed
// blob of the device's current configuration, or of one of its
// configurations by address (application/octet-stream, block-wise).
func (s *Server) getBlob(req *pool.Message, device, ref string) answer {
	if a, ok := accepts(req, message.AppOctets); !ok {
		return a
	}
	if s.d.Answers == nil {
		return noAnswers("configuration blobs")
	}
	var sum []byte
	if ref != "" {
		h, err := ledger.ParseHash(ref)
		if err != nil {
			return refuse(ledger.ReasonNotFound, "%q is not a blob address (64 hex digits)", clip(ref, 64))
		}
		sum = h[:]
	}
	b, err := s.d.Answers.Blob(s.ctx, device, sum)
	if err != nil {
		return s.askRefusal(err)
	}
	if len(b) == 0 {
		return refuse(ledger.ReasonNotFound, "no blob")
	}
	return s.block2(req, answer{code: codes.Content, format: int(message.AppOctets), body: b, etag: etagOf(b), reason: resultAnswered})
}

// getKeys answers GET lg/v1/<device>/keys/<other>: the KeysAnswer of
// device other.
func (s *Server) getKeys(req *pool.Message, device, other string) answer {
	if a, ok := accepts(req, message.AppCBOR); !ok {
		return a
	}
	if s.d.Answers == nil {
		return noAnswers("device keys")
	}
	if !ledger.ValidID(other) {
		return refuse(ledger.ReasonNotFound, "%q is not a device id", clip(other, ledger.MaxIDLen))
	}
	b, err := s.d.Answers.Keys(device, other)
	if err != nil {
		return s.askRefusal(err)
	}
	return s.block2(req, cbor(b))
}

// getProof answers GET lg/v1/cluster/proof: the chain's membership
// proof (docs/protocol.md 10.2), block-wise when large. Any session may
// ask: the proof is public and carries its own certificates.
func (s *Server) getProof(req *pool.Message) answer {
	if a, ok := accepts(req, message.AppCBOR); !ok {
		return a
	}
	if s.d.Membership == nil {
		return noAnswers("the membership proof")
	}
	b, err := s.d.Membership.MembershipProof()
	if err != nil {
		return s.askRefusal(err)
	}
	return s.block2(req, cbor(b))
}

// getImage answers GET lg/v1/<device>/firmware/<sha256>: the firmware
// image (application/octet-stream), read a block at a time.
func (s *Server) getImage(req *pool.Message, ref string) answer {
	if a, ok := accepts(req, message.AppOctets); !ok {
		return a
	}
	sum, err := ledger.ParseHash(ref)
	if err != nil {
		return refuse(ledger.ReasonNotFound, "%q is not an image address (64 hex digits)", clip(ref, 64))
	}
	if s.d.Images == nil {
		return noAnswers("firmware images")
	}
	size, off, asked, bad := s.wantBlock(req)
	if bad.code != 0 {
		return bad
	}
	buf := make([]byte, size)
	n, total, err := s.d.Images.ReadImage(s.ctx, sum, buf, int64(off))
	if err != nil {
		return s.askRefusal(err)
	}
	if off > 0 && int64(off) >= total {
		return refuse(ledger.ReasonBadOption, "Block2 asks for offset %d of a %d-byte image", off, total)
	}
	a := answer{code: codes.Content, format: int(message.AppOctets), body: buf[:n], etag: sum[:8], reason: resultAnswered}
	if !asked && total <= int64(size) {
		return a
	}
	s.cut(&a, off, size, int(total))
	return a
}

// deviceResource reports whether path is under a device's resources:
// lg/v1/<device>/<rest> with a device id other than the names of the
// shared resources.
func deviceResource(path string) (device, rest string, ok bool) {
	tail, ok := strings.CutPrefix(path, devicePrefix)
	if !ok {
		return "", "", false
	}
	device, rest, ok = strings.Cut(tail, "/")
	if !ok || rest == "" || slices.Contains([]string{"data", "receipts", "cluster"}, device) {
		return "", "", false
	}
	return device, rest, true
}
