package coap

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// stubConn is a go-coap connection that writes nowhere.
type stubConn struct{ mid atomic.Int32 }

func (c *stubConn) Context() context.Context                         { return context.Background() }
func (c *stubConn) AcquireMessage(ctx context.Context) *pool.Message { return pool.NewMessage(ctx) }
func (c *stubConn) ReleaseMessage(*pool.Message)                     {}
func (c *stubConn) WriteMessage(m *pool.Message) error {
	_, err := m.MarshalWithEncoder(coder.DefaultCoder)
	return err
}
func (c *stubConn) GetMessageID() int32  { return c.mid.Add(1) & 0xffff }
func (c *stubConn) RemoteAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5683} }
func (c *stubConn) Close() error         { return nil }

// stubSession is a DTLS session with a client certificate of key spki.
type stubSession struct{ spki []byte }

func (s stubSession) peerKey() ([]byte, error) { return s.spki, nil }

// stubLedger is a Committer, Directory and Receipts of one device "dev"
// that commits every record of dev with a valid signature at once.
type stubLedger struct {
	key *ledger.PublicKey
}

func (l *stubLedger) ChainID() string { return "chain" }
func (l *stubLedger) MaxTxBytes() int { return 4096 }
func (l *stubLedger) Behind() bool    { return false }
func (l *stubLedger) Device(id string) (bridge.Device, bool) {
	if id != "dev" {
		return bridge.Device{}, false
	}
	return bridge.Device{ID: id, Key: l.key}, true
}

func (l *stubLedger) DeviceByKey(spki []byte) (bridge.Device, bool) {
	if !bytes.Equal(spki, l.key.DER) {
		return bridge.Device{}, false
	}
	return bridge.Device{ID: "dev", Key: l.key}, true
}

func (l *stubLedger) Propose(_ context.Context, tx *ledger.Tx) (bridge.Ticket, error) {
	if tx.Author != "dev" {
		return nil, ledger.Refuse(ledger.ReasonUnknownAuthor, "stub")
	}
	if err := tx.Verify(l.key); err != nil {
		return nil, ledger.Refuse(ledger.ReasonBadSignature, "stub")
	}
	return stubTicket{&ledger.Receipt{Tx: tx.Envelope}}, nil
}

func (l *stubLedger) Receipt(id [32]byte) (*ledger.Receipt, error) {
	if id[0] == 0 {
		return &ledger.Receipt{Tx: id[:]}, nil
	}
	return nil, errors.New("stub: not found")
}

type stubTicket struct{ r *ledger.Receipt }

func (t stubTicket) Wait(context.Context) (*ledger.Receipt, error) { return t.r, nil }

// fuzzServer is a Server that is not started, on stubLedger and the
// device tests' fake answers and images, with two peers: one over UDP and one over DTLS with dev's certificate key.
func fuzzServer(f *testing.F, key crypto.Signer) (*Server, *peer, *peer) {
	der, err := ledger.MarshalPublicKey(key)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := ledger.ParsePublicKey(der)
	if err != nil {
		f.Fatal(err)
	}
	l := &stubLedger{key: pub}
	s, err := New(Config{Listen: "127.0.0.1:0", MaxRecordBytes: 2048, BlockTimeout: time.Hour},
		Deps{Committer: l, Directory: l, Receipts: l, Logger: discard(), Answers: newFakeAnswers(),
			Images: fakeImages{sha256.Sum256([]byte("image")): []byte("image")}})
	if err != nil {
		f.Fatal(err)
	}
	return s, &peer{cc: &stubConn{}}, &peer{cc: &stubConn{}, dtls: stubSession{spki: der}}
}

// datagram encodes a request for the seed corpus.
func datagram(f *testing.F, typ message.Type, code codes.Code, path string, payload []byte, opts ...message.Option) []byte {
	r := &rawPeer{t: f}
	b := r.encode(msg{typ: typ, code: code, path: path, token: []byte{1, 2}, format: -1, payload: payload, opts: opts})
	return b
}

