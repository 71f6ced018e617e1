package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait of these tests; they normally take
// milliseconds (a status frame every second is the slowest thing).
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type delivery struct{ from, data string }

// recorder is a Handler that keeps what it receives and serves blocks and
// blobs.
type recorder struct {
	mu        sync.Mutex
	msgs      []delivery
	blocks    [][]byte // block i is at height i
	blocksErr error
	maxAsked  []int               // the max of every Blocks call
	blobs     map[[32]byte][]byte // by SHA-256, which a test may get wrong on purpose
	blobErr   error
	snap      *Snapshot // served for height 0 and its own height
	snapErr   error
	snapShift bool // serve chunks after the first as of another height (a liar)
}

func (r *recorder) Snapshot(height uint64, withProof bool) (*Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.snapErr != nil:
		return nil, r.snapErr
	case r.snap == nil || height != 0 && height != r.snap.Height:
		return nil, nil
	case r.snapShift && !withProof:
		return &Snapshot{Height: r.snap.Height + 1, Data: r.snap.Data}, nil
	}
	return r.snap, nil
}

func (r *recorder) Message(from string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, delivery{from, string(data)})
}

func (r *recorder) Blocks(from uint64, max int) ([][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxAsked = append(r.maxAsked, max)
	if r.blocksErr != nil {
		return nil, r.blocksErr
	}
	if from >= uint64(len(r.blocks)) {
		return nil, nil
	}
	return r.blocks[from:min(uint64(len(r.blocks)), from+uint64(max))], nil
}

func (r *recorder) Blob(hash [32]byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blobErr != nil {
		return nil, r.blobErr
	}
	return r.blobs[hash], nil
}

func (r *recorder) got() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *recorder) lastAsked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.maxAsked) == 0 {
		return -1
	}
	return r.maxAsked[len(r.maxAsked)-1]
}

func (r *recorder) has(from, data string) bool {
	return slices.Contains(r.got(), delivery{from, data})
}

// logBuf collects a transport's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is the number of lines at level with message msg that contain every
// one of parts.
func (l *logBuf) count(level slog.Level, msg string, parts ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if !strings.Contains(line, "level="+level.String()+" ") ||
			!strings.Contains(line, fmt.Sprintf("msg=%q", msg)) {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// node is one gateway of a test cluster: its identity and where it listens.
type node struct {
	id   string
	key  *ecdsa.PrivateKey
	addr string
	ln   net.Listener // bound in advance so peers know addr; nil once used
}

// testCluster is a set of nodes that all know each other.
type testCluster struct {
	t     *testing.T
	nodes []*node
}

func newCluster(t *testing.T, ids ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		c.nodes = append(c.nodes, &node{id: id, key: newKey(t), addr: ln.Addr().String(), ln: ln})
	}
	return c
}

func (c *testCluster) node(id string) *node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %q", id)
	return nil
}

// config is the Config of node id: every other node is a peer.
func (c *testCluster) config(id string) Config {
	n := c.node(id)
	cfg := Config{Self: id, Listen: n.addr, Signer: n.key}
	if n.ln != nil {
		cfg.Listener, n.ln = n.ln, nil
	}
	for _, p := range c.nodes {
		if p.id != id {
			cfg.Peers = append(cfg.Peers, Peer{ID: p.id, Addr: p.addr, PublicKey: &p.key.PublicKey})
		}
	}
	return cfg
}

// started is a running Transport and what it received and logged.
type started struct {
	*Transport
	h    *recorder
	logs *logBuf
	stop func() // cancels Run, checks that it returned nil, closes
}

// start runs node id with cfg from config, changed by edit, and a fresh
// recorder (or h); it waits until the transport listens.
func (c *testCluster) start(id string, h *recorder, edit func(*Config)) *started {
	return startConfig(c.t, c.config(id), h, edit)
}

func startConfig(t *testing.T, cfg Config, h *recorder, edit func(*Config)) *started {
	t.Helper()
	if h == nil {
		h = &recorder{}
	}
	logs := &logBuf{}
	cfg.Logger = logs.logger()
	if edit != nil {
		edit(&cfg)
	}
	tr, err := New(cfg, h)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Self, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- tr.Run(ctx) }()
	select {
	case <-tr.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run(%s): %v", cfg.Self, err)
	case <-time.After(waitTimeout):
		cancel()
		t.Fatalf("Run(%s) did not listen", cfg.Self)
	}
	var once sync.Once
	s := &started{Transport: tr, h: h, logs: logs}
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run(%s) = %v, want nil", cfg.Self, err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run(%s) did not return after its context ended", cfg.Self)
			}
			if err := tr.Close(); err != nil {
				t.Errorf("Close(%s): %v", cfg.Self, err)
			}
		})
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", cfg.Self, logs)
		}
	})
	return s
}

func (s *started) peer(id string) PeerStatus {
	for _, p := range s.Peers() {
		if p.ID == id {
			return p
		}
	}
	return PeerStatus{}
}

// rawClient opens a TLS connection to addr as a peer holding key would,
// unless edit changes the configuration. The server's key is not checked.
func rawClient(t *testing.T, addr, id string, key *ecdsa.PrivateKey, edit func(*tls.Config)) (*tls.Conn, error) {
	t.Helper()
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		NextProtos:         []string{alpnPeer},
	}
	if key != nil {
		cert, err := selfSigned(key, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if edit != nil {
		edit(cfg)
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn), nil
}
