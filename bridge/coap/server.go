package coap

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Config is the CoAP front end's configuration. Zero fields take the
// defaults below.
type Config struct {
	Listen     string // UDP address, e.g. "127.0.0.1:5683"; "" = off
	DTLSListen string // DTLS address, e.g. "127.0.0.1:5684"; "" = off
	// DTLSCertificate is the server's certificate chain and private key
	// for DTLSListen. The key must be ECDSA P-256 (the cipher suites are
	// ECDHE_ECDSA, RFC 7925 4.4); it may be a crypto.Signer such as a
	// TPM key. Devices do not check it against a CA unless they pin it.
	DTLSCertificate *tls.Certificate

	// MaxRecordBytes bounds a record, whole or reassembled from blocks;
	// default and upper bound: the chain's max_tx_bytes.
	MaxRecordBytes int
	// MaxMessageBytes bounds a datagram's CoAP message; longer ones are
	// dropped. Default 4096, at least 1152, at most 8000.
	MaxMessageBytes int
	// BlockSize is the block size of answers that do not fit one message
	// (Block2), a power of two from 16 to 1024; default 1024.
	BlockSize int
	// AckWait is how long a record's POST waits for the commit before it
	// is acknowledged with an empty ACK and answered later by a separate
	// response; default 1s. It must stay below ACK_TIMEOUT (2s), when
	// clients resend.
	AckWait time.Duration
	// IdleTimeout is how long the state of a peer that sends nothing is
	// kept: a UDP endpoint's, or a DTLS session's; default 5 minutes. A
	// peer with an observation, a block transfer or a record in flight
	// is kept while they last.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds a DTLS handshake; default 30s.
	HandshakeTimeout time.Duration
	// MaxPeers bounds the UDP endpoints with state (default 4096); when
	// it is reached the longest idle one is forgotten.
	MaxPeers int
	// MaxHandshakes bounds the DTLS handshakes under way (default 256),
	// MaxHandshakesPerAddr those from one address (default 8; an IPv6
	// address counts by its /64). A new handshake beyond either replaces
	// the oldest one (of its address, or of all). Handshakes are not
	// sessions: they take no place of MaxSessions.
	MaxHandshakes        int
	MaxHandshakesPerAddr int
	// MaxSessions bounds the established DTLS sessions (default 1024),
	// MaxSessionsPerAddr those from one address (default 256), and
	// MaxSessionsPerDevice those of one device key (default 4). A
	// session is established only with a client certificate of an
	// enrolled device's key, and always: beyond a bound it replaces the
	// session of that key, of that address, or of all, that has been
	// silent longest.
	MaxSessions          int
	MaxSessionsPerAddr   int
	MaxSessionsPerDevice int
	// MaxInflight bounds the records of one peer waiting for their
	// commits (default 16); beyond it records are refused as overloaded.
	MaxInflight int
	// MaxTransfers bounds the Block1 transfers being reassembled, over
	// all peers (default 256), MaxTransfersPerPeer those of one peer
	// (default 4; a peer's new transfer beyond it replaces its least
	// recently used one), MaxTransfersPerAddr those of the UDP endpoints
	// of one address (default 16; likewise, and an IPv6 address counts by
	// its /64), and MaxTransferBytes their memory (default 8 MiB).
	// BlockTimeout drops a transfer of a DTLS session (a device's) idle
	// that long (default 60s), UDPBlockTimeout one over UDP, which no one
	// has authenticated before its last block (default 10s).
	MaxTransfers        int
	MaxTransfersPerPeer int
	MaxTransfersPerAddr int
	MaxTransferBytes    int
	BlockTimeout        time.Duration
	UDPBlockTimeout     time.Duration
	// MaxObservations bounds the observations (of receipts and of
	// devices' manifests) over all peers (default 4096),
	// MaxObservationsPerPeer those of one peer (default 8).
	// ObserveTimeout ends an observation whose tx has not committed, and
	// a manifest's not renewed by a registration or a notification for
	// that long; it is the Max-Age of manifest answers (default 5
	// minutes).
	MaxObservations        int
	MaxObservationsPerPeer int
	ObserveTimeout         time.Duration
}

