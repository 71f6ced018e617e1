package cluster

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Defaults and limits of Config.
const (
	DefaultMaxFrame = 64 << 20 // bytes of frame payload
	DefaultQueueLen = 1024     // messages per peer

	minMaxFrame = 1 << 10
	maxMaxFrame = 1 << 30
)

// Timing of the transport. Fixed, so every node of a cluster agrees.
const (
	pingEvery        = time.Second      // status frame on each outbound connection
	idleTimeout      = 10 * time.Second // a peer sending no bytes this long is dropped
	writeTimeout     = 10 * time.Second // a peer taking no bytes this long is dropped
	handshakeTimeout = 10 * time.Second
	dialTimeout      = 5 * time.Second
	backoffMin       = 50 * time.Millisecond
	backoffMax       = 2 * time.Second
	healthyAfter     = 5 * time.Second // a connection this old resets backoff and warnings
	warnEvery        = time.Minute     // a peer that stays down warns this often
	maxHandshakes    = 64              // inbound handshakes in progress at once
	writeBatch       = 64              // messages written before one flush
	bufSize          = 64 << 10
	ioChunk          = 64 << 10 // bytes written under one deadline
)

var (
	// ErrClosed is returned by Run, Fetch and FetchBlob once Close was
	// called.
	ErrClosed = errors.New("cluster: transport closed")
	// ErrUnknownPeer is returned for a peer id that is not in Config.Peers.
	ErrUnknownPeer = errors.New("cluster: unknown peer")
)

// Peer is another gateway of the cluster.
type Peer struct {
	ID   string
	Addr string // host:port it listens on for peers; "" until SetPeerAddr (seed discovery)
	// PublicKey is its genesis node key (P-256); the TLS peer must hold it.
	PublicKey *ecdsa.PublicKey
}

// Config configures a Transport. The zero values of MaxFrame, QueueLen and
// Logger take defaults.
type Config struct {
	Self   string // our node id
	Listen string // host:port to listen on for peers ("127.0.0.1:0" allowed)
	// Listener, if not nil, is used instead of listening on Listen (socket
	// activation, tests). The transport closes it.
	Listener net.Listener
	// Signer is our node key (ECDSA P-256). It may be a TPM, so only its
	// Sign and Public methods are used.
	Signer   crypto.Signer
	Peers    []Peer // every other node (not Self)
	MaxFrame int    // max frame payload bytes; DefaultMaxFrame if 0
	QueueLen int    // per-peer send queue length in messages; DefaultQueueLen if 0
	Logger   *slog.Logger
	// Height reports our committed height for the status frames. It may be
	// nil (height 0) and must be safe for concurrent use.
	Height func() uint64
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster: "+format, args...))
	}
	if c.Self == "" {
		bad("Self is empty")
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("Listen %q: %v", c.Listen, err)
		}
	}
	if c.Signer == nil {
		bad("Signer is nil")
	} else if err := checkKey(c.Signer.Public()); err != nil {
		bad("Signer: %v", err)
	}
	if c.MaxFrame != 0 && (c.MaxFrame < minMaxFrame || c.MaxFrame > maxMaxFrame) {
		bad("MaxFrame %d: want 0 or %d..%d", c.MaxFrame, minMaxFrame, maxMaxFrame)
	}
	if c.QueueLen < 0 {
		bad("QueueLen %d is negative", c.QueueLen)
	}
	errs = append(errs, c.validatePeers())
	return errors.Join(errs...)
}

// validatePeers reports every problem of c.Peers at once.
func (c *Config) validatePeers() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster: "+format, args...))
	}
	var self string
	if c.Signer != nil && checkKey(c.Signer.Public()) == nil {
		self, _ = keyID(c.Signer.Public())
	}
	ids := map[string]bool{}
	keys := map[string]string{}
	for i, p := range c.Peers {
		name := fmt.Sprintf("peer %d (%q)", i, p.ID)
		switch {
		case p.ID == "":
			bad("%s: ID is empty", name)
		case p.ID == c.Self:
			bad("%s: is Self", name)
		case ids[p.ID]:
			bad("%s: ID appears twice", name)
		}
		ids[p.ID] = true
		if _, _, err := net.SplitHostPort(p.Addr); p.Addr != "" && err != nil {
			bad("%s: Addr %q: %v", name, p.Addr, err)
		}
		if p.PublicKey == nil {
			bad("%s: PublicKey is nil", name)
			continue
		}
		if err := checkKey(p.PublicKey); err != nil {
			bad("%s: PublicKey: %v", name, err)
			continue
		}
		k, _ := keyID(p.PublicKey)
		if other, dup := keys[k]; dup {
			bad("%s: PublicKey is also the key of %q", name, other)
		}
		if k == self {
			bad("%s: PublicKey is our own key", name)
		}
		keys[k] = p.ID
	}
	return errors.Join(errs...)
}

