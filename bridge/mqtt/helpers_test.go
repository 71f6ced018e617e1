package mqtt

import (
	"bufio"
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// wait bounds every wait of these tests for the server or the chain.
const wait = 10 * time.Second

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer runs a Server for node on 127.0.0.1:0 (and TLS if cfg.TLS
// is set) until the test ends. now, if not nil, is its token clock.
func startServer(t testing.TB, node *nodetest.Node, cfg Config, now func() time.Time) *Server {
	t.Helper()
	return startServerDeps(t, node, cfg, Deps{Now: now})
}

// startServerDeps is startServer with d's Answers, Now and Directory (if
// set); the rest of the deps come from node.
func startServerDeps(t testing.TB, node *nodetest.Node, cfg Config, d Deps) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.TLS != nil {
		cfg.TLSListen = "127.0.0.1:0"
	}
	dir := d.Directory
	if dir == nil {
		dir = node.Directory()
	}
	s, err := New(cfg, Deps{Committer: node.Committer(), Directory: dir, Answers: d.Answers, Membership: d.Membership, Logger: discard(),
		Registry: prometheus.NewRegistry(), Now: d.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func tcpAddr(s *Server) string { a, _ := s.Addrs(); return a }

// client is a device on a real paho v5 client, subscribed to its
// receipts and rejects.
type client struct {
	id       string
	key      crypto.Signer
	chainID  string
	pc       *paho.Client
	conn     *packetConn
	receipts chan []byte
	rejects  chan Reject
	other    chan *paho.Publish    // messages on the connectOpts.subscribe filters
	kicked   chan *paho.Disconnect // DISCONNECTs from the server
}

// connectOpts change how a client connects. The zero value connects with
// client id = username = the device id and a fresh token as password.
type connectOpts struct {
	clientID string
	username string
	password []byte // nil: a token signed by the key
	noAuth   bool   // no username or password (TLS certificate auth)
	tls      *tls.Config
	will     bool
	// subscribe are more filters to subscribe to: what arrives on other
	// topics than receipts and rejects goes to client.other. Without
	// them any such message fails the test.
	subscribe []string
	maxPacket uint32 // v5 Maximum Packet Size the client accepts; 0: none
	// keep connects with clean start off and a session expiry of
	// expiry seconds (0: 600), so that the broker keeps the session
	// after the client leaves, and a session it kept is resumed.
	keep   bool
	expiry uint32
	// only, if not nil, replaces the receipts and rejects filters the
	// client subscribes to after connecting (empty: none).
	only []string
}

// connect dials addr and connects as device id. A refused CONNECT
// returns the CONNACK and an error.
func connect(t testing.TB, addr, id string, key crypto.Signer, chainID string, o connectOpts) (*client, *paho.Connack, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var raw net.Conn
	var err error
	if o.tls != nil {
		raw, err = (&tls.Dialer{Config: o.tls}).DialContext(ctx, "tcp", addr)
	} else {
		raw, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &client{id: id, key: key, chainID: chainID, conn: newPacketConn(raw),
		receipts: make(chan []byte, 1024), rejects: make(chan Reject, 1024), kicked: make(chan *paho.Disconnect, 1)}
	if len(o.subscribe) > 0 {
		c.other = make(chan *paho.Publish, 1024)
	}
	c.pc = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     c.conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			switch pr.Packet.Topic {
			case "lg/v1/" + id + "/receipts":
				c.receipts <- pr.Packet.Payload
			case "lg/v1/" + id + "/rejects":
				var rj Reject
				if err := json.Unmarshal(pr.Packet.Payload, &rj); err != nil {
					t.Errorf("reject message %q: %v", pr.Packet.Payload, err)
				}
				c.rejects <- rj
			default:
				if c.other == nil {
					t.Errorf("device %s received a message on %s", id, pr.Packet.Topic)
					break
				}
				c.other <- pr.Packet
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.kicked <- d:
			default:
			}
		},
		OnClientError: func(error) {},
	})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: !o.keep}
	if o.maxPacket > 0 {
		cp.Properties = &paho.ConnectProperties{MaximumPacketSize: &o.maxPacket, RequestProblemInfo: true}
	}
	if o.keep {
		if cp.Properties == nil {
			cp.Properties = &paho.ConnectProperties{}
		}
		expiry := cmp.Or(o.expiry, 600)
		cp.Properties.SessionExpiryInterval = &expiry
	}
	if o.clientID != "" {
		cp.ClientID = o.clientID
	}
	if !o.noAuth {
		cp.UsernameFlag, cp.Username = true, id
		if o.username != "" {
			cp.Username = o.username
		}
		cp.PasswordFlag, cp.Password = len(o.password) > 0, o.password
		if o.password == nil {
			cp.PasswordFlag = true
			tok, err := ledger.SignToken(key, id, chainID, time.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			cp.Password = []byte(tok)
		}
	}
	if o.will {
		cp.WillMessage = &paho.WillMessage{Topic: "lg/v1/" + id + "/status", Payload: []byte("gone"), QoS: 1}
	}
	ca, err := c.pc.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.pc.Disconnect(&paho.Disconnect{}) })
	subs := []paho.SubscribeOptions{{Topic: "lg/v1/" + id + "/receipts", QoS: 1}, {Topic: "lg/v1/" + id + "/rejects", QoS: 1}}
	if o.only != nil {
		subs = nil
		for _, f := range o.only {
			subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
	}
	for _, f := range o.subscribe {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	if len(subs) == 0 {
		return c, ca, nil
	}
	sa, err := c.pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range sa.Reasons {
		if code >= 0x80 {
			t.Fatalf("subscribe %s: reason 0x%02x", subs[i].Topic, code)
		}
	}
	return c, ca, nil
}

func mustConnect(t testing.TB, addr, id string, key crypto.Signer, chainID string, o connectOpts) *client {
	t.Helper()
	c, ca, err := connect(t, addr, id, key, chainID, o)
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", id, err, ca)
	}
	return c
}

// record signs a record of c's device.
func (c *client) record(t testing.TB, stream string, seq uint64, payload []byte) []byte {
	t.Helper()
	env, err := device.SignRecord(c.key, c.chainID, ledger.Record{DeviceID: c.id, Stream: stream, Seq: seq,
		Time: time.Now().UnixMilli(), Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func dataTopic(id, stream string) string { return "lg/v1/" + id + "/data/" + stream }

// publish sends env at QoS 1 and returns the PUBACK.
func (c *client) publish(t testing.TB, topic string, env []byte) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r, err := c.pc.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: env})
	if r == nil {
		t.Fatalf("publish on %s: no PUBACK: %v", topic, err)
	}
	return r
}

// mustCommit publishes env on its stream and checks that it committed.
func (c *client) mustCommit(t testing.TB, node *nodetest.Node, stream string, env []byte) {
	t.Helper()
	if r := c.publish(t, dataTopic(c.id, stream), env); r.ReasonCode != 0 {
		t.Fatalf("publish: reason 0x%02x %+v", r.ReasonCode, r.Properties)
	}
	if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
		t.Fatalf("acknowledged record not in the ledger: %v", err)
	}
	c.receipt(t, env)
}