// Defaults of Config.
const (
	DefaultMaxMessageBytes        = 4096
	DefaultBlockSize              = 1024
	DefaultAckWait                = time.Second
	DefaultIdleTimeout            = 5 * time.Minute
	DefaultHandshakeTimeout       = 30 * time.Second
	DefaultMaxPeers               = 4096
	DefaultMaxHandshakes          = 256
	DefaultMaxHandshakesPerAddr   = 8
	DefaultMaxSessions            = 1024
	DefaultMaxSessionsPerAddr     = 256
	DefaultMaxSessionsPerDevice   = 4
	DefaultMaxInflight            = 16
	DefaultMaxTransfers           = 256
	DefaultMaxTransfersPerPeer    = 4
	DefaultMaxTransfersPerAddr    = 16
	DefaultMaxTransferBytes       = 8 << 20
	DefaultBlockTimeout           = 60 * time.Second
	DefaultUDPBlockTimeout        = 10 * time.Second
	DefaultMaxObservations        = 4096
	DefaultMaxObservationsPerPeer = 8
	DefaultObserveTimeout         = 5 * time.Minute
)

// Limits that are not configurable.
const (
	// minMessageBytes fits a 1024-byte block with its header and options
	// (RFC 7252 4.6).
	minMessageBytes = 1152
	// maxMessageBytes fits pion's 8 KiB datagram buffer with DTLS's
	// record overhead.
	maxMessageBytes = 8000
	// peerQueue bounds the messages of one peer waiting to be handled;
	// beyond it they are dropped (the client resends).
	peerQueue = 8
	// maxExchanges is how many recent answers a peer keeps for its
	// retransmissions (RFC 7252 4.5), each at most exchangeLifetime.
	maxExchanges = 16
	// exchangeLifetime is EXCHANGE_LIFETIME (RFC 7252 4.8.2).
	exchangeLifetime = 247 * time.Second
	// maxTransmitSpan is MAX_TRANSMIT_SPAN (RFC 7252 4.8.2): how long a
	// separate response or notification waits for its ACK while go-coap
	// resends it.
	maxTransmitSpan = 45 * time.Second
	// retryAfter is the Max-Age of 4.29 and 5.03 answers: when to retry.
	retryAfter = 2
	// retryStorageFull is the Max-Age of a 5.03 storage_full: the gateway
	// commits again only once an operator freed space and restarted it.
	retryStorageFull = 60
	// drainTimeout is how long Close waits for records in flight.
	drainTimeout = 5 * time.Second
	// tick is how often expired transfers and observations are dropped
	// and unacknowledged messages resent.
	tick = time.Second
)

// Receipts looks up the receipts of committed txs.
type Receipts interface {
	// Receipt returns the receipt of tx id. Any error is answered as
	// "not committed" (4.04).
	Receipt(id [32]byte) (*ledger.Receipt, error)
}

// Images serves firmware images a part at a time, for Block2.
type Images interface {
	// ReadImage reads len(p) bytes from offset off of the firmware image
	// whose SHA-256 is sum (fewer at its end, none past it), and returns
	// how many it read and the image's size. Errors carry a reason (ledger.ReasonOf),
	// ledger.ReasonNotFound for an image no release names.
	ReadImage(ctx context.Context, sum [32]byte, p []byte, off int64) (int, int64, error)
}

