package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// hook is the server's one mochi hook: device authentication at CONNECT,
// session bookkeeping, topic ACLs, the publish path, and the retained
// manifests at SUBSCRIBE. Everything else is mochi's default.
type hook struct {
	mochi.HookBase
	s *Server
}

func (h *hook) ID() string { return "ledgergate" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnSessionEstablished,
		mochi.OnACLCheck, mochi.OnPacketRead, mochi.OnPublish, mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnUnsubscribed,
		mochi.OnDisconnect, mochi.OnClientExpired:
		return true
	}
	return false
}

// OnConnect authenticates the client as a device. mochi sends no CONNACK
// when OnConnect fails, so a refusal writes its own, with the code the
// contract names, and then fails the connection.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	// mochi keeps the client id and the username as views of the
	// CONNECT packet, which holds the device's token too, for as long
	// as the client stays: keep copies of them alone. The client is not
	// registered yet; its id is the key it will be registered by.
	cl.ID = strings.Clone(cl.ID)
	cl.Properties.Username = bytes.Clone(cl.Properties.Username)
	_, err := h.s.authenticate(cl, pk)
	if err == nil {
		id, _ := deviceOf(cl.ID)
		err = h.s.admit(cl, id)
	}
	if err != nil {
		h.s.log.Info("mqtt connect refused", "client_id", clip(pk.Connect.ClientIdentifier, ledger.MaxIDLen),
			"remote", cl.Net.Remote, "code", err.code.Code, "reason", err.detail)
		_ = cl.WritePacket(connack(cl.Properties.ProtocolVersion, err.code))
		return err.code
	}
	// [MQTT-3.1.2-21] A v5 client learns the server's keepalive from the
	// CONNACK; a 3.1.1 client is held to it without being told.
	if ka := pk.Connect.Keepalive; ka == 0 || ka > h.s.cfg.MaxKeepalive {
		cl.State.Keepalive = h.s.cfg.MaxKeepalive
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnConnectAuthenticate lets through what OnConnect, which runs first,
// accepted.
func (h *hook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *hook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	if g, ok := cl.Net.Conn.(*sizeGuard); ok {
		g.established(cl)
	}
	h.s.receipts.recount(cl) // a takeover without clean start inherits subscriptions
	h.s.established(cl, pk)
}

func (h *hook) OnDisconnect(cl *mochi.Client, _ error, expire bool) { h.s.gone(cl, expire) }

// OnClientExpired forgets a session the broker kept past its expiry.
func (h *hook) OnClientExpired(cl *mochi.Client) { h.s.expired(cl) }

// OnUnsubscribed recounts the client's receipt subscriptions after an
// UNSUBSCRIBE, or after mochi dropped all of a session's (see
// receiptSubs).
func (h *hook) OnUnsubscribed(cl *mochi.Client, _ packets.Packet) { h.s.receipts.recount(cl) }

// OnACLCheck allows a device to subscribe to, and receive, only topics
// under lg/v1/<its id>/. Publishes are authorized by OnPublish, which sees
// the topic after alias resolution and reports refusals on the rejects
// topic; here a publish topic is only bounded in length, as mochi keeps
// it in the client's topic alias table.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if write {
		return len(topic) <= maxTopicBytes
	}
	id, _ := deviceOf(cl.ID)
	return len(topic) <= maxTopicBytes && strings.HasPrefix(topic, devicePrefix(id))
}

// OnPacketRead drops a client that publishes at QoS 2. mochi would
// downgrade the message to QoS 1 and answer with a PUBACK, which a QoS 2
// sender does not expect. [MQTT-3.2.2-11]: a v5 client is told 0x9B.
//
// A DISCONNECT ends the connection's claim on a session slot here, before
// mochi handles it: mochi closes the socket before it marks the client
// closed, so a device that reconnects as soon as its socket closes could
// otherwise find its old connection still counted.
func (h *hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Disconnect {
		h.s.leaving(cl)
	}
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 1 {
		if cl.Properties.ProtocolVersion == 5 {
			_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
				ReasonCode: packets.ErrQosNotSupported.Code})
		}
		return pk, packets.ErrRejectPacket // ends the connection
	}
	return pk, nil
}

// OnPublish takes every device publish off mochi's hands: mochi neither
// acknowledges, retains nor forwards it. Only the server's own publishes
// (the inline client) pass through.
//
// The device's packet goes back to mochi marked Ignore, at QoS 0 and not
// retained: mochi v2.7.9 then skips the retain (retainMessage returns
// for an ignored packet), sends no PUBACK (it acknowledges QoS 1 and 2
// only), and publishes to no one (publishToSubscribers returns for an
// ignored packet). ErrRejectPacket would do the same, but
// Hooks.OnPublish first logs every rejection at debug level with the
// whole packet as an argument, and that call boxes the packet whether or
// not debug is enabled: ~800 bytes allocated for every device publish.
// TestPublishNotForwarded checks that mochi still does nothing with it.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	h.s.received(cl, pk)
	pk.Ignore = true
	pk.FixedHeader.Qos = 0
	pk.FixedHeader.Retain = false
	return pk, nil
}

