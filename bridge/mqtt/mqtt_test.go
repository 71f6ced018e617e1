package mqtt

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// TestPublishCommitsThenAcks: a record published at QoS 1 is
// acknowledged only once it is committed, and its receipt, which
// verifies offline against the genesis, arrives on the receipts topic.
func TestPublishCommitsThenAcks(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	srv := startServer(t, node, Config{}, nil)
	for _, alg := range []ledger.Alg{ledger.ES256, ledger.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			id := "dev-" + strings.ToLower(string(alg))
			key := node.Enroll(t, id, alg)
			c := mustConnect(t, tcpAddr(srv), id, key, node.Genesis.ChainID, connectOpts{})
			eventually(t, "one device connected", func() bool { return value(t, srv.m.connected) == 1 })
			for seq := uint64(1); seq <= 3; seq++ {
				env := c.record(t, "temp", seq, fmt.Appendf(nil, "%d C", 20+seq))
				if r := c.publish(t, dataTopic(id, "temp"), env); r.ReasonCode != 0 {
					t.Fatalf("PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
				}
				// The PUBACK came after the commit: the index has the tx.
				if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
					t.Fatalf("acknowledged record not in the ledger: %v", err)
				}
				rc := c.receipt(t, env)
				if err := ledger.VerifyReceipt(node.Genesis, rc); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(rc.Tx, env) {
					t.Fatal("receipt is for another tx")
				}
			}
			// QoS 0: no PUBACK, but committed all the same, with a receipt.
			env := c.record(t, "temp", 4, nil)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := c.pc.Publish(ctx, &paho.Publish{Topic: dataTopic(id, "temp"), QoS: 0, Payload: env}); err != nil {
				t.Fatal(err)
			}
			if err := ledger.VerifyReceipt(node.Genesis, c.receipt(t, env)); err != nil {
				t.Fatal(err)
			}
			if d, _ := node.Chain.State().Device(id); d.LastSeq != 4 {
				t.Fatalf("last seq %d, want 4", d.LastSeq)
			}
		})
	}
	if n := value(t, srv.m.publishes.WithLabelValues(resultAccepted)); n != 8 {
		t.Fatalf("accepted publishes metric %v, want 8", n)
	}
}

// TestManyInFlight: one client with 200 QoS 1 records in flight gets a
// PUBACK for each, and all of them commit: the server answers out of
// the client's read loop and keeps the device's order.
func TestManyInFlight(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	srv := startServer(t, node, Config{ReceiveMaximum: 256}, nil)
	key := node.Enroll(t, "busy", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "busy", key, node.Genesis.ChainID, connectOpts{})
	const n = 200
	codes := make(chan byte, n)
	for seq := uint64(1); seq <= n; seq++ {
		env := c.record(t, "s", seq, nil)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			r, err := c.pc.Publish(ctx, &paho.Publish{Topic: dataTopic("busy", "s"), QoS: 1, Payload: env})
			if r == nil {
				t.Errorf("seq %d: no PUBACK: %v", seq, err)
				codes <- 0xff
				return
			}
			codes <- r.ReasonCode
		}()
		// The next publish starts once this one is on the wire, so the
		// records leave in seq order while none is acknowledged yet.
		select {
		case <-c.conn.published:
		case <-time.After(wait):
			t.Fatalf("seq %d not sent", seq)
		}
	}
	for i := 0; i < n; i++ {
		if code := <-codes; code != 0 {
			t.Fatalf("PUBACK 0x%02x", code)
		}
	}
	if d, _ := node.Chain.State().Device("busy"); d.LastSeq != n {
		t.Fatalf("last seq %d, want %d", d.LastSeq, n)
	}
	// Records in flight are proposed together, so they share blocks;
	// submitting them one by one would put each in a block of its own.
	height, _ := node.Chain.State().Tip()
	most := 0
	for h := uint64(1); h <= height; h++ {
		b, err := node.Chain.Block(h)
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, len(b.Txs))
	}
	if most < 2 {
		t.Fatalf("%d records in %d blocks, at most %d in one: records in flight were not pipelined", n, height-1, most)
	}
}