// Deps are what the server is built from.
type Deps struct {
	Committer bridge.Committer
	Directory bridge.Directory
	Receipts  Receipts
	// Answers serves devices' configurations, blobs, keys and firmware
	// answers; nil: those resources answer 4.04.
	Answers bridge.Answers
	// Images serves firmware images; nil: 4.04.
	Images Images
	// Membership serves GET lg/v1/cluster/proof; nil: 4.04.
	Membership bridge.Membership
	// Limiter is the budget of records waiting to commit, shared with
	// the other front ends; nil: one of this server's own of
	// bridge.DefaultMaxPendingBytes.
	Limiter  *bridge.Limiter
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: no metrics exported
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("coap: server closed")

// Server is the CoAP front end: go-coap servers over UDP and DTLS whose
// one handler takes devices' records to the ledger and serves receipts.
type Server struct {
	cfg    Config
	d      Deps
	log    *slog.Logger
	m      *metrics
	blocks *blockStore
	ctx    context.Context // cancelled when Close gives up draining
	stop   context.CancelFunc
	now    func() time.Time

	mu        sync.Mutex
	started   bool
	closing   bool // no more records are taken
	stopped   bool // no more workers are started
	udp       *udpServer.Server
	udpConn   *coapNet.UDPConn
	dtls      *dtlsServer.Server
	dtlsLn    *dtlsListener
	runCtx    context.Context // the go-coap servers' context
	runStop   context.CancelFunc
	peers     map[*udpClient.Conn]*peer
	udpPeers  int
	observing map[[32]byte]map[*observer]struct{}
	watching  map[string]map[*observer]struct{} // manifest observers by watchKey
	nobs      int

	// manifestMu makes reading a manifest and numbering it (obsSeq) one
	// step: a manifest read before a commit never has a higher Observe
	// number than one read after it.
	manifestMu sync.Mutex
	obsSeq     uint32

	wg        sync.WaitGroup // records in flight, separate responses, notifications; Add under mu while !closing
	workers   sync.WaitGroup // peers' workers; Add under mu while !stopped
	serving   sync.WaitGroup // go-coap Serve loops and the ticker
	closeOnce sync.Once
}

// New validates cfg and deps and returns a server that is not started.
// It does no I/O.
func New(cfg Config, d Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("coap: "+format, a...)) }
	if cfg.Listen == "" && cfg.DTLSListen == "" {
		bad("no listener: set Listen or DTLSListen")
	}
	for _, a := range []string{cfg.Listen, cfg.DTLSListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("listen address %q: %v", a, err)
		}
	}
	if cfg.DTLSListen != "" {
		if err := checkServerCertificate(cfg.DTLSCertificate); err != nil {
			bad("DTLSListen %s: %v", cfg.DTLSListen, err)
		}
	}
	if cfg.MaxRecordBytes < 0 {
		bad("max record bytes %d: want at least 0 (0: the chain's max_tx_bytes)", cfg.MaxRecordBytes)
	}
	if cfg.MaxMessageBytes < minMessageBytes || cfg.MaxMessageBytes > maxMessageBytes {
		bad("max message bytes %d: want %d to %d", cfg.MaxMessageBytes, minMessageBytes, maxMessageBytes)
	}
	if _, ok := szxOf(cfg.BlockSize); !ok {
		bad("block size %d: want a power of two from 16 to 1024", cfg.BlockSize)
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"ack wait", cfg.AckWait}, {"idle timeout", cfg.IdleTimeout}, {"handshake timeout", cfg.HandshakeTimeout},
		{"block timeout", cfg.BlockTimeout}, {"udp block timeout", cfg.UDPBlockTimeout}, {"observe timeout", cfg.ObserveTimeout}} {
		if v.d <= 0 {
			bad("%s %v: want more than 0", v.name, v.d)
		}
	}
	if cfg.AckWait >= 2*time.Second {
		bad("ack wait %v: want less than ACK_TIMEOUT (2s)", cfg.AckWait)
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"max peers", cfg.MaxPeers}, {"max handshakes", cfg.MaxHandshakes}, {"max handshakes per addr", cfg.MaxHandshakesPerAddr},
		{"max sessions", cfg.MaxSessions}, {"max sessions per addr", cfg.MaxSessionsPerAddr},
		{"max sessions per device", cfg.MaxSessionsPerDevice}, {"max inflight", cfg.MaxInflight},
		{"max transfers", cfg.MaxTransfers}, {"max transfers per peer", cfg.MaxTransfersPerPeer},
		{"max transfers per addr", cfg.MaxTransfersPerAddr},
		{"max transfer bytes", cfg.MaxTransferBytes}, {"max observations", cfg.MaxObservations},
		{"max observations per peer", cfg.MaxObservationsPerPeer}} {
		if v.n < 1 {
			bad("%s %d: want at least 1", v.name, v.n)
		}
	}
	if d.Committer == nil {
		bad("no Committer")
	}
	if d.Directory == nil {
		bad("no Directory")
	}
	if d.Receipts == nil {
		bad("no Receipts")
	}
	if d.Logger == nil {
		bad("no Logger")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Limiter == nil {
		d.Limiter = bridge.NewLimiter(bridge.DefaultMaxPendingBytes)
	}
	m, err := newMetrics(d.Registry)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, d: d, log: d.Logger, m: m, ctx: ctx, stop: stop, now: time.Now,
		peers: map[*udpClient.Conn]*peer{}, observing: map[[32]byte]map[*observer]struct{}{},
		watching: map[string]map[*observer]struct{}{},
	}
	s.blocks = newBlockStore(cfg, m)
	return s, nil
}

