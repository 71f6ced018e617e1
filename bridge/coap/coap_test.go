package coap

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestRecordUDP posts records over plain UDP: each is answered 2.04 with
// its receipt once it is committed, and the receipt verifies.
func TestRecordUDP(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	for seq := uint64(1); seq <= 3; seq++ {
		env := d.record(t, "temp", seq, []byte("21.5"))
		mustCommit(t, node, post(t, cc, "temp", env), env)
	}
	// Resending a committed record is safe: the same receipt again.
	env := d.record(t, "temp", 4, []byte("22"))
	first := mustCommit(t, node, post(t, cc, "temp", env), env)
	again := mustCommit(t, node, post(t, cc, "temp", env), env)
	if first.Header.Height != again.Header.Height || first.Index != again.Index {
		t.Fatal("a resent record got another receipt")
	}
}

// TestRecordDTLS posts records over DTLS with the device key's
// self-signed certificate, with P-256 and Ed25519 keys.
func TestRecordDTLS(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	for _, alg := range []ledger.Alg{ledger.ES256, ledger.EdDSA} {
		d := enroll(t, node, "dtls-"+strings.ToLower(string(alg)), alg)
		cc := mustDialDTLS(t, s.dtlsAddr, d.key)
		for seq := uint64(1); seq <= 2; seq++ {
			env := d.record(t, "temp", seq, []byte("21.5"))
			mustCommit(t, node, post(t, cc, "temp", env), env)
		}
	}
}

// TestRecordNoContentFormat accepts a record without Content-Format.
func TestRecordNoContentFormat(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	env := d.record(t, "temp", 1, []byte("1"))
	resp := dialRaw(t, s.udpAddr).do(msg{code: codes.POST, path: "/lg/v1/data/temp", token: []byte{1}, format: -1, payload: env})
	mustCommit(t, node, resp, env)
}

