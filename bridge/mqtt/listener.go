package mqtt

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is a mochi listener over an already bound net.Listener (so
// Start reports bind errors and Addrs the bound port). Unlike mochi's own
// TCP listener it bounds the time to CONNECT and the number of open
// connections, keeps accepting after a transient Accept error, and closes
// connections that never finished CONNECT when it is closed.
type listener struct {
	id       string
	ln       net.Listener
	tls      *tls.Config // nil: plain TCP
	maxConns int64
	// maxPacket is the largest packet a client may send; a connection
	// is watched for larger ones (sizeGuard).
	maxPacket uint32
	log       *slog.Logger
	// disconnect sends the listener's connected clients DISCONNECT
	// (v5: 0x8B server shutting down) and stops them; nil: no client
	// ever connected (a failed start).
	disconnect func(listener string)
	// park parks the waits of silent clients on plain TCP; nil: never.
	// Set before Serve.
	park *parker

	mu      sync.Mutex
	conns   map[net.Conn]io.Closer // by the accepted connection: what closes it (its guard once it has one)
	closed  bool
	serving chan struct{} // closed when Serve returns; nil if Serve never ran
	wg      sync.WaitGroup
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener, tlsCfg *tls.Config, maxConns int64, maxPacket uint32, log *slog.Logger, disconnect func(string)) *listener {
	return &listener{id: id, ln: ln, tls: tlsCfg, maxConns: maxConns, maxPacket: maxPacket, log: log.With("listener", id), conns: map[net.Conn]io.Closer{},
		disconnect: disconnect}
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Address() string  { return l.ln.Addr().String() }
func (l *listener) Protocol() string { return l.id }

// Init does nothing: the address is bound already.
func (l *listener) Init(*slog.Logger) error { return nil }

// Serve accepts connections until the listener is closed and hands each
// to establish on its own goroutine.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.serving = make(chan struct{})
	defer close(l.serving)
	l.mu.Unlock()
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does, rather than stop serving for good.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt accept failed", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !l.add(conn) {
			conn.Close()
			continue
		}
		go l.handle(conn, establish)
	}
}

// add tracks conn, or returns false if the listener is closed or full.
func (l *listener) add(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || int64(len(l.conns)) >= l.maxConns {
		return false
	}
	l.conns[conn] = conn
	l.wg.Add(1)
	return true
}

// handle runs one connection through mochi. The deadline covers the TLS
// handshake and the CONNECT; mochi replaces it with the keepalive once
// the client is connected. A client on a plain TCP connection is then
// served by a goroutine of mochi's that waits for its packets with a
// small stack (mochi.ReadWaiter, bridge/mochi/README.md): handle ends,
// and the guard's Served ends the connection when that goroutine does.
func (l *listener) handle(raw net.Conn, establish listeners.EstablishFn) {
	end := func() {
		l.mu.Lock()
		delete(l.conns, raw)
		l.mu.Unlock()
		raw.Close()
		l.wg.Done()
	}
	serving := false
	defer func() {
		if !serving {
			end()
		}
	}()
	defer func() {
		// A bug in the broker's handling of one client's bytes must drop
		// that client, not the gateway.
		if r := recover(); r != nil {
			l.log.Error("mqtt client handler panicked", "panic", r, "remote", raw.RemoteAddr().String(), "stack", string(debug.Stack()))
		}
	}()
	_ = raw.SetDeadline(time.Now().Add(connectTimeout))
	conn := rawIO(raw)
	if l.tls != nil {
		conn = tls.Server(conn, l.tls)
	}
	g := newSizeGuard(conn, l.maxPacket)
	if l.tls == nil {
		g.waitOn(raw, end, l.park)
	}
	if g.park != nil {
		l.mu.Lock()
		if _, ok := l.conns[raw]; ok {
			l.conns[raw] = g // closed through the guard, which unparks it
		}
		l.mu.Unlock()
	}
	err := establish(l.id, g)
	if errors.Is(err, mochi.ErrServing) {
		serving = true
		return
	}
	if err != nil {
		l.log.Debug("mqtt connection ended", "remote", raw.RemoteAddr().String(), "error", err)
	}
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// stopAccepting closes the socket; connections already open stay.
func (l *listener) stopAccepting() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.ln.Close()
}

// Close stops accepting, disconnects the connected clients (DISCONNECT
// 0x8B to v5 clients), then closes every connection still open and waits
// for their goroutines. It does not use mochi's closeClients: mochi's
// Clients.GetByListener takes its read lock twice, and deadlocks when a
// client being deleted at that moment waits for the write lock.
func (l *listener) Close(listeners.CloseFn) {
	l.stopAccepting()
	l.mu.Lock()
	serving := l.serving
	l.mu.Unlock()
	if serving != nil {
		<-serving
	}
	done := make(chan struct{})
	go func() {
		if l.disconnect != nil {
			l.disconnect(l.id)
		}
		close(done)
	}()
	t := time.NewTimer(time.Second) // a client that does not read must not hold up the shutdown
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	l.mu.Lock()
	for _, c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	<-done
	l.wg.Wait()
	if l.park != nil {
		l.park.close()
	}
}
