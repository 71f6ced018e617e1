package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge"
)

// Config is the MQTT front end's configuration. Zero fields take the
// defaults below.
type Config struct {
	Listen    string      // TCP address, e.g. "127.0.0.1:1883"; "" = off
	TLSListen string      // TLS address, e.g. "127.0.0.1:8883"; "" = off
	TLS       *tls.Config // server certificate for TLSListen; ClientAuth is set by the server

	MaxPacketBytes   uint32 // largest MQTT packet a client may send; default 128 KiB
	MaxClients       int64  // connected clients; default 10000
	ReceiveMaximum   uint16 // QoS 1 messages in flight per client; default 256
	MaxKeepalive     uint16 // seconds; default 600. Clients asking for more, or for none, get this
	MaxSessionExpiry uint32 // seconds a disconnected session is kept; default 3600
	// MaxDeviceSessions bounds the sessions one device holds at once,
	// connected or kept after a disconnect, over its client ids <id>
	// and <id>/...; default 4.
	MaxDeviceSessions int
	// MaxSubscriptions bounds the topic filters one client holds;
	// default 32.
	MaxSubscriptions int
	// ParkAfter is how long a device on plain TCP may be silent before
	// its goroutine is given up until it sends again (Linux; parker);
	// default 5 s, negative: never.
	ParkAfter time.Duration
}

// Defaults of Config.
const (
	DefaultMaxPacketBytes    = 128 << 10
	DefaultMaxClients        = 10_000
	DefaultReceiveMaximum    = 256
	DefaultMaxKeepalive      = 600
	DefaultMaxSessionExpiry  = 3600
	DefaultMaxDeviceSessions = 4
	DefaultMaxSubscriptions  = 32
	DefaultParkAfter         = 5 * time.Second
)

// Limits that are not configurable.
const (
	// connectTimeout bounds the time from accepting a connection (TLS
	// handshake included) to its CONNECT.
	connectTimeout = 10 * time.Second
	// preConnectSlack is how many connections beyond MaxClients may be
	// open (mostly ones that have not sent CONNECT yet) before new ones
	// are closed at once.
	preConnectSlack = 1024
	// maxTopicBytes bounds a PUBLISH topic. A record topic is at most
	// lg/v1/ + 64 + /data/ + 64 bytes.
	maxTopicBytes = 256
	// topicAliases is the topic alias maximum offered to clients.
	topicAliases = 16
	// maxRequests bounds the requests of one device being answered at
	// once; beyond it requests are refused as overloaded.
	maxRequests = 4
	// drainTimeout is how long Close waits for submits in flight.
	drainTimeout = 5 * time.Second
	// readBufferBytes is the size of the buffer mochi reads each
	// client's packets through, allocated when the client connects and
	// held as long as it stays (mochi's default is 2 KiB). A packet
	// longer than what is buffered is read straight into its own slice,
	// so it only decides how many small packets one read(2) can bring.
	readBufferBytes = 512
)

