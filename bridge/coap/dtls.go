package coap

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/pion/logging"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
)

// listenDTLS binds the DTLS listener: DTLS 1.2 with the RFC 7925
// certificate profile.
func (s *Server) listenDTLS() (*dtlsListener, error) {
	addr, err := net.ResolveUDPAddr("udp", s.cfg.DTLSListen)
	if err != nil {
		return nil, fmt.Errorf("coap: listen %s: %w", s.cfg.DTLSListen, err)
	}
	pl, err := piondtls.ListenWithOptions("udp", addr,
		piondtls.WithCertificates(*s.cfg.DTLSCertificate),
		// RFC 7925 4.4: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 is the IoT
		// profile's suite; GCM is for clients whose library ranks CCM_8
		// below its security level (OpenSSL 3).
		piondtls.WithCipherSuites(piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
		// RFC 7925 16: the extended master secret (RFC 7627) is required.
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		// A client certificate is required, self-signed is fine: the
		// ledger is the PKI. pion calls the check once the client has
		// proved it holds the key (its CertificateVerify).
		piondtls.WithClientAuth(piondtls.RequireAnyClientCert),
		piondtls.WithVerifyPeerCertificate(s.verifyClientCertificate),
		// RFC 6347 4.2.1: a HelloVerifyRequest cookie exchange before
		// any costly work or large flight, against amplification.
		piondtls.WithInsecureSkipVerifyHello(false),
		piondtls.WithLoggerFactory(pionLogs{s.log.With("lib", "pion-dtls")}),
	)
	if err != nil {
		return nil, fmt.Errorf("coap: listen %s: %w", s.cfg.DTLSListen, err)
	}
	return &dtlsListener{pl: pl, cfg: s.cfg, s: s,
		handshakes: newConnSet(), sessions: newConnSet(), byDevice: map[string]map[*dtlsConn]struct{}{}}, nil
}

// verifyClientCertificate takes a client certificate only if its key is
// the current key of an enrolled device that is not revoked, so that a
// session is always a device's: a stranger's handshake ends here, before
// it holds a session. The key is compared byte for byte with the
// enrolled SubjectPublicKeyInfo, as records' authors are.
func (s *Server) verifyClientCertificate(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("coap: no client certificate")
	}
	c, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("coap: client certificate: %w", err)
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return errors.New("coap: client certificate: want a P-256 or Ed25519 key")
		}
	case ed25519.PublicKey:
	default:
		return errors.New("coap: client certificate: want a P-256 or Ed25519 key")
	}
	d, ok := s.d.Directory.DeviceByKey(c.RawSubjectPublicKeyInfo)
	if !ok {
		s.m.handshakes.WithLabelValues("unknown_key").Inc()
		return errors.New("coap: client certificate: its key is no enrolled device's")
	}
	if d.Revoked {
		s.m.handshakes.WithLabelValues("revoked").Inc()
		return fmt.Errorf("coap: client certificate: device %s is revoked", d.ID)
	}
	return nil
}

// dtlsListener is go-coap's DTLS listener over pion's. It keeps two
// budgets apart: handshakes under way, which anyone can start, and
// established sessions, each of an enrolled device's key
// (verifyClientCertificate). Handshakes are bounded in number, per
// address and in time, and a new one replaces the oldest (of its
// address at that address's cap), so that a flood of them delays a
// device's handshake but never holds the places of sessions. Sessions
// are bounded in number, per address and per device key; a device that
// completes a handshake always gets one, in place of the idlest session
// (of its key, of its address, or of all).
type dtlsListener struct {
	pl     net.Listener
	cfg    Config
	s      *Server
	closed atomic.Bool

	mu         sync.Mutex
	handshakes *connSet
	sessions   *connSet
	byDevice   map[string]map[*dtlsConn]struct{} // sessions by client key (SPKI)
}

// connSet is a set of sessions, also by address.
type connSet struct {
	all    map[*dtlsConn]struct{}
	byAddr map[netip.Prefix]map[*dtlsConn]struct{}
}

func newConnSet() *connSet {
	return &connSet{all: map[*dtlsConn]struct{}{}, byAddr: map[netip.Prefix]map[*dtlsConn]struct{}{}}
}

