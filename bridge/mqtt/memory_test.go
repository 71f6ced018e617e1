package mqtt

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// writeHeapProfile writes a heap profile to prefix+suffix, if prefix is
// not "".
func writeHeapProfile(tb testing.TB, prefix, suffix string) {
	if prefix == "" {
		return
	}
	f, err := os.Create(prefix + suffix)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
}

// memory is what the process holds.
type memory struct {
	heap, stack, rss uint64 // bytes: heap in use, stacks in use, resident set
	// peak is the largest resident set since the last resetPeak (or
	// the start), in bytes: what the process held between GCs.
	peak uint64
	// grown is the stacks in use at the end of a phase, before the GCs
	// that shrink them (phaseEnd); 0 if not measured.
	grown uint64
	// returned is the resident set once the freed pages are handed back
	// to the OS (phaseEnd); 0 if not measured.
	returned   uint64
	goroutines int
}

func measure(tb testing.TB) memory {
	tb.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: ms.HeapInuse, stack: ms.StackInuse, rss: procStatus(tb, "VmRSS"), peak: procStatus(tb, "VmHWM"),
		goroutines: runtime.NumGoroutine()}
}

// procStatus reads a size in kB from /proc/self/status, in bytes.
func procStatus(tb testing.TB, field string) uint64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status:", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// resetPeak resets the peak resident set to the current one
// (proc_pid_clear_refs(5): writing 5).
func resetPeak(tb testing.TB) {
	tb.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		tb.Skip("cannot reset the peak RSS:", err)
	}
}