func (c Config) withDefaults() Config {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	set(&c.BlockSize, DefaultBlockSize)
	set(&c.MaxPeers, DefaultMaxPeers)
	set(&c.MaxHandshakes, DefaultMaxHandshakes)
	set(&c.MaxHandshakesPerAddr, DefaultMaxHandshakesPerAddr)
	set(&c.MaxSessions, DefaultMaxSessions)
	set(&c.MaxSessionsPerAddr, DefaultMaxSessionsPerAddr)
	set(&c.MaxSessionsPerDevice, DefaultMaxSessionsPerDevice)
	set(&c.MaxInflight, DefaultMaxInflight)
	set(&c.MaxTransfers, DefaultMaxTransfers)
	set(&c.MaxTransfersPerPeer, DefaultMaxTransfersPerPeer)
	set(&c.MaxTransfersPerAddr, DefaultMaxTransfersPerAddr)
	set(&c.MaxTransferBytes, DefaultMaxTransferBytes)
	set(&c.MaxObservations, DefaultMaxObservations)
	set(&c.MaxObservationsPerPeer, DefaultMaxObservationsPerPeer)
	setD(&c.AckWait, DefaultAckWait)
	setD(&c.IdleTimeout, DefaultIdleTimeout)
	setD(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setD(&c.BlockTimeout, DefaultBlockTimeout)
	setD(&c.UDPBlockTimeout, DefaultUDPBlockTimeout)
	setD(&c.ObserveTimeout, DefaultObserveTimeout)
	return c
}

// checkServerCertificate checks that c can serve the ECDHE_ECDSA suites.
func checkServerCertificate(c *tls.Certificate) error {
	if c == nil || len(c.Certificate) == 0 || c.PrivateKey == nil {
		return errors.New("needs DTLSCertificate, a certificate with its private key")
	}
	if _, ok := c.PrivateKey.(crypto.Signer); !ok {
		return errors.New("DTLS certificate: the private key is no crypto.Signer")
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("DTLS certificate: %w", err)
		}
	}
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return errors.New("DTLS certificate: want an ECDSA P-256 key (RFC 7925 4.4)")
	}
	return nil
}

// serverOption is a go-coap option for both the UDP and the DTLS server.
type serverOption interface {
	udpServer.Option
	dtlsServer.Option
}

