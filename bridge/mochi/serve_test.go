// The patch's tests (README.md): a client over a ReadWaiter is served by
// one goroutine of its own, and the writing goroutine runs only while the
// client's queue has packets.

package mqtt

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// waitConn is a TCP connection that is a ReadWaiter. With park set,
// WaitReadable parks the client: a goroutine of the connection's waits,
// and resumes it.
type waitConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	served chan struct{}
	calls  atomic.Int32
	park   bool
	// While WaitReadable runs: waits counts its calls, and buffered
	// those that found the client holding a read buffer (its client
	// looked up in s).
	s        *Server
	waits    atomic.Int32
	buffered atomic.Int32
	parked   atomic.Int32 // clients parked, not resumed yet
}

func (c *waitConn) CanWaitReadable() bool { return true }

func (c *waitConn) WaitReadable(resume func(error)) error {
	c.waits.Add(1)
	if cl, ok := c.s.Clients.Get("zen"); ok && cl.Net.bconn != nil {
		c.buffered.Add(1)
	}
	if !c.park {
		return c.wait()
	}
	c.parked.Add(1)
	go func() {
		err := c.wait()
		c.parked.Add(-1)
		resume(err)
	}()
	return ErrParked
}

func (c *waitConn) wait() error {
	var b [1]byte
	return c.rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}

func (c *waitConn) Served() {
	if c.calls.Add(1) == 1 {
		close(c.served)
	}
}

// connectServed connects client "zen" to s through a waitConn (which
// parks it if park is set) with keepalive k seconds, checks that it is
// served by a goroutine of its own, and returns the client's end and the
// server's.
func connectServed(t *testing.T, s *Server, k byte, park bool) (net.Conn, *waitConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	wc := &waitConn{TCPConn: sc.(*net.TCPConn), rc: rc, served: make(chan struct{}), park: park, s: s}
	t.Cleanup(func() { wc.Close() })
	est := make(chan error, 1)
	go func() { est <- s.EstablishConnection("t1", wc) }()
	if _, err := client.Write(connect311(k)); err != nil {
		t.Fatal(err)
	}
	expect(t, client, []byte{packets.Connack << 4, 2, 0, 0})
	if err := <-est; !errors.Is(err, ErrServing) {
		t.Fatalf("EstablishConnection: %v, want ErrServing", err)
	}
	return client, wc
}

// disconnectServed disconnects the client of connectServed and checks
// that it is gone.
func disconnectServed(t *testing.T, s *Server, client net.Conn, wc *waitConn) {
	t.Helper()
	if _, err := client.Write([]byte{packets.Disconnect << 4, 0}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, wc)
	if got := atomic.LoadInt64(&s.Info.ClientsConnected); got != 0 {
		t.Fatalf("%d clients connected after the disconnect, want 0", got)
	}
	if _, ok := s.Clients.Get("zen"); ok {
		t.Fatal("the clean session's client is still known")
	}
	if !settled(func() bool { return goroutinesIn("(*Server).serve(") == 0 && goroutinesIn("(*Server).resume(") == 0 }) {
		t.Fatal("a goroutine still serves the client that left")
	}
	if wc.calls.Load() != 1 {
		t.Fatalf("Served called %d times", wc.calls.Load())
	}
}

// connect311 is a 3.1.1 CONNECT of client id "zen", clean session, with
// keepalive k seconds.
func connect311(k byte) []byte {
	return []byte{packets.Connect << 4, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, k, 0, 3, 'z', 'e', 'n'}
}

// expect reads len(want) bytes from c and compares them with want.
func expect(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %x: %v", want, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func waitServed(t *testing.T, wc *waitConn) {
	t.Helper()
	select {
	case <-wc.served:
	case <-time.After(10 * time.Second):
		t.Fatal("Served was not called")
	}
}

func TestServeClient(t *testing.T) {
	s := newServer()
	t.Cleanup(func() { s.Close() }) // after dialServed's cleanup has closed the connection
	client, wc := connectServed(t, s, 60, false)
	// Two packets in one write, and one after a silence: both answered.
	if _, err := client.Write([]byte{packets.Pingreq << 4, 0, packets.Pingreq << 4, 0}); err != nil {
		t.Fatal(err)
	}
	expect(t, client, []byte{packets.Pingresp << 4, 0, packets.Pingresp << 4, 0})
	time.Sleep(50 * time.Millisecond)
	if _, err := client.Write([]byte{packets.Pingreq << 4, 0}); err != nil {
		t.Fatal(err)
	}
	expect(t, client, []byte{packets.Pingresp << 4, 0})
	// One goroutine serves the client (the one that established it
	// returned ErrServing above).
	if !settled(func() bool { return goroutinesIn("(*Server).serve(") == 1 }) {
		t.Fatalf("%d goroutines serve the client, want 1", goroutinesIn("(*Server).serve("))
	}
	if got := atomic.LoadInt64(&s.Info.ClientsConnected); got != 1 {
		t.Fatalf("%d clients connected, want 1", got)
	}
	// While it waited, the client held no read buffer.
	if n := wc.buffered.Load(); n != 0 || wc.waits.Load() < 3 {
		t.Fatalf("%d of %d waits held a read buffer, want none", n, wc.waits.Load())
	}
	disconnectServed(t, s, client, wc)
}

