package device

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Topics of device protocol v1 (docs/device-protocol.md).
func DataTopic(id, stream string) string { return "lg/v1/" + id + "/data/" + stream }

// ReceiptsTopic is where the gateway sends a device its receipts.
func ReceiptsTopic(id string) string { return "lg/v1/" + id + "/receipts" }

// RejectsTopic is where the gateway tells a device why it refused a message.
func RejectsTopic(id string) string { return "lg/v1/" + id + "/rejects" }

// Reject is a refusal as the gateway publishes it on the rejects topic.
type Reject struct {
	TxID   string `json:"tx_id"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// Client is a device's MQTT v5 session with a gateway.
type Client struct {
	id string
	c  *paho.Client

	mu       sync.Mutex
	receipts map[string][]byte // tx id (hex) -> receipt
	rejects  map[string]Reject
	notify   chan struct{} // closed and replaced when something arrives
}

// DialOptions say how to reach the gateway.
type DialOptions struct {
	Broker   string        // tcp://host:port or tls://host:port; default tcp://127.0.0.1:1883
	TLS      *tls.Config   // for tls://; add the device's certificate for certificate auth
	TokenTTL time.Duration // lifetime of the password token; default 1h
}

// Dial connects as device id, authenticating with a token signed by key,
// and subscribes to its receipts and rejects.
func Dial(ctx context.Context, id string, key crypto.Signer, chainID string, o DialOptions) (*Client, error) {
	if o.Broker == "" {
		o.Broker = "tcp://127.0.0.1:1883"
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	u, err := url.Parse(o.Broker)
	if err != nil {
		return nil, fmt.Errorf("device: broker %q: %w", o.Broker, err)
	}
	var conn net.Conn
	var d net.Dialer
	switch u.Scheme {
	case "tcp", "mqtt":
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	case "tls", "mqtts", "ssl":
		conn, err = (&tls.Dialer{NetDialer: &d, Config: o.TLS}).DialContext(ctx, "tcp", u.Host)
	default:
		return nil, fmt.Errorf("device: broker %q: scheme must be tcp:// or tls://", o.Broker)
	}
	if err != nil {
		return nil, fmt.Errorf("device: dial %s: %w", o.Broker, err)
	}
	token, err := ledger.SignToken(key, id, chainID, time.Now(), o.TokenTTL)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cl := &Client{id: id, receipts: map[string][]byte{}, rejects: map[string]Reject{}, notify: make(chan struct{})}
	cl.c = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			cl.received(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}},
	})
	ca, err := cl.c.Connect(ctx, &paho.Connect{
		ClientID: id, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte(token),
	})
	if err != nil {
		if ca != nil {
			return nil, fmt.Errorf("device: connect refused: reason 0x%02x %s", ca.ReasonCode, ca.Properties.ReasonString)
		}
		return nil, fmt.Errorf("device: connect: %w", err)
	}
	if _, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: ReceiptsTopic(id), QoS: 1}, {Topic: RejectsTopic(id), QoS: 1},
	}}); err != nil {
		cl.Close()
		return nil, fmt.Errorf("device: subscribe: %w", err)
	}
	return cl, nil
}

func (cl *Client) received(topic string, payload []byte) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch topic {
	case ReceiptsTopic(cl.id):
		r, err := ledger.DecodeReceipt(payload)
		if err != nil {
			return
		}
		id := ledger.TxID(r.Tx)
		cl.receipts[hex.EncodeToString(id[:])] = payload
	case RejectsTopic(cl.id):
		var rj Reject
		if json.Unmarshal(payload, &rj) == nil && rj.TxID != "" {
			cl.rejects[rj.TxID] = rj
		}
	default:
		return
	}
	close(cl.notify)
	cl.notify = make(chan struct{})
}

// ErrRefused is a publish the gateway refused; the error names the reason.
var ErrRefused = errors.New("device: refused by the gateway")

// Publish sends a signed record (QoS 1) and returns once the gateway
// acknowledged it, that is, once it is committed. A refusal is ErrRefused.
func (cl *Client) Publish(ctx context.Context, stream string, env []byte) error {
	_, err := cl.c.Publish(ctx, &paho.Publish{Topic: DataTopic(cl.id, stream), QoS: 1, Payload: env})
	if err != nil {
		var rj Reject
		id := ledger.TxID(env)
		if r, ok := cl.reject(ctx, hex.EncodeToString(id[:])); ok {
			rj = r
			return fmt.Errorf("%w: %s: %s", ErrRefused, rj.Reason, rj.Error)
		}
		return fmt.Errorf("device: publish: %w", err)
	}
	return nil
}

// await waits until found reports true (it runs under cl.mu) or ctx ends.
func (cl *Client) await(ctx context.Context, found func() bool) error {
	for {
		cl.mu.Lock()
		ok := found()
		ch := cl.notify
		cl.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reject waits briefly for the rejects message of a refused tx.
func (cl *Client) reject(ctx context.Context, txID string) (Reject, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var r Reject
	err := cl.await(ctx, func() bool {
		var ok bool
		r, ok = cl.rejects[txID]
		return ok
	})
	return r, err == nil
}

// Receipt waits for the receipt of the tx env and returns its bytes.
func (cl *Client) Receipt(ctx context.Context, env []byte) ([]byte, error) {
	id := ledger.TxID(env)
	key := hex.EncodeToString(id[:])
	var r []byte
	err := cl.await(ctx, func() bool {
		var ok bool
		r, ok = cl.receipts[key]
		return ok
	})
	if err != nil {
		return nil, fmt.Errorf("device: no receipt for tx %s: %w", key, err)
	}
	return r, nil
}

// Close disconnects.
func (cl *Client) Close() error {
	return cl.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
}
