package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestExchange: three transports send to each other and broadcast; every
// message arrives once, in order per sender, with the sender's id.
func TestExchange(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	nodes := map[string]*started{}
	for _, id := range []string{"a", "b", "c"} {
		nodes[id] = c.start(id, nil, nil)
	}
	const n = 50
	for i := range n {
		for from, s := range nodes {
			for to := range nodes {
				if to != from && !s.Send(to, fmt.Appendf(nil, "%s>%s %d", from, to, i)) {
					t.Fatalf("Send(%s -> %s) refused", from, to)
				}
			}
			s.Broadcast(fmt.Appendf(nil, "%s>all %d", from, i))
		}
	}
	if nodes["a"].Send("a", []byte("self")) || nodes["a"].Send("nobody", []byte("x")) {
		t.Error("Send to self or to an unknown peer accepted")
	}

	for to, s := range nodes {
		waitFor(t, "all messages at "+to, func() bool { return len(s.h.got()) >= 2*n*2 })
		byFrom := map[string][]string{}
		for _, d := range s.h.got() {
			byFrom[d.from] = append(byFrom[d.from], d.data)
		}
		for from := range nodes {
			if from == to {
				if len(byFrom[from]) != 0 {
					t.Errorf("%s received %d messages from itself", to, len(byFrom[from]))
				}
				continue
			}
			var want []string
			for i := range n {
				want = append(want, fmt.Sprintf("%s>%s %d", from, to, i), fmt.Sprintf("%s>all %d", from, i))
			}
			if got := byFrom[from]; !slices.Equal(got, want) {
				t.Errorf("%s received from %s:\n%q\nwant\n%q", to, from, got, want)
			}
		}
	}
	for from, s := range nodes {
		for _, p := range s.Peers() {
			if p.Sent != 2*n || p.Dropped != 0 {
				t.Errorf("%s -> %s: sent %d, dropped %d; want %d, 0", from, p.ID, p.Sent, p.Dropped, 2*n)
			}
		}
	}
}

// TestPinning: a node whose peer "b" is served by an impostor holding
// another key refuses it in both directions, warns, and nothing crosses.
func TestPinning(t *testing.T) {
	c := newCluster(t, "a", "b")
	a := c.start("a", nil, nil)
	// The impostor listens where b should be and knows a's true key.
	impostorCfg := c.config("b")
	impostorCfg.Signer = newKey(t)
	impostor := startConfig(t, impostorCfg, nil, nil)

	a.Send("b", []byte("for b only"))
	impostor.Send("a", []byte("forged"))

	waitFor(t, "a refusing the impostor's server key", func() bool {
		return a.logs.count(slog.LevelWarn, "peer dial failed", "peer=b", "presented key") > 0
	})
	waitFor(t, "a refusing the impostor's client key", func() bool {
		return a.logs.count(slog.LevelWarn, "inbound peer refused", "is not the genesis key of any peer") > 0
	})
	waitFor(t, "the impostor seeing its connection refused", func() bool {
		return impostor.logs.count(slog.LevelWarn, "peer connection lost", "peer=a") > 0
	})
	if got := impostor.h.got(); len(got) != 0 {
		t.Errorf("impostor received %v", got)
	}
	if got := a.h.got(); len(got) != 0 {
		t.Errorf("a received %v", got)
	}
	if p := a.peer("b"); p.Connected || p.Inbound || p.Sent != 0 || !p.LastSeen.IsZero() {
		t.Errorf("a's view of b = %+v, want nothing", p)
	}
}