// TestRefusals checks the code and diagnostic of each refusal over UDP,
// and that nothing refused is stored.
func TestRefusals(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{MaxRecordBytes: 2048})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	gone := enroll(t, node, "gone", ledger.ES256)
	node.Revoke(t, "gone")
	cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	five := d.record(t, "temp", 5, []byte("1"))
	mustCommit(t, node, post(t, cc, "temp", five), five)

	forged, err := device.SignRecord(newP256(t), d.chainID, ledger.Record{DeviceID: d.id, Stream: "temp", Seq: 9, Time: 1, Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	ghost := &dev{id: "ghost", key: newP256(t), chainID: d.chainID}
	report, err := device.SignConfigReport(d.key, d.chainID, ledger.ConfigReport{DeviceID: d.id, Seq: 10, Version: 1, SHA256: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	other := &dev{id: d.id, key: d.key, chainID: "other-chain"}
	for _, tc := range []struct {
		name   string
		m      msg
		code   codes.Code
		reason string
	}{
		{"forged signature", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: forged}, codes.Unauthorized, "bad_signature"},
		{"replayed seq", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 5, []byte("2"))}, codes.Forbidden, "replay"},
		{"lower seq", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 4, []byte("2"))}, codes.Forbidden, "replay"},
		{"unknown device", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: ghost.record(t, "temp", 1, []byte("1"))}, codes.Unauthorized, "unknown_author"},
		{"revoked device", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: gone.record(t, "temp", 1, []byte("1"))}, codes.Forbidden, "revoked"},
		{"oversize", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 11, make([]byte, 2100))}, codes.RequestEntityTooLarge, "too_large"},
		{"malformed payload", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: []byte{0xd2, 0x84, 0x43}}, codes.BadRequest, "malformed"},
		{"empty payload", msg{code: codes.POST, path: "/lg/v1/data/temp"}, codes.BadRequest, "malformed"},
		{"not a record", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: report}, codes.BadRequest, "not_record"},
		{"other chain", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: other.record(t, "temp", 12, []byte("1"))}, codes.BadRequest, "wrong_chain"},
		{"wrong stream", msg{code: codes.POST, path: "/lg/v1/data/hum", payload: d.record(t, "temp", 13, []byte("1"))}, codes.Forbidden, "wrong_topic"},
		{"wrong content-format", msg{code: codes.POST, path: "/lg/v1/data/temp", format: textPlain, payload: d.record(t, "temp", 14, []byte("1"))}, codes.UnsupportedMediaType, "content_format"},
		{"cbor content-format", msg{code: codes.POST, path: "/lg/v1/data/temp", format: int(message.AppCBOR), payload: d.record(t, "temp", 15, []byte("1"))}, codes.UnsupportedMediaType, "content_format"},
		{"unknown critical option", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 16, []byte("1")),
			opts: []message.Option{{ID: 65001, Value: []byte("x")}}}, codes.BadOption, "bad_option"},
		{"If-Match", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 17, []byte("1")),
			opts: []message.Option{{ID: message.IfMatch, Value: []byte{1}}}}, codes.BadOption, "bad_option"},
		{"Proxy-Uri", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 18, []byte("1")),
			opts: []message.Option{{ID: message.ProxyURI, Value: []byte("coap://example.org/")}}}, codes.ProxyingNotSupported, "proxy"},
		{"Block1 BERT", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 19, []byte("1")),
			opts: []message.Option{uintOpt(message.Block1, 7)}}, codes.BadRequest, "malformed"},
		{"short block", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: []byte("short"),
			opts: []message.Option{uintOpt(message.Block1, 0x08)}}, codes.BadRequest, "malformed"},
		{"Size1 too large", msg{code: codes.POST, path: "/lg/v1/data/temp", payload: make([]byte, 16),
			opts: []message.Option{uintOpt(message.Block1, 0x08), uintOpt(message.Size1, 1<<20)}}, codes.RequestEntityTooLarge, "too_large"},
		{"bad stream", msg{code: codes.POST, path: "/lg/v1/data/a%20b", payload: d.record(t, "temp", 20, []byte("1"))}, codes.NotFound, "not_found"},
		{"GET data", msg{code: codes.GET, path: "/lg/v1/data/temp"}, codes.MethodNotAllowed, "method_not_allowed"},
		{"PUT data", msg{code: codes.PUT, path: "/lg/v1/data/temp", payload: d.record(t, "temp", 21, []byte("1"))}, codes.MethodNotAllowed, "method_not_allowed"},
		{"POST receipts", msg{code: codes.POST, path: "/lg/v1/receipts/" + strings.Repeat("0", 64)}, codes.MethodNotAllowed, "method_not_allowed"},
		{"unknown path", msg{code: codes.GET, path: "/lg/v2/data/temp"}, codes.NotFound, "not_found"},
		{"root", msg{code: codes.GET}, codes.NotFound, "not_found"},
		{"bad tx id", msg{code: codes.GET, path: "/lg/v1/receipts/xyz"}, codes.NotFound, "not_found"},
		{"receipt not committed", msg{code: codes.GET, path: "/lg/v1/receipts/" + strings.Repeat("ab", 32)}, codes.NotFound, "not_found"},
		{"receipt as JSON", msg{code: codes.GET, path: "/lg/v1/receipts/" + strings.Repeat("ab", 32),
			opts: []message.Option{uintOpt(message.Accept, uint32(message.AppJSON))}}, codes.NotAcceptable, "not_acceptable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s.udpAddr)
			if tc.m.format == 0 && tc.m.code == codes.POST {
				tc.m.format = int(message.AppCoseSign1)
			}
			switch tc.m.format {
			case 0:
				tc.m.format = -1
			case textPlain:
				tc.m.format = int(message.TextPlain)
			}
			tc.m.token = []byte{0xaa, byte(len(tc.name))}
			resp := r.do(tc.m)
			wantCode(t, resp, tc.code)
			if resp.Type() != message.Acknowledgement {
				t.Fatalf("answer of type %v, want a piggybacked ACK", resp.Type())
			}
			diag := string(body(t, resp))
			if !strings.HasPrefix(diag, tc.reason+": ") {
				t.Fatalf("diagnostic %q, want reason %s", diag, tc.reason)
			}
			// A replay tells the device its last seq, and only a replay.
			if hasLast := strings.HasPrefix(diag, "replay: last_seq=5: "); hasLast != (tc.reason == "replay") || strings.Contains(diag, "last_seq") != hasLast {
				t.Fatalf("diagnostic %q: a replay's, and only a replay's, starts with \"replay: last_seq=5: \"", diag)
			}
			if _, err := resp.ContentFormat(); err == nil {
				t.Fatal("a diagnostic payload has a Content-Format")
			}
			if tc.code == codes.RequestEntityTooLarge {
				if n, err := resp.GetOptionUint32(message.Size1); err != nil || n != 2048 {
					t.Fatalf("4.13 Size1 %d %v, want 2048", n, err)
				}
			}
			if len(tc.m.payload) > 0 {
				notStored(t, node, tc.m.payload)
			}
		})
	}
}

