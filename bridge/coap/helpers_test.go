package coap

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// wait bounds every wait of these tests for the server or the chain.
const wait = 10 * time.Second

func discard() *slog.Logger {
	if os.Getenv("COAP_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testNode is a real single-node chain whose commits are passed to the
// CoAP server under test, as the daemon does with Server.Committed.
type testNode struct {
	*nodetest.Node
	srv atomic.Pointer[Server]
}

func startNode(t testing.TB) *testNode {
	t.Helper()
	n := &testNode{}
	n.Node = nodetest.Start(t, nodetest.Options{OnCommit: func(_ *ledger.Block, txs []*ledger.Tx) {
		s := n.srv.Load()
		if s == nil {
			return
		}
		ids := make([][32]byte, len(txs))
		for i, tx := range txs {
			ids[i] = tx.ID
		}
		s.Committed(ids)
	}})
	return n
}

// countingCommitter counts proposals, to tell a resend answered from the
// exchange cache from one submitted again.
type countingCommitter struct {
	bridge.Committer
	n atomic.Int64
}

func (c *countingCommitter) Propose(ctx context.Context, tx *ledger.Tx) (bridge.Ticket, error) {
	c.n.Add(1)
	return c.Committer.Propose(ctx, tx)
}

// server is a started Server with its node and its DTLS certificate.
type server struct {
	*Server
	node      *testNode
	committer *countingCommitter
	cert      *tls.Certificate
	udpAddr   string
	dtlsAddr  string
}

// startServer runs a Server for node on 127.0.0.1:0 over UDP and DTLS
// until the test ends.
func startServer(t testing.TB, node *testNode, cfg Config) *server {
	t.Helper()
	return startServerWith(t, node, cfg, node.Committer())
}

// startServerWith is startServer with committer for the node's.
func startServerWith(t testing.TB, node *testNode, cfg Config, committer bridge.Committer) *server {
	t.Helper()
	return startServerDeps(t, node, cfg, committer, nil, nil)
}

// startServerDeps is startServerWith with answers and images.
func startServerDeps(t testing.TB, node *testNode, cfg Config, committer bridge.Committer, answers bridge.Answers, images Images) *server {
	t.Helper()
	return startServerWithDeps(t, node, cfg, Deps{Committer: committer, Answers: answers, Images: images})
}

// startServerWithDeps is startServer with d's committer (the node's if
// nil), answers, images and membership.
func startServerWithDeps(t testing.TB, node *testNode, cfg Config, d Deps) *server {
	t.Helper()
	cert := selfSigned(t, newP256(t), "gateway")
	cfg.Listen, cfg.DTLSListen, cfg.DTLSCertificate = "127.0.0.1:0", "127.0.0.1:0", cert
	if d.Committer == nil {
		d.Committer = node.Committer()
	}
	cc := &countingCommitter{Committer: d.Committer}
	s, err := New(cfg, Deps{Committer: cc, Directory: node.Directory(), Receipts: node.Chain,
		Answers: d.Answers, Images: d.Images, Membership: d.Membership, Logger: discard(), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	node.srv.Store(s)
	t.Cleanup(func() {
		node.srv.Store(nil)
		s.Close()
	})
	u, da := s.Addrs()
	return &server{Server: s, node: node, committer: cc, cert: cert, udpAddr: u, dtlsAddr: da}
}

func newP256(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned is a self-signed certificate for key.
func selfSigned(t testing.TB, key crypto.Signer, cn string) *tls.Certificate {
	t.Helper()
	c, err := newCertificate(key, cn)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newCertificate is selfSigned for goroutines other than the test's.
func newCertificate(key crypto.Signer, cn string) (*tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// writePEM writes cert and key as PEM files for libcoap's clients.
func writePEM(t testing.TB, dir string, c *tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// dev is an enrolled device.
type dev struct {
	id      string
	key     crypto.Signer
	chainID string
}

func enroll(t testing.TB, node *testNode, id string, alg ledger.Alg) *dev {
	t.Helper()
	return &dev{id: id, key: node.Enroll(t, id, alg), chainID: node.Genesis.ChainID}
}

// record signs a record of d on stream.
func (d *dev) record(t testing.TB, stream string, seq uint64, payload []byte) []byte {
	t.Helper()
	env, err := device.SignRecord(d.key, d.chainID, ledger.Record{DeviceID: d.id, Stream: stream, Seq: seq,
		Time: time.Now().UnixMilli(), Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// otherHost is a loopback address other than 127.0.0.1 (Linux routes
// all of 127/8 to lo): a device at another address than a flood's.
var otherHost = net.IPv4(127, 0, 0, 2)

// from dials from host, any port.
func from(host net.IP) options.DialerOpt {
	return options.WithDialer(&net.Dialer{LocalAddr: &net.UDPAddr{IP: host}})
}

// dialUDP is a go-coap client over UDP, block-wise with blocks of szx;
// opts may add from.
func dialUDP(t testing.TB, addr string, szx blockwise.SZX, opts ...udp.Option) *udpClient.Conn {
	t.Helper()
	opts = append([]udp.Option{options.WithBlockwise(true, szx, wait), options.WithErrors(func(error) {})}, opts...)
	cc, err := udp.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// dialDTLS is a go-coap client over DTLS whose client certificate is
// self-signed by key. It offers the RFC 7925 suite only, unless opts
// say otherwise.
func dialDTLS(t testing.TB, addr string, key crypto.Signer, opts ...piondtls.ClientOption) (*udpClient.Conn, error) {
	t.Helper()
	return dialDTLSFrom(t, nil, addr, key, opts...)
}

// dialDTLSFrom is dialDTLS from host (nil: any).
func dialDTLSFrom(t testing.TB, host net.IP, addr string, key crypto.Signer, opts ...piondtls.ClientOption) (*udpClient.Conn, error) {
	t.Helper()
	cert := selfSigned(t, key, "device")
	opts = append([]piondtls.ClientOption{
		piondtls.WithCertificates(*cert),
		piondtls.WithInsecureSkipVerify(true),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
	}, opts...)
	coapOpts := []udp.Option{options.WithBlockwise(true, blockwise.SZX1024, wait), options.WithErrors(func(error) {})}
	if host != nil {
		coapOpts = append(coapOpts, from(host))
	}
	cc, err := coapdtls.Dial(addr, coapdtls.NewDTLSClientOptions(opts...), coapOpts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cc.Close() })
	return cc, nil
}

func mustDialDTLS(t testing.TB, addr string, key crypto.Signer, opts ...piondtls.ClientOption) *udpClient.Conn {
	t.Helper()
	cc, err := dialDTLS(t, addr, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// post POSTs env to lg/v1/data/<stream> and returns the response.
func post(t testing.TB, cc *udpClient.Conn, stream string, env []byte, opts ...message.Option) *pool.Message {
	t.Helper()
	return postPath(t, cc, "/lg/v1/data/"+stream, env, opts...)
}

// postPath POSTs env, a COSE_Sign1, to path and returns the response.
func postPath(t testing.TB, cc *udpClient.Conn, path string, env []byte, opts ...message.Option) *pool.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := cc.Post(ctx, path, message.AppCoseSign1, bytes.NewReader(env), opts...)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	return resp
}

// body reads a response's payload.
func body(t testing.TB, m *pool.Message) []byte {
	t.Helper()
	b, err := m.ReadBody()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantCode checks a response's code.
func wantCode(t testing.TB, m *pool.Message, want codes.Code) {
	t.Helper()
	if m.Code() != want {
		t.Fatalf("code %v (%q), want %v", m.Code(), body(t, m), want)
	}
}

// mustCommit checks that resp is the 2.04 of env: a receipt that verifies
// with the node's genesis, of a tx that is in the ledger.
func mustCommit(t testing.TB, node *testNode, resp *pool.Message, env []byte) *ledger.Receipt {
	t.Helper()
	wantCode(t, resp, codes.Changed)
	if cf, err := resp.ContentFormat(); err != nil || cf != message.AppCBOR {
		t.Fatalf("2.04 content format %v %v, want application/cbor", cf, err)
	}
	r := verifyReceipt(t, node, body(t, resp), env)
	if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
		t.Fatalf("acknowledged record not in the ledger: %v", err)
	}
	return r
}

// verifyReceipt decodes b and checks it is env's and verifies.
func verifyReceipt(t testing.TB, node *testNode, b, env []byte) *ledger.Receipt {
	t.Helper()
	r, err := ledger.DecodeReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	if ledger.TxID(r.Tx) != ledger.TxID(env) {
		t.Fatal("receipt of another tx")
	}
	if err := ledger.VerifyReceipt(node.Genesis, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// notStored checks that env was not committed.
func notStored(t testing.TB, node *testNode, env []byte) {
	t.Helper()
	if _, err := node.Chain.Receipt(ledger.TxID(env)); !errors.Is(err, chain.ErrNotFound) {
		t.Fatalf("refused record: receipt lookup returned %v, want not found", err)
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

// rawPeer is a CoAP endpoint driven datagram by datagram: for resends,
// malformed messages and many transfers from one port.
type rawPeer struct {
	t   testing.TB
	c   *net.UDPConn
	mid uint16
}

func dialRaw(t testing.TB, addr string) *rawPeer {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, c: c, mid: uint16(time.Now().UnixNano())}
}

// msg is a request to marshal: CON unless typ is set.
type msg struct {
	typ     message.Type
	code    codes.Code
	path    string
	mid     uint16 // 0: the peer's next
	token   []byte
	format  int // -1: none
	payload []byte
	opts    []message.Option
}

func (r *rawPeer) encode(m msg) []byte {
	r.t.Helper()
	if m.mid == 0 {
		r.mid++
		m.mid = r.mid
	}
	if m.typ == 0 && m.code != 0 {
		m.typ = message.Confirmable
	}
	pm := pool.NewMessage(context.Background())
	pm.SetCode(m.code)
	pm.SetType(m.typ)
	pm.SetMessageID(int32(m.mid))
	pm.SetToken(m.token)
	if m.path != "" {
		if err := pm.SetPath(m.path); err != nil {
			r.t.Fatal(err)
		}
	}
	for _, o := range m.opts {
		pm.AddOptionBytes(o.ID, o.Value)
	}
	if m.format >= 0 {
		pm.SetContentFormat(message.MediaType(m.format))
	}
	if len(m.payload) > 0 {
		pm.SetBody(bytes.NewReader(m.payload))
	}
	b, err := pm.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		r.t.Fatal(err)
	}
	return bytes.Clone(b)
}

func (r *rawPeer) sendBytes(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads the next message.
func (r *rawPeer) recv() *pool.Message {
	r.t.Helper()
	m, err := r.tryRecv(wait)
	if err != nil {
		r.t.Fatalf("no answer: %v", err)
	}
	return m
}

func (r *rawPeer) tryRecv(d time.Duration) (*pool.Message, error) {
	buf := make([]byte, 8192)
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	n, err := r.c.Read(buf)
	if err != nil {
		return nil, err
	}
	m := pool.NewMessage(context.Background())
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil {
		return nil, err
	}
	return m, nil
}

// do sends a request and returns its answer (skipping anything else).
func (r *rawPeer) do(m msg) *pool.Message {
	r.t.Helper()
	b := r.encode(m)
	r.sendBytes(b)
	mid := int32(r.mid)
	if m.mid != 0 {
		mid = int32(m.mid)
	}
	for {
		resp := r.recv()
		if resp.MessageID() == mid || resp.Type() != message.Acknowledgement && bytes.Equal(resp.Token(), m.token) {
			return resp
		}
	}
}

// uintOpt is an option with a uint value, minimally encoded.
func uintOpt(id message.OptionID, v uint32) message.Option {
	var b []byte
	for v > 0 {
		b = append([]byte{byte(v)}, b...)
		v >>= 8
	}
	return message.Option{ID: id, Value: b}
}

// dialDTLSNoCert is a go-coap DTLS client without a certificate.
func dialDTLSNoCert(t testing.TB, addr string) (*udpClient.Conn, error) {
	t.Helper()
	cc, err := coapdtls.Dial(addr, coapdtls.NewDTLSClientOptions(
		piondtls.WithInsecureSkipVerify(true),
	), options.WithErrors(func(error) {}))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cc.Close() })
	return cc, nil
}

// gatedCommitter is a Committer whose tickets wait for the gate to open
// before they wait for the commit: a slow cluster.
type gatedCommitter struct {
	bridge.Committer
	gate atomic.Pointer[chan struct{}]
}

func newGated(c bridge.Committer) *gatedCommitter {
	g := &gatedCommitter{Committer: c}
	g.close()
	return g
}

// hold makes the next proposals wait until release.
func (g *gatedCommitter) hold() {
	c := make(chan struct{})
	g.gate.Store(&c)
}

func (g *gatedCommitter) close() {
	c := make(chan struct{})
	close(c)
	g.gate.Store(&c)
}

func (g *gatedCommitter) Propose(ctx context.Context, tx *ledger.Tx) (bridge.Ticket, error) {
	gate := *g.gate.Load()
	t, err := g.Committer.Propose(ctx, tx)
	if err != nil {
		return nil, err
	}
	return gatedTicket{t: t, gate: gate}, nil
}

type gatedTicket struct {
	t    bridge.Ticket
	gate chan struct{}
}

func (g gatedTicket) Wait(ctx context.Context) (*ledger.Receipt, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.t.Wait(ctx)
}
