package mqtt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Topics of device protocol v1, under devicePrefix.
const (
	dataLevel      = "data/"             // lg/v1/<id>/data/<stream>: records from the device
	reportLevel    = "config/report"     // config.report txs from the device
	fwReportLevel  = "firmware/report"   // firmware.report txs from the device
	rekeyLevel     = "rekey"             // device.rekey txs from the device
	receiptsLevel  = "receipts"          // receipts of its committed records and reports
	rejectsLevel   = "rejects"           // why a publish was refused
	configLevel    = "config"            // its configuration manifest, retained
	firmwareLevel  = "firmware"          // its firmware manifest, retained
	verifyLevel    = "config/verify"     // request: is this my configuration?
	verdictLevel   = "config/verdict"    // default answer topic of verify
	blobGetLevel   = "config/blob/get"   // request: a configuration blob
	blobLevel      = "config/blob"       // default answer topic of blob/get
	keysGetLevel   = "keys/get"          // request: another device's keys
	keysLevel      = "keys"              // default answer topic of keys/get
	proofGetLevel  = "cluster/proof/get" // request: the membership proof
	proofLevel     = "cluster/proof"     // default answer topic of cluster/proof/get
	maxRejectError = 512                 // bytes of error text in a reject message
)

// Content types of the server's answers (v5 Content Type property).
const (
	contentCBOR = "application/cbor"
	contentJSON = "application/json" // a Reject
)

// Reject is the JSON message published on lg/v1/<id>/rejects for every
// refused publish, and on a refused request's answer topic.
type Reject struct {
	TxID   string        `json:"tx_id"` // hex SHA-256 of the payload if it is a tx, else ""
	Reason ledger.Reason `json:"reason"`
	Error  string        `json:"error"`
	// LastSeq is, with reason replay only, the device's last seq this
	// gateway committed or queued: sign again with a seq above it.
	LastSeq *uint64 `json:"last_seq,omitempty"`
}

// userLastSeq is the v5 PUBACK user property that carries a replay's
// last seq, in decimal.
const userLastSeq = "last_seq"

// kind is what a device publish is.
type kind uint8

const (
	kindRecord kind = iota + 1 // a data.record tx
	kindReport                 // a config.report or firmware.report tx
	kindRekey                  // a device.rekey tx
	kindVerify                 // request: Answers.VerifyConfig
	kindBlob                   // request: Answers.Blob
	kindKeys                   // request: Answers.Keys
	kindProof                  // request: Membership.MembershipProof
)

// request reports whether k is answered by Answers rather than committed.
func (k kind) request() bool { return k >= kindVerify }

// String is k's label in metrics and logs.
func (k kind) String() string {
	switch k {
	case kindRecord:
		return "record"
	case kindReport:
		return "report"
	case kindRekey:
		return "rekey"
	case kindVerify:
		return "verify"
	case kindBlob:
		return "blob"
	case kindKeys:
		return "keys"
	case kindProof:
		return "proof"
	}
	return "unknown"
}

// answerLevel is the default answer topic of a request, under the prefix.
func (k kind) answerLevel() string {
	switch k {
	case kindVerify:
		return verdictLevel
	case kindBlob:
		return blobLevel
	case kindKeys:
		return keysLevel
	case kindProof:
		return proofLevel
	}
	return ""
}

// message is what checkPublish makes of a device publish.
type message struct {
	kind kind
	tx   *ledger.Tx // record, report and rekey: the checked tx
	// arg is a request's argument: for verify the SHA-256 (32 bytes), for
	// blob the address (32 bytes, or nil for the current configuration's
	// blob), for keys the other device's id.
	arg []byte
	// answerTo is where a request's answer goes: its response topic or
	// its default answer topic; "" if there is none it may go to.
	answerTo string
}

// topicRefusal refuses a publish on a topic where the device may not
// publish (the message has no kind).
func topicRefusal(device, topic string) error {
	return ledger.Refuse(ledger.ReasonTopic, "device %s publishes on %[2]s%[3]s<stream>, %[2]s%[4]s, %[2]s%[5]s, %[2]s%[6]s, %[2]s%[7]s, %[2]s%[8]s, %[2]s%[9]s or %[2]s%[11]s, not on %[10]q",
		device, devicePrefix(device), dataLevel, reportLevel, fwReportLevel, rekeyLevel, verifyLevel, blobGetLevel, keysGetLevel, clip(topic, maxTopicBytes), proofGetLevel)
}

