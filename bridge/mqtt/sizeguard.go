package mqtt

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sizeGuard is a client connection that follows the MQTT framing of what
// the client sends and ends it at the first packet over the server's
// Maximum Packet Size, counting the whole packet as MQTT 5 does (2.1.4):
// a v5 client is told DISCONNECT 0x95 packet too large first
// (MQTT 5 3.2.2.3.6, 4.13.1). mochi checks a limit too, when it reads a
// fixed header, but counts the packet without its length bytes and only
// closes the connection.
type sizeGuard struct {
	net.Conn
	max uint32 // the largest packet a client may send, in bytes

	// The framing of the bytes read so far; only the reading goroutine
	// touches it.
	skip   int64  // bytes of the current packet's body still to pass
	inLen  bool   // reading the remaining length
	length uint32 // remaining length so far
	lenN   int    // bytes of it so far
	over   bool   // a packet over max was seen: the connection ends

	deadline time.Time // the deadline set on the connection; only the reading goroutine sets it

	// The socket under a plain connection, whose readability mochi may
	// wait for (mochi.ReadWaiter); nil under TLS. served ends the
	// connection once mochi's goroutine for the client is done.
	rc        syscall.RawConn
	served    func()
	readablef func(fd uintptr) bool // readable, made once
	polled    bool                  // WaitReadable's first look at the socket is done
	// distrust: WaitReadable looks at the socket at every wake-up of
	// the poller, not only the first, until it returns once: the
	// client was parked, and the poller may still hold the readiness of
	// bytes that its goroutine read after resuming.
	distrust bool

	// Parking (parker): a wait that lasts is handed to the parker, and
	// the goroutine ends. park is nil where waits are not parked.
	park    *parker
	fd      int32 // the socket
	swept   bool  // park sweeps the guard; only the reading goroutine touches it
	pmu     sync.Mutex
	waiting bool        // WaitReadable waits in Go's poller; guarded by pmu
	since   time.Time   // when that wait began; guarded by pmu
	kicked  bool        // the sweep ended the wait to park it; guarded by pmu
	until   time.Time   // while parked: the keepalive deadline; guarded by park.mu
	expiry  *time.Timer // ends the client at until while parked; made at the first park; guarded by park.mu
	resume  func(error) // while parked: mochi's, to serve the client again; guarded by park.mu

	mu     sync.Mutex
	client *mochi.Client // set once CONNACK went out; nil before
	told   bool          // a packet over max was seen

	// What is written to the client passes through Write, under wmu, in
	// order. Between hold and release it is kept in wbuf and sent in one
	// write at the release: the PUBACKs of a device's records committed
	// in one block leave in one system call, not one each.
	wmu  sync.Mutex
	held int    // holds not released
	wbuf []byte // written while held
	werr error  // the failed write of held bytes: the connection is broken
}

// errTooLarge ends a connection whose client sent a packet over the limit.
var errTooLarge = errors.New("mqtt: packet larger than the maximum packet size")

func newSizeGuard(c net.Conn, max uint32) *sizeGuard { return &sizeGuard{Conn: c, max: max} }

// deadlineSlack is how much later than asked a connection's deadline
// may be.
const deadlineSlack = time.Second

// SetDeadline sets the connection's deadline to t, or up to
// deadlineSlack after it. mochi sets the keepalive deadline
// (1.5 × keepalive from now [MQTT-3.1.2-22]) before it reads each
// packet, from the reading goroutine; each set moves the connection's two
// runtime timers. Here a deadline is set a second later than asked, and
// a request that falls at most that second before the deadline set
// keeps it: a busy connection moves its timers about once a second
// instead of once a packet, and a silent client is disconnected at most
// a second later than mochi asked. A zero t (no deadline) passes at once.
func (g *sizeGuard) SetDeadline(t time.Time) error {
	if !t.IsZero() && !g.deadline.IsZero() && !t.After(g.deadline) && g.deadline.Sub(t) <= deadlineSlack {
		return nil
	}
	if !t.IsZero() {
		t = t.Add(deadlineSlack)
	}
	g.deadline = t
	return g.Conn.SetDeadline(t)
}