// TestInboundRefused: clients that do not prove a peer's key over TLS 1.3
// with our protocol are refused at the handshake, with a warning, and what
// they write never reaches the Handler.
func TestInboundRefused(t *testing.T) {
	c := newCluster(t, "a", "b")
	a := c.start("a", nil, nil)
	b := c.node("b")
	for _, tc := range []struct {
		name string
		key  *ecdsa.PrivateKey
		edit func(*tls.Config)
		log  string
	}{
		{"unknown key", newKey(t), nil, "is not the genesis key of any peer"},
		{"a's own key", c.node("a").key, nil, "is not the genesis key of any peer"},
		{"no certificate", nil, nil, "certificate"},
		{"TLS 1.2", b.key, func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }, "unsupported versions"},
		{"no ALPN", b.key, func(c *tls.Config) { c.NextProtos = nil }, "application protocol"},
		{"unknown ALPN", b.key, func(c *tls.Config) { c.NextProtos = []string{"h2"} }, "protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.logs.count(slog.LevelWarn, "inbound peer refused", tc.log)
			conn, err := rawClient(t, a.Addr(), "b", tc.key, tc.edit)
			if err == nil {
				// A TLS 1.3 client finishes before the server checks it: the
				// refusal arrives as an alert on the first read.
				_, _ = conn.Write(appendFrame(nil, frameMessage, []byte("smuggled")))
				_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
				var buf [1]byte
				if _, err = conn.Read(buf[:]); err == nil {
					t.Fatal("connection accepted")
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("connection neither accepted nor refused")
				}
			}
			waitFor(t, "the refusal logged", func() bool {
				return a.logs.count(slog.LevelWarn, "inbound peer refused", tc.log) > before
			})
		})
	}
	if got := a.h.got(); len(got) != 0 {
		t.Errorf("a received %v", got)
	}
	if p := a.peer("b"); p.Inbound || !p.LastSeen.IsZero() {
		t.Errorf("a's view of b = %+v, want no inbound", p)
	}
}

