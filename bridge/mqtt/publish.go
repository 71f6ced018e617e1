package mqtt

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Topics of device protocol v1, under devicePrefix.
const (
	dataLevel      = "data/"    // lg/v1/<id>/data/<stream>: records from the device
	receiptsLevel  = "receipts" // lg/v1/<id>/receipts: receipts of its committed records
	rejectsLevel   = "rejects"  // lg/v1/<id>/rejects: why a publish was refused
	maxRejectError = 512        // bytes of error text in a reject message
)

// Reject is the JSON message published on lg/v1/<id>/rejects for every
// refused publish.
type Reject struct {
	TxID   string `json:"tx_id"` // hex SHA-256 of the payload if it is a tx, else ""
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// topicError is a publish on a topic where the device may not publish
// records.
type topicError struct{ device, topic string }

func (e *topicError) Error() string {
	return fmt.Sprintf("mqtt: device %s publishes records on %s%s<stream>, not on %q",
		e.device, devicePrefix(e.device), dataLevel, clip(e.topic, maxTopicBytes))
}

// RejectReason makes bridge.ReasonOf report a wrong topic.
func (e *topicError) RejectReason() string { return bridge.ReasonTopic }

// checkPublish is the whole check of a device's publish before it is
// submitted: the topic must be lg/v1/<device>/data/<stream> and the
// payload a data.record of device on stream (bridge.CheckRecord). It
// decodes outside bytes and is fuzzed: it must never panic.
func checkPublish(device, topic string, payload []byte, maxBytes int) (*ledger.Tx, error) {
	stream, ok := strings.CutPrefix(topic, devicePrefix(device)+dataLevel)
	if !ok || !ledger.ValidID(stream) {
		return nil, &topicError{device: device, topic: topic}
	}
	return bridge.CheckRecord(payload, device, stream, maxBytes)
}

// codeOf maps a refusal reason to its v5 PUBACK reason code.
func codeOf(reason string) packets.Code {
	switch reason {
	case bridge.ReasonMalformed, bridge.ReasonNotRecord, bridge.ReasonTooLarge:
		return packets.ErrPayloadFormatInvalid
	case bridge.ReasonTopic, "forbidden", "unknown_author", "bad_signature", "revoked":
		return packets.ErrNotAuthorized
	case bridge.ReasonOverloaded:
		return packets.ErrQuotaExceeded
	}
	return packets.ErrUnspecifiedError // replay, exists, internal, ...
}

// session is what the server keeps of one connected device client.
type session struct {
	device string

	mu      sync.Mutex
	pending map[uint16]struct{} // QoS 1 packet ids not acknowledged yet
	qos0    int                 // QoS 0 records being submitted
}

// take claims a QoS 1 packet id; false if a publish with that id is
// still being submitted (this one is a resend; the first one's PUBACK
// answers both).
func (ss *session) take(id uint16) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, dup := ss.pending[id]; dup {
		return false
	}
	ss.pending[id] = struct{}{}
	return true
}

// takeQoS0 claims a QoS 0 submit slot, of at most limit.
func (ss *session) takeQoS0(limit int) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.qos0 >= limit {
		return false
	}
	ss.qos0++
	return true
}

// established registers a client that completed CONNECT.
func (s *Server) established(cl *mochi.Client) {
	s.mu.Lock()
	device, _ := deviceOf(cl.ID)
	s.sessions[cl] = &session{device: device, pending: map[uint16]struct{}{}}
	broker := s.broker
	s.mu.Unlock()
	s.m.connected.Inc()
	// A revocation that committed while the client was connecting found
	// no client to disconnect: look again now that it is registered.
	if dev, ok := s.d.Directory.Device(device); (!ok || dev.Revoked) && broker != nil {
		s.disconnect(broker, cl)
	}
}

// gone forgets a client whose connection ended.
func (s *Server) gone(cl *mochi.Client) {
	s.mu.Lock()
	_, ok := s.sessions[cl]
	delete(s.sessions, cl)
	s.mu.Unlock()
	if ok {
		s.m.connected.Dec()
	}
}

// inflight is one device publish being answered.
type inflight struct {
	cl     *mochi.Client
	ss     *session
	broker *mochi.Server
	id     uint16 // packet id; QoS 1 only
	qos1   bool
	slot   bool // a QoS 0 slot was taken
	start  time.Time
	env    []byte     // the payload
	tx     *ledger.Tx // once checked
}

// received handles a device's PUBLISH on the client's read goroutine:
// it checks the message and queues it for submission, so that the client
// may have many QoS 1 messages in flight. mochi's receive quota is taken
// for each QoS 1 message until its PUBACK, so mochi still disconnects a
// client that exceeds Receive Maximum.
func (s *Server) received(cl *mochi.Client, pk packets.Packet) {
	s.mu.Lock()
	ss, broker := s.sessions[cl], s.broker
	s.mu.Unlock()
	if ss == nil || broker == nil {
		return // not established: cannot happen
	}
	p := &inflight{cl: cl, ss: ss, broker: broker, id: pk.PacketID, qos1: pk.FixedHeader.Qos > 0, start: time.Now(), env: pk.Payload}
	if p.qos1 {
		if !ss.take(p.id) {
			return
		}
		cl.State.Inflight.DecreaseReceiveQuota()
	}
	tx, err := checkPublish(ss.device, pk.TopicName, pk.Payload, s.d.Directory.MaxTxBytes())
	if err != nil {
		s.answer(p, nil, err)
		return
	}
	if !p.qos1 {
		p.slot = ss.takeQoS0(int(s.cfg.ReceiveMaximum))
		if !p.slot {
			s.answer(p, nil, &bridge.RefusedError{Reason: bridge.ReasonOverloaded, Detail: "too many QoS 0 records in flight from this client"})
			return
		}
	}
	p.tx = tx
	if err := s.enqueue(p); err != nil {
		s.answer(p, nil, err)
	}
}

