package coap

import (
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestNewValidates reports every problem of a config at once.
func TestNewValidates(t *testing.T) {
	node := startNode(t)
	deps := Deps{Committer: node.Committer(), Directory: node.Directory(), Receipts: node.Chain, Logger: discard()}
	edKey, err := device.GenerateKey(ledger.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
		want []string
	}{
		{"no listener", Config{}, deps, []string{"no listener"}},
		{"bad address", Config{Listen: "5683"}, deps, []string{`listen address "5683"`}},
		{"DTLS without certificate", Config{DTLSListen: "127.0.0.1:0"}, deps, []string{"needs DTLSCertificate"}},
		{"DTLS with an Ed25519 certificate", Config{DTLSListen: "127.0.0.1:0", DTLSCertificate: selfSigned(t, edKey, "gw")}, deps, []string{"ECDSA P-256"}},
		{"many", Config{Listen: "127.0.0.1:0", BlockSize: 100, MaxMessageBytes: 100, AckWait: 3 * time.Second, MaxPeers: -1},
			Deps{}, []string{"block size 100", "max message bytes 100", "ack wait 3s", "max peers -1", "no Committer", "no Directory", "no Receipts", "no Logger"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.deps)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
	// Close is safe on a server never started; Start after Close fails.
	s, err := New(Config{Listen: "127.0.0.1:0"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

// TestStartFails leaves nothing bound when a listener cannot bind.
func TestStartFails(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	deps := Deps{Committer: node.Committer(), Directory: node.Directory(), Receipts: node.Chain, Logger: discard()}
	// The UDP address is free, the DTLS one is taken.
	s2, err := New(Config{Listen: "127.0.0.1:0", DTLSListen: s.dtlsAddr, DTLSCertificate: s.cert}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err == nil {
		t.Fatal("bound a taken address")
	}
	if u, d := s2.Addrs(); u != "" || d != "" {
		t.Fatalf("bound %q %q after a failed Start", u, d)
	}
	s2.Close()
}

// TestClose: Close waits for a record in flight and sends its 2.04;
// records that come meanwhile are refused 5.03 with Max-Age.
func TestClose(t *testing.T) {
	node := startNode(t)
	g := newGated(node.Committer())
	s := startServerWith(t, node, Config{AckWait: 20 * time.Millisecond}, g)
	d := enroll(t, node, "sensor-1", ledger.ES256)
	g.hold()
	release := *g.gate.Load()
	r := dialRaw(t, s.udpAddr)
	env := d.record(t, "temp", 1, []byte("1"))
	r.sendBytes(r.encode(msg{code: codes.POST, path: "/lg/v1/data/temp", token: []byte("c"), format: int(message.AppCoseSign1), payload: env}))
	if ack := r.recv(); ack.Code() != codes.Empty {
		t.Fatalf("want an empty ACK, got %v", ack.Code())
	}
	var closed sync.WaitGroup
	closed.Add(1)
	go func() {
		defer closed.Done()
		s.Close()
	}()
	eventually(t, "closing", s.isClosing)
	late := dialRaw(t, s.udpAddr).do(msg{code: codes.POST, path: "/lg/v1/data/temp", token: []byte("l"), format: int(message.AppCoseSign1),
		payload: d.record(t, "temp", 2, []byte("2"))})
	wantCode(t, late, codes.ServiceUnavailable)
	if v, err := late.GetOptionUint32(message.MaxAge); err != nil || v != retryAfter {
		t.Fatalf("5.03 Max-Age %d %v", v, err)
	}
	close(release)
	resp := r.recv()
	mustCommit(t, node, resp, env)
	r.sendBytes(r.encode(msg{typ: message.Acknowledgement, mid: uint16(resp.MessageID()), format: -1}))
	closed.Wait()
}

// TestMaxPeers: at MaxPeers UDP endpoints a new one replaces the longest
// idle one; a busy endpoint (here: observing) is kept.
func TestMaxPeers(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{MaxPeers: 2})
	busy := dialRaw(t, s.udpAddr)
	reg := busy.do(msg{code: codes.GET, path: "/lg/v1/receipts/" + strings.Repeat("cd", 32), token: []byte{1}, format: -1,
		opts: []message.Option{uintOpt(message.Observe, 0)}})
	if _, err := reg.Observe(); err != nil {
		t.Fatal("not registered")
	}
	for i := range 5 {
		r := dialRaw(t, s.udpAddr)
		wantCode(t, r.do(msg{code: codes.GET, path: "/.well-known/core", token: []byte{byte(i)}, format: -1}), codes.Content)
		s.mu.Lock()
		n, obs := s.udpPeers, s.nobs
		s.mu.Unlock()
		if n > 2 || obs != 1 {
			t.Fatalf("%d UDP peers, %d observations", n, obs)
		}
	}
}

// TestSharedLimiter: records beyond the budget shared with the other
// front ends are refused 4.29 with Max-Age, and the budget is given
// back after each commit.
func TestSharedLimiter(t *testing.T) {
	node := startNode(t)
	lim := bridge.NewLimiter(4096)
	cert := selfSigned(t, newP256(t), "gw")
	s, err := New(Config{Listen: "127.0.0.1:0", DTLSCertificate: cert}, Deps{Committer: node.Committer(), Directory: node.Directory(),
		Receipts: node.Chain, Limiter: lim, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr, _ := s.Addrs()
	d := enroll(t, node, "sensor-1", ledger.ES256)
	r := dialRaw(t, addr)
	if !lim.Acquire(4000) { // another front end's records
		t.Fatal("acquire")
	}
	env := d.record(t, "temp", 1, []byte("1"))
	m := msg{code: codes.POST, path: "/lg/v1/data/temp", token: []byte("x"), format: int(message.AppCoseSign1), payload: env}
	resp := r.do(m)
	wantCode(t, resp, codes.TooManyRequests)
	if v, err := resp.GetOptionUint32(message.MaxAge); err != nil || v != retryAfter {
		t.Fatalf("4.29 Max-Age %d %v", v, err)
	}
	notStored(t, node, env)
	lim.Release(4000)
	mustCommit(t, node, r.do(m), env)
	if lim.Used() != 0 {
		t.Fatalf("%d bytes still taken", lim.Used())
	}
}

// TestLimiter checks the budget's arithmetic under concurrent use.
func TestLimiter(t *testing.T) {
	l := bridge.NewLimiter(100)
	if l.Max() != 100 || !l.Acquire(60) || l.Acquire(41) || !l.Acquire(40) || l.Acquire(1) || l.Used() != 100 {
		t.Fatal("budget arithmetic")
	}
	l.Release(100)
	if !l.Acquire(0) || l.Acquire(-1) || bridge.NewLimiter(0).Max() != bridge.DefaultMaxPendingBytes {
		t.Fatal("edge cases")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if l.Acquire(7) {
					mu.Lock()
					taken++
					if l.Used() > 100 {
						t.Error("over budget")
					}
					mu.Unlock()
					l.Release(7)
				}
			}
		}()
	}
	wg.Wait()
	if l.Used() != 0 || taken == 0 {
		t.Fatalf("used %d after all released, %d taken", l.Used(), taken)
	}
}

var _ = tls.Certificate{}
