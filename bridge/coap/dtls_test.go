package coap

import (
	"bytes"
	"context"
	"crypto"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// clientHello is a DTLS 1.2 ClientHello record offering the RFC 7925
// suite, without a cookie.
func clientHello(t testing.TB) []byte {
	t.Helper()
	ch := &handshake.MessageClientHello{
		Version:            protocol.Version1_2,
		CipherSuiteIDs:     []uint16{uint16(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)},
		CompressionMethods: []*protocol.CompressionMethod{protocol.CompressionMethods()[0]},
		Extensions: []extension.Extension{
			&extension.SupportedEllipticCurves{EllipticCurves: []elliptic.Curve{elliptic.P256}},
			&extension.UseExtendedMasterSecret{Supported: true},
		},
	}
	if err := ch.Random.Populate(); err != nil {
		t.Fatal(err)
	}
	rec := &recordlayer.RecordLayer{Header: recordlayer.Header{Version: protocol.Version1_0}, Content: &handshake.Handshake{Message: ch}}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDTLSProfile checks the RFC 7925 profile: a ClientHello without a
// cookie gets a HelloVerifyRequest only (RFC 6347 4.2.1), CCM_8 and GCM
// sessions work, and a client without the extended master secret or
// with other suites gets none.
func TestDTLSProfile(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)

	r := dialRaw(t, s.dtlsAddr)
	hello := clientHello(t)
	r.sendBytes(hello)
	buf := make([]byte, 2048)
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	n, err := r.c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	// Record header (13 bytes), then the handshake type.
	if n < 14 || buf[0] != byte(protocol.ContentTypeHandshake) || buf[13] != byte(handshake.TypeHelloVerifyRequest) {
		t.Fatalf("answer to a ClientHello without cookie: % x", buf[:min(n, 16)])
	}
	if n > len(hello) {
		t.Fatalf("a %d-byte answer to a %d-byte ClientHello", n, len(hello))
	}

	seq := uint64(0)
	for _, suite := range []piondtls.CipherSuiteID{piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256} {
		cc := mustDialDTLS(t, s.dtlsAddr, d.key, piondtls.WithCipherSuites(suite))
		seq++
		env := d.record(t, "temp", seq, []byte("1"))
		mustCommit(t, node, post(t, cc, "temp", env), env)
	}
	for name, opt := range map[string]piondtls.ClientOption{
		"no extended master secret": piondtls.WithExtendedMasterSecret(piondtls.DisableExtendedMasterSecret),
		"CBC suite":                 piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA),
	} {
		t.Run(name, func(t *testing.T) {
			cc, err := dialDTLS(t, s.dtlsAddr, d.key, opt)
			if err != nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := cc.Get(ctx, "/.well-known/core"); err == nil {
				t.Fatal("served")
			}
		})
	}
}

// TestGarbage sends malformed datagrams from other sockets to both
// ports: the DTLS session and the UDP endpoint of devices go on.
func TestGarbage(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	e := enroll(t, node, "sensor-2", ledger.ES256)
	dc := mustDialDTLS(t, s.dtlsAddr, d.key)
	uc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	env := d.record(t, "temp", 1, []byte("1"))
	mustCommit(t, node, post(t, dc, "temp", env), env)
	envE := e.record(t, "temp", 1, []byte("1"))
	mustCommit(t, node, post(t, uc, "temp", envE), envE)

	hello := clientHello(t)
	garbage := [][]byte{
		{},
		{0x00},
		bytes.Repeat([]byte{0xff}, 64),
		{0x40, 0x01, 0x12, 0x34},             // a CoAP GET without options
		{0x4f, 0x01, 0x12, 0x34, 1, 2, 3},    // token length 15 (reserved)
		{0x40, 0x02, 0x12, 0x34, 0xff},       // payload marker, no payload
		{0x40, 0x02, 0x12, 0x34, 0xdd, 0xff}, // truncated option
		{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5}, // a handshake record of junk
		{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4},    // application data of no session
		{0x15, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40},         // a fatal alert
		hello[:len(hello)/2],
		hello,
	}
	for _, addr := range []string{s.dtlsAddr, s.udpAddr} {
		for i := range 3 { // three sockets each
			r := dialRaw(t, addr)
			for _, g := range garbage {
				if _, err := r.c.Write(g); err != nil {
					t.Fatal(err)
				}
			}
			_ = i
		}
	}
	// Also on the UDP port, from a socket with a request in progress.
	r := dialRaw(t, s.udpAddr)
	wantCode(t, r.do(block1("temp", 0, true, bytes.Repeat([]byte{1}, 16))), codes.Continue)
	r.sendBytes([]byte{0x4f, 0xff})
	for seq := uint64(2); seq <= 4; seq++ {
		env := d.record(t, "temp", seq, []byte("2"))
		mustCommit(t, node, post(t, dc, "temp", env), env)
		envE := e.record(t, "temp", seq, []byte("2"))
		mustCommit(t, node, post(t, uc, "temp", envE), envE)
	}
}