// Read passes the client's bytes on to mochi unchanged up to a packet
// over the limit, and then fails: mochi ends the connection.
func (g *sizeGuard) Read(p []byte) (int, error) {
	if g.over {
		return 0, errTooLarge
	}
	n, err := g.Conn.Read(p)
	if n == 0 || g.max == 0 {
		return n, err
	}
	start, over := g.scan(p[:n])
	if !over {
		return n, err
	}
	g.over = true
	if g.tooLarge() || start < 0 {
		return 0, errTooLarge
	}
	// The CONNECT before it is still to be answered: mochi reads up to
	// the packet, answers the CONNECT, and fails on the next Read.
	return start, nil
}

// Write sends p to the client, or keeps it for the release if the
// writes are held.
func (g *sizeGuard) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.werr != nil {
		return 0, g.werr
	}
	if g.held > 0 {
		g.wbuf = append(g.wbuf, p...)
		return len(p), nil
	}
	return g.Conn.Write(p)
}

// writeAck writes a success PUBACK for packet id as Write would: 0x40,
// remaining length 2, the id (MQTT 3.1.1 3.4; MQTT 5 3.4.2.1 omits the
// reason code 0x00 and the properties, as mochi's encoder does).
func (g *sizeGuard) writeAck(id uint16) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.werr != nil {
		return g.werr
	}
	if g.held > 0 {
		g.wbuf = append(g.wbuf, 0x40, 2, byte(id>>8), byte(id))
		return nil
	}
	_, err := g.Conn.Write([]byte{0x40, 2, byte(id >> 8), byte(id)})
	return err
}

// hold keeps what is written to the client until release.
func (g *sizeGuard) hold() {
	g.wmu.Lock()
	g.held++
	g.wmu.Unlock()
}

// release sends what was written since hold, in one write, once no hold
// is left. A failed write fails the writes after it: the connection is
// broken, and mochi ends it when it next reads or writes.
func (g *sizeGuard) release() {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.held--; g.held > 0 || len(g.wbuf) == 0 {
		return
	}
	if _, err := g.Conn.Write(g.wbuf); err != nil {
		g.werr = err
	}
	g.wbuf = nil // an idle session keeps no buffer
}

// scan follows the framing over b: a first byte, a variable byte integer
// (MQTT 5 1.5.5), a body. It reports whether a packet is over max and
// where in b it starts (-1: in an earlier Read). A malformed length is
// left to mochi, which ends the connection on it.
func (g *sizeGuard) scan(b []byte) (start int, over bool) {
	start = -1
	for i := 0; i < len(b); {
		switch {
		case g.skip > 0:
			k := min(g.skip, int64(len(b)-i))
			g.skip -= k
			i += int(k)
		case !g.inLen: // a packet's first byte
			g.inLen, g.length, g.lenN, start = true, 0, 0, i
			i++
		default:
			c := b[i]
			i++
			g.length |= uint32(c&0x7f) << (7 * g.lenN)
			g.lenN++
			if c&0x80 != 0 {
				if g.lenN == 4 {
					g.max = 0 // malformed: stop watching
					return -1, false
				}
				continue
			}
			g.inLen = false
			if uint64(1+g.lenN)+uint64(g.length) > uint64(g.max) {
				return start, true
			}
			g.skip = int64(g.length)
		}
	}
	return -1, false
}

// tooLarge tells a v5 client DISCONNECT 0x95 now if its session is
// established, else once it is (a packet after CONNECT can arrive in
// the same read), and reports whether it was established. A 3.1.1
// client has no DISCONNECT from the server: its connection just ends.
func (g *sizeGuard) tooLarge() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.told = true
	if g.client != nil {
		disconnectTooLarge(g.client)
		return true
	}
	return false
}

// established notes cl as the guard's client, and tells it if a packet
// over the limit came before.
func (g *sizeGuard) established(cl *mochi.Client) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.client = cl
	if g.told {
		disconnectTooLarge(cl)
	}
}

func disconnectTooLarge(cl *mochi.Client) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode: packets.ErrPacketTooLarge.Code})
	}
}

// underlying is the connection under a guard, for the TLS state.
func underlying(c net.Conn) net.Conn {
	if g, ok := c.(*sizeGuard); ok {
		return g.Conn
	}
	return c
}

var _ mochi.ReadWaiter = (*sizeGuard)(nil)