// OnSubscribe publishes the device's manifests, retained, when it
// subscribes to their topics (config, firmware). mochi calls it before it
// adds the subscriptions and sends their retained messages, so the
// manifest is the retained message the subscription gets.
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline {
		pk = h.s.capSubscriptions(cl, h, pk)
		h.s.subscribing(cl, h, pk.Filters)
		id, _ := deviceOf(cl.ID)
		pk.Filters = noRetainedScan(id, pk.Filters)
	}
	return pk
}

// noRetainedScan returns filters with Retain Handling 2 (send no
// retained messages at subscribe) on each filter that matches none of
// device's manifest topics, a copy if it changes any. The manifests are
// the only retained messages a device may receive (devices' own
// publishes are never retained, and $SYS is not theirs), so this changes
// nothing a device receives; it spares mochi's search of the retained
// messages, which recurses over the topic levels of a filter with a
// wildcard (lg/v1/<id>/answers/# as the SDK subscribes) with a 4 KB frame
// each, and grew the client's read goroutine stack to 64 KB at every
// SUBSCRIBE: 10,000 devices subscribing took 640 MB of stacks for a
// while (BenchmarkIdleSessions, grown-stack).
func noRetainedScan(device string, filters packets.Subscriptions) packets.Subscriptions {
	var out packets.Subscriptions
	for i, sub := range filters {
		if sub.RetainHandling == 2 || slices.ContainsFunc(manifests[:], func(m manifest) bool {
			return matches(sub.Filter, devicePrefix(device)+m.level)
		}) {
			continue
		}
		if out == nil {
			out = slices.Clone(filters)
		}
		out[i].RetainHandling = 2
	}
	if out == nil {
		return filters
	}
	return out
}

// OnSubscribed sends the manifest where mochi would miss it (see
// Server.subscribed).
func (h *hook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if !cl.Net.Inline {
		h.s.receipts.recount(cl)
		h.s.refused(cl, codes)
		h.s.subscribed(cl, pk.Filters, codes)
	}
}

// connectError is a refused CONNECT: the code for the CONNACK and a
// detail for the log.
type connectError struct {
	code   packets.Code
	detail string
}

func refuse(code packets.Code, format string, a ...any) *connectError {
	return &connectError{code: code, detail: fmt.Sprintf(format, a...)}
}

// authenticate checks a CONNECT against the ledger. The client id must be
// the device id, or the device id, '/' and a suffix (a second connection
// of the same device, say a subscriber). A client that presented a TLS certificate is
// authenticated by the certificate's key; any other by its username
// (the device id) and password (a device token). The credential is
// checked before revocation, so that only the device learns it is
// revoked. expires is when the credential does: a token's expiry; zero
// for a certificate, which the ledger's key decides alone.
func (s *Server) authenticate(cl *mochi.Client, pk packets.Packet) (expires time.Time, _ *connectError) {
	c := &pk.Connect
	id, ok := deviceOf(c.ClientIdentifier)
	if !ok {
		return time.Time{}, refuse(packets.ErrBadUsernameOrPassword, "client id is not a device id (or device id/suffix)")
	}
	if c.WillFlag {
		// A will is a publish the broker would forward unchecked.
		return time.Time{}, refuse(packets.ErrNotAuthorized, "will messages are not accepted")
	}
	dev, known := s.d.Directory.Device(id)
	if cert := peerCertificate(cl); cert != nil {
		if c.UsernameFlag && string(c.Username) != id {
			return time.Time{}, refuse(packets.ErrBadUsernameOrPassword, "username is not the client id")
		}
		if !known {
			return time.Time{}, s.unknownDevice()
		}
		if !bytes.Equal(cert.RawSubjectPublicKeyInfo, dev.Key.DER) {
			return time.Time{}, s.wrongKey("certificate key is not the device's enrolled key")
		}
	} else {
		if !c.UsernameFlag || string(c.Username) != id {
			return time.Time{}, refuse(packets.ErrBadUsernameOrPassword, "username must be the client id")
		}
		if !c.PasswordFlag {
			return time.Time{}, refuse(packets.ErrBadUsernameOrPassword, "no token")
		}
		tok, err := ledger.ParseToken(string(c.Password), s.d.Directory.ChainID(), s.d.Now())
		if err != nil {
			return time.Time{}, refuse(packets.ErrBadUsernameOrPassword, "%v", err)
		}
		if tok.Claims.Subject != id {
			return time.Time{}, refuse(packets.ErrBadUsernameOrPassword, "token is for device %q", clip(tok.Claims.Subject, ledger.MaxIDLen))
		}
		if !known && s.d.Claimer != nil {
			var cerr *connectError
			if dev, known, cerr = s.claim(id, string(c.Password)); cerr != nil {
				return time.Time{}, cerr
			}
		}
		if !known {
			return time.Time{}, s.unknownDevice()
		}
		if err := tok.Verify(dev.Key); err != nil {
			return time.Time{}, s.wrongKey(err.Error())
		}
		expires = time.Unix(tok.Claims.Expiry, 0)
	}
	if dev.Revoked {
		return time.Time{}, refuse(packets.ErrNotAuthorized, "device is revoked")
	}
	return expires, nil
}

