package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// mqttSink publishes each record with QoS 1 to an MQTT 5 broker, in
// commit order on one connection, with up to min(Config.Window, the
// broker's Receive Maximum) of them waiting for their PUBACK. A broker
// keeps the order of one client's QoS 1 messages [MQTT-4.6.0-6].
type mqttSink struct {
	cfg      Config
	url      *url.URL
	tls      *tls.Config // nil: plain TCP
	password []byte
	cl       *paho.Client // nil: not connected
	conn     net.Conn     // cl's connection
	sess     *ackSession  // cl's session
	window   int          // min(cfg.Window, the broker's Receive Maximum)
}

// ackSession is paho's in-memory session that hands each PUBLISH's
// response channel to its publisher. paho's Publish either waits for the
// PUBACK, one message per round trip, or (PublishMethod_AsyncSend)
// returns once the packet is written without a way to learn the outcome;
// the session contract (session.SessionManager.AddToSession) sends the
// PUBACK, or nothing if the session ends, to the channel given here.
type ackSession struct {
	*state.State
	last chan packets.ControlPacket // the channel of the last PUBLISH added
}

func (s *ackSession) AddToSession(ctx context.Context, p session.Packet, _ chan<- packets.ControlPacket) error {
	// Buffered: the state sends while holding its lock.
	ch := make(chan packets.ControlPacket, 1)
	if err := s.State.AddToSession(ctx, p, ch); err != nil {
		return err
	}
	s.last = ch
	return nil
}

func newMQTTSink(c Config) (*mqttSink, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	s := &mqttSink{cfg: c, url: u}
	if c.PasswordFile != "" {
		if s.password, err = readSecret(c.PasswordFile); err != nil {
			return nil, err
		}
	}
	switch u.Scheme {
	case "ssl", "mqtts", "tls":
		if s.tls, err = clientTLS(u.Hostname(), c.CAFile, c.CertFile, c.KeyFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// readSecret reads a secret file, without the trailing newline editors add.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// clientTLS is the TLS configuration of a connection to host: the system
// roots or those in caFile, and a client certificate if one is given.
func clientTLS(host, caFile, certFile, keyFile string) (*tls.Config, error) {
	t := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

func (s *mqttSink) connect(ctx context.Context) error {
	var d net.Dialer
	var conn net.Conn
	var err error
	if s.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: s.tls}).DialContext(ctx, "tcp", s.url.Host)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.url.Host)
	}
	if err != nil {
		return fmt.Errorf("egress: mqtt: %w", err)
	}
	sess := &ackSession{State: state.NewInMemory()}
	cl := paho.NewClient(paho.ClientConfig{
		ClientID: s.cfg.ClientID,
		Session:  sess,
		// tls.Conn is not safe for concurrent writes (pings and publishes).
		Conn:          packets.NewThreadSafeConn(conn),
		PacketTimeout: s.cfg.Timeout,
		OnClientError: func(error) {}, // the next publish fails and says why
	})
	cp := &paho.Connect{ClientID: s.cfg.ClientID, KeepAlive: 30, CleanStart: true}
	if s.cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, s.cfg.Username
	}
	if s.password != nil {
		cp.PasswordFlag, cp.Password = true, s.password
	}
	ca, err := cl.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		if ca != nil {
			return &deliveryError{err: fmt.Errorf("egress: mqtt: connect refused: reason 0x%02x %s", ca.ReasonCode, ca.Properties.ReasonString),
				rejected: ca.ReasonCode == 0x86 || ca.ReasonCode == 0x87 || ca.ReasonCode == 0x85}
		}
		return fmt.Errorf("egress: mqtt: connect: %w", err)
	}
	s.cl, s.conn, s.sess = cl, conn, sess
	s.window = s.cfg.Window
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil && *ca.Properties.ReceiveMaximum > 0 {
		s.window = min(s.window, int(*ca.Properties.ReceiveMaximum))
	}
	return nil
}

func (s *mqttSink) send(ctx context.Context, msgs []*Message) (int, error) {
	if s.cl != nil {
		select {
		case <-s.cl.Done(): // the connection ended
			s.close()
		default:
		}
	}
	if s.cl == nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err := s.connect(cctx)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	n, err := pipeline(ctx, msgs, s.window, s.publish)
	if err != nil {
		// Messages after the failed one may be in flight still: start a
		// new session, and send again from the cursor.
		s.close()
	}
	return n, err
}

// publish writes m's PUBLISH and returns at once; the connection keeps
// the order of the writes.
func (s *mqttSink) publish(m *Message) (published, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	cl, sess := s.cl, s.sess
	pctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	_, err = cl.PublishWithOptions(pctx, &paho.Publish{
		QoS: 1, Topic: expand(s.cfg.Topic, m, same), Payload: body,
		Properties: &paho.PublishProperties{ContentType: "application/json", User: paho.UserProperties{{Key: "tx_id", Value: m.TxID}}},
	}, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	if err != nil {
		return nil, fmt.Errorf("egress: mqtt: publish: %w", err)
	}
	ack := sess.last
	return func(ctx context.Context) error {
		t := time.NewTimer(s.cfg.Timeout)
		defer t.Stop()
		var resp packets.ControlPacket
		select {
		case resp = <-ack:
		case <-cl.Done():
			return fmt.Errorf("egress: mqtt: connection lost before the PUBACK of tx %s", m.TxID)
		case <-t.C:
			return fmt.Errorf("egress: mqtt: no PUBACK for tx %s in %s", m.TxID, s.cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		pa, ok := resp.Content.(*packets.Puback)
		if !ok {
			return fmt.Errorf("egress: mqtt: session ended before the PUBACK of tx %s", m.TxID)
		}
		if pa.ReasonCode >= 0x80 { // [MQTT-3.4.2.1] 0x80 and above are failures
			return &deliveryError{err: fmt.Errorf("egress: mqtt: broker refused the publish of tx %s: reason 0x%02x", m.TxID, pa.ReasonCode),
				rejected: pa.ReasonCode != 0x97} // 0x97 quota exceeded: retry with backoff
		}
		return nil
	}, nil
}

func (s *mqttSink) close() {
	if s.cl != nil {
		// paho writes the DISCONNECT without a deadline: a broker that
		// stopped reading must not hold the connector.
		s.conn.SetDeadline(time.Now().Add(time.Second))
		s.cl.Disconnect(&paho.Disconnect{ReasonCode: 0})
		s.sess.Close() // paho closes only a session it made
		s.cl, s.conn, s.sess = nil, nil, nil
	}
}