// receipt waits for the receipt of env and verifies it.
func (c *client) receipt(t testing.TB, env []byte) *ledger.Receipt {
	t.Helper()
	for {
		select {
		case b := <-c.receipts:
			r, err := ledger.DecodeReceipt(b)
			if err != nil {
				t.Fatal(err)
			}
			if ledger.TxID(r.Tx) == ledger.TxID(env) {
				return r
			}
		case <-time.After(wait):
			t.Fatal("no receipt")
		}
	}
}

// eventually polls cond until it holds or the wait is over.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for: %s", what)
		}
	}
}

// nextReject waits for the next reject message.
func (c *client) nextReject(t testing.TB) Reject {
	t.Helper()
	select {
	case rj := <-c.rejects:
		return rj
	case <-time.After(wait):
		t.Fatal("no reject message")
	}
	return Reject{}
}

// packetConn tells when paho has written a PUBLISH, so a test can put
// concurrent publishes on the wire in a known order. paho writes each
// packet under the conn's lock (it is a sync.Locker), header first.
type packetConn struct {
	net.Conn
	mu        sync.Mutex
	first     bool // the next Write starts a packet
	published chan struct{}
}

func newPacketConn(c net.Conn) *packetConn {
	return &packetConn{Conn: c, published: make(chan struct{}, 4096)}
}

func (c *packetConn) Lock()   { c.mu.Lock(); c.first = true }
func (c *packetConn) Unlock() { c.mu.Unlock() }

func (c *packetConn) Write(b []byte) (int, error) {
	isPublish := c.first && len(b) > 0 && b[0]>>4 == 3
	c.first = false
	n, err := c.Conn.Write(b)
	if isPublish {
		select {
		case c.published <- struct{}{}:
		default:
		}
	}
	return n, err
}

// rawConn is an MQTT connection driven byte by byte: for 3.1.1 clients
// and for malformed packets.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes a packet: the first byte, the remaining length, body.
func (r *rawConn) send(first byte, body []byte) {
	r.t.Helper()
	b := append([]byte{first}, vbi(len(body))...)
	if _, err := r.c.Write(append(b, body...)); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one packet.
func (r *rawConn) read() (first byte, body []byte, err error) {
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	first, err = r.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body = make([]byte, n)
	_, err = io.ReadFull(r.r, body)
	return first, body, err
}

// closed waits until the server closes the connection, skipping what it
// sends before (a v5 DISCONNECT).
func (r *rawConn) closed() error {
	for {
		_, _, err := r.read()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return err
		}
		if err != nil {
			return nil
		}
	}
}

func vbi(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func str(s string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...) }

// connectBody is a CONNECT for protocol level 4 (3.1.1) or 5, with clean
// start, keepalive 30 and, if not empty, username and password.
func connectBody(level byte, clientID, username, password string) []byte {
	flags := byte(0x02)
	if username != "" {
		flags |= 0x80
	}
	if password != "" {
		flags |= 0x40
	}
	b := append(str("MQTT"), level, flags, 0, 30)
	if level == 5 {
		b = append(b, 0) // no properties
	}
	b = append(b, str(clientID)...)
	if username != "" {
		b = append(b, str(username)...)
	}
	if password != "" {
		b = append(b, str(password)...)
	}
	return b
}

// connectRaw sends a CONNECT and returns the CONNACK's return code.
func (r *rawConn) connect(level byte, clientID, username, password string) byte {
	r.t.Helper()
	r.send(0x10, connectBody(level, clientID, username, password))
	first, body, err := r.read()
	if err != nil || first != 0x20 || len(body) < 2 {
		r.t.Fatalf("no CONNACK: %x %x %v", first, body, err)
	}
	return body[1]
}

func token(t testing.TB, key crypto.Signer, id, chainID string) string {
	t.Helper()
	tok, err := ledger.SignToken(key, id, chainID, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// notStored checks that env was not committed.
func notStored(t testing.TB, node *nodetest.Node, env []byte) {
	t.Helper()
	if _, err := node.Chain.Receipt(ledger.TxID(env)); !errors.Is(err, chain.ErrNotFound) {
		t.Fatalf("refused record: receipt lookup returned %v, want not found", err)
	}
}
