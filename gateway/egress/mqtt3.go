package egress

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	packets3 "github.com/eclipse/paho.mqtt.golang/packets"
)

// mqtt3Sink publishes each record with QoS 1 to an MQTT 3.1.1 broker (for
// brokers that do not speak 5), in commit order on one connection, with up
// to Config.Window of them waiting for their PUBACK. A broker keeps the
// order of one client's QoS 1 messages (MQTT 3.1.1 section 4.6). MQTT
// 3.1.1 has no properties: the tx id is only in the JSON body.
type mqtt3Sink struct {
	cfg      Config
	broker   string      // tcp://host:port or ssl://host:port
	tls      *tls.Config // nil: plain TCP
	password []byte
	cl       mqtt3.Client  // nil: not connected
	lost     chan struct{} // closed when cl's connection is lost
}

func newMQTT3Sink(c Config) (*mqtt3Sink, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	s := &mqtt3Sink{cfg: c, broker: "tcp://" + u.Host}
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
		s.broker = "ssl://" + u.Host
	}
	return s, nil
}

func (s *mqtt3Sink) connect() error {
	lost := make(chan struct{})
	o := mqtt3.NewClientOptions().AddBroker(s.broker).SetClientID(s.cfg.ClientID).
		SetProtocolVersion(4). // 3.1.1, no fallback to 3.1
		SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetAutoReconnect(false).SetConnectRetry(false). // the connector retries, from its cursor
		SetConnectTimeout(s.cfg.Timeout).SetWriteTimeout(s.cfg.Timeout).
		SetOrderMatters(true).
		SetConnectionLostHandler(func(mqtt3.Client, error) { close(lost) })
	if s.tls != nil {
		o.SetTLSConfig(s.tls)
	}
	if s.cfg.Username != "" {
		o.SetUsername(s.cfg.Username)
	}
	if s.password != nil {
		o.SetPassword(string(s.password))
	}
	cl := mqtt3.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(s.cfg.Timeout + time.Second) {
		cl.Disconnect(0)
		return fmt.Errorf("egress: mqtt: connect: no CONNACK in %s", s.cfg.Timeout)
	}
	if err := tok.Error(); err != nil {
		// CONNACK return codes 4 (bad user name or password) and 5 (not
		// authorized) need an operator [MQTT-3.2.2.3].
		if errors.Is(err, packets3.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets3.ErrorRefusedNotAuthorised) {
			return &deliveryError{err: fmt.Errorf("egress: mqtt: connect refused: %w", err), rejected: true}
		}
		return fmt.Errorf("egress: mqtt: connect: %w", err)
	}
	s.cl, s.lost = cl, lost
	return nil
}

func (s *mqtt3Sink) send(ctx context.Context, msgs []*Message) (int, error) {
	if s.cl != nil {
		select {
		case <-s.lost:
			s.close()
		default:
		}
	}
	if s.cl == nil {
		if err := s.connect(); err != nil {
			return 0, err
		}
	}
	n, err := pipeline(ctx, msgs, s.cfg.Window, s.publish)
	if err != nil {
		s.close()
	}
	return n, err
}

// publish hands m's PUBLISH to the client's writer, which writes packets
// in the order they are handed over, and returns.
func (s *mqtt3Sink) publish(m *Message) (published, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	tok := s.cl.Publish(expand(s.cfg.Topic, m, same), 1, false, body)
	lost := s.lost
	return func(ctx context.Context) error {
		t := time.NewTimer(s.cfg.Timeout)
		defer t.Stop()
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				return fmt.Errorf("egress: mqtt: publish tx %s: %w", m.TxID, err)
			}
			return nil
		case <-lost:
			return fmt.Errorf("egress: mqtt: connection lost before the PUBACK of tx %s", m.TxID)
		case <-t.C:
			return fmt.Errorf("egress: mqtt: no PUBACK for tx %s in %s", m.TxID, s.cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

func (s *mqtt3Sink) close() {
	if s.cl != nil {
		s.cl.Disconnect(100) // ms to finish work in progress
		s.cl, s.lost = nil, nil
	}
}