// Start binds the listeners and starts serving. It returns once every
// configured address is bound; on error nothing stays bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrClosed
	}
	if s.started {
		return errors.New("coap: already started")
	}
	s.started = true
	s.runCtx, s.runStop = context.WithCancel(context.Background())
	var udpConn *coapNet.UDPConn
	if s.cfg.Listen != "" {
		c, err := coapNet.NewListenUDP("udp", s.cfg.Listen)
		if err != nil {
			s.runStop()
			return fmt.Errorf("coap: listen %s: %w", s.cfg.Listen, err)
		}
		udpConn = c
	}
	var dl *dtlsListener
	if s.cfg.DTLSListen != "" {
		l, err := s.listenDTLS()
		if err != nil {
			if udpConn != nil {
				udpConn.Close()
			}
			s.runStop()
			return err
		}
		dl = l
	}
	common := []serverOption{
		options.WithContext(s.runCtx),
		options.WithMaxMessageSize(uint32(s.cfg.MaxMessageBytes)),
		// go-coap's block-wise reassembly keeps a transfer per token
		// with no bound on their number: it is off, and blockStore does
		// it with bounds.
		options.WithBlockwise(false, 0, 0),
		options.WithErrors(func(err error) { s.log.Debug("coap peer error", "error", err) }),
		options.WithProcessReceivedMessageFunc[*udpClient.Conn](s.received),
		options.WithInactivityMonitor(s.cfg.IdleTimeout, s.inactive),
		options.WithOnNewConn(s.connected),
		options.WithPeriodicRunner(s.periodic),
		options.WithMTU(uint16(s.cfg.MaxMessageBytes)),
	}
	if udpConn != nil {
		var opts []udpServer.Option
		for _, o := range common {
			opts = append(opts, o)
		}
		s.udp, s.udpConn = udpServer.New(opts...), udpConn
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			if err := s.udp.Serve(udpConn); err != nil {
				s.log.Error("coap udp server stopped", "error", err)
			}
		}()
	}
	if dl != nil {
		var opts []dtlsServer.Option
		for _, o := range common {
			opts = append(opts, o)
		}
		s.dtls, s.dtlsLn = dtlsServer.New(opts...), dl
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			if err := s.dtls.Serve(dl); err != nil {
				s.log.Error("coap dtls server stopped", "error", err)
			}
		}()
	}
	udpAddr, dtlsAddr := s.addrsLocked()
	s.log.Info("coap listening", "udp", udpAddr, "dtls", dtlsAddr)
	return nil
}

// Addrs returns the bound UDP and DTLS addresses ("" for one that is off
// or not bound).
func (s *Server) Addrs() (udp, dtls string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrsLocked()
}

func (s *Server) addrsLocked() (udp, dtls string) {
	if s.udpConn != nil {
		udp = s.udpConn.LocalAddr().String()
	}
	if s.dtlsLn != nil {
		dtls = s.dtlsLn.Addr().String()
	}
	return udp, dtls
}

// periodic runs go-coap's housekeeping (inactivity, resending
// unacknowledged messages) and the server's (expired transfers and
// observations) every tick until the server stops.
func (s *Server) periodic(f func(now time.Time) bool) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				s.sweep(now)
				if !f(now) {
					return
				}
			case <-s.runCtx.Done():
				return
			}
		}
	}()
}

// sweep drops expired transfers and observations.
func (s *Server) sweep(now time.Time) {
	s.blocks.sweep(now)
	s.expireObservations(now)
}