// claimTimeout bounds how long a CONNECT waits for its device's claim to
// commit.
const claimTimeout = 15 * time.Second

// claim has an unknown device enrolled from its approved batch (see
// bridge.Claimer) and returns its entry. A device no approved batch names
// comes back unknown, having cost a lookup and at most one signature
// check; a refusal from the ledger is told as server unavailable (come
// back), or as bad credentials if the ledger says so.
func (s *Server) claim(id, token string) (bridge.Device, bool, *connectError) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return bridge.Device{}, false, refuse(packets.ErrBadUsernameOrPassword, "token: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	err = s.d.Claimer.Claim(ctx, id, raw)
	switch {
	case errors.Is(err, bridge.ErrNotClaimable):
		return bridge.Device{}, false, nil
	case err != nil:
		switch ledger.ReasonOf(err) {
		case ledger.ReasonOverloaded, ledger.ReasonUnavailable, ledger.ReasonInternal, ledger.ReasonStorageFull, "":
			return bridge.Device{}, false, refuse(packets.ErrServerUnavailable, "enrollment from its batch did not commit: %v; connect again", err)
		}
		return bridge.Device{}, false, refuse(packets.ErrBadUsernameOrPassword, "enrollment from its batch refused: %v", err)
	}
	dev, ok := s.d.Directory.Device(id)
	return dev, ok, nil
}

// unknownDevice refuses a device this gateway does not know: bad
// credentials, unless the gateway may lack the block that enrolled it
// (it is catching up), when the device is told to come back: server
// unavailable (3.1.1: 0x03).
func (s *Server) unknownDevice() *connectError {
	if s.d.Directory.Behind() {
		return refuse(packets.ErrServerUnavailable, "unknown device, and this gateway is catching up with its peers")
	}
	return refuse(packets.ErrBadUsernameOrPassword, "unknown device")
}

// wrongKey refuses a credential that does not match the device's key:
// bad credentials, unless the gateway may lack a re-key of the device.
func (s *Server) wrongKey(detail string) *connectError {
	if s.d.Directory.Behind() {
		return refuse(packets.ErrServerUnavailable, "%s, and this gateway is catching up with its peers", detail)
	}
	return refuse(packets.ErrBadUsernameOrPassword, "%s", detail)
}

// peerCertificate is the client's TLS certificate, or nil. The handshake
// is complete: the CONNECT was read through it.
func peerCertificate(cl *mochi.Client) *x509.Certificate {
	tc, ok := underlying(cl.Net.Conn).(*tls.Conn)
	if !ok {
		return nil
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil
	}
	return certs[0]
}

// connack is a refusing CONNACK. 3.1.1 has its own return codes
// (MQTT 3.1.1 3.2.2.3); mochi's table maps 0x86 to 0x05, not 0x04.
func connack(version byte, code packets.Code) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code.Code}
	if version == 5 {
		pk.Properties.ReasonString = code.Reason
		return pk
	}
	switch code {
	case packets.ErrBadUsernameOrPassword:
		pk.ReasonCode = 0x04
	case packets.ErrServerUnavailable, packets.ErrQuotaExceeded:
		// 3.1.1 has no quota code; server unavailable says to come back
		// (once another session of the device ended).
		pk.ReasonCode = 0x03
	default:
		pk.ReasonCode = 0x05 // not authorized
	}
	return pk
}

// topicRoot is the root of every device's topics.
const topicRoot = "lg/v1/"

// devicePrefix is the topic prefix of device id: lg/v1/<id>/.
func devicePrefix(id string) string { return topicRoot + id + "/" }

// cutDevicePrefix returns topic without devicePrefix(device), and whether
// it had it, without building the prefix (a string a message).
func cutDevicePrefix(topic, device string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, topicRoot)
	if !ok {
		return "", false
	}
	if rest, ok = strings.CutPrefix(rest, device); !ok {
		return "", false
	}
	if rest, ok = strings.CutPrefix(rest, "/"); !ok {
		return "", false
	}
	return rest, true
}

// maxClientIDLen bounds a client id: a device id, '/' and a suffix.
const maxClientIDLen = 128

// deviceOf returns the device a client id names: the whole id, or the part
// before the first '/'. Device ids cannot contain '/', so no client id can
// name another device's session.
func deviceOf(clientID string) (string, bool) {
	if len(clientID) > maxClientIDLen {
		return "", false
	}
	id, _, _ := strings.Cut(clientID, "/")
	return id, ledger.ValidID(id)
}

// clip shortens s for a log line.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