// TestRefusals: each refused publish gets its v5 reason code, a message
// on the rejects topic and nothing in the ledger, while another device
// keeps publishing.
func TestRefusals(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	srv := startServer(t, node, Config{}, nil)
	chainID := node.Genesis.ChainID
	alice := mustConnect(t, tcpAddr(srv), "alice", node.Enroll(t, "alice", ledger.ES256), chainID, connectOpts{})
	bob := mustConnect(t, tcpAddr(srv), "bob", node.Enroll(t, "bob", ledger.EdDSA), chainID, connectOpts{})
	alice.mustCommit(t, node, "s", alice.record(t, "s", 1, []byte("first")))
	bobSeq := uint64(0)

	forger, _ := device.GenerateKey(ledger.ES256)
	forged, _ := device.SignRecord(forger, chainID, ledger.Record{DeviceID: "alice", Stream: "s", Seq: 2, Time: 1})
	enroll, _ := ledger.SignTx(node.Admin, nodetest.AdminID, &ledger.Body{Kind: ledger.KindEnroll, ChainID: chainID,
		Enroll: &ledger.Enroll{DeviceID: "carol", PublicKey: mustDER(t, forger)}})
	truncated := alice.record(t, "s", 2, nil)
	truncated = truncated[:len(truncated)-1]
	random := make([]byte, 300)
	rand.Read(random)

	for _, tc := range []struct {
		name   string
		topic  string
		env    []byte
		code   byte
		reason string
		txID   bool // the reject names the tx
	}{
		{"forged signature", dataTopic("alice", "s"), forged, 0x87, "bad_signature", true},
		{"replayed seq", dataTopic("alice", "s"), alice.record(t, "s", 1, []byte("again")), 0x83, "replay", true},
		{"other device's topic", dataTopic("bob", "s"), alice.record(t, "s", 2, nil), 0x87, "wrong_topic", false},
		{"stream mismatch", dataTopic("alice", "b"), alice.record(t, "a", 2, nil), 0x87, "wrong_topic", true},
		{"record of another device", dataTopic("alice", "s"), bob.record(t, "s", 1000, nil), 0x87, "wrong_topic", true},
		{"other topic under own prefix", "lg/v1/alice/status", alice.record(t, "s", 2, nil), 0x87, "wrong_topic", false},
		{"not a record", dataTopic("alice", "s"), enroll, 0x99, "not_record", true},
		{"oversized", dataTopic("alice", "s"), alice.record(t, "s", 2, make([]byte, ledger.DefaultMaxTxBytes)), 0x99, "too_large", false},
		{"malformed cose", dataTopic("alice", "s"), truncated, 0x99, "malformed", false},
		{"random bytes", dataTopic("alice", "s"), random, 0x99, "malformed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := alice.publish(t, tc.topic, tc.env)
			if r.ReasonCode != tc.code || r.Properties == nil || r.Properties.ReasonString != tc.reason {
				t.Fatalf("PUBACK 0x%02x %+v, want 0x%02x %s", r.ReasonCode, r.Properties, tc.code, tc.reason)
			}
			rj := alice.nextReject(t)
			id := ledger.TxID(tc.env)
			if wantID := fmt.Sprintf("%x", id); string(rj.Reason) != tc.reason || (rj.TxID == wantID) != tc.txID || (rj.TxID != "") != tc.txID || rj.Error == "" {
				t.Fatalf("reject %+v", rj)
			}
			notStored(t, node, tc.env)
			if d, _ := node.Chain.State().Device("alice"); d.LastSeq != 1 {
				t.Fatalf("alice's last seq moved to %d", d.LastSeq)
			}
			bobSeq++
			bob.mustCommit(t, node, "s", bob.record(t, "s", bobSeq, nil))
		})
	}

	t.Run("committed record resent", func(t *testing.T) {
		env := alice.record(t, "s", 2, nil)
		alice.mustCommit(t, node, "s", env)
		alice.mustCommit(t, node, "s", env) // the same receipt again, no replay
	})
	t.Run("qos 0 refusal", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := alice.pc.Publish(ctx, &paho.Publish{Topic: dataTopic("alice", "s"), QoS: 0, Payload: random}); err != nil {
			t.Fatal(err)
		}
		if rj := alice.nextReject(t); rj.Reason != "malformed" {
			t.Fatalf("reject %+v", rj)
		}
	})
	if len(bob.rejects) != 0 {
		t.Fatalf("bob got %d reject messages for alice's publishes", len(bob.rejects))
	}
	if n := value(t, srv.m.publishes.WithLabelValues("wrong_topic")); n != 4 {
		t.Fatalf("wrong_topic metric %v, want 4", n)
	}
}

// TestSeqReuseAfterRestart: a gateway restart rebuilds the device's
// last seq from the block log, so a seq used before it is refused after.
func TestSeqReuseAfterRestart(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	key := node.Enroll(t, "dev", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	c := mustConnect(t, tcpAddr(srv), "dev", key, node.Genesis.ChainID, connectOpts{})
	for seq := uint64(1); seq <= 3; seq++ {
		c.mustCommit(t, node, "s", c.record(t, "s", seq, nil))
	}
	srv.Close()

	node = node.Restart(t)
	srv = startServer(t, node, Config{}, nil)
	c = mustConnect(t, tcpAddr(srv), "dev", key, node.Genesis.ChainID, connectOpts{})
	env := c.record(t, "s", 2, []byte("after restart"))
	if r := c.publish(t, dataTopic("dev", "s"), env); r.ReasonCode != 0x83 || r.Properties.ReasonString != "replay" {
		t.Fatalf("PUBACK 0x%02x %+v, want 0x83 replay", r.ReasonCode, r.Properties)
	}
	if rj := c.nextReject(t); rj.Reason != "replay" {
		t.Fatalf("reject %+v", rj)
	}
	notStored(t, node, env)
	c.mustCommit(t, node, "s", c.record(t, "s", 4, nil))
}

// TestConnectRefused: CONNECTs that do not authenticate an enrolled,
// unrevoked device get the contract's codes, in MQTT 5 and 3.1.1.
func TestConnectRefused(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "dev", ledger.ES256)
	goneKey := node.Enroll(t, "gone", ledger.EdDSA)
	node.Revoke(t, "gone")
	srv := startServer(t, node, Config{}, nil)
	// A gateway whose clock is two hours ahead: a fresh one-hour token
	// has expired there.
	late := startServer(t, node, Config{}, func() time.Time { return time.Now().Add(2 * time.Hour) })
	stranger, _ := device.GenerateKey(ledger.ES256)

	for _, tc := range []struct {
		name                       string
		srv                        *Server
		clientID, username, passwd string
		v5, v3                     byte
	}{
		{"unknown device", srv, "ghost", "ghost", token(t, stranger, "ghost", chainID), 0x86, 0x04},
		{"garbage token", srv, "dev", "dev", "not-a-token", 0x86, 0x04},
		{"token signed by another key", srv, "dev", "dev", token(t, stranger, "dev", chainID), 0x86, 0x04},
		{"token for another chain", srv, "dev", "dev", token(t, key, "dev", "other-chain"), 0x86, 0x04},
		{"token of another device", srv, "dev", "dev", token(t, goneKey, "gone", chainID), 0x86, 0x04},
		{"another device's client id", srv, "gone", "dev", token(t, key, "dev", chainID), 0x86, 0x04},
		{"another device's client id and name", srv, "gone", "gone", token(t, key, "dev", chainID), 0x86, 0x04},
		{"no password", srv, "dev", "dev", "", 0x86, 0x04},
		{"expired token", late, "dev", "dev", token(t, key, "dev", chainID), 0x86, 0x04},
		{"revoked device", srv, "gone", "gone", token(t, goneKey, "gone", chainID), 0x87, 0x05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ca, err := connect(t, tcpAddr(tc.srv), tc.clientID, key, chainID,
				connectOpts{username: tc.username, password: []byte(tc.passwd)})
			if err == nil || ca == nil || ca.ReasonCode != tc.v5 {
				t.Fatalf("v5: connack %+v, err %v; want 0x%02x", ca, err, tc.v5)
			}
			raw := dialRaw(t, tcpAddr(tc.srv))
			if code := raw.connect(4, tc.clientID, tc.username, tc.passwd); code != tc.v3 {
				t.Fatalf("3.1.1: return code 0x%02x, want 0x%02x", code, tc.v3)
			}
			if err := raw.closed(); err != nil {
				t.Fatalf("refused connection left open: %v", err)
			}
		})
	}
	t.Run("will message", func(t *testing.T) {
		if _, ca, err := connect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{will: true}); err == nil || ca.ReasonCode != 0x87 {
			t.Fatalf("connack %+v, err %v; want 0x87", ca, err)
		}
	})
	t.Run("3.1.1 accepted", func(t *testing.T) {
		raw := dialRaw(t, tcpAddr(srv))
		if code := raw.connect(4, "dev", "dev", token(t, key, "dev", chainID)); code != 0 {
			t.Fatalf("return code 0x%02x", code)
		}
	})
	if n := value(t, srv.m.connected); n > 1 {
		t.Fatalf("connected devices metric %v after refusals", n)
	}
}