// checkPublish is the one place that says what a device's publish is,
// from its topic, its v5 response topic ("" if none) and its payload:
//
//   - lg/v1/<device>/data/<stream>: a data.record of device on stream
//     (bridge.CheckRecord);
//   - lg/v1/<device>/config/report: a config.report of device
//   - lg/v1/<device>/firmware/report: a firmware.report of device
//     (bridge.CheckReport);
//   - lg/v1/<device>/rekey: a device.rekey of device (bridge.CheckRekey);
//   - lg/v1/<device>/config/verify: a request with a SHA-256, 32 bytes
//     raw or 64 hex digits;
//   - lg/v1/<device>/config/blob/get: a request with a blob address as
//     above, or nothing for the current configuration's blob;
//   - lg/v1/<device>/keys/get: a request with a device id as text;
//   - lg/v1/<device>/cluster/proof/get: a request with no payload.
//
// A request's answer goes to its response topic, which must be a topic
// name under lg/v1/<device>/ (else forbidden: the device could not
// receive it), or else to the request's default answer topic. On error
// the message still has the kind and, for a request, the answer topic if
// it is usable, so the refusal can be answered there; tx and arg are nil.
// It decodes outside bytes and is fuzzed: it must never panic.
func checkPublish(device, topic, responseTopic string, payload []byte, maxBytes int) (message, error) {
	level, ok := cutDevicePrefix(topic, device)
	if !ok {
		return message{}, topicRefusal(device, topic)
	}
	if stream, isData := strings.CutPrefix(level, dataLevel); isData {
		if !ledger.ValidID(stream) {
			return message{}, topicRefusal(device, topic)
		}
		tx, err := bridge.CheckRecord(payload, device, stream, maxBytes)
		if err != nil {
			return message{kind: kindRecord}, err
		}
		return message{kind: kindRecord, tx: tx}, nil
	}
	var m message
	switch level {
	case reportLevel, fwReportLevel:
		check := bridge.CheckReport
		if level == fwReportLevel {
			check = bridge.CheckFirmwareReport
		}
		tx, err := check(payload, device, maxBytes)
		if err != nil {
			return message{kind: kindReport}, err
		}
		return message{kind: kindReport, tx: tx}, nil
	case rekeyLevel:
		tx, err := bridge.CheckRekey(payload, device, maxBytes)
		if err != nil {
			return message{kind: kindRekey}, err
		}
		return message{kind: kindRekey, tx: tx}, nil
	case verifyLevel:
		m.kind = kindVerify
	case blobGetLevel:
		m.kind = kindBlob
	case keysGetLevel:
		m.kind = kindKeys
	case proofGetLevel:
		m.kind = kindProof
	default:
		return message{}, topicRefusal(device, topic)
	}
	prefix := devicePrefix(device)
	switch {
	case responseTopic == "":
		m.answerTo = prefix + m.kind.answerLevel()
	case !validTopicName(responseTopic):
		return m, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("response topic %q is not a topic name", clip(responseTopic, maxTopicBytes))}
	case !strings.HasPrefix(responseTopic, prefix):
		return m, &ledger.RefusedError{Reason: ledger.ReasonForbidden, Detail: fmt.Sprintf("response topic %q is not under %s", clip(responseTopic, maxTopicBytes), prefix)}
	default:
		m.answerTo = responseTopic
	}
	arg, err := requestArg(m.kind, payload)
	if err != nil {
		return m, err
	}
	m.arg = arg
	return m, nil
}

// requestArg decodes the payload of a request of kind k.
func requestArg(k kind, payload []byte) ([]byte, error) {
	switch k {
	case kindVerify:
		if h, ok := sha256Arg(payload); ok {
			return h, nil
		}
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("a %d-byte payload: want a SHA-256, 32 bytes or 64 hex digits", len(payload))}
	case kindBlob:
		if len(payload) == 0 {
			return nil, nil
		}
		if h, ok := sha256Arg(payload); ok {
			return h, nil
		}
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("a %d-byte payload: want nothing or a blob address, 32 bytes or 64 hex digits", len(payload))}
	case kindKeys:
		if ledger.ValidID(string(payload)) {
			return payload, nil
		}
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("%q is not a device id", clip(string(payload), ledger.MaxIDLen))}
	case kindProof:
		if len(payload) == 0 {
			return []byte{}, nil
		}
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: fmt.Sprintf("a %d-byte payload: the request takes none", len(payload))}
	}
	return nil, &ledger.RefusedError{Reason: ledger.ReasonInternal, Detail: "not a request"}
}

