package mqtt

import (
	"fmt"
	"slices"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// request answers p, a checked request, on a goroutine of its own: an
// Answers call may be slow (a blob may come from another gateway) and
// must not hold up the client's read loop. A device may have maxRequests
// requests being answered at once, over all its connections.
func (s *Server) request(p *inflight) {
	device := p.ss.device
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		p.release() // no answer: the connection closes and the device asks again
		return
	}
	if s.requests[device] >= maxRequests {
		s.mu.Unlock()
		s.answer(p, nil, &ledger.RefusedError{Reason: ledger.ReasonOverloaded,
			Detail: fmt.Sprintf("%d requests of this device are being answered", maxRequests)})
		return
	}
	s.requests[device]++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		out, err := s.ask(p)
		// The slot is free before the answer goes out: a device may send
		// its next request as soon as it has this one's answer.
		s.mu.Lock()
		if s.requests[device]--; s.requests[device] == 0 {
			delete(s.requests, device)
		}
		s.mu.Unlock()
		if err != nil && s.ctx.Err() != nil {
			p.release() // closing: as above
			return
		}
		s.answer(p, out, err)
	}()
}

// ask calls Answers for request p.
func (s *Server) ask(p *inflight) ([]byte, error) {
	a, device, arg := s.d.Answers, p.ss.device, p.msg.arg
	if p.msg.kind == kindProof {
		if s.d.Membership == nil {
			return nil, &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: "this gateway does not serve " + p.msg.kind.served()}
		}
		out, err := s.d.Membership.MembershipProof()
		return s.sized(p, out, err)
	}
	if a == nil {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: "this gateway does not serve " + p.msg.kind.served()}
	}
	var out []byte
	var err error
	switch p.msg.kind {
	case kindVerify:
		out, err = a.VerifyConfig(device, arg)
	case kindBlob:
		out, err = a.Blob(s.ctx, device, arg)
	case kindKeys:
		out, err = a.Keys(device, string(arg))
	default:
		panic("mqtt: invariant: ask for a " + p.msg.kind.String())
	}
	return s.sized(p, out, err)
}

// sized refuses an answer that p's client cannot take.
func (s *Server) sized(p *inflight, out []byte, err error) ([]byte, error) {
	if err == nil && out == nil {
		err = &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: "no answer"}
	}
	// mochi drops a message larger than the client's Maximum Packet Size
	// without a word; the device would wait for it in vain.
	if limit := p.cl.Properties.Props.MaximumPacketSize; err == nil && limit > 0 && answerBytes(p, out) > int(limit) {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonTooLarge,
			Detail: fmt.Sprintf("the answer is %d bytes; this client accepts packets of at most %d", len(out), limit)}
	}
	return out, err
}

// answerBytes bounds the size of the PUBLISH that carries answer out to
// p's client: fixed header, topic, packet id, properties (content type,
// correlation data, topic alias, message expiry, subscription ids).
func answerBytes(p *inflight, out []byte) int {
	return 5 + 2 + len(p.msg.answerTo) + 2 + 4 + 3 + len(contentCBOR) + 3 + len(p.corr) + 3 + 5 + 16 + len(out)
}

// served is what a request asks for, for a refusal's text.
func (k kind) served() string {
	switch k {
	case kindVerify:
		return "configurations"
	case kindBlob:
		return "configuration blobs"
	case kindKeys:
		return "device keys"
	case kindProof:
		return "the membership proof"
	}
	return k.String()
}

// manifest is a retained message the server publishes to each device on
// lg/v1/<id>/<level>: what read returns for the device.
type manifest struct {
	level string
	read  func(a bridge.Answers, device string) ([]byte, error)
}

// manifests are the retained topics of every device.
var manifests = [...]manifest{
	{configLevel, bridge.Answers.Config},
	{firmwareLevel, bridge.Answers.Firmware},
}