// waitOn makes the guard a mochi.ReadWaiter on raw's socket: the guard
// must be over raw itself, or over rawIO(raw), with nothing buffered
// between. served is called when mochi is done with the client. With a
// parker, waits that last are parked.
func (g *sizeGuard) waitOn(raw net.Conn, served func(), park *parker) {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	g.rc, g.served, g.readablef = rc, served, g.readable
	if park != nil {
		if fd, err := parkFD(rc); err == nil {
			g.park, g.fd = park, fd
		}
	}
}

// CanWaitReadable reports whether the guard can wait for its socket.
func (g *sizeGuard) CanWaitReadable() bool { return g.rc != nil }

// WaitReadable waits in Go's poller, as a Read does, until the socket
// has a byte to read or is at its end, without reading it. Its error is
// the Read's: the deadline passed, or the connection was closed. After
// a packet over the limit it returns at once: the next Read fails.
//
// A wait that the parker's sweep ends is parked: WaitReadable returns
// mochi.ErrParked, and the parker calls resume when the socket is
// readable, or with the Read's error when the keepalive deadline passes
// or the connection is closed.
func (g *sizeGuard) WaitReadable(resume func(error)) error {
	if g.over {
		return nil
	}
	if g.park == nil {
		return g.wait()
	}
	if !g.swept {
		g.swept = true
		g.park.serve(g)
	}
	g.pmu.Lock()
	g.waiting, g.since = true, time.Now()
	g.pmu.Unlock()
	err := g.wait()
	g.pmu.Lock()
	kicked := g.kicked
	g.waiting, g.kicked = false, false
	g.pmu.Unlock()
	if !kicked {
		return err
	}
	// The sweep set a read deadline in the past: park, or put the
	// keepalive deadline back.
	if errors.Is(err, os.ErrDeadlineExceeded) && (g.deadline.IsZero() || time.Now().Before(g.deadline)) {
		until := g.deadline
		// Before park: resume may run at once. The next SetDeadline must
		// set the socket's.
		g.deadline, g.distrust = time.Time{}, true
		if g.park.park(g, until, resume) {
			return mochi.ErrParked
		}
		g.deadline, g.distrust = until, false
		_ = g.Conn.SetReadDeadline(until)
		return g.wait()
	}
	_ = g.Conn.SetReadDeadline(g.deadline)
	return err
}

// wait is WaitReadable's wait in Go's poller.
func (g *sizeGuard) wait() error {
	g.polled = false
	err := g.rc.Read(g.readablef)
	g.distrust = false
	if err != nil {
		return opError(g, "read", err)
	}
	return nil
}

// kick ends the guard's wait, with a read deadline in the past, if it
// has lasted idle: WaitReadable then parks it. The parker's sweep calls
// it.
func (g *sizeGuard) kick(now time.Time, idle time.Duration) {
	g.pmu.Lock()
	defer g.pmu.Unlock()
	if g.waiting && !g.kicked && now.Sub(g.since) >= idle {
		g.kicked = true
		_ = g.Conn.SetReadDeadline(aLongTimeAgo)
	}
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// Close closes the connection, and first unparks it: its client then
// ends as on a Read of a closed connection.
func (g *sizeGuard) Close() error {
	if g.park != nil {
		g.park.closing(g)
	}
	return g.Conn.Close()
}

// readable is WaitReadable's RawConn.Read callback. Its first call peeks
// at the socket: the poller forgets a readiness it saw before the call
// (pollDesc.prepareRead). A later call comes after the poller woke the
// wait because the socket became readable (or failed), and believes it:
// a read to check would be one system call more a packet than a plain
// Read makes. The readiness can be stale, of bytes that a Read running
// when they came took already: then mochi's next Read waits in the
// poller, a deeper wait that the parker's sweep does not see, until the
// device sends again. After a park it is stale every time (the
// resumed goroutine reads the bytes that woke the parker): the first
// wait after one peeks at every wake-up (distrust).
func (g *sizeGuard) readable(fd uintptr) bool {
	if g.polled && !g.distrust {
		return true
	}
	g.polled = true
	return peekReadable(fd)
}

// Served ends the connection: mochi's goroutine for the client is done.
func (g *sizeGuard) Served() {
	if g.swept {
		g.park.forget(g)
	}
	if g.served != nil {
		g.served()
	}
}

// opError is err, the error of a read or write on c's socket, as
// net.TCPConn returns it. RawConn's come as a "raw-read" or "raw-write"
// *net.OpError: its cause is kept, so errors.Is finds
// os.ErrDeadlineExceeded and net.ErrClosed as before.
func opError(c net.Conn, op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