// TestServeParked: a client parked by its connection holds no goroutine
// while it is silent, is served again when it sends, and ends as one
// that was never parked.
func TestServeParked(t *testing.T) {
	s := newServer()
	t.Cleanup(func() { s.Close() }) // after dialServed's cleanup has closed the connection
	client, wc := connectServed(t, s, 60, true)
	unserved := func() bool {
		return wc.parked.Load() == 1 && goroutinesIn("(*Server).serve(") == 0 && goroutinesIn("(*Server).resume(") == 0
	}
	for i := range 3 {
		if !settled(unserved) {
			t.Fatalf("wait %d: a goroutine of the server still serves the parked client", i+1)
		}
		if got := atomic.LoadInt64(&s.Info.ClientsConnected); got != 1 {
			t.Fatalf("%d clients connected while parked, want 1", got)
		}
		if _, err := client.Write([]byte{packets.Pingreq << 4, 0}); err != nil {
			t.Fatal(err)
		}
		expect(t, client, []byte{packets.Pingresp << 4, 0})
	}
	if n := wc.buffered.Load(); n != 0 {
		t.Fatalf("%d of %d waits held a read buffer, want none", n, wc.waits.Load())
	}
	disconnectServed(t, s, client, wc)
}

// settled waits up to 5 s for ok to hold, and returns whether it did.
func settled(ok func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// goroutinesIn counts the goroutines with fn in their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}

func TestServeKeepalive(t *testing.T) {
	s := newServer()
	t.Cleanup(func() { s.Close() }) // after dialServed's cleanup has closed the connection
	client, wc := connectServed(t, s, 1, false)
	// Silent past 1.5 keepalives: the server ends the connection.
	waitServed(t, wc)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a connection the server ended", n)
	}
}

// panicHook panics on every packet a client sends after CONNECT.
type panicHook struct{ HookBase }

func (h *panicHook) ID() string                         { return "panic" }
func (h *panicHook) Provides(b byte) bool               { return b == OnPacketRead }
func (h *panicHook) SetOpts(*slog.Logger, *HookOptions) {}
func (h *panicHook) OnPacketRead(cl *Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Connect {
		panic("a bug")
	}
	return pk, nil
}

func TestServePanic(t *testing.T) {
	s := newServer()
	t.Cleanup(func() { s.Close() }) // after dialServed's cleanup has closed the connection
	_ = s.AddHook(new(panicHook), nil)
	client, wc := connectServed(t, s, 60, false)
	if _, err := client.Write([]byte{packets.Pingreq << 4, 0}); err != nil {
		t.Fatal(err)
	}
	// The client ends; the process, and the server, go on.
	waitServed(t, wc)
	if got := atomic.LoadInt64(&s.Info.ClientsConnected); got != 0 {
		t.Fatalf("%d clients connected, want 0", got)
	}
}

func TestEnqueueDrains(t *testing.T) {
	cl, r, w := newTestClient()
	defer cl.Stop(nil)
	defer r.Close()
	defer w.Close()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}}
	// As if a drain ran already: the queue fills up to its
	// MaximumClientWritesPending, 3, and refuses the fourth.
	cl.State.outbound.writing = true
	for i := range 4 {
		if ok := cl.Enqueue(&pk); ok != (i < 3) {
			t.Fatalf("packet %d: queued %v", i+1, ok)
		}
	}
	go cl.drain()
	expect(t, r, []byte{packets.Pingresp << 4, 0, packets.Pingresp << 4, 0, packets.Pingresp << 4, 0})
	// Once the queue is empty the drain ends, and the queue holds no
	// memory.
	idle := func() bool {
		q := &cl.State.outbound
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.writing && q.pks == nil
	}
	for deadline := time.Now().Add(5 * time.Second); !idle(); {
		if time.Now().After(deadline) {
			t.Fatal("drain still running, or the queue kept its memory, once empty")
		}
		time.Sleep(time.Millisecond)
	}
	if q := atomic.LoadInt32(&cl.State.outboundQty); q != 0 {
		t.Fatalf("outboundQty %d, want 0", q)
	}
}

// TestSubscriptionsSmall: a Subscriptions of one subscription holds a
// pointer to it, not a map group of eight whole values (README.md).
func TestSubscriptionsSmall(t *testing.T) {
	const n = 2000
	subs := make([]*Subscriptions, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range subs {
		subs[i] = NewSubscriptions()
		subs[i].Add("client", packets.Subscription{Filter: "lg/v1/dev/receipts", Qos: 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; per > 512 {
		t.Fatalf("a Subscriptions of one subscription holds %d bytes, want at most 512", per)
	}
	runtime.KeepAlive(subs)
}