// behindDirectory is a registry of a gateway catching up with its peers.
type behindDirectory struct{ bridge.Directory }

func (behindDirectory) Behind() bool { return true }

// TestConnectWhileBehind: a gateway catching up tells a device it does
// not know, or whose credential does not match the key it holds, to come
// back (0x88, 3.1.1: 0x03): the enrollment or re-key may be in a block it
// lacks. What no missing block can change is refused as before.
func TestConnectWhileBehind(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "dev", ledger.ES256)
	goneKey := node.Enroll(t, "gone", ledger.EdDSA)
	node.Revoke(t, "gone")
	srv := startServerDeps(t, node, Config{}, Deps{Directory: behindDirectory{node.Directory()}})
	stranger, _ := device.GenerateKey(ledger.ES256)

	for _, tc := range []struct {
		name                       string
		clientID, username, passwd string
		v5, v3                     byte
	}{
		{"unknown device", "ghost", "ghost", token(t, stranger, "ghost", chainID), 0x88, 0x03},
		{"token signed by another key", "dev", "dev", token(t, stranger, "dev", chainID), 0x88, 0x03},
		{"garbage token", "dev", "dev", "not-a-token", 0x86, 0x04},
		{"token for another chain", "dev", "dev", token(t, key, "dev", "other-chain"), 0x86, 0x04},
		{"revoked device", "gone", "gone", token(t, goneKey, "gone", chainID), 0x87, 0x05},
		{"known device", "dev", "dev", token(t, key, "dev", chainID), 0x00, 0x00},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ca, err := connect(t, tcpAddr(srv), tc.clientID, key, chainID,
				connectOpts{username: tc.username, password: []byte(tc.passwd)})
			if ca == nil || ca.ReasonCode != tc.v5 {
				t.Fatalf("v5: connack %+v, err %v; want 0x%02x", ca, err, tc.v5)
			}
			if c != nil {
				c.pc.Disconnect(&paho.Disconnect{})
			}
			raw := dialRaw(t, tcpAddr(srv))
			if code := raw.connect(4, tc.clientID, tc.username, tc.passwd); code != tc.v3 {
				t.Fatalf("3.1.1: return code 0x%02x, want 0x%02x", code, tc.v3)
			}
		})
	}
}

// TestV311Publish: a 3.1.1 client's records commit; its refusals get a
// plain PUBACK and a message on the rejects topic.
func TestV311Publish(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	key := node.Enroll(t, "old", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	raw := dialRaw(t, tcpAddr(srv))
	if code := raw.connect(4, "old", "old", token(t, key, "old", node.Genesis.ChainID)); code != 0 {
		t.Fatalf("return code 0x%02x", code)
	}
	raw.send(0x82, append(append([]byte{0, 1}, str("lg/v1/old/rejects")...), 1))
	if first, body, err := raw.read(); err != nil || first != 0x90 || !bytes.Equal(body, []byte{0, 1, 1}) {
		t.Fatalf("SUBACK %x %x %v", first, body, err)
	}
	env, _ := device.SignRecord(key, node.Genesis.ChainID, ledger.Record{DeviceID: "old", Stream: "s", Seq: 1, Time: 1})
	raw.send(0x32, append(append(str(dataTopic("old", "s")), 0, 2), env...))
	if first, body, err := raw.read(); err != nil || first != 0x40 || !bytes.Equal(body, []byte{0, 2}) {
		t.Fatalf("PUBACK %x %x %v", first, body, err)
	}
	if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
		t.Fatal(err)
	}

	raw.send(0x32, append(append(str(dataTopic("old", "s")), 0, 3), "garbage"...))
	var acked, rejected bool
	for !acked || !rejected {
		first, body, err := raw.read()
		if err != nil {
			t.Fatal(err)
		}
		switch first >> 4 {
		case 4:
			if !bytes.Equal(body, []byte{0, 3}) {
				t.Fatalf("PUBACK %x: want a plain PUBACK for packet 3", body)
			}
			acked = true
		case 3:
			n := int(body[0])<<8 | int(body[1])
			topic, payload := string(body[2:2+n]), body[2+n:]
			if first&0x06 != 0 {
				payload = payload[2:] // packet id
			}
			if topic != "lg/v1/old/rejects" || !bytes.Contains(payload, []byte(`"reason":"malformed"`)) {
				t.Fatalf("publish on %s: %s", topic, payload)
			}
			rejected = true
		default:
			t.Fatalf("unexpected packet %x", first)
		}
	}
}