func (cs *connSet) has(c *dtlsConn) bool {
	_, ok := cs.all[c]
	return ok
}

func (cs *connSet) add(c *dtlsConn) {
	cs.all[c] = struct{}{}
	addTo(cs.byAddr, c.addr, c)
}

func (cs *connSet) remove(c *dtlsConn) {
	if !cs.has(c) {
		return
	}
	delete(cs.all, c)
	removeFrom(cs.byAddr, c.addr, c)
}

// addTo adds v to the set of k (sessions of an address, observers of a
// receipt or manifest).
func addTo[K, V comparable](m map[K]map[V]struct{}, k K, v V) {
	if m[k] == nil {
		m[k] = map[V]struct{}{}
	}
	m[k][v] = struct{}{}
}

// removeFrom removes v from the set of k, and the set once empty.
func removeFrom[K, V comparable](m map[K]map[V]struct{}, k K, v V) {
	set := m[k]
	delete(set, v)
	if len(set) == 0 {
		delete(m, k)
	}
}

// oldest is the session of set that started first; idlest the one that
// read last longest ago.
func oldest(set map[*dtlsConn]struct{}) *dtlsConn {
	var o *dtlsConn
	for c := range set {
		if o == nil || c.start.Before(o.start) {
			o = c
		}
	}
	return o
}

func idlest(set map[*dtlsConn]struct{}) *dtlsConn {
	var o *dtlsConn
	for c := range set {
		if o == nil || c.seen.Load() < o.seen.Load() {
			o = c
		}
	}
	return o
}

// AcceptWithContext returns the next session, its handshake still to
// run.
func (l *dtlsListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if l.closed.Load() {
			return nil, coapNet.ErrListenerIsClosed
		}
		c, err := l.pl.Accept()
		if err != nil {
			if !l.closed.Load() {
				// pion fails Accept only when its socket does.
				l.s.log.Error("coap dtls accept", "error", err)
			}
			return nil, coapNet.ErrListenerIsClosed
		}
		pc, ok := c.(*piondtls.Conn)
		if !ok {
			_ = c.Close()
			continue
		}
		now := time.Now()
		dc := &dtlsConn{Conn: pc, l: l, start: now, addr: addrKey(pc.RemoteAddr())}
		dc.seen.Store(now.UnixNano())
		l.admit(dc)
		return dc, nil
	}
}

// admit counts a new handshake: at MaxHandshakesPerAddr handshakes of
// its address the oldest of them is dropped for it, and at
// MaxHandshakes the oldest of all.
func (l *dtlsListener) admit(c *dtlsConn) {
	l.mu.Lock()
	var drop []*dtlsConn
	if set := l.handshakes.byAddr[c.addr]; len(set) >= l.cfg.MaxHandshakesPerAddr {
		drop = append(drop, oldest(set))
	} else if len(l.handshakes.all) >= l.cfg.MaxHandshakes {
		drop = append(drop, oldest(l.handshakes.all))
	}
	for _, o := range drop {
		l.handshakes.remove(o)
	}
	l.handshakes.add(c)
	l.mu.Unlock()
	l.drop(drop, "handshake_dropped")
}

// established moves c from the handshakes to the sessions once its
// handshake is done (if it is a session already, it does nothing): at
// MaxSessionsPerDevice sessions of its key the idlest of them is closed
// for it, at MaxSessionsPerAddr of its address the idlest of those, and
// at MaxSessions the idlest of all. It returns false if c was dropped
// meanwhile.
func (l *dtlsListener) established(c *dtlsConn) bool {
	spki, err := c.peerKey()
	if err != nil {
		return false
	}
	l.mu.Lock()
	if l.sessions.has(c) {
		l.mu.Unlock()
		return true // go-coap's reader and a writer both asked
	}
	if !l.handshakes.has(c) {
		l.mu.Unlock()
		return false
	}
	l.handshakes.remove(c)
	var drop []*dtlsConn
	evict := func(o *dtlsConn) {
		if o != nil && l.sessions.has(o) {
			l.forgetSessionLocked(o)
			drop = append(drop, o)
		}
	}
	c.device = string(spki)
	if set := l.byDevice[c.device]; len(set) >= l.cfg.MaxSessionsPerDevice {
		evict(idlest(set))
	}
	if set := l.sessions.byAddr[c.addr]; len(set) >= l.cfg.MaxSessionsPerAddr {
		evict(idlest(set))
	}
	if len(l.sessions.all) >= l.cfg.MaxSessions {
		evict(idlest(l.sessions.all))
	}
	l.sessions.add(c)
	addTo(l.byDevice, c.device, c)
	l.mu.Unlock()
	l.drop(drop, "session_replaced")
	return true
}

