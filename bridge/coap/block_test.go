package coap

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestBlockwisePost posts records larger than a block (Block1, RFC 7959)
// with go-coap's client, over UDP and DTLS, in small and large blocks.
func TestBlockwisePost(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	seq := uint64(0)
	for _, szx := range []blockwise.SZX{blockwise.SZX16, blockwise.SZX64, blockwise.SZX1024} {
		cc := dialUDP(t, s.udpAddr, szx)
		seq++
		env := d.record(t, "temp", seq, bytes.Repeat([]byte("u"), 2500))
		resp := post(t, cc, "temp", env)
		wantCode(t, resp, codes.Changed)
		if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
			t.Fatal(err)
		}
	}
	cc := mustDialDTLS(t, s.dtlsAddr, d.key)
	seq++
	env := d.record(t, "temp", seq, bytes.Repeat([]byte("d"), 1500))
	wantCode(t, post(t, cc, "temp", env), codes.Changed)
	if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
		t.Fatal(err)
	}
	if n, b, _ := s.blocks.usage(); n != 0 || b != 0 {
		t.Fatalf("%d transfers of %d bytes left", n, b)
	}
}

// block1 is a Block1 request of 16-byte blocks to stream.
func block1(stream string, num uint32, more bool, payload []byte, opts ...message.Option) msg {
	return msg{code: codes.POST, path: "/lg/v1/data/" + stream, token: []byte{byte(num)}, format: int(message.AppCoseSign1), payload: payload,
		opts: append(opts, uintOpt(message.Block1, block{num: num, more: more, szx: 0}.encode()))}
}

// TestBlockIncomplete: blocks out of order, or of no transfer, are
// refused with 4.08 and the transfer is dropped.
func TestBlockIncomplete(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	env := d.record(t, "temp", 1, []byte("a record of a few blocks"))
	r := dialRaw(t, s.udpAddr)
	chunk := func(i int) []byte { return env[16*i : min(16*i+16, len(env))] }

	wantCode(t, r.do(block1("temp", 1, true, chunk(1))), codes.RequestEntityIncomplete)
	resp := r.do(block1("temp", 0, true, chunk(0)))
	wantCode(t, resp, codes.Continue)
	if v, err := resp.GetOptionUint32(message.Block1); err != nil || v != (block{num: 0, more: true}).encode() {
		t.Fatalf("2.31 Block1 %#x %v", v, err)
	}
	// Block 0 again with a new message id (the client lost the 2.31):
	// a fresh start, still 2.31.
	wantCode(t, r.do(block1("temp", 0, true, chunk(0))), codes.Continue)
	wantCode(t, r.do(block1("temp", 1, true, chunk(1))), codes.Continue)
	// Block 1 again with a new message id: answered again, not appended.
	wantCode(t, r.do(block1("temp", 1, true, chunk(1))), codes.Continue)
	resp = r.do(block1("temp", 3, true, chunk(3)))
	wantCode(t, resp, codes.RequestEntityIncomplete)
	if diag := string(body(t, resp)); diag[:len("incomplete: ")] != "incomplete: " {
		t.Fatalf("diagnostic %q", diag)
	}
	wantCode(t, r.do(block1("temp", 2, true, chunk(2))), codes.RequestEntityIncomplete)
	if n, _, _ := s.blocks.usage(); n != 0 {
		t.Fatalf("%d transfers after 4.08", n)
	}
	notStored(t, node, env)

	// In order, it commits; the 2.04 names the last block.
	n := (len(env) + 15) / 16
	for i := range n {
		resp = r.do(block1("temp", uint32(i), i < n-1, chunk(i)))
	}
	mustCommit(t, node, resp, env)
	if v, err := resp.GetOptionUint32(message.Block1); err != nil || v != (block{num: uint32(n - 1)}).encode() {
		t.Fatalf("2.04 Block1 %#x %v", v, err)
	}
}

// TestBlockTooLarge: a transfer that grows over MaxRecordBytes is
// refused with 4.13 and Size1, and dropped.
func TestBlockTooLarge(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{MaxRecordBytes: 2048})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	cc := dialUDP(t, s.udpAddr, blockwise.SZX256)
	env := d.record(t, "temp", 1, bytes.Repeat([]byte("x"), 3000))
	resp := post(t, cc, "temp", env)
	wantCode(t, resp, codes.RequestEntityTooLarge)
	if v, err := resp.GetOptionUint32(message.Size1); err != nil || v != 2048 {
		t.Fatalf("Size1 %d %v", v, err)
	}
	notStored(t, node, env)
	if n, b, _ := s.blocks.usage(); n != 0 || b != 0 {
		t.Fatalf("%d transfers of %d bytes left", n, b)
	}
}

// TestManyTransfers starts 10,000 block-wise transfers from four ports
// and finishes none: the store keeps at most MaxTransfersPerPeer per
// port, and a device's POSTs, plain and block-wise, still commit.
func TestManyTransfers(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	const ports, transfers = 4, 10_000
	peers := make([]*rawPeer, ports)
	for i := range peers {
		peers[i] = dialRaw(t, s.udpAddr)
	}
	chunk := bytes.Repeat([]byte{0xd2}, 16)
	for i := range transfers {
		r := peers[i%ports]
		// A new transfer each: another Request-Tag (RFC 9175).
		tag := message.Option{ID: optRequestTag, Value: []byte(fmt.Sprint(i))}
		wantCode(t, r.do(block1("temp", 0, true, chunk, tag)), codes.Continue)
	}
	n, b, st := s.blocks.usage()
	if max := ports * DefaultMaxTransfersPerPeer; n > max {
		t.Fatalf("%d transfers kept, want at most %d", n, max)
	}
	if b > n*1024 {
		t.Fatalf("%d bytes kept by %d transfers", b, n)
	}
	if st.started != transfers || st.evicted < transfers-uint64(n) {
		t.Fatalf("stats %+v", st)
	}
	cc := dialUDP(t, s.udpAddr, blockwise.SZX64)
	env := d.record(t, "temp", 1, bytes.Repeat([]byte("y"), 600))
	mustCommit(t, node, post(t, cc, "temp", env), env)
	env = d.record(t, "temp", 2, []byte("z"))
	mustCommit(t, node, post(t, cc, "temp", env), env)
}