// track counts a goroutine that Close drains; it returns false once
// Close has begun.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Close stops taking records (new ones are answered 5.03), waits up to a
// few seconds for the records in flight so that their answers go out,
// cancels the rest, and closes every listener and session. It is
// idempotent and safe on a server that was never started or failed to
// start.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		if !bridge.WaitTimeout(&s.wg, drainTimeout) {
			s.log.Warn("coap records still in flight at close; cancelling them")
		}
		s.stop()
		bridge.WaitTimeout(&s.wg, time.Second)
		s.mu.Lock()
		s.stopped = true
		udp, dtls, udpConn, dl, runStop := s.udp, s.dtls, s.udpConn, s.dtlsLn, s.runStop
		s.mu.Unlock()
		if udp != nil {
			udp.Stop()
		}
		if dtls != nil {
			dtls.Stop()
		}
		if udpConn != nil {
			udpConn.Close()
		}
		if dl != nil {
			dl.Close()
		}
		if runStop != nil {
			runStop()
		}
		if !bridge.WaitTimeout(&s.serving, drainTimeout) {
			s.log.Warn("coap servers did not stop in time")
		}
		bridge.WaitTimeout(&s.workers, drainTimeout)
	})
	return nil
}

// conn is what the handler needs of a go-coap connection (a UDP
// endpoint or a DTLS session); *udpClient.Conn is one.
type conn interface {
	Context() context.Context
	AcquireMessage(ctx context.Context) *pool.Message
	ReleaseMessage(m *pool.Message)
	WriteMessage(m *pool.Message) error
	GetMessageID() int32
	RemoteAddr() net.Addr
	Close() error
}

// session is a DTLS session as the handler sees it; *dtlsConn is one.
type session interface {
	// peerKey is the DER SubjectPublicKeyInfo of the client's
	// certificate.
	peerKey() ([]byte, error)
}

// peer is one UDP endpoint or DTLS session.
type peer struct {
	cc   conn
	dtls session      // nil over UDP
	addr netip.Prefix // what per-address limits count by (addrKey)

	mu        sync.Mutex
	queue     []*pool.Message // received, waiting for the worker
	running   bool            // a worker runs
	lastSeen  time.Time
	exchanges []exchange // recent answers, oldest first
	inflight  int        // records waiting for their commits

	observers map[string]*observer // by token; guarded by Server.mu
}

// exchange is an answer kept for retransmissions of its request.
type exchange struct {
	mid int32
	at  time.Time
	a   answer
}

// replay returns the answer given to the request with message id mid,
// if it is recent.
func (p *peer) replay(mid int32, now time.Time) (answer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.exchanges {
		if e.mid == mid && now.Sub(e.at) < exchangeLifetime {
			return e.a, true
		}
	}
	return answer{}, false
}

// remember keeps a for retransmissions of request mid.
func (p *peer) remember(mid int32, a answer, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := 0
	for i < len(p.exchanges) && (now.Sub(p.exchanges[i].at) >= exchangeLifetime || len(p.exchanges)-i >= maxExchanges) {
		i++
	}
	p.exchanges = append(p.exchanges[i:], exchange{mid: mid, at: now, a: a})
}

// busy reports whether the peer has state that outlives its silence.
func (s *Server) busy(p *peer) bool {
	s.mu.Lock()
	obs := len(p.observers)
	s.mu.Unlock()
	p.mu.Lock()
	inflight := p.inflight + len(p.queue)
	p.mu.Unlock()
	return obs > 0 || inflight > 0 || s.blocks.peerTransfers(p) > 0
}

// connected registers a new UDP endpoint or DTLS session (go-coap's
// OnNewConn). A UDP endpoint beyond MaxPeers replaces the longest idle
// one; if every one is busy, the new one is closed.
func (s *Server) connected(cc *udpClient.Conn) {
	p := &peer{cc: cc, lastSeen: s.now(), addr: addrKey(cc.RemoteAddr())}
	if dc, ok := cc.NetConn().(*dtlsConn); ok {
		p.dtls = dc
	}
	var evict *peer
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		_ = cc.Close()
		return
	}
	if p.dtls == nil && s.udpPeers >= s.cfg.MaxPeers {
		evict = s.idlestUDPPeerLocked()
		if evict == nil {
			s.mu.Unlock()
			s.m.peersRefused.Inc()
			_ = cc.Close()
			return
		}
		delete(s.peers, evict.cc.(*udpClient.Conn))
		s.udpPeers--
		s.dropObserversLocked(evict)
	}
	s.peers[cc] = p
	transport := "dtls"
	if p.dtls == nil {
		s.udpPeers++
		transport = "udp"
	}
	s.mu.Unlock()
	s.m.peers.WithLabelValues(transport).Inc()
	if evict != nil {
		s.m.peers.WithLabelValues("udp").Dec()
		s.blocks.dropPeer(evict)
		_ = evict.cc.Close()
	}
	cc.AddOnClose(func() { s.disconnected(cc) })
}