// sha256Arg reads a SHA-256 given raw or as hex.
func sha256Arg(b []byte) ([]byte, bool) {
	switch len(b) {
	case sha256.Size:
		return b, true
	case 2 * sha256.Size:
		h := make([]byte, sha256.Size)
		if _, err := hex.Decode(h, b); err != nil {
			return nil, false
		}
		return h, true
	}
	return nil, false
}

// validTopicName reports whether t may be published to: not empty, no
// wildcards and no NUL [MQTT-4.7.3-1] [MQTT-4.7.3-2], UTF-8, and not
// longer than a device's own publish topic may be.
func validTopicName(t string) bool {
	return t != "" && len(t) <= maxTopicBytes && !strings.ContainsAny(t, "+#\x00") && utf8.ValidString(t)
}

// pubackCodes is the MQTT 5 PUBACK reason code of each refusal reason:
// the MQTT 5 column of the table in docs/protocol.md. The reason itself
// goes in the reason string. TestReasonTable checks that every reason
// has a code.
var pubackCodes = map[ledger.Reason]packets.Code{
	ledger.ReasonMalformed:      packets.ErrPayloadFormatInvalid,
	ledger.ReasonTooLarge:       packets.ErrPayloadFormatInvalid,
	ledger.ReasonWrongChain:     packets.ErrPayloadFormatInvalid,
	ledger.ReasonTopic:          packets.ErrNotAuthorized,
	ledger.ReasonNotRecord:      packets.ErrPayloadFormatInvalid,
	ledger.ReasonNotReport:      packets.ErrPayloadFormatInvalid,
	ledger.ReasonWrongCert:      packets.ErrNotAuthorized,
	ledger.ReasonUnknownAuthor:  packets.ErrNotAuthorized,
	ledger.ReasonBadSignature:   packets.ErrNotAuthorized,
	ledger.ReasonForbidden:      packets.ErrNotAuthorized,
	ledger.ReasonRevoked:        packets.ErrNotAuthorized,
	ledger.ReasonReplay:         packets.ErrImplementationSpecificError,
	ledger.ReasonExists:         packets.ErrImplementationSpecificError,
	ledger.ReasonUnknownDevice:  packets.ErrImplementationSpecificError,
	ledger.ReasonStaleVersion:   packets.ErrImplementationSpecificError,
	ledger.ReasonUnknownRelease: packets.ErrImplementationSpecificError,
	ledger.ReasonNotFound:       packets.ErrImplementationSpecificError,
	ledger.ReasonPolicy:         packets.ErrNotAuthorized,
	ledger.ReasonBadOption:      packets.ErrPayloadFormatInvalid, // CoAP only
	ledger.ReasonMethod:         packets.ErrPayloadFormatInvalid, // CoAP only
	ledger.ReasonNotAcceptable:  packets.ErrPayloadFormatInvalid, // CoAP only
	ledger.ReasonIncomplete:     packets.ErrPayloadFormatInvalid, // CoAP only
	ledger.ReasonFormat:         packets.ErrPayloadFormatInvalid, // CoAP only
	ledger.ReasonProxy:          packets.ErrPayloadFormatInvalid, // CoAP only
	ledger.ReasonOverloaded:     packets.ErrQuotaExceeded,
	ledger.ReasonUnavailable:    packets.ErrUnspecifiedError,
	// 0x97 quota exceeded, "an implementation or administrative imposed
	// limit has been exceeded": the disk is the limit, and a client that
	// knows no reason strings backs off and sends again later, which is
	// what a device should do. 0x80 would say nothing.
	ledger.ReasonStorageFull: packets.ErrQuotaExceeded,
	ledger.ReasonInternal:    packets.ErrUnspecifiedError,
}