// subscribing runs in OnSubscribe, before mochi adds the subscriptions
// and then sends the retained messages they match: for each manifest
// topic that a filter the device may use matches, the current manifest
// is published retained first, so that mochi delivers it as the
// subscription's retained message. mochi keeps retained messages in
// memory only, and for at most MaxSessionExpiry seconds: this is how a
// device gets its manifests, also after a gateway restart.
func (s *Server) subscribing(cl *mochi.Client, h *hook, filters packets.Subscriptions) {
	device, _ := deviceOf(cl.ID)
	for _, m := range manifests {
		topic := devicePrefix(device) + m.level
		if slices.ContainsFunc(filters, func(sub packets.Subscription) bool {
			return sub.RetainHandling != 2 && h.OnACLCheck(cl, sub.Filter, false) && matches(sub.Filter, topic) // [MQTT-3.3.1-11]
		}) {
			s.manifestFor(device, m)
		}
	}
}

// subscribed runs in OnSubscribed, once mochi added the subscriptions and
// before it sends their retained messages. mochi's retained scan misses
// the parent level of a final '#': "lg/v1/<id>/config/#" gets no retained
// manifest, though it matches the topic [MQTT-4.7.1-2]. Such a
// subscription gets the manifest as a live message instead (perhaps
// before the SUBACK, which MQTT 3.8.4 allows), the topic's other
// subscribers a copy of the one they have. (mochi delivers nothing on
// the topic to "lg/v1/<id>/+/#", retained or live.)
func (s *Server) subscribed(cl *mochi.Client, filters packets.Subscriptions, codes []byte) {
	device, _ := deviceOf(cl.ID)
	for _, m := range manifests {
		filter := devicePrefix(device) + m.level + "/#"
		for i, sub := range filters {
			if sub.Filter == filter && i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code && sub.RetainHandling != 2 {
				s.manifestFor(device, m)
				break
			}
		}
	}
}

// manifestFor publishes device's manifest m if the server runs and
// serves manifests.
func (s *Server) manifestFor(device string, m manifest) {
	if s.d.Answers == nil {
		return
	}
	s.mu.Lock()
	broker := s.broker
	s.mu.Unlock()
	if broker != nil {
		s.publishManifest(broker, device, m)
	}
}

// Changed republishes every retained manifest of each device, so that
// devices subscribed to lg/v1/<id>/config or lg/v1/<id>/firmware get the
// new one at once. It does not block: the daemon calls it on the commit
// path, after the config.set (or whatever changed the answers) committed.
func (s *Server) Changed(devices []string) {
	if s.d.Answers == nil || len(devices) == 0 {
		return
	}
	s.mu.Lock()
	broker := s.broker
	s.mu.Unlock()
	if broker == nil || !s.track() {
		return
	}
	devices = slices.Clone(devices)
	go func() {
		defer s.wg.Done()
		for _, d := range devices {
			if s.ctx.Err() != nil {
				return
			}
			if !ledger.ValidID(d) { // the inline client publishes to any topic, wildcards included
				s.log.Error("mqtt manifests changed for an invalid device id", "device", clip(d, ledger.MaxIDLen))
				continue
			}
			for _, m := range manifests {
				s.publishManifest(broker, d, m)
			}
		}
	}()
}

// publishManifest publishes device's current manifest m, retained, on
// lg/v1/<device>/<m.level>; an empty payload if it has none, which
// clears the retained one. The read and the publish are one step under
// manifestMu: a manifest read before a commit is never published after
// one read after it.
func (s *Server) publishManifest(broker *mochi.Server, device string, m manifest) {
	s.manifestMu.Lock()
	defer s.manifestMu.Unlock()
	b, err := m.read(s.d.Answers, device)
	if err != nil {
		s.log.Warn("mqtt manifest", "device", device, "level", m.level, "error", err)
		return
	}
	var props packets.Properties
	if len(b) > 0 {
		props.ContentType = contentCBOR
	}
	s.emit(broker, devicePrefix(device)+m.level, b, props, true)
}

// matches reports whether a topic filter matches a topic name
// [MQTT-4.7.1]: '+' matches one level, a final '#' any number of levels,
// the parent level included [MQTT-4.7.1-2].
func matches(filter, topic string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return !fmore
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case fmore && tmore:
			filter, topic = frest, trest
		case !fmore && !tmore:
			return true
		default: // one ends before the other: "a/#" matches "a"
			return fmore && frest == "#"
		}
	}
}