// TestOversizePacket: a v5 client that sends a packet over the server's
// Maximum Packet Size is told DISCONNECT 0x95 before its connection ends,
// also when the packet comes in the same write as its CONNECT; a 3.1.1
// client's connection just ends. Packets up to the limit pass.
func TestOversizePacket(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "dev", ledger.ES256)
	const max = 2048
	srv := startServer(t, node, Config{MaxPacketBytes: max}, nil)
	tok := token(t, key, "dev", chainID)
	// publish is a QoS 0 PUBLISH whose packet is size bytes long.
	publish := func(size int) []byte {
		topic := str("lg/v1/dev/data/s")
		body := append(topic, 0) // v5: no properties
		n := size - 1 - len(vbi(size)) - len(body)
		body = append(body, make([]byte, n)...)
		for len(vbi(len(body)))+1+len(body) > size {
			body = body[:len(body)-1]
		}
		return append(append([]byte{0x30}, vbi(len(body))...), body...)
	}
	wantDisconnect := func(t *testing.T, raw *rawConn) {
		t.Helper()
		for {
			first, body, err := raw.read()
			if err != nil {
				t.Fatalf("connection ended without DISCONNECT 0x95: %v", err)
			}
			if first == 0xe0 {
				if len(body) < 1 || body[0] != 0x95 {
					t.Fatalf("DISCONNECT %x, want reason 0x95", body)
				}
				if err := raw.closed(); err != nil {
					t.Fatalf("connection left open after DISCONNECT: %v", err)
				}
				return
			}
		}
	}

	t.Run("v5 after CONNACK", func(t *testing.T) {
		raw := dialRaw(t, tcpAddr(srv))
		if code := raw.connect(5, "dev", "dev", tok); code != 0 {
			t.Fatalf("CONNACK 0x%02x", code)
		}
		if _, err := raw.c.Write(append(publish(max), 0xc0, 0)); err != nil { // at the limit: passes (refused as a record), then PINGREQ
			t.Fatal(err)
		}
		if first, _, err := raw.read(); err != nil || first != 0xd0 {
			t.Fatalf("no PINGRESP after a packet at the limit: %x %v", first, err)
		}
		if _, err := raw.c.Write(publish(max + 1)); err != nil {
			t.Fatal(err)
		}
		wantDisconnect(t, raw)
	})
	t.Run("v5 with CONNECT", func(t *testing.T) {
		raw := dialRaw(t, tcpAddr(srv))
		b := append(append([]byte{0x10}, vbi(len(connectBody(5, "dev", "dev", tok)))...), connectBody(5, "dev", "dev", tok)...)
		if _, err := raw.c.Write(append(b, publish(max+100)...)); err != nil {
			t.Fatal(err)
		}
		if first, body, err := raw.read(); err != nil || first != 0x20 || len(body) < 2 || body[1] != 0 {
			t.Fatalf("CONNACK %x %x %v", first, body, err)
		}
		wantDisconnect(t, raw)
	})
	t.Run("3.1.1", func(t *testing.T) {
		raw := dialRaw(t, tcpAddr(srv))
		if code := raw.connect(4, "dev", "dev", tok); code != 0 {
			t.Fatalf("CONNACK 0x%02x", code)
		}
		if _, err := raw.c.Write(publish(max + 1)); err != nil {
			t.Fatal(err)
		}
		if err := raw.closed(); err != nil {
			t.Fatalf("connection left open: %v", err)
		}
	})
}

// TestRevokedDeviceDisconnected: when a revocation commits, the chain's
// OnCommit hook has the server disconnect the device.
func TestRevokedDeviceDisconnected(t *testing.T) {
	var front atomic.Pointer[Server]
	node := nodetest.Start(t, nodetest.Options{OnCommit: func(_ *ledger.Block, txs []*ledger.Tx) {
		s := front.Load()
		for _, tx := range txs {
			if s != nil && tx.Body.Kind == ledger.KindRevoke {
				s.Revoked(tx.Body.Revoke.DeviceID)
			}
		}
	}})
	chainID := node.Genesis.ChainID
	srv := startServer(t, node, Config{}, nil)
	front.Store(srv)
	v5Key := node.Enroll(t, "v5dev", ledger.ES256)
	v3Key := node.Enroll(t, "v3dev", ledger.EdDSA)
	c := mustConnect(t, tcpAddr(srv), "v5dev", v5Key, chainID, connectOpts{})
	raw := dialRaw(t, tcpAddr(srv))
	if code := raw.connect(4, "v3dev", "v3dev", token(t, v3Key, "v3dev", chainID)); code != 0 {
		t.Fatalf("return code 0x%02x", code)
	}
	other := mustConnect(t, tcpAddr(srv), "other", node.Enroll(t, "other", ledger.ES256), chainID, connectOpts{})

	node.Revoke(t, "v5dev")
	select {
	case d := <-c.kicked:
		if d.ReasonCode != 0x87 {
			t.Fatalf("DISCONNECT 0x%02x, want 0x87", d.ReasonCode)
		}
	case <-time.After(wait):
		t.Fatal("revoked v5 device still connected")
	}
	node.Revoke(t, "v3dev")
	if err := raw.closed(); err != nil {
		t.Fatalf("revoked 3.1.1 device still connected: %v", err)
	}
	if _, ca, err := connect(t, tcpAddr(srv), "v5dev", v5Key, chainID, connectOpts{}); err == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("revoked device reconnected: %+v %v", ca, err)
	}
	other.mustCommit(t, node, "s", other.record(t, "s", 1, nil))
}