// codeOf maps a refusal reason to its v5 PUBACK reason code; a reason
// missing from the table (TestReasonTable keeps that from happening) is
// 0x80 unspecified error.
func codeOf(reason ledger.Reason) packets.Code {
	if c, ok := pubackCodes[reason]; ok {
		return c
	}
	return packets.ErrUnspecifiedError
}

// session is what the server keeps of one connected device client.
type session struct {
	device string
	since  time.Time // when CONNECT completed

	mu sync.Mutex
	// pending are the QoS 1 packet ids not acknowledged yet; nil when
	// there are none, so an idle session does not keep the map a burst
	// grew (Go maps do not shrink).
	pending map[uint16]struct{}
	qos0    int         // QoS 0 records being submitted
	rekey   [32]byte    // the id of the last device.rekey published on this connection
	overCap []int       // positions of the filters of the SUBSCRIBE being handled over MaxSubscriptions
	expiry  *time.Timer // ends the session when its token expires; nil: no token (a certificate)
	ended   bool        // the connection ended: no timer is to be set
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
	if ss.pending == nil {
		ss.pending = map[uint16]struct{}{}
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

// established registers a client that completed CONNECT, pk.
func (s *Server) established(cl *mochi.Client, pk packets.Packet) {
	s.mu.Lock()
	device, _ := deviceOf(cl.ID)
	ss := &session{device: device, since: time.Now()}
	s.sessions[cl] = ss
	broker := s.broker
	s.mu.Unlock()
	s.m.connected.Inc()
	// A revocation or a re-key that committed while the client was
	// connecting found no client to disconnect: check the credential
	// again now that it is registered.
	expires, err := s.authenticate(cl, pk)
	if err != nil && broker != nil {
		s.disconnect(broker, cl, "credential no longer valid", packets.ErrNotAuthorized)
		return
	}
	if !expires.IsZero() {
		s.watchToken(cl, ss, expires)
	}
}

// gone forgets a client whose connection ended; expire says whether its
// session ended too.
func (s *Server) gone(cl *mochi.Client, expire bool) {
	s.mu.Lock()
	ss, ok := s.sessions[cl]
	delete(s.sessions, cl)
	s.mu.Unlock()
	s.released(cl, expire)
	if !ok {
		return
	}
	s.m.connected.Dec()
	ss.mu.Lock()
	ss.ended = true
	if ss.expiry != nil {
		ss.expiry.Stop()
	}
	ss.mu.Unlock()
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
	env    []byte  // the payload
	msg    message // what checkPublish made of it
	corr   []byte  // v5 correlation data, copied to a request's answer

	// A record's queue, and its outcome: the Committer's Ticket, or its
	// refusal of the Propose. settled (guarded by q.mu) says the outcome
	// is known: Wait does not block.
	q       *queue
	t       bridge.Ticket
	err     error
	settled bool
	refused bool // refused before a Propose (refuse): holds no Limiter share
}

// received handles a device's PUBLISH on the client's read goroutine:
// it checks the message and proposes a record (see propose), so that the
// client may have many QoS 1 messages in flight, or hands a request to a
// goroutine of its own. mochi's receive quota is taken for each QoS 1
// message until its PUBACK, so mochi still disconnects a client that
// exceeds Receive Maximum.
func (s *Server) received(cl *mochi.Client, pk packets.Packet) {
	s.mu.Lock()
	ss, broker := s.sessions[cl], s.broker
	s.mu.Unlock()
	if ss == nil || broker == nil {
		return // not established: cannot happen
	}
	p := &inflight{cl: cl, ss: ss, broker: broker, id: pk.PacketID, qos1: pk.FixedHeader.Qos > 0, start: time.Now(),
		env: pk.Payload, corr: pk.Properties.CorrelationData}
	if p.qos1 {
		if !ss.take(p.id) {
			return
		}
		cl.State.Inflight.DecreaseReceiveQuota()
	}
	msg, err := checkPublish(ss.device, pk.TopicName, pk.Properties.ResponseTopic, pk.Payload, s.d.Directory.MaxTxBytes())
	p.msg = msg
	if err != nil {
		s.refuse(p, err)
		return
	}
	if msg.kind.request() {
		s.request(p)
		return
	}
	if msg.kind == kindRekey {
		// The connection that re-keys stays open when the re-key
		// commits (see Rekeyed).
		ss.mu.Lock()
		ss.rekey = msg.tx.ID
		ss.mu.Unlock()
	}
	if !p.qos1 {
		p.slot = ss.takeQoS0(int(s.cfg.ReceiveMaximum))
		if !p.slot {
			s.refuse(p, &ledger.RefusedError{Reason: ledger.ReasonOverloaded, Detail: "too many QoS 0 records in flight from this client"})
			return
		}
	}
	s.propose(p)
}

// propose queues p, a record or a report, behind the device's other txs
// to be answered in order, and proposes it, on the client's read
// goroutine.
//
// A device's txs are proposed in the order they arrived: the ledger
// refuses a record or report whose seq is not above the last one
// committed (they share the device's counter), so proposing them
// concurrently would get most of them refused as replays. Proposing
// (the signature check, then queueing for ordering) happens on the read
// goroutine, and nothing waits for the commit: the Ticket notifies the
// server (settled) when p's outcome is known, and only then does a
// goroutine start, for the device, to answer what is settled at the
// front of its queue (flush). So a record costs no goroutine hand-off
// between its PUBLISH and its Propose, and one per device and block
// between the commit and its PUBACK; a device's records in flight share
// blocks and their PUBACKs one flush.
func (s *Server) propose(p *inflight) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		p.release() // no answer: the connection closes and the device sends it again
		return
	}
	if !s.d.Limiter.Acquire(len(p.env)) {
		s.mu.Unlock()
		s.refuse(p, &ledger.RefusedError{Reason: ledger.ReasonOverloaded, Detail: "too many records waiting at this gateway"})
		return
	}
	q := s.queues[p.ss.device]
	if q == nil {
		q = &queue{device: p.ss.device}
		s.queues[q.device] = q
	}
	q.mu.Lock()
	q.items = append(q.items, p)
	q.mu.Unlock()
	p.q = q
	s.wg.Add(1) // Done when p is answered (flush): Close waits for it
	s.mu.Unlock()

	// p.t and p.err are read by flush once settled says so: the chain's
	// lock (Notify, then the commit) or q.mu orders them before.
	t, err := s.d.Committer.Propose(s.ctx, p.msg.tx)
	p.t, p.err = t, err
	if err != nil {
		s.settled(p)
		return
	}
	if n, ok := t.(notifier); ok {
		n.Notify(func() { s.settled(p) })
		return
	}
	go func() { // a Committer without Notify: wait here
		_, _ = t.Wait(s.ctx)
		s.settled(p)
	}()
}

