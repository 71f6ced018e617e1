package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsDuplicates is the de-duplication window of a stream the connector
// creates: JetStream drops a message whose Nats-Msg-Id it stored within
// it. It covers a gateway that crashed after a PubAck and before its
// cursor write and came back within it; the server's default is 2m.
const natsDuplicates = 10 * time.Minute

// natsSink publishes each record to a JetStream stream with the tx id as
// Nats-Msg-Id, in commit order, with up to Config.Window of them waiting
// for their PubAck.
type natsSink struct {
	cfg  Config
	opts []nats.Option
	nc   *nats.Conn // nil: not connected
	js   jetstream.JetStream
}

func newNATSSink(c Config) (*natsSink, error) {
	s := &natsSink{cfg: c, opts: []nats.Option{
		nats.Name("ledgergate egress " + c.Name),
		nats.Timeout(c.Timeout),
		// No buffering while reconnecting: a publish fails at once and is
		// retried from the cursor, instead of waiting in a buffer.
		nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1),
	}}
	if c.TokenFile != "" {
		tok, err := readSecret(c.TokenFile)
		if err != nil {
			return nil, err
		}
		s.opts = append(s.opts, nats.Token(string(tok)))
	}
	if c.CredsFile != "" {
		if _, err := readSecret(c.CredsFile); err != nil { // fail at start, not at the first connect
			return nil, err
		}
		s.opts = append(s.opts, nats.UserCredentials(c.CredsFile))
	}
	if c.CAFile != "" {
		s.opts = append(s.opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		s.opts = append(s.opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return s, nil
}

func (s *natsSink) connect(ctx context.Context) error {
	nc, err := nats.Connect(s.cfg.URL, s.opts...)
	if err != nil {
		return fmt.Errorf("egress: nats: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(s.cfg.Window))
	if err != nil {
		nc.Close()
		return fmt.Errorf("egress: nats: %w", err)
	}
	// The stream is made if it is missing; an existing one is left as its
	// owner configured it.
	if _, err := js.Stream(ctx, s.cfg.Stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: s.cfg.Stream, Subjects: []string{natsWildcard(s.cfg.Subject)}, Duplicates: natsDuplicates,
			Storage: jetstream.FileStorage,
		})
		if err != nil {
			nc.Close()
			return fmt.Errorf("egress: nats: create stream %s: %w", s.cfg.Stream, err)
		}
	} else if err != nil {
		nc.Close()
		return fmt.Errorf("egress: nats: stream %s: %w", s.cfg.Stream, err)
	}
	s.nc, s.js = nc, js
	return nil
}

func (s *natsSink) send(ctx context.Context, msgs []*Message) (int, error) {
	if s.nc != nil && s.nc.IsClosed() {
		s.close()
	}
	if s.nc == nil {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err := s.connect(cctx)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	n, err := pipeline(ctx, msgs, s.cfg.Window, s.publish)
	if err != nil {
		// Futures of this connection may still complete; a new one starts
		// clean.
		s.close()
	}
	return n, err
}

// publish sends m with an asynchronous publish: the messages of one
// connection leave in the order they are published, and the stream stores
// them in the order it receives them.
func (s *natsSink) publish(m *Message) (published, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(expand(s.cfg.Subject, m, natsToken))
	msg.Data = body
	msg.Header.Set("Content-Type", "application/json")
	// No retries inside the client: a retried publish would be stored
	// after the ones sent after it. The connector resends from its cursor.
	f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.TxID), jetstream.WithExpectStream(s.cfg.Stream),
		jetstream.WithRetryAttempts(0))
	if err != nil {
		return nil, fmt.Errorf("egress: nats: publish tx %s: %w", m.TxID, err)
	}
	return func(ctx context.Context) error {
		t := time.NewTimer(s.cfg.Timeout)
		defer t.Stop()
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return fmt.Errorf("egress: nats: publish tx %s: %w", m.TxID, err)
		case <-t.C:
			return fmt.Errorf("egress: nats: publish tx %s: no PubAck in %s", m.TxID, s.cfg.Timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

func (s *natsSink) close() {
	if s.nc != nil {
		s.nc.Close()
		s.nc, s.js = nil, nil
	}
}