// TestMalformedPacketsDropOnlyThatClient: malformed packets after a valid
// CONNECT end that connection; the broker serves others, and its memory
// does not grow with such connections.
func TestMalformedPacketsDropOnlyThatClient(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "bad", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	good := mustConnect(t, tcpAddr(srv), "good", node.Enroll(t, "good", ledger.EdDSA), chainID, connectOpts{})
	tok := token(t, key, "bad", chainID)

	cases := []struct {
		name  string
		bytes []byte
	}{
		{"truncated subscribe", append([]byte{0x82, 5}, 0, 1, 0, 16, 'l')},
		{"zero-length topic publish", []byte{0x30, 3, 0, 0, 'x'}},
		{"client-sent connack", []byte{0x20, 2, 0, 0}},
		{"remaining length 268435455", []byte{0x30, 0xff, 0xff, 0xff, 0x7f}},
		{"reserved packet type", []byte{0x00, 0}},
		{"qos 2 publish", append(append([]byte{0x34, 11}, str("lg/v1/")...), 0, 1, 'x')},
		{"second connect", append(append([]byte{0x10}, vbi(len(connectBody(4, "bad", "bad", tok)))...), connectBody(4, "bad", "bad", tok)...)},
	}
	attack := func(t *testing.T, b []byte) {
		raw := dialRaw(t, tcpAddr(srv))
		if code := raw.connect(4, "bad", "bad", tok); code != 0 {
			t.Fatalf("return code 0x%02x", code)
		}
		if _, err := raw.c.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := raw.closed(); err != nil {
			t.Fatalf("client not dropped: %v", err)
		}
		raw.c.Close()
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { attack(t, tc.bytes) })
	}
	t.Run("qos 2 publish from a v5 client", func(t *testing.T) {
		raw := dialRaw(t, tcpAddr(srv))
		if code := raw.connect(5, "bad", "bad", tok); code != 0 {
			t.Fatalf("reason code 0x%02x", code)
		}
		raw.send(0x34, append(append(str(dataTopic("bad", "s")), 0, 1, 0), 'x')) // packet id 1, no properties
		first, body, err := raw.read()
		if err != nil || first != 0xe0 || len(body) == 0 || body[0] != 0x9b {
			t.Fatalf("got %x %x %v, want DISCONNECT 0x9B", first, body, err)
		}
		if err := raw.closed(); err != nil {
			t.Fatal(err)
		}
	})
	seq := uint64(1)
	good.mustCommit(t, node, "s", good.record(t, "s", seq, nil))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 200; i++ {
		attack(t, cases[i%len(cases)].bytes)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Fatalf("heap grew by %d bytes over 200 dropped clients", grown)
	}
	seq++
	good.mustCommit(t, node, "s", good.record(t, "s", seq, nil))
	eventually(t, "only the good device connected", func() bool { return value(t, srv.m.connected) == 1 })
}

// TestTLSClientCertificate: a self-signed client certificate with the
// device's enrolled key authenticates it; one with another key does not.
func TestTLSClientCertificate(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	serverKey, _ := device.GenerateKey(ledger.ES256)
	serverCert := selfSigned(t, serverKey, "gateway", true)
	roots := x509.NewCertPool()
	roots.AddCert(serverCert.Leaf)
	srv := startServer(t, node, Config{TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}}}, nil)
	_, tlsAddr := srv.Addrs()
	clientTLS := func(key crypto.Signer) *tls.Config {
		return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{selfSigned(t, key, "device", false)}}
	}

	for _, alg := range []ledger.Alg{ledger.ES256, ledger.EdDSA} {
		id := "tls-" + strings.ToLower(string(alg))
		key := node.Enroll(t, id, alg)
		c := mustConnect(t, tlsAddr, id, key, chainID, connectOpts{noAuth: true, tls: clientTLS(key)})
		c.mustCommit(t, node, "s", c.record(t, "s", 1, []byte("over tls")))
	}
	stranger, _ := device.GenerateKey(ledger.ES256)
	enrolled := node.Enroll(t, "tls-victim", ledger.ES256)
	for _, tc := range []struct {
		name string
		id   string
		key  crypto.Signer
		o    connectOpts
	}{
		{"certificate with another key", "tls-victim", stranger, connectOpts{noAuth: true, tls: clientTLS(stranger)}},
		{"another key, valid token", "tls-victim", enrolled, connectOpts{tls: clientTLS(stranger)}},
		{"certificate of another device", "tls-es256", enrolled, connectOpts{noAuth: true, tls: clientTLS(enrolled)}},
		{"no certificate, no token", "tls-victim", enrolled, connectOpts{noAuth: true, tls: &tls.Config{RootCAs: roots}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ca, err := connect(t, tlsAddr, tc.id, tc.key, chainID, tc.o); err == nil || ca == nil || ca.ReasonCode != 0x86 {
				t.Fatalf("connack %+v, err %v; want 0x86", ca, err)
			}
		})
	}
	// A token still works over TLS without a certificate.
	c := mustConnect(t, tlsAddr, "tls-victim", enrolled, chainID, connectOpts{tls: &tls.Config{RootCAs: roots}})
	c.mustCommit(t, node, "s", c.record(t, "s", 1, nil))
}