// TestFrameTooLarge: a peer announcing a frame above MaxFrame is cut off
// and logged; the transport goes on serving the others.
func TestFrameTooLarge(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	a := c.start("a", nil, func(cfg *Config) { cfg.MaxFrame = 4096 })
	b := c.start("b", nil, nil)
	// c does not run; a raw client holds its key.
	conn, err := rawClient(t, a.Addr(), "c", c.node("c").key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(appendFrame(nil, frameMessage, []byte("hello from c"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c's first message", func() bool { return a.h.has("c", "hello from c") })

	// The header claims one byte more than a allows; no payload follows.
	if _, err := conn.Write([]byte{0, 0, 0x10, 0x01, byte(frameMessage)}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	var buf [1]byte
	_, err = conn.Read(buf[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read after an oversized frame = %v, want the connection closed", err)
	}
	if n := a.logs.count(slog.LevelWarn, "peer protocol violation", "peer=c", "frame too large"); n != 1 {
		t.Errorf("%d warnings of the oversized frame, want 1", n)
	}
	if p := a.peer("c"); p.Inbound {
		t.Error("c's connection still registered")
	}

	b.Send("a", []byte("still works"))
	waitFor(t, "b's message after the oversized frame", func() bool { return a.h.has("b", "still works") })
	if got := a.h.got(); len(got) != 2 {
		t.Errorf("a received %v", got)
	}
}

// TestInboundReplaced: a second inbound connection of a peer replaces the
// first, which is closed.
func TestInboundReplaced(t *testing.T) {
	c := newCluster(t, "a", "b")
	a := c.start("a", nil, nil)
	first, err := rawClient(t, a.Addr(), "b", c.node("b").key, nil)
	if err != nil {
		t.Fatal(err)
	}
	first.Write(appendFrame(nil, frameMessage, []byte("one")))
	waitFor(t, "the first connection's message", func() bool { return a.h.has("b", "one") })

	second, err := rawClient(t, a.Addr(), "b", c.node("b").key, nil)
	if err != nil {
		t.Fatal(err)
	}
	second.Write(appendFrame(nil, frameMessage, []byte("two")))
	waitFor(t, "the second connection's message", func() bool { return a.h.has("b", "two") })
	_ = first.SetReadDeadline(time.Now().Add(waitTimeout))
	var buf [1]byte
	_, err = first.Read(buf[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read on the replaced connection = %v, want it closed", err)
	}
	second.Write(appendFrame(nil, frameMessage, []byte("three")))
	waitFor(t, "the second connection still serving", func() bool { return a.h.has("b", "three") })
	if p := a.peer("b"); !p.Inbound {
		t.Error("b has no inbound connection")
	}
}

// TestQueueBounded: with its peer down, Send fills the queue and then
// refuses, counting the drops, without blocking.
func TestQueueBounded(t *testing.T) {
	c := newCluster(t, "a")
	cfg := c.config("a")
	cfg.Peers = []Peer{{ID: "b", Addr: deadAddr(t), PublicKey: &newKey(t).PublicKey}}
	cfg.QueueLen = 4
	cfg.MaxFrame = 4096
	a := startConfig(t, cfg, nil, nil)
	waitFor(t, "a failing to dial b", func() bool { return a.logs.count(slog.LevelWarn, "peer dial failed", "peer=b") > 0 })

	for i := range 4 {
		if !a.Send("b", []byte{byte(i)}) {
			t.Fatalf("Send %d refused with room in the queue", i)
		}
	}
	for i := range 3 {
		if a.Send("b", []byte{byte(i)}) {
			t.Fatalf("Send %d accepted into a full queue", i)
		}
	}
	if p := a.peer("b"); p.Dropped != 3 || p.Sent != 0 || p.Connected {
		t.Errorf("b: %+v, want 3 dropped, none sent, not connected", p)
	}
	if a.Send("b", make([]byte, 4097)) {
		t.Error("a message above MaxFrame accepted")
	}
	a.Broadcast([]byte("x"))
	if p := a.peer("b"); p.Dropped != 5 {
		t.Errorf("b: dropped %d, want 5", p.Dropped)
	}
}

// TestReconnect: when a peer restarts on its address with its key, the
// transport reconnects to it, keeps what was queued, and counts it.
func TestReconnect(t *testing.T) {
	c := newCluster(t, "a", "b")
	a := c.start("a", nil, nil)
	b := c.start("b", nil, nil)
	a.Send("b", []byte("one"))
	b.Send("a", []byte("one"))
	waitFor(t, "b receiving one", func() bool { return b.h.has("a", "one") })
	waitFor(t, "a receiving one", func() bool { return a.h.has("b", "one") })

	b.stop()
	waitFor(t, "a noticing b is gone", func() bool { p := a.peer("b"); return !p.Connected && !p.Inbound })
	if !a.Send("b", []byte("queued while down")) {
		t.Fatal("Send refused while b is down")
	}

	b2 := c.start("b", nil, nil) // binds b's address again
	a.Send("b", []byte("two"))
	b2.Send("a", []byte("two"))
	waitFor(t, "the new b receiving", func() bool {
		return b2.h.has("a", "queued while down") && b2.h.has("a", "two")
	})
	waitFor(t, "a receiving from the new b", func() bool { return a.h.has("b", "two") })
	if got := b2.h.got(); got[0].data != "queued while down" {
		t.Errorf("the new b received %v first", got[0])
	}
	if p := a.peer("b"); p.Reconnects < 1 || !p.Connected {
		t.Errorf("a's view of b = %+v, want connected after a reconnect", p)
	}
}

// TestFetch: state transfer returns what the peer's Handler serves, within
// max and the frame cap, and fails cleanly.
func TestFetch(t *testing.T) {
	c := newCluster(t, "a", "b", "big", "broken", "silent", "down")
	blocks := func(n, size int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, fmt.Appendf(nil, "block-%d-%s", i, strings.Repeat("x", size)))
		}
		return out
	}
	b := c.start("b", &recorder{blocks: blocks(300, 0)}, nil)
	c.start("big", &recorder{blocks: blocks(10, 1500)}, func(cfg *Config) { cfg.MaxFrame = 4096 })
	c.start("broken", &recorder{blocksErr: errors.New("disk on fire")}, nil)
	// silent accepts TCP and never answers.
	silent := c.node("silent").ln
	c.node("silent").ln = nil
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c.node("down").ln.Close()
	c.node("down").ln = nil

	// a does not run: Fetch needs no Run.
	a, err := New(c.config("a"), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()

	for _, tc := range []struct {
		name      string
		from      uint64
		max       int
		want      []string
		wantAsked int
	}{
		{"middle", 2, 3, []string{"block-2-", "block-3-", "block-4-"}, 3},
		{"one", 0, 1, []string{"block-0-"}, 1},
		{"past the end", 298, 5, []string{"block-298-", "block-299-"}, 5},
		{"none", 300, 5, nil, 5},
	} {
		got, err := a.Fetch(ctx, "b", tc.from, tc.max)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s := toStrings(got); !slices.Equal(s, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, s, tc.want)
		}
		if asked := b.h.lastAsked(); asked != tc.wantAsked {
			t.Errorf("%s: handler asked for %d, want %d", tc.name, asked, tc.wantAsked)
		}
	}

	got, err := a.Fetch(ctx, "b", 0, 1000)
	if err != nil || len(got) != MaxFetchBlocks || string(got[255]) != "block-255-" {
		t.Errorf("fetch of 1000: %d blocks, %v; want %d", len(got), err, MaxFetchBlocks)
	}

	// big's blocks are 1508 bytes and its frames 4096: two fit.
	got, err = a.Fetch(ctx, "big", 3, 10)
	if err != nil || len(got) != 2 || !strings.HasPrefix(string(got[0]), "block-3-") {
		t.Errorf("fetch from big: %d blocks, %v; want 2 from block 3", len(got), err)
	}

	if _, err := a.Fetch(ctx, "broken", 0, 1); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("fetch from broken = %v, want ErrRemote with its reason", err)
	}
	if _, err := a.Fetch(ctx, "nobody", 0, 1); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("fetch from an unknown peer = %v, want ErrUnknownPeer", err)
	}
	if _, err := a.Fetch(ctx, "b", 0, 0); err == nil {
		t.Error("fetch of 0 blocks accepted")
	}
	if _, err := a.Fetch(ctx, "down", 0, 1); err == nil || !strings.Contains(err.Error(), "dial") {
		t.Errorf("fetch from a peer that is down = %v, want a dial error", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := a.Fetch(short, "silent", 0, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fetch from a silent peer = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("fetch from a silent peer took %v", d)
	}

	a.Close()
	if _, err := a.Fetch(ctx, "b", 0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("fetch after Close = %v, want ErrClosed", err)
	}
}

// toStrings is each block up to and including its second '-'.
func toStrings(blocks [][]byte) []string {
	var out []string
	for _, b := range blocks {
		s := string(b)
		if i := strings.Index(s, "-"); i >= 0 {
			if j := strings.Index(s[i+1:], "-"); j >= 0 {
				s = s[:i+1+j+1]
			}
		}
		out = append(out, s)
	}
	return out
}

// TestFetchBlob: a blob comes back only if it hashes to what was asked;
// a missing blob, a lying peer, a failing Handler and a blob too large for a
// frame each fail with their own error.
func TestFetchBlob(t *testing.T) {
	c := newCluster(t, "a", "b", "liar", "broken", "small", "silent")
	config := []byte("site: north\n")
	big := bytes.Repeat([]byte("x"), 2000)
	c.start("b", &recorder{blobs: map[[32]byte][]byte{
		sha256.Sum256(config): config,
		sha256.Sum256(nil):    {},
		sha256.Sum256(big):    big,
	}}, nil)
	c.start("liar", &recorder{blobs: map[[32]byte][]byte{sha256.Sum256(config): []byte("site: south\n")}}, nil)
	c.start("broken", &recorder{blobErr: errors.New("disk on fire")}, nil)
	c.start("small", &recorder{blobs: map[[32]byte][]byte{sha256.Sum256(big): big}}, func(cfg *Config) { cfg.MaxFrame = 1024 })
	// silent accepts TCP and never answers.
	silent := c.node("silent").ln
	c.node("silent").ln = nil
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()

	// a does not run: FetchBlob needs no Run.
	a, err := New(c.config("a"), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()

	for _, want := range [][]byte{config, {}, big} {
		got, err := a.FetchBlob(ctx, "b", sha256.Sum256(want))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("blob of %d bytes: got %d bytes, %v", len(want), len(got), err)
		}
	}
	if _, err := a.FetchBlob(ctx, "b", sha256.Sum256([]byte("nobody has this"))); !errors.Is(err, ErrNoBlob) {
		t.Errorf("fetch of a missing blob = %v, want ErrNoBlob", err)
	}
	if _, err := a.FetchBlob(ctx, "liar", sha256.Sum256(config)); !errors.Is(err, ErrProtocol) {
		t.Errorf("fetch from a peer serving other bytes = %v, want ErrProtocol", err)
	}
	if _, err := a.FetchBlob(ctx, "broken", sha256.Sum256(config)); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("fetch from broken = %v, want ErrRemote with its reason", err)
	}
	// small's frames hold 1024 bytes: it refuses to send the blob.
	if _, err := a.FetchBlob(ctx, "small", sha256.Sum256(big)); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "more than a frame holds") {
		t.Errorf("fetch of a blob larger than the server's frame = %v, want ErrRemote", err)
	}
	if _, err := a.FetchBlob(ctx, "nobody", sha256.Sum256(config)); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("fetch from an unknown peer = %v, want ErrUnknownPeer", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := a.FetchBlob(short, "silent", sha256.Sum256(config)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("fetch from a silent peer = %v, want context.DeadlineExceeded", err)
	}

	// A receiver whose frames hold 1024 bytes refuses the answer.
	cfg := c.config("a")
	cfg.MaxFrame = 1024
	tight, err := New(cfg, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer tight.Close()
	if _, err := tight.FetchBlob(ctx, "b", sha256.Sum256(big)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("fetch of a blob larger than our frame = %v, want ErrFrameTooLarge", err)
	}

	a.Close()
	if _, err := a.FetchBlob(ctx, "b", sha256.Sum256(config)); !errors.Is(err, ErrClosed) {
		t.Errorf("fetch after Close = %v, want ErrClosed", err)
	}
}

// TestPeerStatus: status frames carry the peer's height and keep it fresh;
// Peers is sorted and reports the connections.
func TestPeerStatus(t *testing.T) {
	c := newCluster(t, "c", "a", "b")
	var height atomic.Uint64
	height.Store(42)
	a := c.start("a", nil, nil)
	c.start("b", nil, func(cfg *Config) { cfg.Height = height.Load })

	if ids := []string{a.Peers()[0].ID, a.Peers()[1].ID}; !slices.Equal(ids, []string{"b", "c"}) {
		t.Errorf("Peers() order %v, want [b c]", ids)
	}
	waitFor(t, "a seeing b at height 42", func() bool {
		p := a.peer("b")
		return p.Connected && p.Inbound && p.Height == 42 && !p.LastSeen.IsZero()
	})
	height.Store(43)
	waitFor(t, "a seeing b at height 43", func() bool { return a.peer("b").Height == 43 })
	seen := a.peer("b").LastSeen
	waitFor(t, "b's next status frame", func() bool { return a.peer("b").LastSeen.After(seen) })

	if p := a.peer("c"); p.Connected || p.Inbound || p.Height != 0 {
		t.Errorf("c, which is down: %+v", p)
	}
	if p := a.peer("b"); p.Addr != c.node("b").addr {
		t.Errorf("b's Addr %q, want %q", p.Addr, c.node("b").addr)
	}
}

// TestLifecycle: Close is idempotent and safe before Run, Run after Close
// fails, and Close stops a running transport.
func TestLifecycle(t *testing.T) {
	c := newCluster(t, "a", "b")
	a, err := New(c.config("a"), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr() != "" {
		t.Errorf("Addr before Run = %q", a.Addr())
	}
	a.Close()
	a.Close()
	if err := a.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if a.Send("b", []byte("x")) {
		t.Error("Send after Close accepted")
	}

	b, err := New(c.config("b"), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- b.Run(context.Background()) }()
	<-b.Ready()
	if b.Addr() != c.node("b").addr {
		t.Errorf("Addr = %q, want %q", b.Addr(), c.node("b").addr)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
	b.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run after Close = %v, want nil", err)
		}
	default:
		t.Error("Close returned before Run")
	}
	b.Close()
	ln, err := net.Listen("tcp", c.node("b").addr)
	if err != nil {
		t.Fatalf("listener still bound after Close: %v", err)
	}
	ln.Close()
}

func TestNewValidates(t *testing.T) {
	key := newKey(t)
	peerKey := newKey(t)
	good := func() Config {
		return Config{
			Self: "a", Listen: "127.0.0.1:0", Signer: key,
			Peers: []Peer{{ID: "b", Addr: "127.0.0.1:1", PublicKey: &peerKey.PublicKey}},
		}
	}
	if _, err := New(good(), &recorder{}); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"empty", func(c *Config) { *c = Config{} }, []string{"Self is empty", "Listen", "Signer is nil"}},
		{"bad frame and queue", func(c *Config) { c.MaxFrame, c.QueueLen = 10, -1 }, []string{"MaxFrame 10", "QueueLen -1"}},
		{"peer is self", func(c *Config) { c.Peers[0].ID = "a" }, []string{"is Self"}},
		{"peer twice", func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, []string{"appears twice", "also the key of"}},
		{"peer without key or address", func(c *Config) { c.Peers[0].PublicKey, c.Peers[0].Addr = nil, "nowhere" }, []string{"PublicKey is nil", `Addr "nowhere"`}},
		{"peer with our key", func(c *Config) { c.Peers[0].PublicKey = &key.PublicKey }, []string{"our own key"}},
	} {
		cfg := good()
		tc.edit(&cfg)
		_, err := New(cfg, &recorder{})
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
		for line := range strings.Lines(err.Error()) {
			if !strings.HasPrefix(line, "cluster: ") {
				t.Errorf("%s: error line %q lacks the package prefix", tc.name, line)
			}
		}
	}
	if _, err := New(good(), nil); err == nil {
		t.Error("nil Handler accepted")
	}
}

func TestSelfSigned(t *testing.T) {
	key := newKey(t)
	cert, err := selfSigned(key, "node-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.Subject.CommonName != "node-1" || !key.PublicKey.Equal(cert.Leaf.PublicKey) {
		t.Errorf("certificate CN %q, key %s; want node-1 and our key", cert.Leaf.Subject.CommonName, fingerprint(cert.Leaf.PublicKey))
	}
	if err := cert.Leaf.CheckSignature(cert.Leaf.SignatureAlgorithm, cert.Leaf.RawTBSCertificate, cert.Leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

// TestLarge: messages and fetch answers of several MiB cross intact (the
// writes are chunked, each chunk with its own deadline).
func TestLarge(t *testing.T) {
	c := newCluster(t, "a", "b")
	big := make([][]byte, 3)
	for i := range big {
		big[i] = []byte(strings.Repeat(fmt.Sprintf("%d", i), 2<<20))
	}
	a := c.start("a", nil, nil)
	b := c.start("b", &recorder{blocks: big}, nil)

	msg := strings.Repeat("m", 5<<20)
	a.Send("b", []byte(msg))
	a.Send("b", []byte("after"))
	got, err := a.Fetch(context.Background(), "b", 0, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("fetch: %d blocks, %v; want 3", len(got), err)
	}
	for i := range got {
		if string(got[i]) != string(big[i]) {
			t.Errorf("block %d differs", i)
		}
	}
	waitFor(t, "both messages at b", func() bool { return len(b.h.got()) == 2 })
	if got := b.h.got(); got[0] != (delivery{"a", msg}) || got[1] != (delivery{"a", "after"}) {
		t.Errorf("b received %d messages, the first of %d bytes", len(got), len(got[0].data))
	}
}

// TestPeerAddressLater: a peer known only by its key (seed discovery has
// not found it yet) is dialled once SetPeerAddr gives its address, and an
// address change takes effect at the next dial.
func TestPeerAddressLater(t *testing.T) {
	c := newCluster(t, "a", "b")
	b := c.start("b", nil, nil)
	a := c.start("a", nil, func(cfg *Config) { cfg.Peers[0].Addr = "" })
	if !a.Send("b", []byte("queued before the address is known")) {
		t.Fatal("Send refused")
	}
	if p := a.peer("b"); p.Connected || p.Addr != "" {
		t.Fatalf("peer without address: %+v", p)
	}
	if err := a.SetPeerAddr("b", "not an address"); err == nil {
		t.Error("SetPeerAddr accepted a bad address")
	}
	if err := a.SetPeerAddr("nobody", c.node("b").addr); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("SetPeerAddr(nobody): %v", err)
	}
	if err := a.SetPeerAddr("b", c.node("b").addr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queued message at b", func() bool { return b.h.has("a", "queued before the address is known") })
}

// TestFetchSnapshot: a snapshot larger than a frame comes in chunks, with
// its proof once; a peer without one, a broken one, one whose chunks do
// not add up and one whose snapshot is over the limit are told apart.
func TestFetchSnapshot(t *testing.T) {
	c := newCluster(t, "a", "b", "none", "broken", "liar")
	data := bytes.Repeat([]byte("0123456789"), 1000) // 10,000 bytes: ten 1 KiB frames and more
	want := &Snapshot{Height: 42, Data: data, Proof: []byte("a proof"), Members: []byte("the members")}
	c.start("b", &recorder{snap: want}, func(cfg *Config) { cfg.MaxFrame = 1024 })
	c.start("none", &recorder{}, nil)
	c.start("broken", &recorder{snapErr: errors.New("disk on fire")}, nil)
	c.start("liar", &recorder{snap: want, snapShift: true}, func(cfg *Config) { cfg.MaxFrame = 1024 })
	a, err := New(c.config("a"), &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	got, err := a.FetchSnapshot(ctx, "b", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got.Height != 42 || !bytes.Equal(got.Data, data) || string(got.Proof) != "a proof" || string(got.Members) != "the members" {
		t.Fatalf("got height %d, %d bytes, proof %q, members %q", got.Height, len(got.Data), got.Proof, got.Members)
	}
	if _, err := a.FetchSnapshot(ctx, "b", 9999); !errors.Is(err, ErrProtocol) {
		t.Errorf("a snapshot over the limit: %v, want ErrProtocol", err)
	}
	if _, err := a.FetchSnapshot(ctx, "none", 1<<20); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("a peer without a snapshot: %v, want ErrNoSnapshot", err)
	}
	if _, err := a.FetchSnapshot(ctx, "broken", 1<<20); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("a broken peer: %v, want ErrRemote", err)
	}
	if _, err := a.FetchSnapshot(ctx, "liar", 1<<20); !errors.Is(err, ErrProtocol) {
		t.Errorf("chunks of two heights: %v, want ErrProtocol", err)
	}
	if _, err := a.FetchSnapshot(ctx, "nobody", 1<<20); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("an unknown peer: %v", err)
	}
}

// TestSetPeers: the peer set follows the members. a starts knowing b;
// c is added while a runs (a dials it, accepts it), b removed (a stops
// dialling it, closes its inbound connection and refuses it from then
// on); bad sets are refused whole.
func TestSetPeers(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	b := cl.start("b", nil, nil)
	c := cl.start("c", nil, nil)
	a := cl.start("a", nil, func(cfg *Config) { cfg.Peers = cfg.Peers[:1] }) // b only
	if a.Send("c", []byte("x")) {
		t.Fatal("Send to c before it is a peer accepted")
	}
	waitFor(t, "a and b connected", func() bool { return a.peer("b").Connected && a.peer("b").Inbound })
	nb, nc := cl.node("b"), cl.node("c")
	pb := Peer{ID: "b", Addr: nb.addr, PublicKey: &nb.key.PublicKey}
	pc := Peer{ID: "c", Addr: nc.addr, PublicKey: &nc.key.PublicKey}

	if err := a.SetPeers([]Peer{pb, pb}); err == nil {
		t.Error("SetPeers accepted an id twice")
	}
	if err := a.SetPeers([]Peer{{ID: "a", Addr: nb.addr, PublicKey: &nb.key.PublicKey}}); err == nil {
		t.Error("SetPeers accepted self")
	}
	if err := a.SetPeers([]Peer{pb, pc}); err != nil {
		t.Fatal(err)
	}
	if !a.Send("c", []byte("to c")) || !a.Send("b", []byte("to b")) {
		t.Fatal("Send refused after c was added")
	}
	waitFor(t, "c got a's message", func() bool { return c.h.has("a", "to c") })
	waitFor(t, "a hears c", func() bool { return a.peer("c").Inbound })
	c.Send("a", []byte("from c"))
	waitFor(t, "a got c's message", func() bool { return a.h.has("c", "from c") })

	if err := a.SetPeers([]Peer{pc}); err != nil {
		t.Fatal(err)
	}
	if a.Send("b", []byte("to b after")) {
		t.Error("Send to a removed peer accepted")
	}
	if ps := a.Peers(); len(ps) != 1 || ps[0].ID != "c" {
		t.Errorf("peers after b was removed: %+v", ps)
	}
	b.Send("a", []byte("from b after"))
	waitFor(t, "a refusing b", func() bool {
		return a.logs.count(slog.LevelWarn, "inbound peer refused") > 0
	})
	if a.h.has("b", "from b after") {
		t.Error("a took a message from a removed peer")
	}
	if !a.Send("c", []byte("c kept")) {
		t.Fatal("Send to c refused")
	}
	waitFor(t, "c kept its connection", func() bool { return c.h.has("a", "c kept") })
	// Added again (a member again with the same key): dialled anew.
	if err := a.SetPeers([]Peer{pb, pc}); err != nil {
		t.Fatal(err)
	}
	a.Send("b", []byte("b again"))
	waitFor(t, "b got a's message again", func() bool { return b.h.has("a", "b again") })
}
