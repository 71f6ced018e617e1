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
	goroutines       int
}

func measure(tb testing.TB) memory {
	tb.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: ms.HeapInuse, stack: ms.StackInuse, rss: rss(tb), goroutines: runtime.NumGoroutine()}
}

// rss reads VmRSS from /proc/self/status.
func rss(tb testing.TB) uint64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status:", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
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

// TestSessionsLeaveNothing connects devices, one of them twice, and
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
			"requests": len(s.requests), "devices": len(s.devices)} {
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