// Deps are what the server is built from.
type Deps struct {
	Committer bridge.Committer
	Directory bridge.Directory
	Logger    *slog.Logger
	Registry  prometheus.Registerer // nil: no metrics exported
	Now       func() time.Time      // the clock device tokens are checked against; nil: time.Now

	// Limiter is the budget of records waiting to commit, shared with the
	// other front ends: records queued or being submitted take their
	// size from it, and beyond it publishes are refused as overloaded.
	// nil: a budget of this server's own, bridge.DefaultMaxPendingBytes.
	Limiter *bridge.Limiter

	// Answers serves devices' requests and manifests; nil: requests are
	// refused as not_found and no manifest is published. Config and
	// Firmware are called on a client's read goroutine (at SUBSCRIBE) and
	// must be quick; the other methods run on goroutines of their own.
	Answers bridge.Answers

	// Membership serves the cluster/proof/get request; nil: it is refused
	// as not_found.
	Membership bridge.Membership

	// Claimer enrolls a device of an approved fleet batch at its first
	// CONNECT (token authentication only); nil: an unknown device is
	// refused.
	Claimer bridge.Claimer
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("mqtt: server closed")

// Server is the MQTT front end: a mochi-mqtt broker whose hook
// authenticates devices against the ledger and turns their publishes into
// submitted txs.
type Server struct {
	cfg  Config
	d    Deps
	log  *slog.Logger
	m    *metrics
	ctx  context.Context
	stop context.CancelFunc

	mu        sync.Mutex
	started   bool
	closing   bool
	broker    *mochi.Server
	listeners []*listener
	sessions  map[*mochi.Client]*session
	queues    map[string]*queue          // by device id; a queue exists while it holds records
	requests  map[string]int             // by device id: requests being answered
	devices   map[string]*deviceSessions // by device id: its sessions, for MaxDeviceSessions
	receipts  *receiptSubs               // subscriptions to each device's receipts; its own lock
	wg        sync.WaitGroup             // records not answered, requests, disconnects, manifests; Add only under mu while !closing

	// manifestMu orders the publishes of manifests: each reads Answers
	// (Config or Firmware) and publishes it under manifestMu, so the last
	// retained manifest is never older than the last Changed.
	manifestMu sync.Mutex

	closeOnce sync.Once
}

// New validates cfg and deps and returns a server that is not started.
// It does no I/O.
func New(cfg Config, d Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("mqtt: "+format, a...)) }
	if cfg.Listen == "" && cfg.TLSListen == "" {
		bad("no listener: set Listen or TLSListen")
	}
	for _, a := range []string{cfg.Listen, cfg.TLSListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("listen address %q: %v", a, err)
		}
	}
	if cfg.TLSListen != "" && (cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil) {
		bad("TLSListen %s needs a TLS config with a server certificate", cfg.TLSListen)
	}
	if cfg.MaxPacketBytes < 1024 || cfg.MaxPacketBytes > 16<<20 {
		bad("max packet bytes %d: want 1024 to 16777216", cfg.MaxPacketBytes)
	}
	if cfg.MaxClients < 1 {
		bad("max clients %d: want at least 1", cfg.MaxClients)
	}
	if cfg.MaxDeviceSessions < 1 {
		bad("max device sessions %d: want at least 1", cfg.MaxDeviceSessions)
	}
	if cfg.MaxSubscriptions < 2 {
		bad("max subscriptions %d: want at least 2 (receipts and rejects)", cfg.MaxSubscriptions)
	}
	if d.Committer == nil {
		bad("no Committer")
	}
	if d.Directory == nil {
		bad("no Directory")
	}
	if d.Logger == nil {
		bad("no Logger")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Limiter == nil {
		d.Limiter = bridge.NewLimiter(bridge.DefaultMaxPendingBytes)
	}
	m, err := newMetrics(d.Registry)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, d: d, log: d.Logger, m: m,
		ctx: ctx, stop: stop, sessions: map[*mochi.Client]*session{}, queues: map[string]*queue{},
		requests: map[string]int{}, devices: map[string]*deviceSessions{}, receipts: newReceiptSubs(),
	}, nil
}

func (c Config) withDefaults() Config {
	if c.MaxPacketBytes == 0 {
		c.MaxPacketBytes = DefaultMaxPacketBytes
	}
	if c.MaxClients == 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.MaxKeepalive == 0 {
		c.MaxKeepalive = DefaultMaxKeepalive
	}
	if c.MaxSessionExpiry == 0 {
		c.MaxSessionExpiry = DefaultMaxSessionExpiry
	}
	if c.MaxDeviceSessions == 0 {
		c.MaxDeviceSessions = DefaultMaxDeviceSessions
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = DefaultParkAfter
	}
	return c
}