// idlestUDPPeerLocked returns the UDP peer longest silent that is not
// busy, or nil.
func (s *Server) idlestUDPPeerLocked() *peer {
	var idlest *peer
	var seen time.Time
	for _, p := range s.peers {
		if p.dtls != nil || len(p.observers) > 0 {
			continue
		}
		p.mu.Lock()
		busy, at := p.inflight+len(p.queue) > 0, p.lastSeen
		p.mu.Unlock()
		if busy || s.blocks.peerTransfers(p) > 0 {
			continue
		}
		if idlest == nil || at.Before(seen) {
			idlest, seen = p, at
		}
	}
	return idlest
}

// disconnected forgets a closed endpoint or session and what it had.
func (s *Server) disconnected(cc *udpClient.Conn) {
	s.mu.Lock()
	p := s.peers[cc]
	if p == nil {
		s.mu.Unlock()
		return
	}
	delete(s.peers, cc)
	transport := "dtls"
	if p.dtls == nil {
		s.udpPeers--
		transport = "udp"
	}
	s.dropObserversLocked(p)
	s.mu.Unlock()
	s.m.peers.WithLabelValues(transport).Dec()
	s.blocks.dropPeer(p)
	p.mu.Lock()
	q := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, m := range q {
		cc.ReleaseMessage(m)
	}
}

// inactive is go-coap's inactivity callback: an endpoint or session
// silent for IdleTimeout is closed unless it is busy.
func (s *Server) inactive(cc *udpClient.Conn) {
	s.mu.Lock()
	p := s.peers[cc]
	s.mu.Unlock()
	if p != nil && s.busy(p) {
		return
	}
	_ = cc.Close()
}

// received takes a message off go-coap's read loop of its connection
// (go-coap's ProcessReceivedMessage) and queues it for the peer's worker,
// so that waiting for a commit never stalls the read loop (and, through
// go-coap's queue of 16, the whole UDP socket). A peer with peerQueue
// messages waiting has this one dropped; the client resends.
func (s *Server) received(req *pool.Message, cc *udpClient.Conn, _ config.HandlerFunc[*udpClient.Conn]) {
	s.mu.Lock()
	p := s.peers[cc]
	s.mu.Unlock()
	if p == nil {
		cc.ReleaseMessage(req)
		return
	}
	p.mu.Lock()
	p.lastSeen = s.now()
	if len(p.queue) >= peerQueue {
		p.mu.Unlock()
		cc.ReleaseMessage(req)
		s.m.dropped.Inc()
		return
	}
	p.queue = append(p.queue, req)
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if !start {
		return
	}
	s.mu.Lock()
	ok := !s.stopped
	if ok {
		s.workers.Add(1)
	}
	s.mu.Unlock()
	if !ok {
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
		return
	}
	go s.work(p, cc)
}

// work handles p's queued messages in order, then ends.
func (s *Server) work(p *peer, cc *udpClient.Conn) {
	defer s.workers.Done()
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		req := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		// It releases req and writes the answer the handler leaves.
		cc.ProcessReceivedMessageWithHandler(req, func(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message) {
			s.handle(p, r, w.Message())
		})
	}
}

// addrKey is what per-address limits count by: an IPv4 address, or the
// /64 of an IPv6 address (one host's, or one site's, share of the
// address space). An address that is not IP is the zero prefix.
func addrKey(a net.Addr) netip.Prefix {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