// TestTransferLimits: beyond MaxTransfers, or MaxTransferBytes, a new
// transfer is refused 4.29 with Max-Age; an idle transfer over UDP
// expires after UDPBlockTimeout.
func TestTransferLimits(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{MaxTransfers: 3, MaxTransfersPerPeer: 2, MaxTransferBytes: 4096, UDPBlockTimeout: 1500 * time.Millisecond})
	chunk := bytes.Repeat([]byte{0xd2}, 16)
	a, b := dialRaw(t, s.udpAddr), dialRaw(t, s.udpAddr)
	wantCode(t, a.do(block1("s1", 0, true, chunk)), codes.Continue)
	wantCode(t, a.do(block1("s2", 0, true, chunk)), codes.Continue)
	wantCode(t, b.do(block1("s3", 0, true, chunk)), codes.Continue)
	resp := b.do(block1("s4", 0, true, chunk))
	wantCode(t, resp, codes.TooManyRequests)
	if v, err := resp.GetOptionUint32(message.MaxAge); err != nil || v != retryAfter {
		t.Fatalf("4.29 Max-Age %d %v", v, err)
	}
	// A peer at its own limit replaces its least recently used transfer.
	wantCode(t, a.do(block1("s5", 0, true, chunk)), codes.Continue)
	wantCode(t, a.do(block1("s1", 1, true, chunk)), codes.RequestEntityIncomplete)
	eventually(t, "transfers expired", func() bool { n, _, _ := s.blocks.usage(); return n == 0 })

	// Bytes: 1 KiB buffers at first, 4 KiB in all.
	s2 := startServer(t, node, Config{MaxTransferBytes: 3000})
	c := dialRaw(t, s2.udpAddr)
	wantCode(t, c.do(block1("s1", 0, true, chunk)), codes.Continue)
	wantCode(t, c.do(block1("s2", 0, true, chunk)), codes.Continue)
	wantCode(t, c.do(block1("s3", 0, true, chunk)), codes.TooManyRequests)
	if _, bytes, _ := s2.blocks.usage(); bytes > 3000 {
		t.Fatalf("%d bytes kept", bytes)
	}
}

// TestTransferShares: the UDP endpoints of one address (an IPv6 one by
// its /64) keep at most MaxTransfersPerAddr transfers, a new one
// replacing the address's least recently used; DTLS sessions' transfers
// are a device's and do not count; UDP transfers expire after
// UDPBlockTimeout, DTLS ones after BlockTimeout.
func TestTransferShares(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{MaxTransfers: 16, MaxTransfersPerPeer: 4, MaxTransfersPerAddr: 3, MaxTransferBytes: 1 << 20,
		BlockTimeout: time.Minute, UDPBlockTimeout: 10 * time.Second}
	b := newBlockStore(cfg, m)
	udpPeer := func(ip string, port int) *peer {
		return &peer{addr: addrKey(&net.UDPAddr{IP: net.ParseIP(ip), Port: port})}
	}
	a1, a2, a3 := udpPeer("192.0.2.1", 1), udpPeer("192.0.2.1", 2), udpPeer("::ffff:192.0.2.1", 3)
	v1, v2 := udpPeer("2001:db8:1:2::1", 1), udpPeer("2001:db8:1:2:ffff::9", 1)
	other := udpPeer("192.0.2.2", 1)
	dtls := &peer{dtls: stubSession{}, addr: a1.addr}
	now := time.Now()
	start := func(p *peer, stream string) {
		t.Helper()
		now = now.Add(time.Millisecond)
		if _, a, _ := b.put(p, stream, "", block{num: 0, more: true}.encode(), make([]byte, 16), -1, 4096, now); a.code != codes.Continue {
			t.Fatalf("block 0: %v %q", a.code, a.body)
		}
	}
	for _, p := range []*peer{a1, a2, a3, v1, v2} {
		start(p, "s1")
		start(p, "s2")
	}
	start(other, "s1")
	start(dtls, "s1")
	start(dtls, "s2")
	want := map[*peer]int{a1: 0, a2: 1, a3: 2, v1: 1, v2: 2, other: 1, dtls: 2}
	for p, n := range want {
		if got := b.peerTransfers(p); got != n {
			t.Errorf("peer %v: %d transfers, want %d", p.addr, got, n)
		}
	}
	if n, _, st := b.usage(); n != 3+3+1+2 || st.evicted != 4 {
		t.Fatalf("%d transfers, stats %+v", n, st)
	}
	b.sweep(now.Add(11 * time.Second))
	if n, _, _ := b.usage(); n != 2 || b.peerTransfers(dtls) != 2 {
		t.Fatalf("after the UDP timeout: %d transfers, %d of the DTLS session", n, b.peerTransfers(dtls))
	}
	b.sweep(now.Add(61 * time.Second))
	if n, bytes, _ := b.usage(); n != 0 || bytes != 0 {
		t.Fatalf("after the timeout: %d transfers of %d bytes", n, bytes)
	}
}