// refuse answers p, refused before it was proposed: behind the device's
// records still waiting for their answers, if there are any, so that
// PUBACKs keep the order of the PUBLISHes [MQTT-4.6.0-2]; else at once.
func (s *Server) refuse(p *inflight, err error) {
	s.mu.Lock()
	if q := s.queues[p.ss.device]; q != nil && !s.closing {
		q.mu.Lock()
		if len(q.items) > 0 {
			p.q, p.err, p.refused = q, err, true
			q.items = append(q.items, p)
			s.wg.Add(1) // as in propose
			q.mu.Unlock()
			s.mu.Unlock()
			s.settled(p)
			return
		}
		q.mu.Unlock()
	}
	s.mu.Unlock()
	s.answer(p, nil, err)
}

// notifier is a bridge.Ticket that calls back when its outcome is known
// (chain.Ticket.Notify); f must not block.
type notifier interface {
	Notify(f func())
}

// queue is a device's records in the order they arrived, waiting for
// their answers. It is in Server.queues while it holds records or a
// flush runs; taking Server.mu, then mu, adds to it, and removes it.
// Its own lock keeps the commit path (settled) off the server's.
type queue struct {
	device   string
	mu       sync.Mutex
	items    []*inflight // guarded by mu
	flushing bool        // a flush runs for the queue; guarded by mu
}

// settled marks p's outcome as known, and starts the device's flush if
// p is at the front of its queue. It runs on whatever goroutine learned
// the outcome (the chain's, for a commit): it must not block.
func (s *Server) settled(p *inflight) {
	q := p.q
	q.mu.Lock()
	defer q.mu.Unlock()
	p.settled = true
	if q.flushing || len(q.items) == 0 || !q.items[0].settled {
		return
	}
	q.flushing = true
	go s.flush(q)
}

