package device

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Topics of device protocol v1 (docs/device-protocol.md).

// Prefix is the topic prefix of device id: it may publish and subscribe
// only under it.
func Prefix(id string) string { return "lg/v1/" + id + "/" }

// DataTopic is where a device publishes its records on stream.
func DataTopic(id, stream string) string { return Prefix(id) + "data/" + stream }

// ReceiptsTopic is where the gateway sends a device its receipts.
func ReceiptsTopic(id string) string { return Prefix(id) + "receipts" }

// RejectsTopic is where the gateway tells a device why it refused a message.
func RejectsTopic(id string) string { return Prefix(id) + "rejects" }

// ReportTopic is where a device publishes its config.report txs.
func ReportTopic(id string) string { return Prefix(id) + "config/report" }

// FirmwareReportTopic is where a device publishes its firmware.report txs.
func FirmwareReportTopic(id string) string { return Prefix(id) + "firmware/report" }

// RekeyTopic is where a device publishes its device.rekey txs.
func RekeyTopic(id string) string { return Prefix(id) + "rekey" }

// ConfigTopic is where the gateway keeps a device's configuration
// manifest (a ledger.ConfigAnswer), retained; an empty message means none.
func ConfigTopic(id string) string { return Prefix(id) + "config" }

// Requests a device may make with Client.Request, as topic suffixes under
// Prefix(id).
const (
	// RequestVerify asks whether a configuration is the current one:
	// payload its SHA-256 (32 bytes, or 64 hex digits), answer a
	// ledger.ConfigAnswer (check it with VerifyConfig).
	RequestVerify = "config/verify"
	// RequestBlob asks for a sealed configuration blob: payload its
	// address (a SHA-256 as above) or nothing for the current
	// configuration's, answer the blob (open it with OpenConfig).
	RequestBlob = "config/blob/get"
	// RequestKeys asks for another device's keys: payload its id, answer
	// a ledger.KeysAnswer (check it with VerifyKeys).
	RequestKeys = "keys/get"
	// RequestMembershipProof asks for the chain's membership proof:
	// no payload, answer a ledger.MembershipProof (follow it with
	// Verifier.FollowProof; docs/protocol.md 10.2).
	RequestMembershipProof = "cluster/proof/get"
)

// VerdictTopic is the default answer topic of RequestVerify.
func VerdictTopic(id string) string { return Prefix(id) + "config/verdict" }

// BlobTopic is the default answer topic of RequestBlob.
func BlobTopic(id string) string { return Prefix(id) + "config/blob" }

// KeysTopic is the default answer topic of RequestKeys.
func KeysTopic(id string) string { return Prefix(id) + "keys" }

// MembershipProofTopic is the default answer topic of
// RequestMembershipProof.
func MembershipProofTopic(id string) string { return Prefix(id) + "cluster/proof" }

// AnswersTopic is the root of the response topics Client.Request uses:
// it asks for each answer on AnswersTopic(id)/<n>.
func AnswersTopic(id string) string { return Prefix(id) + "answers" }