// Handler receives what peers send. Calls come from the transport's reader
// goroutines, concurrently; implementations must be safe for that and quick
// (hand off to a channel).
type Handler interface {
	// Message is a consensus message from an authenticated peer. The
	// handler owns data.
	Message(from string, data []byte)
	// Blocks serves encoded blocks [from, from+max) for state transfer:
	// fewer, or none, if we do not have them.
	Blocks(from uint64, max int) ([][]byte, error)
	// Blob serves the blob whose SHA-256 is hash: nil and no error if we
	// do not have it.
	Blob(hash [32]byte) ([]byte, error)
	// Snapshot serves the encoding of the state snapshot at height, or
	// of the newest certified one if height is 0, with its height and,
	// if withProof, the encoded ledger.SnapshotProof that it is
	// certified and the encoded ledger.MembershipProof of the chain's
	// member changes: nil and no error if we do not have it.
	Snapshot(height uint64, withProof bool) (*Snapshot, error)
}

// PeerStatus is what the transport knows of a peer.
type PeerStatus struct {
	ID, Addr  string
	Connected bool      // our outbound connection to it is up
	Inbound   bool      // its connection to us is up
	Height    uint64    // its committed height, from its last status frame
	LastSeen  time.Time // when we last received a frame from it; zero if never
	// Sent counts messages written to it; Dropped counts messages lost
	// (queue full, too large, or on a failed write); Reconnects counts
	// outbound connections established after the first.
	Sent, Dropped, Reconnects uint64
}

// Transport carries messages between this gateway and its peers.
type Transport struct {
	cfg Config
	h   Handler
	log *slog.Logger
	set atomic.Pointer[peerSet] // the peers now; replaced whole by SetPeers

	ready   chan struct{} // closed once the listener is bound
	done    chan struct{} // closed when Run returns
	stopCtx context.Context
	stop    context.CancelFunc // Close
	sem     chan struct{}      // inbound handshakes in progress

	mu      sync.Mutex
	running bool
	closed  bool
	addr    string
	cert    *tls.Certificate
	// While Run runs: its context, group and certificate, to start the
	// dialer of a peer SetPeers adds.
	runCtx  context.Context
	runG    *errgroup.Group
	runCert *tls.Certificate
}

// peerSet is the peers at one time; it is not changed once made.
type peerSet struct {
	byID  map[string]*peer
	order []*peer          // sorted by id
	byKey map[string]*peer // by keyID of the pinned key
}

func newPeerSet(ps []*peer) *peerSet {
	s := &peerSet{byID: make(map[string]*peer, len(ps)), byKey: make(map[string]*peer, len(ps))}
	for _, p := range ps {
		k, _ := keyID(p.PublicKey)
		s.byID[p.ID] = p
		s.byKey[k] = p
		s.order = append(s.order, p)
	}
	slices.SortFunc(s.order, func(a, b *peer) int { return strings.Compare(a.ID, b.ID) })
	return s
}

// peer returns the peer id, nil if it is not one now.
func (t *Transport) peer(id string) *peer { return t.set.Load().byID[id] }

// peer is a Peer and its send queue, connection state and counters.
type peer struct {
	Peer
	addr  atomic.Pointer[string] // where to dial it; Peer.Addr is only the first
	queue chan []byte

	sent, dropped, reconnects atomic.Uint64
	connected                 atomic.Bool
	height                    atomic.Uint64
	lastSeen                  atomic.Int64 // unix nanoseconds; 0 if never

	mu     sync.Mutex
	in     net.Conn           // current inbound message stream
	cancel context.CancelFunc // stops its dialer (SetPeers removed it); nil before Run
}