// TestLifecycle: New validates, Close is idempotent and safe before
// Start, Start after Close fails.
func TestLifecycle(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	deps := Deps{Committer: node.Committer(), Directory: node.Directory(), Logger: discard()}
	for _, tc := range []struct {
		cfg  Config
		deps Deps
		want string
	}{
		{Config{}, deps, "no listener"},
		{Config{Listen: "localhost"}, deps, "listen address"},
		{Config{TLSListen: "127.0.0.1:0"}, deps, "needs a TLS config"},
		{Config{Listen: "127.0.0.1:0", MaxPacketBytes: 10}, deps, "max packet bytes"},
		{Config{Listen: "127.0.0.1:0"}, Deps{}, "no Committer"},
	} {
		if _, err := New(tc.cfg, tc.deps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
	reg := prometheus.NewRegistry()
	deps.Registry = reg
	s, err := New(Config{Listen: "127.0.0.1:0"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Listen: "127.0.0.1:0"}, deps); err == nil {
		t.Error("a second server registered the same metrics")
	}
	s.Close()
	s.Close()
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}

	// A port in use: Start fails and leaves nothing bound.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deps.Registry = nil
	s, err = New(Config{Listen: "127.0.0.1:0", TLSListen: ln.Addr().String(), TLS: &tls.Config{
		Certificates: []tls.Certificate{{}}}}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Start on a used port: %v", err)
	}
	if tcp, tls := s.Addrs(); tcp != "" || tls != "" {
		t.Fatalf("addresses %q %q after a failed start", tcp, tls)
	}
	s.Close()
}

func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func mustDER(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := ledger.MarshalPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// selfSigned makes a certificate for key, signed by key, valid for
// 127.0.0.1.
func selfSigned(t testing.TB, key crypto.Signer, cn string, ca bool) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, BasicConstraintsValid: true, IsCA: ca,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestReplayCarriesLastSeq: a replay refusal tells the device its last
// committed seq, so it can resync its counter: in MQTT 5 as the PUBACK's
// user property last_seq, and, in 5 and 3.1.1, as last_seq in the
// message on the rejects topic. Other refusals carry none.
func TestReplayCarriesLastSeq(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "dev", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	c := mustConnect(t, tcpAddr(srv), "dev", key, chainID, connectOpts{})
	for seq := uint64(1); seq <= 3; seq++ {
		c.mustCommit(t, node, "s", c.record(t, "s", seq, nil))
	}

	r := c.publish(t, dataTopic("dev", "s"), c.record(t, "s", 2, []byte("again")))
	if r.ReasonCode != 0x83 || r.Properties == nil || r.Properties.ReasonString != "replay" || r.Properties.User.Get("last_seq") != "3" {
		t.Fatalf("v5 PUBACK 0x%02x %+v, want 0x83 replay with user property last_seq=3", r.ReasonCode, r.Properties)
	}
	if rj := c.nextReject(t); rj.Reason != "replay" || rj.LastSeq == nil || *rj.LastSeq != 3 {
		t.Fatalf("v5 reject %+v, want replay with last_seq 3", rj)
	}
	forger, _ := device.GenerateKey(ledger.ES256)
	forged, _ := device.SignRecord(forger, chainID, ledger.Record{DeviceID: "dev", Stream: "s", Seq: 9, Time: 1})
	r = c.publish(t, dataTopic("dev", "s"), forged)
	if r.Properties == nil || r.Properties.ReasonString != "bad_signature" || r.Properties.User.Get("last_seq") != "" {
		t.Fatalf("v5 PUBACK of a forged record %+v: want bad_signature without last_seq", r.Properties)
	}
	if rj := c.nextReject(t); rj.Reason != "bad_signature" || rj.LastSeq != nil {
		t.Fatalf("v5 reject %+v, want bad_signature without last_seq", rj)
	}

	raw := dialRaw(t, tcpAddr(srv))
	if code := raw.connect(4, "dev", "dev", token(t, key, "dev", chainID)); code != 0 {
		t.Fatalf("3.1.1 return code 0x%02x", code)
	}
	raw.send(0x82, append(append([]byte{0, 1}, str("lg/v1/dev/rejects")...), 1))
	if first, body, err := raw.read(); err != nil || first != 0x90 || !bytes.Equal(body, []byte{0, 1, 1}) {
		t.Fatalf("SUBACK %x %x %v", first, body, err)
	}
	env, _ := device.SignRecord(key, chainID, ledger.Record{DeviceID: "dev", Stream: "s", Seq: 1, Time: 1})
	raw.send(0x32, append(append(str(dataTopic("dev", "s")), 0, 2), env...))
	var acked, rejected bool
	for !acked || !rejected {
		first, body, err := raw.read()
		if err != nil {
			t.Fatal(err)
		}
		switch first >> 4 {
		case 4:
			if !bytes.Equal(body, []byte{0, 2}) {
				t.Fatalf("PUBACK %x: want a plain PUBACK for packet 2", body)
			}
			acked = true
		case 3:
			n := int(body[0])<<8 | int(body[1])
			topic, payload := string(body[2:2+n]), body[2+n:]
			if first&0x06 != 0 {
				payload = payload[2:] // packet id
			}
			var rj Reject
			if err := json.Unmarshal(payload, &rj); err != nil || topic != "lg/v1/dev/rejects" || rj.Reason != "replay" || rj.LastSeq == nil || *rj.LastSeq != 3 {
				t.Fatalf("3.1.1 publish on %s: %s (%v), want replay with last_seq 3", topic, payload, err)
			}
			if !bytes.Contains(payload, []byte(`"last_seq":3`)) {
				t.Fatalf("3.1.1 reject %s: no \"last_seq\":3", payload)
			}
			rejected = true
		default:
			t.Fatalf("unexpected packet %x", first)
		}
	}
}

// TestRekeyOnTheSession: a device publishes a device.rekey on
// lg/v1/<id>/rekey; once it commits, the session it came on continues
// and is checked against the new key (records signed with it commit,
// records signed with the old one are refused as bad_signature), while
// the device's other connection, authenticated with the old key, is
// ended. A tx of another kind on the rekey topic is wrong_topic.
func TestRekeyOnTheSession(t *testing.T) {
	var front atomic.Pointer[Server]
	node := nodetest.Start(t, nodetest.Options{OnCommit: func(_ *ledger.Block, txs []*ledger.Tx) {
		s := front.Load()
		for _, tx := range txs {
			if s != nil && tx.Body.Kind == ledger.KindRekey {
				s.Rekeyed(tx.Body.Subject(), tx.ID)
			}
		}
	}})
	chainID := node.Genesis.ChainID
	srv := startServer(t, node, Config{}, nil)
	front.Store(srv)
	oldKey := node.Enroll(t, "dev", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "dev", oldKey, chainID, connectOpts{})
	second := mustConnect(t, tcpAddr(srv), "dev", oldKey, chainID, connectOpts{clientID: "dev/2"})
	c.mustCommit(t, node, "s", c.record(t, "s", 1, nil))

	rekeyTopic := "lg/v1/dev/rekey"
	if r := c.publish(t, rekeyTopic, c.record(t, "s", 2, nil)); r.ReasonCode != 0x87 || r.Properties.ReasonString != "wrong_topic" {
		t.Fatalf("a record on the rekey topic: PUBACK 0x%02x %+v, want 0x87 wrong_topic", r.ReasonCode, r.Properties)
	}
	if rj := c.nextReject(t); rj.Reason != "wrong_topic" {
		t.Fatalf("reject %+v", rj)
	}

	newKey, _ := device.GenerateKey(ledger.EdDSA)
	rekey, err := device.SignRekey(oldKey, chainID, ledger.Rekey{DeviceID: "dev", Seq: 2, PublicKey: mustDER(t, newKey)})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.publish(t, rekeyTopic, rekey); r.ReasonCode != 0 {
		t.Fatalf("rekey: PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
	}
	c.receipt(t, rekey)
	select {
	case d := <-second.kicked:
		if d.ReasonCode != 0x87 {
			t.Fatalf("DISCONNECT 0x%02x, want 0x87", d.ReasonCode)
		}
	case <-time.After(wait):
		t.Fatal("the device's other connection, authenticated with the old key, is still open")
	}

	c.key = newKey
	for seq := uint64(3); seq <= 5; seq++ {
		c.mustCommit(t, node, "s", c.record(t, "s", seq, nil))
	}
	old, _ := device.SignRecord(oldKey, chainID, ledger.Record{DeviceID: "dev", Stream: "s", Seq: 6, Time: 1})
	if r := c.publish(t, dataTopic("dev", "s"), old); r.ReasonCode != 0x87 || r.Properties.ReasonString != "bad_signature" {
		t.Fatalf("record signed with the old key: PUBACK 0x%02x %+v, want 0x87 bad_signature", r.ReasonCode, r.Properties)
	}
	if rj := c.nextReject(t); rj.Reason != "bad_signature" {
		t.Fatalf("reject %+v", rj)
	}
	notStored(t, node, old)
	if _, ca, err := connect(t, tcpAddr(srv), "dev", oldKey, chainID, connectOpts{clientID: "dev/3"}); err == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("connect with the old key: %+v %v, want 0x86", ca, err)
	}
	mustConnect(t, tcpAddr(srv), "dev", newKey, chainID, connectOpts{clientID: "dev/3"})
}

// TestPubacksInOrder: the PUBACKs of records sent in one write leave in
// the order of the PUBLISHes, the refusal of one whose Propose fails at
// once (a bad signature) or that is refused before its Propose (not a
// tx) behind the records before it that wait for their commit; each committed record's receipt reaches a subscription
// whose wildcard filter matches the receipts topic.
func TestPubacksInOrder(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	key := node.Enroll(t, "ord", ledger.ES256)
	other := node.Enroll(t, "other", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	raw := dialRaw(t, tcpAddr(srv))
	if code := raw.connect(5, "ord", "ord", token(t, key, "ord", node.Genesis.ChainID)); code != 0 {
		t.Fatalf("reason code 0x%02x", code)
	}
	// SUBSCRIBE id 1, no properties, lg/v1/ord/# at QoS 1.
	raw.send(0x82, append(append([]byte{0, 1, 0}, str("lg/v1/ord/#")...), 1))
	if first, body, err := raw.read(); err != nil || first != 0x90 || len(body) < 4 || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK %x %x %v", first, body, err)
	}
	sign := func(k crypto.Signer, seq uint64) []byte {
		env, err := device.SignRecord(k, node.Genesis.ChainID, ledger.Record{DeviceID: "ord", Stream: "s", Seq: seq, Time: 1})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	// A record signed with another device's key is refused by the
	// chain's check, bytes that are no tx before it is proposed: both
	// answered in their place, behind the records before them.
	envs := [][]byte{sign(key, 1), sign(key, 2), sign(key, 3), sign(other, 4), []byte("no tx"), sign(key, 4), sign(key, 5)}
	const forged, junk = 3, 4 // their indexes
	var burst []byte
	for i, env := range envs {
		body := append(append(str(dataTopic("ord", "s")), 0, byte(i+1), 0), env...) // packet id i+1, no properties
		burst = append(append(append(burst, 0x32), vbi(len(body))...), body...)
	}
	if _, err := raw.c.Write(burst); err != nil {
		t.Fatal(err)
	}
	next := 1
	receipts := map[[32]byte]bool{}
	for next <= len(envs) || len(receipts) < len(envs)-2 {
		first, body, err := raw.read()
		if err != nil {
			t.Fatalf("after %d PUBACKs and %d receipts: %v", next-1, len(receipts), err)
		}
		switch first & 0xf0 {
		case 0x40: // PUBACK
			id := int(body[0])<<8 | int(body[1])
			if id != next {
				t.Fatalf("PUBACK of packet %d, want %d: out of order", id, next)
			}
			code := byte(0)
			if len(body) > 2 {
				code = body[2]
			}
			want := byte(0)
			switch id - 1 {
			case forged:
				want = 0x87
			case junk:
				want = codeOf(ledger.ReasonMalformed).Code
			}
			if code != want {
				t.Fatalf("PUBACK of packet %d: 0x%02x, want 0x%02x", id, code, want)
			}
			next++
		case 0x30: // a receipt or a reject; a QoS 1 one carries a packet id
			topic := string(body[2 : 2+(int(body[0])<<8|int(body[1]))])
			rest := body[2+len(topic):]
			if first&0x06 != 0 {
				raw.send(0x40, []byte{rest[0], rest[1]})
				rest = rest[2:]
			}
			n, i := 0, 0 // skip the properties
			for mul := 1; ; mul *= 128 {
				n += int(rest[i]&0x7f) * mul
				i++
				if rest[i-1]&0x80 == 0 {
					break
				}
			}
			payload := rest[i+n:]
			if topic == "lg/v1/ord/receipts" {
				rc, err := ledger.DecodeReceipt(payload)
				if err != nil {
					t.Fatal(err)
				}
				receipts[ledger.TxID(rc.Tx)] = true
			}
		}
	}
	for i, env := range envs {
		if receipts[ledger.TxID(env)] != (i != forged && i != junk) {
			t.Errorf("record %d: receipt %v", i, receipts[ledger.TxID(env)])
		}
	}
}

// TestPublishNotForwarded: mochi does nothing with a device's publish
// that the hook takes (OnPublish returns it ignored, at QoS 0): a QoS 1
// record with the retain flag gets one PUBACK, after it committed; it
// is neither retained nor forwarded to a subscriber of its topic, which
// gets its receipt.
func TestPublishNotForwarded(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "dev", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	addr := tcpAddr(srv)
	sub := mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/sub", only: []string{}, subscribe: []string{"lg/v1/dev/#"}})

	raw := dialRaw(t, addr)
	if code := raw.connect(4, "dev", "dev", token(t, key, "dev", chainID)); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		env := sub.record(t, "s", seq, nil)
		id := byte(seq)
		raw.send(0x33, append(append(str(dataTopic("dev", "s")), 0, id), env...)) // QoS 1, retain
		first, body, err := raw.read()
		if err != nil || first != 0x40 || !bytes.Equal(body, []byte{0, id}) {
			t.Fatalf("record %d: PUBACK %x %x %v", seq, first, body, err)
		}
		// The PUBACK came after the commit.
		if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
			t.Fatalf("record %d acknowledged, not in the ledger: %v", seq, err)
		}
		raw.send(0xc0, nil) // PINGREQ: its answer comes next, no second PUBACK before it
		if first, _, err := raw.read(); err != nil || first != 0xd0 {
			t.Fatalf("after the PUBACK of record %d: %x %v, want PINGRESP", seq, first, err)
		}
		// A forwarded copy would have been queued to sub before the
		// receipt.
		sub.receipt(t, env)
		select {
		case m := <-sub.other:
			t.Fatalf("subscriber got %s", m.Topic)
		default:
		}
	}
	if _, ok := srv.broker.Topics.Retained.Get(dataTopic("dev", "s")); ok {
		t.Fatal("a device's record was retained")
	}
}

// TestKeepalive: a client that sends a packet within each keepalive
// stays connected well past 1.5 keepalives, also though the server
// moves its connection's deadline at most once a second
// (sizeGuard.SetDeadline); one that falls silent is disconnected.
func TestKeepalive(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	key := node.Enroll(t, "dev", ledger.ES256)
	srv := startServer(t, node, Config{}, nil)
	raw := dialRaw(t, tcpAddr(srv))
	body := connectBody(4, "dev", "dev", token(t, key, "dev", node.Genesis.ChainID))
	body[9] = 1 // keepalive 1 s: mochi's deadline is 1 s (1 + 1/2 in whole seconds)
	raw.send(0x10, body)
	if first, b, err := raw.read(); err != nil || first != 0x20 || b[1] != 0 {
		t.Fatalf("CONNACK %x %x %v", first, b, err)
	}
	// A PINGREQ every 200 ms for 4 s: 4 deadlines, none missed.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for range 20 {
		<-tick.C
		raw.send(0xc0, nil)
		if first, _, err := raw.read(); err != nil || first != 0xd0 {
			t.Fatalf("PINGRESP: %x %v", first, err)
		}
	}
	// Then silence: the server closes the connection (within the wait).
	if err := raw.closed(); err != nil {
		t.Fatalf("a silent client was not disconnected: %v", err)
	}
}