// capabilities are the limits the broker announces and enforces.
func (c Config) capabilities() *mochi.Capabilities {
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClients = c.MaxClients
	caps.MaximumPacketSize = c.MaxPacketBytes
	caps.ReceiveMaximum = c.ReceiveMaximum
	caps.MaximumSessionExpiryInterval = c.MaxSessionExpiry
	caps.MaximumMessageExpiryInterval = int64(c.MaxSessionExpiry)
	// What the broker queues towards one client (receipts, rejects,
	// answers, manifests) is bounded by what the client may have in
	// flight towards it. mochi puts a QoS 1 message in the client's
	// in-flight set before its write queue and drops it if the set is
	// full, so a queue as long as MaximumInflight never drops one. The
	// queue is a channel allocated whole when the client connects: at
	// 2 × 256 it was 4.75 KB of every session's 18.
	caps.MaximumInflight = c.ReceiveMaximum
	caps.MaximumClientWritesPending = int32(c.ReceiveMaximum)
	caps.TopicAliasMaximum = topicAliases
	caps.MaximumQos = 1
	// Only the server retains messages (the manifests):
	// OnPublish takes every device publish before mochi would retain it.
	caps.RetainAvailable = 1
	caps.SharedSubAvailable = 0
	caps.MinimumProtocolVersion = 4 // 3.1.1 and 5
	return caps
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
		return errors.New("mqtt: already started")
	}
	s.started = true
	broker := mochi.New(&mochi.Options{
		Capabilities: s.cfg.capabilities(),
		Logger:       slog.New(minLevel{s.log.Handler(), slog.LevelError}).With("lib", "mochi"),
		InlineClient: true, // the server publishes receipts, rejects, answers and manifests
		// $SYS topics are of no use to devices (they may not subscribe
		// to them) and cost a stop-the-world ReadMemStats per update.
		SysTopicResendInterval:  24 * 60 * 60,
		ClientNetReadBufferSize: readBufferBytes,
		// No write buffer: mochi adds a packet written while others
		// are queued to a buffer that only a later successful write
		// flushes, and drops a queued publish too large for its client
		// without writing: a PUBACK buffered behind such a publish
		// waited for the next write, maybe forever
		// (TestRequests, "answer larger than the client accepts"). With a 1-byte limit every
		// packet is written at once.
		ClientNetWriteBufferSize: 1,
	})
	fail := func(err error) error {
		// No client got in yet, and s.mu is held: disconnectAll would
		// wait for it forever.
		for _, l := range s.listeners {
			l.disconnect = nil
		}
		broker.Close() // closes the listeners added so far
		s.listeners = nil
		return err
	}
	if err := broker.AddHook(&hook{s: s}, nil); err != nil {
		return fail(fmt.Errorf("mqtt: add hook: %w", err))
	}
	var tlsCfg *tls.Config
	if s.cfg.TLSListen != "" {
		tlsCfg = s.cfg.TLS.Clone()
		// Any client certificate is accepted by the handshake; OnConnect
		// checks its key against the ledger, the device PKI.
		tlsCfg.ClientAuth = tls.RequestClientCert
	}
	maxConns := s.cfg.MaxClients + preConnectSlack
	for _, l := range []struct {
		id, addr string
		tls      *tls.Config
	}{{"tcp", s.cfg.Listen, nil}, {"tls", s.cfg.TLSListen, tlsCfg}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fail(fmt.Errorf("mqtt: listen %s: %w", l.addr, err))
		}
		lst := newListener(l.id, ln, l.tls, maxConns, s.cfg.MaxPacketBytes, s.log, func(id string) { s.disconnectAll(broker, id) })
		if err := broker.AddListener(lst); err != nil {
			ln.Close()
			return fail(fmt.Errorf("mqtt: add listener %s: %w", l.addr, err))
		}
		s.listeners = append(s.listeners, lst)
		if l.tls == nil && s.cfg.ParkAfter > 0 {
			// The listener closes it. Without one, silent devices keep
			// their goroutines: more memory, nothing else.
			p, err := newParker(s.cfg.ParkAfter)
			if err != nil {
				s.log.Warn("mqtt: silent devices keep their goroutines", "error", err)
			}
			lst.park = p
		}
	}
	if err := broker.Serve(); err != nil {
		return fail(fmt.Errorf("mqtt: serve: %w", err))
	}
	s.broker = broker
	tcpAddr, tlsAddr := s.addrsLocked()
	s.log.Info("mqtt listening", "tcp", tcpAddr, "tls", tlsAddr)
	return nil
}

// Addrs returns the bound TCP and TLS addresses ("" for one that is off
// or not bound).
func (s *Server) Addrs() (tcp, tls string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrsLocked()
}

func (s *Server) addrsLocked() (tcp, tls string) {
	for _, l := range s.listeners {
		switch l.ID() {
		case "tcp":
			tcp = l.Address()
		case "tls":
			tls = l.Address()
		}
	}
	return tcp, tls
}

