package coap

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// notification is what an observer got.
type notification struct {
	code    codes.Code
	observe bool
	body    []byte
}

func collect(ch chan notification) func(m *pool.Message) {
	return func(m *pool.Message) {
		b, _ := m.ReadBody()
		_, err := m.Observe()
		ch <- notification{code: m.Code(), observe: err == nil, body: b}
	}
}

func next(t testing.TB, ch chan notification) notification {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(wait):
		t.Fatal("no notification")
	}
	return notification{}
}

func receiptPath(env []byte) string {
	id := ledger.TxID(env)
	return "/lg/v1/receipts/" + hex.EncodeToString(id[:])
}

// TestObserveReceipt: a receipt is 4.04 before its commit; an observer
// registered before the commit gets it as a notification when the tx
// commits, through any front end (here the chain itself, as MQTT's
// records do); afterwards GET answers it.
func TestObserveReceipt(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	e := enroll(t, node, "sensor-2", ledger.ES256)
	for _, transport := range []string{"udp", "dtls"} {
		t.Run(transport, func(t *testing.T) {
			env := d.record(t, "temp", uint64(map[string]int{"udp": 1, "dtls": 2}[transport]), []byte(transport))
			cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
			if transport == "dtls" {
				cc = mustDialDTLS(t, s.dtlsAddr, e.key) // receipts are not the device's only
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			resp, err := cc.Get(ctx, receiptPath(env))
			if err != nil {
				t.Fatal(err)
			}
			wantCode(t, resp, codes.NotFound)

			ch := make(chan notification, 8)
			obs, err := cc.Observe(ctx, receiptPath(env), collect(ch))
			if err != nil {
				t.Fatal(err)
			}
			defer obs.Cancel(ctx)
			reg := next(t, ch)
			if reg.code != codes.Content || !reg.observe || len(reg.body) != 0 {
				t.Fatalf("registration answered %v observe=%v %d bytes", reg.code, reg.observe, len(reg.body))
			}
			eventually(t, "registered", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.nobs == 1 })

			if _, err := node.Chain.Submit(ctx, env); err != nil {
				t.Fatal(err)
			}
			n := next(t, ch)
			if n.code != codes.Content || !n.observe {
				t.Fatalf("notification %v observe=%v", n.code, n.observe)
			}
			verifyReceipt(t, node, n.body, env)
			eventually(t, "observation ended", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.nobs == 0 })

			resp, err = cc.Get(ctx, receiptPath(env))
			if err != nil {
				t.Fatal(err)
			}
			wantCode(t, resp, codes.Content)
			verifyReceipt(t, node, body(t, resp), env)
		})
	}
}

// TestObserveCommittedOverCoAP: a device observes the receipt of the
// record it then POSTs; both the 2.04 and the notification carry it.
func TestObserveCommittedOverCoAP(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	cc := mustDialDTLS(t, s.dtlsAddr, d.key)
	env := d.record(t, "temp", 1, []byte("21.5"))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ch := make(chan notification, 8)
	obs, err := cc.Observe(ctx, receiptPath(env), collect(ch))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctx)
	next(t, ch)
	mustCommit(t, node, post(t, cc, "temp", env), env)
	verifyReceipt(t, node, next(t, ch).body, env)
	// Registering for a committed receipt answers it without Observe.
	ch2 := make(chan notification, 8)
	if _, err := cc.Observe(ctx, receiptPath(env), collect(ch2)); err != nil {
		t.Fatal(err)
	}
	n := next(t, ch2)
	if n.code != codes.Content || n.observe {
		t.Fatalf("observe of a committed receipt: %v observe=%v", n.code, n.observe)
	}
	verifyReceipt(t, node, n.body, env)
}