// dialConnect connects as device id (username), with client id clientID
// and password, over a raw TCP connection as MQTT 5, and reads the
// CONNACK.
func dialConnect(tb testing.TB, addr, clientID, id, password string) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		tb.Fatal(err)
	}
	body := connectBody(5, clientID, id, password)
	if _, err := c.Write(append(append([]byte{0x10}, vbi(len(body))...), body...)); err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	// A v5 CONNACK: 0x20, its length, flags, the reason code, properties.
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil || head[0] != 0x20 || head[3] != 0 {
		tb.Fatalf("connect %s: CONNACK %x, %v", clientID, head, err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(head[1])-2); err != nil {
		tb.Fatalf("connect %s: CONNACK: %v", clientID, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

func pollUntil(tb testing.TB, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionsLeaveNothing connects devices, one of them twice, each
// subscribed to its receipts, and
// checks that once they disconnect nothing of their sessions stays: not
// in the server's maps, the listener's connections or mochi's clients.
func TestSessionsLeaveNothing(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	s := startServer(t, node, Config{}, nil)
	addr := tcpAddr(s)
	var conns []net.Conn
	for i := range 3 {
		id := fmt.Sprintf("dev-%d", i)
		key := node.Enroll(t, id, ledger.EdDSA)
		conns = append(conns, dialConnect(t, addr, id, id, token(t, key, id, node.Genesis.ChainID)))
		if i == 0 {
			conns = append(conns, dialConnect(t, addr, id+"/2", id, token(t, key, id, node.Genesis.ChainID)))
		}
	}
	pollUntil(t, func() bool { return len(s.Connected()) == len(conns) })
	// Each subscribes to its receipts.
	for i, c := range conns {
		dev := fmt.Sprintf("dev-%d", max(i-1, 0))                                    // conns: dev-0, dev-0/2, dev-1, dev-2
		body := append([]byte{0, 1, 0}, append(str("lg/v1/"+dev+"/receipts"), 1)...) // v5 SUBSCRIBE, packet id 1, no properties
		if _, err := c.Write(append(append([]byte{0x82}, vbi(len(body))...), body...)); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(t, func() bool { return s.receipts.len() == len(conns)+3 }) // 4 client ids, 3 devices
	for _, c := range conns {
		c.Close()
	}
	left := func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		var kept []string
		for _, l := range s.listeners {
			l.mu.Lock()
			if len(l.conns) > 0 {
				kept = append(kept, fmt.Sprintf("listener %s: %d connections", l.id, len(l.conns)))
			}
			l.mu.Unlock()
		}
		for _, cl := range s.broker.Clients.GetAll() {
			if !cl.Net.Inline {
				kept = append(kept, "mochi: client "+cl.ID)
			}
		}
		for name, n := range map[string]int{"sessions": len(s.sessions), "queues": len(s.queues),
			"requests": len(s.requests), "devices": len(s.devices),
			"receipt subscribers": s.receipts.len()} {
			if n > 0 {
				kept = append(kept, fmt.Sprintf("%s: %d", name, n))
			}
		}
		return strings.Join(kept, ", ")
	}
	deadline := time.Now().Add(wait)
	for left() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("after every device left: %s", left())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoRetainedScan: only filters that can match one of the device's
// manifest topics keep mochi's search of the retained messages.
func TestNoRetainedScan(t *testing.T) {
	for _, c := range []struct {
		filter string
		scan   bool
	}{
		{"lg/v1/dev/receipts", false},
		{"lg/v1/dev/rejects", false},
		{"lg/v1/dev/answers/#", false},
		{"lg/v1/dev/config/verdict", false},
		{"lg/v1/dev/config", true},
		{"lg/v1/dev/firmware", true},
		{"lg/v1/dev/config/#", true}, // matches the parent level [MQTT-4.7.1-2]
		{"lg/v1/dev/+", true},
		{"lg/v1/dev/#", true},
		{"lg/v1/+/config", true},
		{"lg/v1/other/config", false},
	} {
		in := packets.Subscriptions{{Filter: c.filter, Qos: 1}}
		out := noRetainedScan("dev", in)
		if got := out[0].RetainHandling != 2; got != c.scan {
			t.Errorf("%s: retained scan %v, want %v", c.filter, got, c.scan)
		}
		if in[0].RetainHandling != 0 {
			t.Errorf("%s: the filters given were changed", c.filter)
		}
	}
	// A subscriber that asked for no retained messages keeps that.
	if out := noRetainedScan("dev", packets.Subscriptions{{Filter: "lg/v1/dev/config", RetainHandling: 2}}); out[0].RetainHandling != 2 {
		t.Errorf("lg/v1/dev/config with retain handling 2: got %d", out[0].RetainHandling)
	}
}

// TestAnsweredKeepsNoPending: once every QoS 1 publish of a session is
// answered, the session holds no map of pending packet ids (a map grown
// by a burst would stay as large while the device is connected).
func TestAnsweredKeepsNoPending(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	s := startServer(t, node, Config{}, nil)
	key := node.Enroll(t, "dev", ledger.EdDSA)
	c := mustConnect(t, tcpAddr(s), "dev", key, node.Genesis.ChainID, connectOpts{})
	pending := func() (n int, held bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, ss := range s.sessions {
			ss.mu.Lock()
			n, held = len(ss.pending), ss.pending != nil
			ss.mu.Unlock()
		}
		return n, held
	}
	for seq := range uint64(3) {
		c.mustCommit(t, node, "s", c.record(t, "s", seq+1, nil))
	}
	// The PUBACK goes out after the id is released.
	if n, held := pending(); held {
		t.Fatalf("after every publish was answered: a pending map with %d ids", n)
	}
}

// TestIdleDeviceCost: a connected device that is silent, subscribed as
// the SDK does, is served by one goroutine whose stack shrinks to a few
// KiB (bridge/mochi/README.md), until it is parked (not here:
// TestIdleDevicesParked). mochi as released holds two goroutines and
// 20 KiB of stacks a device (docs/benchmarks.md, "Per-session memory").
func TestIdleDeviceCost(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	s := startServer(t, node, Config{ParkAfter: -1}, nil)
	addr := tcpAddr(s)
	const n = 40
	var ids []string
	var passwords []string
	for i := range n {
		id := fmt.Sprintf("idle-%d", i)
		key := node.Enroll(t, id, ledger.EdDSA)
		ids = append(ids, id)
		passwords = append(passwords, token(t, key, id, node.Genesis.ChainID))
	}
	before := measure(t)
	var conns []net.Conn
	for i, id := range ids {
		c := dialConnect(t, addr, id, id, passwords[i])
		conns = append(conns, c)
		defer c.Close()
		// The SDK's three filters, then a ping: each answered.
		body := []byte{0, 1, 0} // packet id 1, no properties
		for _, f := range []string{"/receipts", "/rejects", "/answers/#"} {
			body = append(append(body, str("lg/v1/"+id+f)...), 1)
		}
		if _, err := c.Write(append(append([]byte{0x82}, vbi(len(body))...), body...)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{0xc0, 0}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		var suback [8]byte // 0x90, 6, packet id, no properties, three codes
		var pingresp [2]byte
		if _, err := io.ReadFull(c, suback[:]); err != nil || suback[0] != 0x90 || suback[5] != 1 || suback[6] != 1 || suback[7] != 1 {
			t.Fatalf("SUBACK %x, %v", suback, err)
		}
		if _, err := io.ReadFull(c, pingresp[:]); err != nil || pingresp[0] != 0xd0 {
			t.Fatalf("PINGRESP %x, %v", pingresp, err)
		}
	}
	pollUntil(t, func() bool { return len(s.Connected()) == n })
	// The goroutines that answered the CONNECTs end right after them:
	// give them a moment. Each measure collects, and a collection
	// halves a stack at most: three more leave the stacks as small as
	// they get.
	idle := measure(t)
	for deadline := time.Now().Add(5 * time.Second); idle.goroutines-before.goroutines > n && time.Now().Before(deadline); idle = measure(t) {
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		idle = measure(t)
	}
	if g := idle.goroutines - before.goroutines; g != n {
		t.Errorf("%d idle devices hold %d goroutines, want one each", n, g)
	}
	if per := (idle.stack - min(idle.stack, before.stack)) / n; per > 12<<10 {
		t.Errorf("%d idle devices hold %d bytes of stack each, want at most 12 KiB", n, per)
	}
	if _, err := conns[0].Write([]byte{0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	var pingresp [2]byte
	if _, err := io.ReadFull(conns[0], pingresp[:]); err != nil || pingresp[0] != 0xd0 {
		t.Fatalf("PINGRESP after the silence %x, %v", pingresp, err)
	}
}