// Revoked disconnects device id if it is connected: a v5 client gets
// DISCONNECT 0x87 (not authorized), a 3.1.1 client's connection is
// closed. The chain calls it, through the daemon, when a revocation
// commits; it does not block.
func (s *Server) Revoked(id string) {
	s.mu.Lock()
	broker := s.broker
	var conns []*mochi.Client // the device's connections: id and id/suffix
	for cl, ss := range s.sessions {
		if ss.device == id && !cl.Closed() {
			conns = append(conns, cl)
		}
	}
	s.mu.Unlock()
	if broker == nil {
		return
	}
	for _, cl := range conns {
		s.disconnect(broker, cl, "revoked", packets.ErrNotAuthorized)
	}
}

// Rekeyed ends the connections of device id that authenticated with the
// key that the re-key tx rekey replaced, as Revoked does, except the one
// the re-key was published on: that session continues, and what it
// publishes next is checked against the new key (records signed with the
// old one are refused as bad_signature). The chain calls it, through the
// daemon, when a re-key commits; it does not block.
func (s *Server) Rekeyed(id string, rekey [32]byte) {
	s.mu.Lock()
	broker := s.broker
	var conns []*mochi.Client
	for cl, ss := range s.sessions {
		ss.mu.Lock()
		published := ss.rekey == rekey
		ss.mu.Unlock()
		if ss.device == id && !published && !cl.Closed() {
			conns = append(conns, cl)
		}
	}
	s.mu.Unlock()
	if broker == nil {
		return
	}
	for _, cl := range conns {
		s.disconnect(broker, cl, "rekeyed", packets.ErrNotAuthorized)
	}
}

// disconnect disconnects cl with code (v5: DISCONNECT with it; 3.1.1:
// the connection is closed), off the caller's goroutine: writing to a
// slow client must not stall the commit path.
func (s *Server) disconnect(broker *mochi.Server, cl *mochi.Client, why string, code packets.Code) {
	if !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		s.log.Info("disconnecting device", "device", cl.ID, "remote", cl.Net.Remote, "why", why)
		if cl.Properties.ProtocolVersion == 5 {
			_ = broker.DisconnectClient(cl, code) // it returns the code it was given
			return
		}
		cl.Stop(code) // 3.1.1 has no DISCONNECT from the server
	}()
}

// Connection is a device connected over MQTT.
type Connection struct {
	Device   string
	Listener string // "tcp" or "tls"
	Remote   string
	Since    time.Time
}

// Connected returns the devices connected now, by device id.
func (s *Server) Connected() []Connection {
	s.mu.Lock()
	cs := make([]Connection, 0, len(s.sessions))
	for cl, ss := range s.sessions {
		cs = append(cs, Connection{Device: ss.device, Listener: cl.Net.Listener, Remote: cl.Net.Remote, Since: ss.since})
	}
	s.mu.Unlock()
	slices.SortFunc(cs, func(a, b Connection) int { return strings.Compare(a.Device, b.Device) })
	return cs
}

// disconnectAll tells the clients of listener id that the server shuts
// down (v5: DISCONNECT 0x8B) and stops them.
func (s *Server) disconnectAll(broker *mochi.Server, listener string) {
	s.mu.Lock()
	var conns []*mochi.Client
	for cl := range s.sessions {
		if cl.Net.Listener == listener && !cl.Closed() {
			conns = append(conns, cl)
		}
	}
	s.mu.Unlock()
	for _, cl := range conns {
		_ = broker.DisconnectClient(cl, packets.ErrServerShuttingDown) // it returns the code it was given
	}
}

// track counts a goroutine that Close waits for; it returns false once
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

// Close stops accepting connections, waits up to a few seconds for the
// submits in flight (so their PUBACKs go out), cancels the rest, and
// closes every client and listener. It is idempotent and safe on a
// server that was never started or failed to start.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		broker, lns := s.broker, s.listeners
		s.mu.Unlock()
		for _, l := range lns {
			l.stopAccepting()
		}
		if !bridge.WaitTimeout(&s.wg, drainTimeout) {
			s.log.Warn("submits still in flight at close; cancelling them")
		}
		s.stop()
		// Let the records that still wait for their commit go: no
		// notification may come for them now.
		s.mu.Lock()
		for _, q := range s.queues {
			q.mu.Lock()
			if !q.flushing {
				q.flushing = true
				go s.flush(q)
			}
			q.mu.Unlock()
		}
		s.mu.Unlock()
		bridge.WaitTimeout(&s.wg, time.Second)
		if broker != nil {
			broker.Close()
		}
	})
	return nil
}