// New validates cfg and builds a Transport. It does no I/O.
func New(cfg Config, h Handler) (*Transport, error) {
	err := cfg.Validate()
	if h == nil {
		err = errors.Join(err, errors.New("cluster: Handler is nil"))
	}
	if err != nil {
		return nil, err
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Peers = slices.Clone(cfg.Peers)
	t := &Transport{
		cfg:   cfg,
		h:     h,
		log:   cfg.Logger.With("component", "cluster", "node", cfg.Self),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		sem:   make(chan struct{}, maxHandshakes),
	}
	t.stopCtx, t.stop = context.WithCancel(context.Background())
	var ps []*peer
	for _, p := range cfg.Peers {
		ps = append(ps, t.newPeer(p))
	}
	t.set.Store(newPeerSet(ps))
	return t, nil
}

func (t *Transport) newPeer(p Peer) *peer {
	pp := &peer{Peer: p, queue: make(chan []byte, t.cfg.QueueLen)}
	pp.addr.Store(&p.Addr)
	return pp
}

// SetPeers makes peers the transport's peers (the member sets changed):
// a peer it had with the same id and key keeps its connection, queue and
// counters (and the address it dials, unless peers gives it a new one);
// a new one is dialled at once if Run runs; one left out is no longer
// dialled, its inbound connection is closed, and no connection with its
// key is accepted any more. peers is checked as Config.Peers is.
func (t *Transport) SetPeers(peers []Peer) error {
	c := t.cfg
	c.Peers = peers
	if err := c.validatePeers(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.set.Load()
	var ps, added []*peer
	keep := map[*peer]bool{}
	for _, p := range peers {
		if op := old.byID[p.ID]; op != nil && op.PublicKey.Equal(p.PublicKey) {
			if p.Addr != "" && p.Addr != op.Peer.Addr {
				op.Peer.Addr = p.Addr
				op.addr.Store(&p.Addr)
			}
			keep[op] = true
			ps = append(ps, op)
			continue
		}
		np := t.newPeer(p)
		ps = append(ps, np)
		added = append(added, np)
	}
	t.set.Store(newPeerSet(ps))
	for _, op := range old.order {
		if keep[op] {
			continue
		}
		op.mu.Lock()
		if op.cancel != nil {
			op.cancel()
		}
		if op.in != nil {
			op.in.Close()
		}
		op.mu.Unlock()
		t.log.Info("peer removed", "peer", op.ID)
	}
	for _, np := range added {
		t.log.Info("peer added", "peer", np.ID, "addr", np.address())
		if t.runG != nil {
			t.startPeer(t.runCtx, t.runG, np, t.runCert)
		}
	}
	return nil
}

// startPeer runs p's dialer in g until ctx ends or p is removed; t.mu
// is held.
func (t *Transport) startPeer(ctx context.Context, g *errgroup.Group, p *peer, cert *tls.Certificate) {
	pctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	p.cancel = cancel
	p.mu.Unlock()
	g.Go(func() error {
		defer cancel()
		t.runPeer(pctx, p, cert)
		return nil
	})
}

// Ready is closed once Run has bound its listener; Addr then reports it. It
// is never closed if Run fails before that.
func (t *Transport) Ready() <-chan struct{} { return t.ready }

// Addr is the bound listen address, or "" before Run has bound it.
func (t *Transport) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// Run listens for peers, keeps an outbound connection to every peer
// (redialling with backoff) and serves inbound connections until ctx ends
// or Close is called; then it returns nil, after every goroutine it started
// has ended. It fails if it cannot listen, or if the listener fails.
func (t *Transport) Run(ctx context.Context) error {
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return ErrClosed
	case t.running:
		t.mu.Unlock()
		return errors.New("cluster: Run called twice")
	}
	t.running = true
	t.mu.Unlock()
	defer close(t.done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.stopCtx, cancel)()

	cert, err := t.identity()
	if err != nil {
		if t.cfg.Listener != nil {
			t.cfg.Listener.Close()
		}
		return err
	}
	ln := t.cfg.Listener
	if ln == nil {
		lc := net.ListenConfig{KeepAliveConfig: keepAlive()}
		if ln, err = lc.Listen(ctx, "tcp", t.cfg.Listen); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("cluster: listen on %s: %w", t.cfg.Listen, err)
		}
	}
	defer ln.Close()
	t.mu.Lock()
	t.addr = ln.Addr().String()
	t.mu.Unlock()
	close(t.ready)
	t.log.Info("cluster listening", "addr", ln.Addr().String(), "peers", len(t.set.Load().order))

	srv := t.serverTLS(cert)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-ctx.Done()
		ln.Close()
		return nil
	})
	g.Go(func() error { return t.accept(ctx, g, ln, srv) })
	t.mu.Lock()
	t.runCtx, t.runG, t.runCert = ctx, g, cert
	for _, p := range t.set.Load().order {
		t.startPeer(ctx, g, p, cert)
	}
	t.mu.Unlock()
	err = g.Wait()
	t.mu.Lock()
	t.runCtx, t.runG, t.runCert = nil, nil, nil
	t.mu.Unlock()
	return err
}

// Close stops the transport: the listener, every connection and goroutine.
// It is idempotent, may be called before or without Run, and returns once
// Run has returned.
func (t *Transport) Close() error {
	t.mu.Lock()
	first := !t.closed
	t.closed = true
	running := t.running
	t.mu.Unlock()
	t.stop()
	if running {
		<-t.done
	} else if first && t.cfg.Listener != nil {
		t.cfg.Listener.Close()
	}
	return nil
}

// Send enqueues data for peer to. It never blocks: it returns false, and
// counts the message as dropped, if the peer's queue is full, data is larger
// than MaxFrame, or the transport is closed; it returns false for an unknown
// peer. data must not be modified afterwards.
func (t *Transport) Send(to string, data []byte) bool {
	p := t.peer(to)
	if p == nil {
		return false
	}
	if len(data) > t.cfg.MaxFrame || t.stopCtx.Err() != nil {
		p.dropped.Add(1)
		return false
	}
	select {
	case p.queue <- data:
		return true
	default:
		p.dropped.Add(1)
		return false
	}
}

