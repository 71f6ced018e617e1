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
		// A client certificate is required, any one: the ledger is the
		// PKI, and a record's author is checked against its key.
		piondtls.WithClientAuth(piondtls.RequireAnyClientCert),
		piondtls.WithVerifyPeerCertificate(verifyClientCertificate),
		// RFC 6347 4.2.1: a HelloVerifyRequest cookie exchange before
		// any costly work or large flight, against amplification.
		piondtls.WithInsecureSkipVerifyHello(false),
		piondtls.WithLoggerFactory(pionLogs{s.log.With("lib", "pion-dtls")}),
	)
	if err != nil {
		return nil, fmt.Errorf("coap: listen %s: %w", s.cfg.DTLSListen, err)
	}
	return &dtlsListener{pl: pl, max: s.cfg.MaxSessions, timeout: s.cfg.HandshakeTimeout, s: s,
		live: map[*dtlsConn]struct{}{}}, nil
}

// verifyClientCertificate takes any client certificate whose key is of a
// kind devices are enrolled with (P-256, Ed25519). Who the key belongs
// to is checked per record.
func verifyClientCertificate(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("coap: no client certificate")
	}
	c, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("coap: client certificate: %w", err)
	}
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PublicKey:
		return nil
	}
	return errors.New("coap: client certificate: want a P-256 or Ed25519 key")
}

// dtlsListener is go-coap's DTLS listener over pion's, bounding the
// sessions (handshakes included) and the time a handshake may take.
type dtlsListener struct {
	pl      net.Listener
	max     int
	timeout time.Duration
	s       *Server
	closed  atomic.Bool

	mu   sync.Mutex
	live map[*dtlsConn]struct{}
}

// AcceptWithContext returns the next session. When MaxSessions are open
// the oldest handshake under way is dropped for the new one, or if every
// session is established, the new one is.
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
		dc := &dtlsConn{Conn: pc, l: l, start: time.Now()}
		if l.admit(dc) {
			return dc, nil
		}
		l.s.m.handshakes.WithLabelValues("refused").Inc()
		_ = pc.Close()
	}
}

func (l *dtlsListener) admit(c *dtlsConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.live) >= l.max {
		var oldest *dtlsConn
		for o := range l.live {
			if !o.ready.Load() && (oldest == nil || o.start.Before(oldest.start)) {
				oldest = o
			}
		}
		if oldest == nil {
			return false
		}
		delete(l.live, oldest)
		go oldest.Close() // it waits for the handshake to give up
	}
	l.live[c] = struct{}{}
	return true
}

func (l *dtlsListener) forget(c *dtlsConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.live, c)
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
	l     *dtlsListener
	start time.Time
	ready atomic.Bool

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
	ctx, cancel := context.WithTimeout(ctx, c.l.timeout)
	defer cancel()
	if err := c.Conn.HandshakeContext(ctx); err != nil {
		c.l.s.m.handshakes.WithLabelValues("failed").Inc()
		return err
	}
	if c.ready.CompareAndSwap(false, true) {
		c.l.s.m.handshakes.WithLabelValues("ok").Inc()
	}
	return nil
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
