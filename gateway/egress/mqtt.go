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
)

// mqttSink publishes each record with QoS 1 to an MQTT 5 broker, one at a
// time: the next is sent after the PUBACK of the one before, so the broker
// receives them in commit order.
type mqttSink struct {
	cfg      Config
	url      *url.URL
	tls      *tls.Config // nil: plain TCP
	password []byte
	cl       *paho.Client // nil: not connected
	conn     net.Conn     // cl's connection
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
	cl := paho.NewClient(paho.ClientConfig{
		ClientID: s.cfg.ClientID,
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
	s.cl, s.conn = cl, conn
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
	for i, m := range msgs {
		body, err := json.Marshal(m)
		if err != nil {
			return i, err
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		pr, err := s.cl.Publish(pctx, &paho.Publish{
			QoS: 1, Topic: expand(s.cfg.Topic, m, same), Payload: body,
			Properties: &paho.PublishProperties{ContentType: "application/json", User: paho.UserProperties{{Key: "tx_id", Value: m.TxID}}},
		})
		cancel()
		if err != nil {
			// The state of the session is unknown: start a new one.
			s.close()
			return i, fmt.Errorf("egress: mqtt: publish: %w", err)
		}
		if pr.ReasonCode >= 0x80 { // [MQTT-3.4.2.1] 0x80 and above are failures
			return i, &deliveryError{err: fmt.Errorf("egress: mqtt: broker refused the publish of tx %s: reason 0x%02x", m.TxID, pr.ReasonCode),
				rejected: pr.ReasonCode != 0x97} // 0x97 quota exceeded: retry with backoff
		}
	}
	return len(msgs), nil
}

func (s *mqttSink) close() {
	if s.cl != nil {
		// paho writes the DISCONNECT without a deadline: a broker that
		// stopped reading must not hold the connector.
		s.conn.SetDeadline(time.Now().Add(time.Second))
		s.cl.Disconnect(&paho.Disconnect{ReasonCode: 0})
		s.cl, s.conn = nil, nil
	}
}