// Reject is a refusal as the gateway publishes it on the rejects topic.
type Reject struct {
	TxID   string `json:"tx_id"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// LastSeq is, with reason replay, the device's last seq the gateway
	// committed or queued.
	LastSeq *uint64 `json:"last_seq,omitempty"`
}

// RefusedError is a refusal by the gateway, of a publish or a request:
// errors.Is(err, ErrRefused) holds, and Reason is the gateway's reason
// (docs/device-protocol.md), such as "not_found" or "overloaded".
type RefusedError struct {
	Reason string
	Detail string
	// LastSeq is, for a replay, the device's last seq that the gateway
	// committed or queued, if it said: sign again with a seq above it.
	LastSeq *uint64
}

// ReasonReplay is the reason of a refusal of a seq that is not above the
// device's last one: resync the counter from RefusedError.LastSeq.
const ReasonReplay = string(ledger.ReasonReplay)

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrRefused, e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrRefused) hold.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Client is a device's MQTT v5 session with a gateway.
type Client struct {
	id      string
	chainID string
	c       *paho.Client

	keyMu sync.Mutex
	key   crypto.Signer // the device's current key: Rekey replaces it

	subMu     sync.Mutex // serializes the config topic's subscribe
	configSub bool       // subscribed to the config topic

	mu       sync.Mutex
	receipts map[string][]byte // tx id (hex) -> receipt
	rejects  map[string]Reject
	answers  map[string]chan answer // correlation data -> the request waiting for it
	next     uint64                 // numbers the response topics
	manifest []byte                 // the latest manifest; nil: none yet
	notify   chan struct{}          // closed and replaced when something arrives
}

// answer is a message on a response topic.
type answer struct {
	payload     []byte
	contentType string
}

// DialOptions say how to reach the gateway.
type DialOptions struct {
	Broker   string        // tcp://host:port or tls://host:port; default tcp://127.0.0.1:1883
	TLS      *tls.Config   // for tls://; add the device's certificate for certificate auth
	TokenTTL time.Duration // lifetime of the password token; default 1h
}

// Dial connects as device id, authenticating with a token signed by key,
// and subscribes to its receipts, rejects and answers.
func Dial(ctx context.Context, id string, key crypto.Signer, chainID string, o DialOptions) (*Client, error) {
	if o.Broker == "" {
		o.Broker = "tcp://127.0.0.1:1883"
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	u, err := url.Parse(o.Broker)
	if err != nil {
		return nil, fmt.Errorf("device: broker %q: %w", o.Broker, err)
	}
	var conn net.Conn
	var d net.Dialer
	switch u.Scheme {
	case "tcp", "mqtt":
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	case "tls", "mqtts", "ssl":
		conn, err = (&tls.Dialer{NetDialer: &d, Config: o.TLS}).DialContext(ctx, "tcp", u.Host)
	default:
		return nil, fmt.Errorf("device: broker %q: scheme must be tcp:// or tls://", o.Broker)
	}
	if err != nil {
		return nil, fmt.Errorf("device: dial %s: %w", o.Broker, err)
	}
	token, err := ledger.SignToken(key, id, chainID, time.Now(), o.TokenTTL)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cl := &Client{id: id, chainID: chainID, key: key, receipts: map[string][]byte{}, rejects: map[string]Reject{}, answers: map[string]chan answer{},
		notify: make(chan struct{})}
	cl.c = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			cl.received(pr.Packet)
			return true, nil
		}},
	})
	ca, err := cl.c.Connect(ctx, &paho.Connect{
		ClientID: id, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte(token),
	})
	if err != nil {
		if ca != nil {
			return nil, fmt.Errorf("device: connect refused: reason 0x%02x %s", ca.ReasonCode, ca.Properties.ReasonString)
		}
		return nil, fmt.Errorf("device: connect: %w", err)
	}
	if err := cl.subscribe(ctx, []paho.SubscribeOptions{
		{Topic: ReceiptsTopic(id), QoS: 1}, {Topic: RejectsTopic(id), QoS: 1}, {Topic: AnswersTopic(id) + "/#", QoS: 1},
	}); err != nil {
		cl.Close()
		return nil, fmt.Errorf("device: subscribe: %w", err)
	}
	return cl, nil
}

// subscribe subscribes, again if the broker answers 0x91 "packet
// identifier in use". The MQTT 5 client and server number their packets
// independently [MQTT-2.2.1], but mochi-mqtt v2.7.9 refuses a SUBSCRIBE
// whose id equals that of one of its own publishes to the client still
// waiting for its PUBACK; the next try gets another id.
func (cl *Client) subscribe(ctx context.Context, subs []paho.SubscribeOptions) error {
	for try := 1; ; try++ {
		sa, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if err == nil {
			return nil
		}
		if sa == nil || try == 5 || !slices.Contains(sa.Reasons, packets.SubackPacketIdentifierinuse) {
			return err
		}
	}
}

func (cl *Client) received(p *paho.Publish) {
	topic, payload := p.Topic, p.Payload
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if strings.HasPrefix(topic, AnswersTopic(cl.id)+"/") {
		if p.Properties == nil {
			return
		}
		// Another connection of the device may share the response
		// topics: the correlation data say whose answer it is.
		if ch, ok := cl.answers[string(p.Properties.CorrelationData)]; ok {
			delete(cl.answers, string(p.Properties.CorrelationData))
			ch <- answer{payload: payload, contentType: p.Properties.ContentType}
		}
		return
	}
	switch topic {
	case ReceiptsTopic(cl.id):
		r, err := ledger.DecodeReceipt(payload)
		if err != nil {
			return
		}
		id := ledger.TxID(r.Tx)
		cl.receipts[hex.EncodeToString(id[:])] = payload
	case RejectsTopic(cl.id):
		var rj Reject
		if json.Unmarshal(payload, &rj) == nil && rj.TxID != "" {
			cl.rejects[rj.TxID] = rj
		}
	case ConfigTopic(cl.id):
		cl.manifest = nil
		if len(payload) > 0 {
			cl.manifest = payload
		}
	default:
		return
	}
	close(cl.notify)
	cl.notify = make(chan struct{})
}

// ErrRefused is a publish or request the gateway refused; the error, a
// *RefusedError, names the reason.
var ErrRefused = errors.New("device: refused by the gateway")

// Publish sends a signed record (QoS 1) and returns once the gateway
// acknowledged it, that is, once it is committed. A refusal is a
// *RefusedError (errors.Is(err, ErrRefused)); "unavailable" is not
// final, and the record is sent again until ctx ends (see publishTx).
func (cl *Client) Publish(ctx context.Context, stream string, env []byte) error {
	return cl.publishTx(ctx, DataTopic(cl.id, stream), env)
}

// Report sends a signed config.report (see SignConfigReport), QoS 1, and
// returns once it is committed. Reports and records share the device's
// sequence counter and are committed in the order they are sent. A
// refusal is a *RefusedError.
func (cl *Client) Report(ctx context.Context, env []byte) error {
	return cl.publishTx(ctx, ReportTopic(cl.id), env)
}

// ReportFirmware publishes a firmware.report tx (SignFirmwareReport) and
// returns once the gateway acknowledged it, that is, once it committed.
func (cl *Client) ReportFirmware(ctx context.Context, env []byte) error {
	return cl.publishTx(ctx, FirmwareReportTopic(cl.id), env)
}

// ResendPause is how long the client waits before it sends a tx refused
// as "unavailable" again: the Max-Age and Retry-After of the gateway's
// CoAP and HTTP answers (MQTT has no such property).
const ResendPause = 2 * time.Second

// publishTx publishes the tx env on topic, QoS 1, and waits for its
// PUBACK. A refusal as "unavailable" (the gateway could not commit it
// within its commit timeout: no quorum) is not final: the tx stays
// queued at the gateway, and the same bytes are sent again after
// ResendPause until they are answered otherwise or ctx ends
// (docs/device-protocol.md).
func (cl *Client) publishTx(ctx context.Context, topic string, env []byte) error {
	for {
		err := cl.publishOnce(ctx, topic, env)
		var re *RefusedError
		if !errors.As(err, &re) || re.Reason != string(ledger.ReasonUnavailable) {
			return err
		}
		t := time.NewTimer(ResendPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// publishOnce publishes the tx env on topic, QoS 1, and waits for its PUBACK.
func (cl *Client) publishOnce(ctx context.Context, topic string, env []byte) error {
	id := ledger.TxID(env)
	txID := hex.EncodeToString(id[:])
	cl.mu.Lock()
	delete(cl.rejects, txID) // of an earlier publish of the same tx
	cl.mu.Unlock()
	r, err := cl.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: env})
	if err != nil {
		if rj, ok := cl.reject(ctx, txID); ok {
			return &RefusedError{Reason: rj.Reason, Detail: rj.Error, LastSeq: rj.LastSeq}
		}
		if r != nil && r.ReasonCode >= 0x80 && r.Properties != nil && r.Properties.ReasonString != "" {
			re := &RefusedError{Reason: r.Properties.ReasonString, Detail: fmt.Sprintf("PUBACK 0x%02x", r.ReasonCode)}
			if n, err := strconv.ParseUint(r.Properties.User.Get("last_seq"), 10, 64); err == nil {
				re.LastSeq = &n
			}
			return re
		}
		return fmt.Errorf("device: publish: %w", err)
	}
	return nil
}

// signer is the device's current key.
func (cl *Client) signer() crypto.Signer {
	cl.keyMu.Lock()
	defer cl.keyMu.Unlock()
	return cl.key
}

// PublishRecord signs rec with the client's key and the next number of
// seq, publishes it on its stream (QoS 1) and returns the signed record
// once the gateway acknowledged it, that is, once it is committed. If
// the gateway refuses it as a replay and says its last seq for the
// device, the counter was behind the ledger's (another program used the
// key, or the counter was lost): PublishRecord moves seq past the
// gateway's last seq, signs the record again and sends it once more. A
// refusal is a *RefusedError.
func (cl *Client) PublishRecord(ctx context.Context, seq Counter, rec ledger.Record) ([]byte, error) {
	rec.DeviceID = cl.id
	return cl.publishSeq(ctx, DataTopic(cl.id, rec.Stream), seq, func(key crypto.Signer, n uint64) ([]byte, error) {
		r := rec
		r.Seq = n
		return SignRecord(key, cl.chainID, r)
	})
}

// Rekey replaces the device's keys: it signs, with the client's current
// key and the next number of seq, a device.rekey carrying newKey's
// public key and the encryption key encPub (an X25519
// SubjectPublicKeyInfo, as WriteEncKeyPair writes to NAME.enc.pub; nil
// leaves the device without one), publishes it on RekeyTopic (QoS 1) and
// returns the signed tx once it is committed, resyncing seq once on a
// replay as PublishRecord does. From then on the client signs with
// newKey, and the session continues: the gateway checks what it
// publishes next against the new key, and refuses records signed with
// the old one (bad_signature). The device must store newKey before it
// calls Rekey, so that a crash after the commit does not lose it.
func (cl *Client) Rekey(ctx context.Context, seq Counter, newKey crypto.Signer, encPub []byte) ([]byte, error) {
	pub, err := ledger.MarshalPublicKey(newKey)
	if err != nil {
		return nil, err
	}
	env, err := cl.publishSeq(ctx, RekeyTopic(cl.id), seq, func(key crypto.Signer, n uint64) ([]byte, error) {
		return SignRekey(key, cl.chainID, ledger.Rekey{DeviceID: cl.id, Seq: n, PublicKey: pub, EncKey: encPub})
	})
	if err != nil {
		return nil, err
	}
	cl.keyMu.Lock()
	cl.key = newKey
	cl.keyMu.Unlock()
	return env, nil
}

// publishSeq signs a tx with the next number of seq and publishes it on
// topic; on a replay refusal that carries the gateway's last seq, at or
// above the number used, it moves seq past it and signs and sends once
// more (ledger.ActionResync).
func (cl *Client) publishSeq(ctx context.Context, topic string, seq Counter, sign func(key crypto.Signer, n uint64) ([]byte, error)) ([]byte, error) {
	for try := 0; ; try++ {
		n, err := seq.Next()
		if err != nil {
			return nil, err
		}
		env, err := sign(cl.signer(), n)
		if err != nil {
			return nil, err
		}
		err = cl.publishTx(ctx, topic, env)
		if err == nil {
			return env, nil
		}
		if try > 0 {
			return nil, err
		}
		resynced, serr := Resync(err, n, seq)
		if serr != nil {
			return nil, serr
		}
		if !resynced {
			return nil, err
		}
	}
}

// Resync moves seq past the gateway's last seq for the device if err is
// a replay refusal of the number used that carries it (it is at or above
// used), and reports whether it did: then sign again with seq.Next().
// It is what a device does on a replay refusal (ledger.ActionResync).
func Resync(err error, used uint64, seq Counter) (bool, error) {
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != ReasonReplay || re.LastSeq == nil || *re.LastSeq < used {
		return false, nil
	}
	if err := seq.Set(*re.LastSeq); err != nil {
		return false, err
	}
	return true, nil
}

// Request asks the gateway something: it publishes payload on
// Prefix(id)+suffix (RequestVerify, RequestBlob, RequestKeys), QoS 1,
// with a response topic under AnswersTopic(id) and correlation data of
// its own, and returns the answer (CBOR, to be checked against the
// genesis: see the Request constants). A refusal is a
// *RefusedError (errors.Is(err, ErrRefused)), "not_found" among the
// reasons. A device may have 4 requests in flight; more are refused as
// "overloaded".
func (cl *Client) Request(ctx context.Context, suffix string, payload []byte) ([]byte, error) {
	if suffix == "" || strings.ContainsAny(suffix, "+#") {
		return nil, fmt.Errorf("device: request topic suffix %q", suffix)
	}
	var corr [16]byte
	if _, err := rand.Read(corr[:]); err != nil {
		return nil, err
	}
	ch := make(chan answer, 1)
	cl.mu.Lock()
	cl.next++
	responseTopic := AnswersTopic(cl.id) + "/" + strconv.FormatUint(cl.next, 10)
	cl.answers[string(corr[:])] = ch
	cl.mu.Unlock()
	defer func() {
		cl.mu.Lock()
		delete(cl.answers, string(corr[:]))
		cl.mu.Unlock()
	}()

	r, err := cl.c.Publish(ctx, &paho.Publish{Topic: Prefix(cl.id) + suffix, QoS: 1, Payload: payload,
		Properties: &paho.PublishProperties{ResponseTopic: responseTopic, CorrelationData: corr[:]}})
	if r == nil {
		return nil, fmt.Errorf("device: request %s: %w", suffix, err)
	}
	// The answer is on its way: the gateway published it before the
	// PUBACK, though the two may arrive in either order. A refusal's
	// answer is its reject; if it does not come, the PUBACK tells why.
	wait := ctx
	if err != nil {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	select {
	case a := <-ch:
		if a.contentType == "application/json" {
			var rj Reject
			if json.Unmarshal(a.payload, &rj) != nil || rj.Reason == "" {
				return nil, fmt.Errorf("device: request %s: answer %q is neither an answer nor a refusal", suffix, a.payload)
			}
			return nil, &RefusedError{Reason: rj.Reason, Detail: rj.Error}
		}
		return a.payload, nil
	case <-wait.Done():
		if err != nil && r.ReasonCode >= 0x80 && r.Properties != nil && r.Properties.ReasonString != "" {
			return nil, &RefusedError{Reason: r.Properties.ReasonString, Detail: fmt.Sprintf("PUBACK 0x%02x", r.ReasonCode)}
		}
		if err == nil {
			err = wait.Err()
		}
		return nil, fmt.Errorf("device: request %s: no answer: %w", suffix, err)
	}
}

// Manifest returns the device's configuration manifest (a CBOR
// ledger.ConfigAnswer; check it with the package function Manifest). The
// first call subscribes to ConfigTopic, where the gateway keeps it
// retained and publishes every new one. Manifest returns the latest that
// arrived; if none has, or the latest says the device has none (an empty
// message), it waits for one until ctx ends.
func (cl *Client) Manifest(ctx context.Context) ([]byte, error) {
	cl.subMu.Lock()
	if !cl.configSub {
		if err := cl.subscribe(ctx, []paho.SubscribeOptions{{Topic: ConfigTopic(cl.id), QoS: 1}}); err != nil {
			cl.subMu.Unlock()
			return nil, fmt.Errorf("device: subscribe: %w", err)
		}
		cl.configSub = true
	}
	cl.subMu.Unlock()
	var m []byte
	err := cl.await(ctx, func() bool {
		m = cl.manifest
		return m != nil
	})
	if err != nil {
		return nil, fmt.Errorf("device: no configuration manifest: %w", err)
	}
	return m, nil
}

// await waits until found reports true (it runs under cl.mu) or ctx ends.
func (cl *Client) await(ctx context.Context, found func() bool) error {
	for {
		cl.mu.Lock()
		ok := found()
		ch := cl.notify
		cl.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reject waits briefly for the rejects message of a refused tx.
func (cl *Client) reject(ctx context.Context, txID string) (Reject, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var r Reject
	err := cl.await(ctx, func() bool {
		var ok bool
		r, ok = cl.rejects[txID]
		return ok
	})
	return r, err == nil
}

// Receipt waits for the receipt of the tx env and returns its bytes.
func (cl *Client) Receipt(ctx context.Context, env []byte) ([]byte, error) {
	id := ledger.TxID(env)
	key := hex.EncodeToString(id[:])
	var r []byte
	err := cl.await(ctx, func() bool {
		var ok bool
		r, ok = cl.receipts[key]
		return ok
	})
	if err != nil {
		return nil, fmt.Errorf("device: no receipt for tx %s: %w", key, err)
	}
	return r, nil
}

// Close disconnects.
func (cl *Client) Close() error {
	return cl.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
}
