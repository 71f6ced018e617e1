//go:build linux

package mqtt

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// TestIdleDevicesParked: devices silent for longer than ParkAfter hold
// no goroutine (parker), and each is served again when it sends: a
// ping, a subscription, a publish. A parked device gets what is sent to
// it; one whose session is taken over is disconnected; and the server
// closes with devices parked.
func TestIdleDevicesParked(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	s := startServer(t, node, Config{ParkAfter: 100 * time.Millisecond}, nil)
	addr := tcpAddr(s)
	const n = 20
	var conns []net.Conn
	var ids, pass []string
	for i := range n {
		id := fmt.Sprintf("parked-%d", i)
		key := node.Enroll(t, id, ledger.EdDSA)
		ids = append(ids, id)
		pass = append(pass, token(t, key, id, node.Genesis.ChainID))
		conns = append(conns, dialConnect(t, addr, id, id, pass[i]))
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	pollUntil(t, func() bool { return len(s.Connected()) == n })
	allParked := func() bool { return parkedDevices(s) == n && goroutinesIn("(*Server).readAll(") == 0 }
	waitFor(t, "every silent device parked, none read by a goroutine", allParked)

	// Each sends, and is answered: by a goroutine that parks again.
	for round, send := range []struct {
		name string
		pk   func(id string) []byte
		want byte // the answer's first byte
	}{
		{"ping", func(string) []byte { return []byte{0xc0, 0} }, 0xd0},
		{"subscribe", func(id string) []byte {
			body := append([]byte{0, 1, 0}, append(str("lg/v1/"+id+"/rejects"), 1)...)
			return append(append([]byte{0x82}, vbi(len(body))...), body...)
		}, 0x90},
	} {
		for i, c := range conns {
			if _, err := c.Write(send.pk(ids[i])); err != nil {
				t.Fatal(err)
			}
			if first := readPacket(t, c); first != send.want {
				t.Fatalf("round %d (%s), device %d: got %#x, want %#x", round, send.name, i, first, send.want)
			}
		}
		waitFor(t, send.name+": every device parked again", allParked)
	}

	// A publish that is refused: its PUBACK, and the reject sent to the
	// parked device on the rejects topic it subscribed to.
	body := append(str("lg/v1/"+ids[0]+"/data/s"), 0, 7, 0) // packet id 7, no properties
	body = append(body, "not a tx"...)
	if _, err := conns[0].Write(append(append([]byte{0x32}, vbi(len(body))...), body...)); err != nil {
		t.Fatal(err)
	}
	got := map[byte]bool{}
	for !got[0x40] || !got[0x32] {
		got[readPacket(t, conns[0])] = true
	}
	waitFor(t, "the publisher parked again", allParked)

	// The first device connects again with its client id: the parked
	// connection is told so (v5 DISCONNECT) and ends.
	old := conns[0]
	conns[0] = dialConnect(t, addr, ids[0], ids[0], pass[0])
	if first := readPacket(t, old); first != 0xe0 {
		t.Fatalf("the connection taken over got %#x, want DISCONNECT", first)
	}
	_ = old.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadAll(old); err != nil {
		t.Fatalf("the connection taken over did not end: %v", err)
	}
	waitFor(t, "the new connection parked", allParked)

	// Closing the server ends the parked devices' connections.
	s.Close()
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			if _, err := c.Read(make([]byte, 64)); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("device %d: still connected after the server closed", i)
				}
				break
			}
		}
	}
}

// TestParkedKeepalive: a parked device that stays silent past 1.5 times
// its keepalive is disconnected, as one that was not parked.
func TestParkedKeepalive(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	s := startServer(t, node, Config{ParkAfter: 100 * time.Millisecond}, nil)
	key := node.Enroll(t, "sleepy", ledger.EdDSA)
	c, err := net.DialTimeout("tcp", tcpAddr(s), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := connectBody(5, "sleepy", "sleepy", token(t, key, "sleepy", node.Genesis.ChainID))
	body[9] = 2 // keepalive 2 s
	if _, err := c.Write(append(append([]byte{0x10}, vbi(len(body))...), body...)); err != nil {
		t.Fatal(err)
	}
	if first := readPacket(t, c); first != 0x20 {
		t.Fatalf("CONNACK: got %#x", first)
	}
	connected := time.Now()
	waitFor(t, "the device parked", func() bool { return parkedDevices(s) == 1 })
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the silent device was not disconnected: %v", err)
	}
	// Not before 1.5 × 2 s [MQTT-3.1.2-22]; the deadline is a second
	// later (sizeGuard.SetDeadline).
	if silent := time.Since(connected); silent < 3*time.Second {
		t.Fatalf("disconnected after %v of silence, before 1.5 keepalives", silent)
	}
	pollUntil(t, func() bool { return len(s.Connected()) == 0 && parkedDevices(s) == 0 })
}

// parkedDevices counts the devices the server's parkers hold.
func parkedDevices(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.listeners {
		if l.park != nil {
			l.park.mu.Lock()
			n += len(l.park.parked)
			l.park.mu.Unlock()
		}
	}
	return n
}

// readPacket reads one packet from c and returns its first byte.
func readPacket(t *testing.T, c net.Conn) byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		t.Fatal(err)
	}
	length, mult := 0, 1
	for {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatal(err)
		}
		length += int(b[0]&0x7f) * mult
		mult <<= 7
		if b[0]&0x80 == 0 {
			break
		}
	}
	if _, err := io.CopyN(io.Discard, c, int64(length)); err != nil {
		t.Fatal(err)
	}
	return first[0]
}

// waitFor waits up to the test's wait for ok, or fails with what.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", wait, what)
		}
	}
}

// goroutinesIn counts the goroutines with fn in their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}