// drop closes sessions taken out of the budgets, away from the caller:
// Close waits for a handshake under way to give up.
func (l *dtlsListener) drop(cs []*dtlsConn, result string) {
	for _, c := range cs {
		l.s.m.handshakes.WithLabelValues(result).Inc()
		go c.Close()
	}
}

func (l *dtlsListener) forgetSessionLocked(c *dtlsConn) {
	if !l.sessions.has(c) {
		return
	}
	l.sessions.remove(c)
	removeFrom(l.byDevice, c.device, c)
}

func (l *dtlsListener) forget(c *dtlsConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handshakes.remove(c)
	l.forgetSessionLocked(c)
}

// counts returns the handshakes under way and the sessions.
func (l *dtlsListener) counts() (handshakes, sessions int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.handshakes.all), len(l.sessions.all)
}

// Close closes the listener; sessions are closed by the go-coap server.
func (l *dtlsListener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	return l.pl.Close()
}

// Addr is the bound address.
func (l *dtlsListener) Addr() net.Addr { return l.pl.Addr() }

// dtlsConn is a DTLS session whose handshake is bounded in time.
type dtlsConn struct {
	*piondtls.Conn
	l      *dtlsListener
	start  time.Time
	addr   netip.Prefix // addrKey of the client's address
	seen   atomic.Int64 // when it last read a message, Unix ns
	ready  atomic.Bool
	device string // the client key, once established; guarded by l.mu

	closeOnce sync.Once
	keyOnce   sync.Once
	spki      []byte
	keyErr    error
}

// HandshakeContext runs the handshake, at most HandshakeTimeout. go-coap
// calls it before every read and write.
func (c *dtlsConn) HandshakeContext(ctx context.Context) error {
	if c.ready.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.l.cfg.HandshakeTimeout)
	defer cancel()
	if err := c.Conn.HandshakeContext(ctx); err != nil {
		c.l.s.m.handshakes.WithLabelValues("failed").Inc()
		return err
	}
	if c.ready.Load() {
		return nil
	}
	if !c.l.established(c) {
		return errors.New("coap: dtls session dropped")
	}
	if c.ready.CompareAndSwap(false, true) {
		c.l.s.m.handshakes.WithLabelValues("ok").Inc()
	}
	return nil
}

// Read reads a datagram's message and notes when.
func (c *dtlsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.seen.Store(time.Now().UnixNano())
	}
	return n, err
}

// Close closes the session and frees its place.
func (c *dtlsConn) Close() error {
	c.closeOnce.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}

// peerKey is the DER SubjectPublicKeyInfo of the client's certificate.
func (c *dtlsConn) peerKey() ([]byte, error) {
	c.keyOnce.Do(func() {
		st, ok := c.ConnectionState()
		if !ok || len(st.PeerCertificates) == 0 {
			c.keyErr = errors.New("the DTLS session has no client certificate")
			return
		}
		cert, err := x509.ParseCertificate(st.PeerCertificates[0])
		if err != nil {
			c.keyErr = fmt.Errorf("the DTLS client certificate: %w", err)
			return
		}
		c.spki = cert.RawSubjectPublicKeyInfo
	})
	return c.spki, c.keyErr
}

// pionLogs sends pion's logs to slog, all at debug level: peers can make
// pion log at will.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("scope", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) logf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("dtls", "msg", fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(string)                      {}
func (l pionLogger) Tracef(string, ...any)             {}
func (l pionLogger) Debug(msg string)                  { l.logf("%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(format, args...) }
func (l pionLogger) Info(msg string)                   { l.logf("%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(format, args...) }
func (l pionLogger) Warn(msg string)                   { l.logf("%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(format, args...) }
func (l pionLogger) Error(msg string)                  { l.logf("%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(format, args...) }