// TestMaxSessions: handshakes under way take no place of sessions, and
// a device's new session always gets one: at MaxHandshakes a new
// handshake replaces the oldest, at MaxSessions a new session replaces
// the one silent longest, and at MaxSessionsPerDevice the device's own
// one silent longest.
func TestMaxSessions(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{MaxHandshakes: 2, MaxSessions: 2, MaxSessionsPerDevice: 2})
	a := enroll(t, node, "sensor-a", ledger.ES256)
	b := enroll(t, node, "sensor-b", ledger.ES256)
	c := enroll(t, node, "sensor-c", ledger.ES256)
	for range 2 { // half-open handshakes that never go on
		dialRaw(t, s.dtlsAddr).sendBytes(clientHello(t))
	}
	eventually(t, "two handshakes", func() bool { h, _ := s.dtlsLn.counts(); return h == 2 })
	seqs := map[*dev]uint64{}
	commit := func(d *dev, cc *udpClient.Conn) {
		t.Helper()
		seqs[d]++
		env := d.record(t, "temp", seqs[d], []byte("1"))
		mustCommit(t, node, post(t, cc, "temp", env), env)
	}
	sa := mustDialDTLS(t, s.dtlsAddr, a.key)
	commit(a, sa)
	sb := mustDialDTLS(t, s.dtlsAddr, b.key)
	commit(b, sb)
	// a's handshake took the place of the older half-open one, b's none.
	if h, n := s.dtlsLn.counts(); h != 1 || n != 2 {
		t.Fatalf("%d handshakes, %d sessions; want 1, 2", h, n)
	}
	// a's is silent longest: c's session takes its place.
	commit(b, sb)
	sc := mustDialDTLS(t, s.dtlsAddr, c.key)
	commit(c, sc)
	wantGone(t, sa)
	commit(b, sb)
	if _, n := s.dtlsLn.counts(); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}

	// Per device: c's second session, then its third, which replaces
	// c's older one and not b's.
	s2 := startServer(t, node, Config{MaxSessionsPerDevice: 2})
	c1 := mustDialDTLS(t, s2.dtlsAddr, c.key)
	commit(c, c1)
	c2 := mustDialDTLS(t, s2.dtlsAddr, c.key)
	commit(c, c2)
	b1 := mustDialDTLS(t, s2.dtlsAddr, b.key)
	commit(b, b1)
	c3 := mustDialDTLS(t, s2.dtlsAddr, c.key)
	commit(c, c3)
	wantGone(t, c1)
	commit(c, c2)
	commit(b, b1)
}

// wantGone checks that the gateway closed cc's session: a request on it
// gets no answer.
func wantGone(t testing.TB, cc *udpClient.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := cc.Get(ctx, "/.well-known/core"); err == nil {
		t.Fatal("a replaced session is still served")
	}
}

// wantNoSession checks that a client certificate of key gets no DTLS
// session.
func wantNoSession(t testing.TB, addr string, key crypto.Signer) {
	t.Helper()
	if cc, err := dialDTLS(t, addr, key); err == nil {
		wantGone(t, cc)
	}
}

// TestHandshakeRefusesStrangers: a client certificate whose key is no
// enrolled device's, or a revoked device's, gets no session; the
// handshake fails and takes no place.
func TestHandshakeRefusesStrangers(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	e := enroll(t, node, "sensor-2", ledger.EdDSA)
	revoked := enroll(t, node, "sensor-3", ledger.ES256)
	node.Revoke(t, revoked.id)
	for name, key := range map[string]crypto.Signer{"unenrolled": newP256(t), "revoked": revoked.key} {
		t.Run(name, func(t *testing.T) { wantNoSession(t, s.dtlsAddr, key) })
	}
	eventually(t, "no handshakes", func() bool { h, n := s.dtlsLn.counts(); return h == 0 && n == 0 })
	for i, k := range []*dev{d, e} {
		cc := mustDialDTLS(t, s.dtlsAddr, k.key)
		env := k.record(t, "temp", uint64(i+1), []byte("1"))
		mustCommit(t, node, post(t, cc, "temp", env), env)
	}
}