// textPlain stands for Content-Format 0 in a msg of TestRefusals, whose
// zero value is the default.
const textPlain = -2

// TestRefusalsDTLS checks the session rule: a record's author must be
// the device whose enrolled key is the session's certificate key.
func TestRefusalsDTLS(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	a := enroll(t, node, "dev-a", ledger.ES256)
	b := enroll(t, node, "dev-b", ledger.ES256)

	// A key no device is enrolled with gets no session at all
	// (TestHandshakeRefusesStrangers).
	wantNoSession(t, s.dtlsAddr, newP256(t))

	// Device a's session, with device b's record: b signed it, but the
	// session is a's.
	sa := mustDialDTLS(t, s.dtlsAddr, a.key)
	envB := b.record(t, "temp", 1, []byte("1"))
	resp := post(t, sa, "temp", envB)
	wantCode(t, resp, codes.Forbidden)
	if diag := string(body(t, resp)); !strings.HasPrefix(diag, "wrong_cert: ") {
		t.Fatalf("diagnostic %q", diag)
	}
	notStored(t, node, envB)

	// An unknown author on a's session.
	ghost := &dev{id: "ghost", key: newP256(t), chainID: a.chainID}
	envG := ghost.record(t, "temp", 1, []byte("1"))
	wantCode(t, post(t, sa, "temp", envG), codes.Unauthorized)
	notStored(t, node, envG)
	env := a.record(t, "temp", 1, []byte("1"))

	// a's own record on a's session, and b's on b's.
	mustCommit(t, node, post(t, sa, "temp", env), env)
	mustCommit(t, node, post(t, mustDialDTLS(t, s.dtlsAddr, b.key), "temp", envB), envB)

	// A client without a certificate does not get a session.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if cc, err := dialDTLSNoCert(t, s.dtlsAddr); err == nil {
		if _, err := cc.Get(ctx, "/.well-known/core"); err == nil {
			t.Fatal("a DTLS client without a certificate was served")
		}
	}
}

// TestResend sends a CON record twice with the same message id: both
// get the same answer, and the record is proposed once (RFC 7252 4.5).
func TestResend(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	r := dialRaw(t, s.udpAddr)
	env := d.record(t, "temp", 1, []byte("1"))
	m := msg{code: codes.POST, path: "/lg/v1/data/temp", mid: 4242, token: []byte{7, 7}, format: int(message.AppCoseSign1), payload: env}
	first := r.do(m)
	mustCommit(t, node, first, env)
	second := r.do(m)
	if second.Code() != first.Code() || second.MessageID() != first.MessageID() || !bytes.Equal(body(t, first), body(t, second)) {
		t.Fatalf("resend answered %v, first %v", second.Code(), first.Code())
	}
	if n := s.committer.n.Load(); n != 1 {
		t.Fatalf("%d proposals, want 1", n)
	}
	// The same record with a new message id is a new request: proposed
	// again, answered with the same receipt by the chain.
	m.mid = 4243
	mustCommit(t, node, r.do(m), env)
}