// enqueue queues p behind the device's other records and starts the
// device's submitter if it is not running.
//
// A device's records are proposed in the order they arrived: the ledger
// refuses a record whose seq is not above the last one committed, so
// proposing them concurrently would get most of them refused as replays.
// Everything queued is proposed at once, so a device's records in flight
// share blocks; different devices are handled concurrently.
func (s *Server) enqueue(p *inflight) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		p.release() // no answer: the connection closes and the device sends it again
		return nil
	}
	if s.queued+len(p.env) > maxQueuedBytes {
		return &bridge.RefusedError{Reason: bridge.ReasonOverloaded, Detail: "too many records waiting at this gateway"}
	}
	s.queued += len(p.env)
	q := s.queues[p.ss.device]
	if q == nil {
		q = &queue{device: p.ss.device}
		s.queues[q.device] = q
		s.wg.Add(1)
		go s.submitter(q)
	}
	q.items = append(q.items, p)
	return nil
}

// queue is a device's records waiting to be submitted.
type queue struct {
	device string
	items  []*inflight // guarded by Server.mu
}

// submitter proposes q's records in order until q is empty: it takes all
// that are queued, proposes each (check and queue for ordering, in this
// order), then waits for their commits in the same order and answers each,
// so PUBACKs leave in the order the PUBLISHes came [MQTT-4.6.0-2].
// Records that arrive meanwhile are taken in the next round.
func (s *Server) submitter(q *queue) {
	defer s.wg.Done()
	type proposed struct {
		p   *inflight
		t   bridge.Ticket
		err error
	}
	for {
		s.mu.Lock()
		batch := q.items
		q.items = nil
		if len(batch) == 0 {
			delete(s.queues, q.device)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		round := make([]proposed, len(batch))
		for i, p := range batch {
			t, err := s.d.Committer.Propose(s.ctx, p.tx.Envelope)
			round[i] = proposed{p: p, t: t, err: err}
		}
		for _, r := range round {
			var rc *ledger.Receipt
			err := r.err
			if err == nil {
				rc, err = r.t.Wait(s.ctx)
			}
			s.mu.Lock()
			s.queued -= len(r.p.env)
			s.mu.Unlock()
			if err != nil && s.ctx.Err() != nil {
				r.p.release() // as in enqueue
				continue
			}
			s.answer(r.p, rc, err)
		}
	}
}

// release gives back what received took. It runs before the PUBACK is
// written: a client may reuse the packet id, and send one more message,
// as soon as it has the PUBACK.
func (p *inflight) release() {
	p.ss.mu.Lock()
	if p.qos1 {
		delete(p.ss.pending, p.id)
	} else if p.slot {
		p.ss.qos0--
		p.slot = false
	}
	p.ss.mu.Unlock()
	if p.qos1 {
		p.cl.State.Inflight.IncreaseReceiveQuota()
	}
}

// answer reports the outcome of a publish: the receipt (on success) or
// a reject message to the device's topics, then the PUBACK for QoS 1.
func (s *Server) answer(p *inflight, rc *ledger.Receipt, err error) {
	prefix := devicePrefix(p.ss.device)
	code := packets.CodeSuccess
	if err == nil {
		s.m.publishes.WithLabelValues(resultAccepted).Inc()
		if b, eerr := rc.Encode(); eerr != nil {
			s.log.Error("mqtt encode receipt", "device", p.ss.device, "error", eerr)
		} else {
			_ = p.broker.Publish(prefix+receiptsLevel, b, false, 1) // fails only without the inline client
		}
	} else {
		reason := bridge.ReasonOf(err)
		code = codeOf(reason)
		s.m.publishes.WithLabelValues(reason).Inc()
		if reason == bridge.ReasonInternal {
			s.log.Warn("mqtt submit failed", "device", p.ss.device, "error", err)
		} else {
			s.log.Debug("mqtt publish refused", "device", p.ss.device, "reason", reason, "error", err)
		}
		msg, _ := json.Marshal(Reject{TxID: rejectTxID(p.env, err), Reason: reason, Error: clip(err.Error(), maxRejectError)})
		_ = p.broker.Publish(prefix+rejectsLevel, msg, false, 1)
		code.Reason = reason // the v5 reason string
	}
	p.release()
	if !p.qos1 {
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: p.id, ReasonCode: code.Code}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		ack.Properties.ReasonString = code.Reason // 3.1.1 encodes neither code nor string: a plain PUBACK
	}
	if err := p.cl.WritePacket(ack); err != nil {
		s.log.Debug("mqtt puback not sent", "device", p.ss.device, "error", err)
		return
	}
	s.m.latency.Observe(time.Since(p.start).Seconds())
}

// rejectTxID is the tx id a reject message names: none if the payload
// was not read as a tx.
func rejectTxID(env []byte, err error) string {
	var te *topicError
	if errors.As(err, &te) {
		return ""
	}
	switch bridge.ReasonOf(err) {
	case bridge.ReasonMalformed, bridge.ReasonTooLarge:
		return ""
	}
	id := ledger.TxID(env)
	return hex.EncodeToString(id[:])
}