// flush answers the settled records at the front of q, in order, so
// that PUBACKs leave in the order the PUBLISHes came [MQTT-4.6.0-2],
// until the front one is not settled; then it ends, and the next
// settled record at the front starts another. The PUBACKs of the
// records it takes at once leave in one write per connection (see
// sizeGuard.hold). Once the server is cancelled (Close), the unsettled
// ones are let go unanswered.
func (s *Server) flush(q *queue) {
	type answer struct {
		p   *inflight
		t   bridge.Ticket
		err error
	}
	var (
		batch = make([]answer, 0, 16) // on the stack while it stays this size
		held  []*sizeGuard
	)
	for {
		batch, held = batch[:0], held[:0]
		q.mu.Lock()
		for len(q.items) > 0 && (q.items[0].settled || s.ctx.Err() != nil) {
			p := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			a := answer{p: p}
			if p.settled {
				a.t, a.err = p.t, p.err
			} else {
				a.err = s.ctx.Err()
			}
			batch = append(batch, a)
		}
		if len(batch) == 0 {
			q.flushing = false
			empty := len(q.items) == 0
			q.mu.Unlock()
			if empty {
				s.forget(q)
			}
			return
		}
		q.mu.Unlock()
		if len(batch) > 1 {
			for _, a := range batch {
				if g, ok := a.p.cl.Net.Conn.(*sizeGuard); ok && !slices.Contains(held, g) {
					g.hold()
					held = append(held, g)
				}
			}
		}
		for _, a := range batch {
			s.finish(a.p, a.t, a.err)
		}
		for _, g := range held {
			g.release()
		}
		for range batch {
			s.wg.Done() // after the release: Close waits for the PUBACKs to be written
		}
	}
}

// forget removes q from the server's queues if it is still empty and
// no flush runs for it.
func (s *Server) forget(q *queue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 && !q.flushing && s.queues[q.device] == q {
		delete(s.queues, q.device)
	}
}

// finish answers a record of flush, proposed with ticket t or refused
// with err: with its receipt, or why not.
func (s *Server) finish(p *inflight, t bridge.Ticket, err error) {
	var rc *ledger.Receipt
	if err == nil {
		rc, err = t.Wait(s.ctx) // settled: does not block
	}
	if !p.refused {
		s.d.Limiter.Release(len(p.env))
	}
	if err != nil && s.ctx.Err() != nil {
		p.release() // as in propose
		return
	}
	var b []byte
	// A receipt no one would receive is neither encoded nor published.
	// Receipts are best effort and not retained, so a device that
	// subscribes later misses the earlier ones either way.
	if err == nil && s.receipts.any(p.ss.device) {
		var eerr error
		if b, eerr = rc.Encode(); eerr != nil {
			s.log.Error("mqtt encode receipt", "device", p.ss.device, "error", eerr)
		}
	}
	s.answer(p, b, err)
}

// release gives back what received took. It runs before the PUBACK is
// written: a client may reuse the packet id, and send one more message,
// as soon as it has the PUBACK.
func (p *inflight) release() {
	p.ss.mu.Lock()
	if p.qos1 {
		delete(p.ss.pending, p.id)
		if len(p.ss.pending) == 0 {
			p.ss.pending = nil
		}
	} else if p.slot {
		p.ss.qos0--
		p.slot = false
	}
	p.ss.mu.Unlock()
	if p.qos1 {
		p.cl.State.Inflight.IncreaseReceiveQuota()
	}
}