// Broadcast sends data to every peer, as Send does.
func (t *Transport) Broadcast(data []byte) {
	for _, p := range t.set.Load().order {
		t.Send(p.ID, data)
	}
}

// address is where to dial p now.
func (p *peer) address() string { return *p.addr.Load() }

// SetPeerAddr changes where peer id is dialled (seed discovery found it
// elsewhere); the next dial uses addr. The peer's identity stays pinned to
// its key whatever the address.
func (t *Transport) SetPeerAddr(id, addr string) error {
	p := t.peer(id)
	if p == nil {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, id)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("cluster: peer %s address %q: %w", id, addr, err)
	}
	if old := p.address(); old != addr {
		p.addr.Store(&addr)
		t.log.Info("peer address changed", "peer", id, "from", old, "to", addr)
	}
	return nil
}

// Peers reports the state of every peer, sorted by id.
func (t *Transport) Peers() []PeerStatus {
	order := t.set.Load().order
	out := make([]PeerStatus, 0, len(order))
	for _, p := range order {
		out = append(out, p.status())
	}
	return out
}

func (p *peer) status() PeerStatus {
	s := PeerStatus{
		ID:         p.ID,
		Addr:       p.address(),
		Connected:  p.connected.Load(),
		Height:     p.height.Load(),
		Sent:       p.sent.Load(),
		Dropped:    p.dropped.Load(),
		Reconnects: p.reconnects.Load(),
	}
	if ns := p.lastSeen.Load(); ns != 0 {
		s.LastSeen = time.Unix(0, ns)
	}
	p.mu.Lock()
	s.Inbound = p.in != nil
	p.mu.Unlock()
	return s
}

// identity is our TLS certificate, made on first use.
func (t *Transport) identity() (*tls.Certificate, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cert == nil {
		c, err := selfSigned(t.cfg.Signer, t.cfg.Self, time.Now())
		if err != nil {
			return nil, err
		}
		t.cert = c
	}
	return t.cert, nil
}

func keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}
}

// dial opens a TLS connection to p for proto, pinned to p's genesis key.
func (t *Transport) dial(ctx context.Context, cert *tls.Certificate, p *peer, proto string) (*tls.Conn, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: dialTimeout, KeepAliveConfig: keepAlive()},
		Config:    clientTLS(cert, p, proto),
	}
	addr := p.address()
	if addr == "" {
		return nil, fmt.Errorf("cluster: no address for peer %s yet (see SetPeerAddr)", p.ID)
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("cluster: dial %s: got %T, want *tls.Conn", addr, c)
	}
	return tc, nil
}

// accept serves inbound connections until ctx ends.
func (t *Transport) accept(ctx context.Context, g *errgroup.Group, ln net.Listener, srv *tls.Config) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("cluster: accept: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "err", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				return nil
			}
			continue
		}
		delay = 0
		select {
		case t.sem <- struct{}{}:
		default:
			t.log.Warn("inbound connection dropped", "remote", c.RemoteAddr().String(), "reason", "too many handshakes in progress")
			c.Close()
			continue
		}
		g.Go(func() error {
			t.serveConn(ctx, c, srv)
			return nil
		})
	}
}

// serveConn authenticates an inbound connection and serves it: a message
// stream, one fetch or one blob request.
func (t *Transport) serveConn(ctx context.Context, raw net.Conn, srv *tls.Config) {
	defer raw.Close()
	defer context.AfterFunc(ctx, func() { raw.Close() })()
	remote := raw.RemoteAddr().String()
	conn := tls.Server(raw, srv)
	p, proto, err := t.handshake(ctx, conn)
	<-t.sem
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) {
			level = slog.LevelDebug // closed before saying anything: a probe
		}
		t.log.Log(ctx, level, "inbound peer refused", "remote", remote, "err", err)
		return
	}
	switch proto {
	case alpnFetch:
		t.serveFetch(conn, p, remote)
	case alpnBlob:
		t.serveBlob(conn, p, remote)
	case alpnSnapshot:
		t.serveSnapshot(conn, p, remote)
	default:
		t.readPeer(ctx, conn, p, remote)
	}
}

// handshake runs the server side of the TLS handshake, which pins the
// client's key (serverTLS), and names the peer it proved to be.
func (t *Transport) handshake(ctx context.Context, conn *tls.Conn) (*peer, string, error) {
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, "", err
	}
	_ = conn.SetDeadline(time.Time{})
	cs := conn.ConnectionState()
	p, err := t.inboundPeer(cs)
	return p, cs.NegotiatedProtocol, err
}
