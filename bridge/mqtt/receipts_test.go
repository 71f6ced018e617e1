package mqtt

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// TestReceiptSubscribers: a device's client gets the receipts of the
// device's records while it holds a subscription that matches its
// receipts topic, through a session kept after it left and a takeover
// that keeps the session too, and not after it unsubscribed, after a
// takeover with clean start, or after its kept session expired. The
// server counts these subscriptions (receiptSubs) instead of asking
// mochi's topic tree at every commit; the count follows the same
// events.
func TestReceiptSubscribers(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	chainID := node.Genesis.ChainID
	key := node.Enroll(t, "dev", ledger.ES256)
	srv := startServer(t, node, Config{MaxDeviceSessions: 8}, nil)
	addr := tcpAddr(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
	defer cancel()

	// pub publishes the device's records; it subscribes to its rejects
	// only.
	pub := mustConnect(t, addr, "dev", key, chainID, connectOpts{only: []string{"lg/v1/dev/rejects"}})
	var seq uint64
	commit := func() []byte {
		t.Helper()
		seq++
		env := pub.record(t, "s", seq, nil)
		if r := pub.publish(t, dataTopic("dev", "s"), env); r.ReasonCode != 0 {
			t.Fatalf("record %d: PUBACK 0x%02x", seq, r.ReasonCode)
		}
		return env
	}
	// quiet checks that c got no receipt before the reject of a publish
	// that follows the last record's PUBACK: the broker queues a
	// record's receipt before its PUBACK is written, and c's messages
	// leave in the order they were queued.
	quiet := func(c *client) {
		t.Helper()
		if r := pub.publish(t, dataTopic("dev", "s"), []byte("not a tx")); r.ReasonCode == 0 {
			t.Fatal("a malformed record was accepted")
		}
		c.nextReject(t)
		select {
		case <-c.receipts:
			t.Fatal("a receipt arrived without a subscription to it")
		default:
		}
	}
	none := func(why string) {
		t.Helper()
		eventually(t, "no receipt subscription counted "+why, func() bool { return !srv.receipts.any("dev") })
	}
	none("at the start")
	commit()

	// A 3.1.1 client (mosquitto_sub) gets its receipt.
	if _, err := exec.LookPath("mosquitto_sub"); err == nil {
		sub := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", "127.0.0.1", "-p", strings.Split(addr, ":")[1],
			"-i", "dev/mosquitto", "-u", "dev", "-P", token(t, key, "dev", chainID), "-t", "lg/v1/dev/receipts", "-C", "1", "-N")
		var out bytes.Buffer
		sub.Stdout = &out
		if err := sub.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "mosquitto_sub's subscription counted", func() bool { return srv.receipts.any("dev") })
		env := commit()
		if err := sub.Wait(); err != nil {
			t.Fatalf("mosquitto_sub: %v", err)
		}
		if rc, err := ledger.DecodeReceipt(out.Bytes()); err != nil || !bytes.Equal(rc.Tx, env) {
			t.Fatalf("mosquitto_sub got %x: %v", out.Bytes(), err)
		}
		none("after mosquitto_sub left")
	}

	// Subscribed, unsubscribed, subscribed again through a wildcard.
	a := mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/a"})
	a.receipt(t, commit())
	if _, err := a.pc.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"lg/v1/dev/receipts"}}); err != nil {
		t.Fatal(err)
	}
	commit()
	quiet(a)
	none("after the unsubscribe")
	if sa, err := a.pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "lg/v1/dev/+", QoS: 1}}}); err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe lg/v1/dev/+: %v %v", sa, err)
	}
	a.receipt(t, commit())
	// A shared subscription is not the device's to take.
	if sa, err := a.pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/lg/v1/dev/receipts", QoS: 1}}}); err == nil && sa.Reasons[0] < 0x80 {
		t.Fatalf("subscribe $share/g/lg/v1/dev/receipts: granted 0x%02x", sa.Reasons[0])
	}
	_ = a.pc.Disconnect(&paho.Disconnect{})
	none("after the client's session ended")

	// A session kept after its client left gets the receipts of what
	// committed meanwhile when the client comes back, and keeps its
	// subscription.
	k := mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/k", keep: true})
	_ = k.pc.Disconnect(&paho.Disconnect{})
	eventually(t, "dev/k left", func() bool { return len(srv.Connected()) == 1 })
	away := commit()
	k = mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/k", keep: true, only: []string{}})
	k.receipt(t, away)
	k.receipt(t, commit())

	// A takeover that keeps the session keeps its subscriptions; one
	// with clean start ends them.
	k2 := mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/k", keep: true, only: []string{}})
	k2.receipt(t, commit())
	k3 := mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/k", only: []string{"lg/v1/dev/rejects"}})
	commit()
	quiet(k3)
	none("after a takeover with clean start")
	select {
	case <-k2.receipts:
		t.Fatal("a client taken over got a receipt")
	default:
	}

	// A kept session that expired takes its subscriptions with it: a new
	// session with the same client id does not inherit them.
	e := mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/e", keep: true, expiry: 1})
	e.receipt(t, commit())
	_ = e.pc.Disconnect(&paho.Disconnect{})
	eventually(t, "dev/e expired", func() bool { _, ok := srv.broker.Clients.Get("dev/e"); return !ok })
	none("after the kept session expired")
	e = mustConnect(t, addr, "dev", key, chainID, connectOpts{clientID: "dev/e", keep: true, only: []string{"lg/v1/dev/rejects"}})
	commit()
	quiet(e)
}

// len is how many client ids and devices r holds.
func (r *receiptSubs) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.clients) + len(r.devices)
}