// TestObserveLimits bounds observations per peer and in total; an
// observer beyond them gets a plain 4.04 (not registered, RFC 7641 4.1),
// and an observation whose tx does not commit ends with a 4.04.
func TestObserveLimits(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{MaxObservationsPerPeer: 2, MaxObservations: 3, ObserveTimeout: 1500 * time.Millisecond})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	r := dialRaw(t, s.udpAddr)
	observe := func(r *rawPeer, seq uint64, token byte) *pool.Message {
		return r.do(msg{code: codes.GET, path: receiptPath(d.record(t, "temp", seq, nil)), token: []byte{token}, format: -1,
			opts: []message.Option{uintOpt(message.Observe, 0)}})
	}
	registered := func(m *pool.Message) bool {
		_, err := m.Observe()
		return m.Code() == codes.Content && err == nil
	}
	if !registered(observe(r, 1, 1)) || !registered(observe(r, 2, 2)) {
		t.Fatal("observations under the limit refused")
	}
	if m := observe(r, 3, 3); registered(m) || m.Code() != codes.NotFound {
		t.Fatalf("third observation of a peer: %v", m.Code())
	}
	// Re-registering with a token in use replaces, not adds.
	if !registered(observe(r, 4, 2)) {
		t.Fatal("re-registration refused")
	}
	r2 := dialRaw(t, s.udpAddr)
	if !registered(observe(r2, 5, 1)) {
		t.Fatal("another peer's observation refused")
	}
	if m := observe(r2, 6, 2); registered(m) {
		t.Fatal("observation over the total limit registered")
	}
	s.mu.Lock()
	n := s.nobs
	s.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d observations, want 3", n)
	}
	// They expire with a 4.04 each, without Observe.
	for range 2 {
		m := r.recv()
		if m.Code() != codes.NotFound || registered(m) {
			t.Fatalf("expiry: %v", m.Code())
		}
	}
	eventually(t, "observations expired", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.nobs == 0 })
	// A plain GET with an observation's token ends it.
	if !registered(observe(r, 7, 9)) {
		t.Fatal("observation refused")
	}
	r.do(msg{code: codes.GET, path: receiptPath(d.record(t, "temp", 7, nil)), token: []byte{9}, format: -1})
	s.mu.Lock()
	n = s.nobs
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d observations after a GET without Observe", n)
	}
}

// TestLargeReceipt: a receipt larger than a block is not put in the
// 2.04; its Location-Path is, and GET serves it block-wise (Block2). Its
// notification carries the first block (RFC 7959 3.4).
func TestLargeReceipt(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	cc := dialUDP(t, s.udpAddr, blockwise.SZX256)
	env := d.record(t, "blob", 1, bytes.Repeat([]byte("x"), 3000))

	// An observer on a raw endpoint, to see the blocks.
	r := dialRaw(t, s.udpAddr)
	reg := r.do(msg{code: codes.GET, path: receiptPath(env), token: []byte("obs"), format: -1,
		opts: []message.Option{uintOpt(message.Observe, 0)}})
	if _, err := reg.Observe(); err != nil || reg.Code() != codes.Content {
		t.Fatalf("registration: %v %v", reg.Code(), err)
	}

	resp := post(t, cc, "blob", env)
	wantCode(t, resp, codes.Changed)
	loc, err := resp.Options().LocationPath()
	if err != nil {
		t.Fatal(err)
	}
	if loc != receiptPath(env) {
		t.Fatalf("Location-Path %q, want %q", loc, receiptPath(env))
	}
	id := ledger.TxID(env)
	if got := string(body(t, resp)); got != hex.EncodeToString(id[:]) {
		t.Fatalf("2.04 payload %q, want the tx id", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	get, err := cc.Get(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, get, codes.Content)
	verifyReceipt(t, node, body(t, get), env)

	// The notification: block 0, CON, acknowledged; the rest by GET.
	n := r.recv()
	if n.Type() != message.Confirmable || n.Code() != codes.Content || !bytes.Equal(n.Token(), []byte("obs")) {
		t.Fatalf("notification %v %v token %q", n.Type(), n.Code(), n.Token())
	}
	r.sendBytes(r.encode(msg{typ: message.Acknowledgement, mid: uint16(n.MessageID()), format: -1}))
	etag, _ := n.ETag()
	got := body(t, n)
	for i := uint32(1); ; i++ {
		v, err := n.GetOptionUint32(message.Block2)
		if err != nil {
			t.Fatal("a notification larger than a block without Block2")
		}
		if b, _ := decodeBlock(v); !b.more {
			break
		}
		if i > 100 {
			t.Fatal("too many blocks")
		}
		n = r.do(msg{code: codes.GET, path: loc, token: []byte{byte(i)}, format: -1,
			opts: []message.Option{uintOpt(message.Block2, block{num: i, szx: 6}.encode())}})
		wantCode(t, n, codes.Content)
		if e, _ := n.ETag(); !bytes.Equal(e, etag) {
			t.Fatal("the ETag changed between blocks")
		}
		got = append(got, body(t, n)...)
	}
	verifyReceipt(t, node, got, env)
}