// answer reports the outcome of a publish, then sends the PUBACK for
// QoS 1. On success out is the receipt of a record or report, published
// on the receipts topic, or a request's answer, published on its answer
// topic. On failure a reject message goes to the rejects topic and, for
// a request, to its answer topic too.
func (s *Server) answer(p *inflight, out []byte, err error) {
	req := p.msg.kind.request()
	code := packets.CodeSuccess
	if err == nil {
		switch {
		case req:
			s.m.requests.WithLabelValues(p.msg.kind.String(), resultAnswered).Inc()
			s.emit(p.broker, p.msg.answerTo, out, packets.Properties{ContentType: contentCBOR, CorrelationData: p.corr}, false)
		default:
			s.m.accepted.Inc()
			if out != nil {
				_ = p.broker.Publish(devicePrefix(p.ss.device)+receiptsLevel, out, false, 1) // fails only without the inline client
			}
		}
	} else {
		reason := ledger.ReasonOf(err)
		code = codeOf(reason)
		if req {
			s.m.requests.WithLabelValues(p.msg.kind.String(), string(reason)).Inc()
		} else {
			s.m.publishes.WithLabelValues(string(reason)).Inc()
		}
		if reason == ledger.ReasonInternal {
			s.log.Warn("mqtt publish failed", "device", p.ss.device, "kind", p.msg.kind, "error", err)
		} else {
			s.log.Debug("mqtt publish refused", "device", p.ss.device, "kind", p.msg.kind, "reason", reason, "error", err)
		}
		rej := Reject{TxID: rejectTxID(p.env, p.msg, err), Reason: reason, Error: clip(err.Error(), maxRejectError)}
		if last, ok := ledger.LastSeqOf(err); ok {
			rej.LastSeq = &last
		}
		msg, _ := json.Marshal(rej)
		if req && p.msg.answerTo != "" {
			s.emit(p.broker, p.msg.answerTo, msg, packets.Properties{ContentType: contentJSON, CorrelationData: p.corr}, false)
		}
		_ = p.broker.Publish(devicePrefix(p.ss.device)+rejectsLevel, msg, false, 1)
		code.Reason = string(reason) // the v5 reason string
	}
	p.release()
	if !p.qos1 {
		return
	}
	if err := s.puback(p, code, err); err != nil {
		s.log.Debug("mqtt puback not sent", "device", p.ss.device, "error", err)
		return
	}
	if !req {
		s.m.latency.Observe(time.Since(p.start).Seconds())
	}
}

// puback writes p's PUBACK with code; err is p's refusal, if any. A
// success goes straight to the connection's guard (sizeGuard.writeAck):
// the same four bytes mochi's encoder makes, without the buffer and the
// encode hooks mochi's WritePacket spends on each packet (mochi's
// counters of bytes and packets sent do not count it).
func (s *Server) puback(p *inflight, code packets.Code, err error) error {
	if g, ok := p.cl.Net.Conn.(*sizeGuard); ok && code.Code == packets.CodeSuccess.Code && !p.cl.Closed() {
		return g.writeAck(p.id)
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: p.id, ReasonCode: code.Code}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		ack.Properties.ReasonString = code.Reason // 3.1.1 encodes neither code nor string: a plain PUBACK
		if last, ok := ledger.LastSeqOf(err); ok {
			ack.Properties.User = []packets.UserProperty{{Key: userLastSeq, Val: strconv.FormatUint(last, 10)}}
		}
	}
	return p.cl.WritePacket(ack)
}

// emit publishes one of the server's own messages, with v5 properties,
// through the broker's inline client: at QoS 1 towards subscribers, and
// retained if retain is set.
func (s *Server) emit(broker *mochi.Server, topic string, payload []byte, props packets.Properties, retain bool) {
	inline, ok := broker.Clients.Get(mochi.InlineClientId)
	if !ok {
		s.log.Error("mqtt inline client missing") // Start enables it
		return
	}
	err := broker.InjectPacket(inline, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: retain},
		TopicName:   topic,
		Payload:     payload,
		Properties:  props,
		PacketID:    1, // as mochi's Server.Publish: never used, but checked
	})
	if err != nil {
		s.log.Warn("mqtt publish to device failed", "topic", topic, "error", err)
	}
}

// rejectTxID is the tx id a reject message names: none if the payload
// was not read as a tx.
func rejectTxID(env []byte, m message, err error) string {
	if m.kind == 0 || m.kind.request() { // a topic refusal, or a request

		return ""
	}
	switch ledger.ReasonOf(err) {
	case ledger.ReasonMalformed, ledger.ReasonTooLarge:
		return ""
	}
	if m.tx != nil { // decoded: refused by the Committer
		return hex.EncodeToString(m.tx.ID[:])
	}
	id := ledger.TxID(env)
	return hex.EncodeToString(id[:])
}