// TestSeparateResponse: a commit slower than AckWait is acknowledged
// with an empty ACK, and its 2.04 follows as a CON of its own (RFC 7252
// 5.2.2), acknowledged by the client. A resend of the request meanwhile
// gets the empty ACK again and is not proposed again.
func TestSeparateResponse(t *testing.T) {
	node := startNode(t)
	g := newGated(node.Committer())
	s := startServerWith(t, node, Config{AckWait: 50 * time.Millisecond}, g)
	d := enroll(t, node, "sensor-1", ledger.ES256)
	r := dialRaw(t, s.udpAddr)
	env := d.record(t, "temp", 1, []byte("1"))
	g.hold()
	release := *g.gate.Load()
	m := msg{code: codes.POST, path: "/lg/v1/data/temp", mid: 777, token: []byte("sep"), format: int(message.AppCoseSign1), payload: env}
	req := r.encode(m)
	r.sendBytes(req)
	ack := r.recv()
	if ack.Type() != message.Acknowledgement || ack.Code() != codes.Empty || ack.MessageID() != 777 || len(ack.Token()) != 0 {
		t.Fatalf("want an empty ACK of 777, got %v %v %d", ack.Type(), ack.Code(), ack.MessageID())
	}
	r.sendBytes(req)
	if again := r.recv(); again.Type() != message.Acknowledgement || again.Code() != codes.Empty || again.MessageID() != 777 {
		t.Fatalf("resend: %v %v %d", again.Type(), again.Code(), again.MessageID())
	}
	close(release)
	resp := r.recv()
	if resp.Type() != message.Confirmable || !bytes.Equal(resp.Token(), []byte("sep")) {
		t.Fatalf("separate response %v token %q", resp.Type(), resp.Token())
	}
	mustCommit(t, node, resp, env)
	r.sendBytes(r.encode(msg{typ: message.Acknowledgement, mid: uint16(resp.MessageID()), format: -1}))
	if n := s.committer.n.Load(); n != 1 {
		t.Fatalf("%d proposals, want 1", n)
	}
	// go-coap's client takes a separate response too.
	cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	env2 := d.record(t, "temp", 2, []byte("2"))
	g.hold()
	release = *g.gate.Load()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(release)
		deadline := time.Now().Add(wait)
		for s.separates() < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling from a goroutine that may not fail the test
		}
	}()
	mustCommit(t, node, post(t, cc, "temp", env2), env2)
	<-done
}

// separates counts the requests answered with an empty ACK.
func (s *server) separates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.peers {
		p.mu.Lock()
		for _, e := range p.exchanges {
			if e.a.separate {
				n++
			}
		}
		p.mu.Unlock()
	}
	return n
}

// TestWellKnownCore lists the resources in link format.
func TestWellKnownCore(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := cc.Get(ctx, "/.well-known/core")
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, resp, codes.Content)
	if cf, _ := resp.ContentFormat(); cf != message.AppLinkFormat {
		t.Fatalf("content format %v", cf)
	}
	links := string(body(t, resp))
	for _, want := range []string{`</lg/v1/data>;rt="lg.record";ct=18`, `</lg/v1/receipts>;rt="lg.receipt";ct=60;obs`} {
		if !strings.Contains(links, want) {
			t.Fatalf("%q lacks %q", links, want)
		}
	}
	// In 16-byte blocks (RFC 7959 2.4), reassembled by the client.
	small, err := udp.Dial(s.udpAddr, options.WithBlockwise(true, blockwise.SZX16, wait), options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	resp, err = small.Get(ctx, "/.well-known/core", uintOpt(message.Block2, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(body(t, resp)); got != links {
		t.Fatalf("block-wise: %q, want %q", got, links)
	}
}

var _ = hex.EncodeToString