// FuzzCoAPMessage feeds datagrams through go-coap's decoder and the
// server's handler, as received over UDP or DTLS. It must never panic,
// and must answer only with a well-formed response to what it got: an
// ACK of the request's message id, a NON, or a Reset, with a response
// code, and a 2.04 only for a record or report of dev that the ledger
// took.
func FuzzCoAPMessage(f *testing.F) {
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		f.Fatal(err)
	}
	s, udpPeer, dtlsPeer := fuzzServer(f, key)
	env, err := device.SignRecord(key, "chain", ledger.Record{DeviceID: "dev", Stream: "temp", Seq: 1, Time: 1, Payload: []byte("21.5")})
	if err != nil {
		f.Fatal(err)
	}
	report, err := device.SignConfigReport(key, "chain", ledger.ConfigReport{DeviceID: "dev", Seq: 2, Version: 1, SHA256: make([]byte, 32)})
	if err != nil {
		f.Fatal(err)
	}
	cose := uintOpt(message.ContentFormat, uint32(message.AppCoseSign1))
	hexOf := func(b []byte) string { return hex.EncodeToString(b) }
	img := sha256.Sum256([]byte("image"))
	for _, seed := range [][]byte{
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/temp", env, cose),
		datagram(f, message.NonConfirmable, codes.POST, "/lg/v1/data/temp", env),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/hum", env, cose),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/temp", env[:len(env)/2]),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/temp", env[:16], uintOpt(message.Block1, 0x08)),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/temp", env[16:32], uintOpt(message.Block1, 0x18)),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/temp", env[32:], uintOpt(message.Block1, 0x60)),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/data/temp", env[:16], uintOpt(message.Block1, 0x08), uintOpt(message.Size1, 9999)),
		datagram(f, message.Confirmable, codes.GET, "/.well-known/core", nil),
		datagram(f, message.Confirmable, codes.GET, "/.well-known/core", nil, uintOpt(message.Block2, 0x21)),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/receipts/00"+string(bytes.Repeat([]byte("ab"), 31)), nil, uintOpt(message.Observe, 0)),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/receipts/"+string(bytes.Repeat([]byte("ab"), 32)), nil, uintOpt(message.Observe, 0)),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/receipts/"+string(bytes.Repeat([]byte("ab"), 32)), nil, uintOpt(message.Observe, 1)),
		datagram(f, message.Confirmable, codes.PUT, "/lg/v1/data/temp", env, message.Option{ID: 9, Value: []byte{1}}),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/config", nil, uintOpt(message.Observe, 0)),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/firmware", nil, uintOpt(message.Observe, 1)),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/config/verify", nil, message.Option{ID: message.URIQuery, Value: []byte("h=" + hexOf(img[:]))}),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/config/blob", nil, uintOpt(message.Block2, 0x12)),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/config/blob/"+hexOf(img[:]), nil),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/keys/other", nil, uintOpt(message.Accept, uint32(message.AppCBOR))),
		datagram(f, message.Confirmable, codes.GET, "/lg/v1/dev/firmware/"+hexOf(img[:]), nil, uintOpt(message.Block2, 0x10)),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/dev/config/report", report, cose),
		datagram(f, message.Confirmable, codes.POST, "/lg/v1/dev/firmware/report", report, cose),
		datagram(f, message.Confirmable, codes.Content, "/x", nil),
		datagram(f, message.Reset, codes.Empty, "", nil),
		{0x40, 0x00, 0x12, 0x34},
		{0x4f, 0x01},
	} {
		f.Add(false, seed)
		f.Add(true, seed)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, overDTLS bool, b []byte) {
		if len(b) > 2*minMessageBytes {
			return
		}
		req := pool.NewMessage(ctx)
		if _, err := req.UnmarshalWithDecoder(coder.DefaultCoder, b); err != nil {
			return
		}
		p := udpPeer
		if overDTLS {
			p = dtlsPeer
		}
		resp := pool.NewMessage(ctx)
		resp.SetToken(req.Token())
		p.mu.Lock()
		p.exchanges = nil // each input alone: no answers from the cache
		p.mu.Unlock()
		s.handle(p, req, resp)
		if !resp.IsModified() {
			return
		}
		switch resp.Type() {
		case message.Acknowledgement:
			if resp.MessageID() != req.MessageID() || req.Type() != message.Confirmable {
				t.Fatalf("ACK %d of %v %d", resp.MessageID(), req.Type(), req.MessageID())
			}
		case message.NonConfirmable:
			if req.Type() != message.NonConfirmable {
				t.Fatalf("NON answer to a %v", req.Type())
			}
		case message.Reset:
			if resp.Code() != codes.Empty || resp.MessageID() != req.MessageID() {
				t.Fatalf("Reset %v %d", resp.Code(), resp.MessageID())
			}
		default:
			t.Fatalf("answer of type %v", resp.Type())
		}
		if c := resp.Code(); c != codes.Empty && (c < 64 || c > 191) {
			t.Fatalf("answer code %v", c)
		}
		out, err := resp.MarshalWithEncoder(coder.DefaultCoder)
		if err != nil {
			t.Fatalf("answer does not encode: %v", err)
		}
		if len(out) > s.cfg.MaxMessageBytes {
			t.Fatalf("a %d-byte answer", len(out))
		}
		if resp.Code() >= codes.BadRequest {
			if diag, _ := resp.ReadBody(); !utf8.Valid(diag) || len(diag) > maxDiagnostic {
				t.Fatalf("diagnostic %q", diag)
			}
		}
		if resp.Code() == codes.Changed {
			body, _ := resp.ReadBody()
			r, err := ledger.DecodeReceipt(body)
			if err != nil || req.Code() != codes.POST {
				t.Fatalf("2.04 to %v: %v", req.Code(), err)
			}
			tx, err := ledger.DecodeTx(r.Tx, 4096)
			if err != nil || tx.Author != "dev" || tx.Body.Kind != ledger.KindRecord && tx.Body.Kind != ledger.KindConfigReport && tx.Body.Kind != ledger.KindFirmwareReport {
				t.Fatalf("2.04 of a tx that is no record or report of dev: %v", err)
			}
		}
		if n, b, _ := s.blocks.usage(); n > DefaultMaxTransfers || b > DefaultMaxTransferBytes {
			t.Fatalf("%d transfers of %d bytes", n, b)
		}
	})
}
