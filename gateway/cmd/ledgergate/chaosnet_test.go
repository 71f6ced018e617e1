package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// chaosNet is the network between the gateways of a chaos run: a
// fault-injecting TCP proxy in front of each gateway's peer listener.
// The genesis names the proxies' addresses, so every byte one gateway
// sends another (PBFT messages, state transfer, blobs) passes through the
// proxy of the receiver; the gateways themselves listen on kernel-picked
// ports that only the proxies know. No product code is involved.
//
// A proxy must know which gateway dialled it to fault one link and not
// another. The peers' TLS 1.3 handshakes hide their certificates, and every
// gateway dials from 127.0.0.1, so the proxy asks the kernel: the accepted
// connection's remote port is the dialler's local port, /proc/net/tcp maps
// it to a socket inode, and the gateway whose /proc/PID/fd holds that inode
// is the dialler (Linux; the processes are the test's own children).
//
// Faults are per directed link (from, to): a cut holds the bytes (a black
// hole: TCP would retransmit them, so they arrive once the cut heals, late),
// a cut with reset also closes the link's connections and refuses new ones
// (a REJECT), and a delay holds each chunk of bytes for that long (latency,
// order kept).
type chaosNet struct {
	n      int
	logf   func(format string, args ...any)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lns    []net.Listener

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a fault changes
	cut     [][]bool      // cut[from][to]: bytes from → to are held
	reset   [][]bool      // ... and the link's connections are refused
	delay   [][]time.Duration
	up      []string // gateway i's own peer listener; "" while it is down
	pid     []int    // gateway i's process; 0 while it is down
	conns   map[*proxyConn]struct{}
}

// proxyConn is one proxied connection: from dialled to, through to's proxy.
type proxyConn struct {
	from, to   int
	down, upst net.Conn // the dialler's side, the gateway's side
}

func (pc *proxyConn) close() {
	pc.down.Close()
	pc.upst.Close()
}

// newChaosNet listens for n proxies on kernel-picked loopback ports.
func newChaosNet(n int, logf func(string, ...any)) (*chaosNet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &chaosNet{n: n, logf: logf, ctx: ctx, cancel: cancel, changed: make(chan struct{}),
		up: make([]string, n), pid: make([]int, n), conns: map[*proxyConn]struct{}{}}
	for range n {
		c.cut = append(c.cut, make([]bool, n))
		c.reset = append(c.reset, make([]bool, n))
		c.delay = append(c.delay, make([]time.Duration, n))
	}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.close()
			return nil, err
		}
		c.lns = append(c.lns, ln)
		c.wg.Go(func() { c.accept(i, ln) })
	}
	return c, nil
}

// addr is where peers dial gateway i: its proxy, as the genesis says.
func (c *chaosNet) addr(i int) string { return c.lns[i].Addr().String() }

// close stops every proxy and connection and waits for their goroutines.
func (c *chaosNet) close() {
	c.cancel()
	for _, ln := range c.lns {
		ln.Close()
	}
	c.mu.Lock()
	for pc := range c.conns {
		pc.close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// setUp says gateway i runs as process pid with its peer listener at addr.
func (c *chaosNet) setUp(i, pid int, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up[i], c.pid[i] = addr, pid
}

// setDown says gateway i is gone.
func (c *chaosNet) setDown(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up[i], c.pid[i] = "", 0
}

// notifyLocked wakes every pipe waiting on a cut.
func (c *chaosNet) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// setCut cuts (or heals, with on false) the link from → to; with reset
// the link's connections are closed and refused rather than held.
func (c *chaosNet) setCut(from, to int, on, reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[from][to] = on
	c.reset[from][to] = on && reset
	if on && reset {
		for pc := range c.conns {
			if pc.from == from && pc.to == to || pc.from == to && pc.to == from {
				pc.close()
			}
		}
	}
	c.notifyLocked()
}

// setDelay holds the bytes on link from → to for d.
func (c *chaosNet) setDelay(from, to int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delay[from][to] = d
	c.notifyLocked()
}

// healAll removes every cut and delay.
func (c *chaosNet) healAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.n {
		for j := range c.n {
			c.cut[i][j], c.reset[i][j], c.delay[i][j] = false, false, 0
		}
	}
	c.notifyLocked()
}

func (c *chaosNet) accept(to int, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed
		}
		c.wg.Go(func() { c.serve(to, conn) })
	}
}

// serve proxies one connection to gateway to, once it knows its dialler.
func (c *chaosNet) serve(to int, down net.Conn) {
	from, err := c.source(down)
	if err != nil {
		c.logf("chaosnet: connection to node-%d from %s: %v", to+1, down.RemoteAddr(), err)
		down.Close()
		return
	}
	c.mu.Lock()
	up, refused := c.up[to], c.reset[from][to] || c.reset[to][from]
	c.mu.Unlock()
	if up == "" || refused {
		down.Close()
		return
	}
	upst, err := net.DialTimeout("tcp", up, 2*time.Second)
	if err != nil {
		down.Close()
		return
	}
	pc := &proxyConn{from: from, to: to, down: down, upst: upst}
	c.mu.Lock()
	if c.ctx.Err() != nil || c.reset[from][to] || c.reset[to][from] {
		c.mu.Unlock()
		pc.close()
		return
	}
	c.conns[pc] = struct{}{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { c.pipe(pc, down, upst, from, to) })
	wg.Go(func() { c.pipe(pc, upst, down, to, from) })
	wg.Wait()
	c.mu.Lock()
	delete(c.conns, pc)
	c.mu.Unlock()
}

// chunk is bytes read from one side, due at the other side at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst as the link from → to lets it; when either side
// fails it closes the whole connection.
func (c *chaosNet) pipe(pc *proxyConn, src, dst net.Conn, from, to int) {
	defer pc.close()
	q := make(chan chunk, 64) // then TCP's own buffers push back
	stop := make(chan struct{})
	defer close(stop) // before pc.close: the reader stops waiting on q
	c.wg.Go(func() {
		defer close(q)
		var last time.Time
		for {
			b := make([]byte, 32<<10)
			k, err := src.Read(b)
			if k > 0 {
				c.mu.Lock()
				d := c.delay[from][to]
				c.mu.Unlock()
				due := time.Now().Add(d)
				if due.Before(last) {
					due = last // a link keeps its order
				}
				last = due
				select {
				case q <- chunk{b[:k], due}:
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	for ch := range q {
		if !c.pass(from, to, ch.due) {
			return
		}
		if _, err := dst.Write(ch.b); err != nil {
			return
		}
	}
}

// pass waits until the link from → to is not cut and due has come; false
// if the net closed.
func (c *chaosNet) pass(from, to int, due time.Time) bool {
	for {
		c.mu.Lock()
		cut, changed := c.cut[from][to], c.changed
		c.mu.Unlock()
		if !cut {
			break
		}
		select {
		case <-changed:
		case <-c.ctx.Done():
			return false
		}
	}
	if d := time.Until(due); d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-c.ctx.Done():
			return false
		}
	}
	return true
}

// source names the gateway that opened conn (see chaosNet).
func (c *chaosNet) source(conn net.Conn) (int, error) {
	remote, ok1 := conn.RemoteAddr().(*net.TCPAddr)
	local, ok2 := conn.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, errors.New("not TCP")
	}
	inode, err := socketInode(remote.Port, local.Port)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	pids := append([]int(nil), c.pid...)
	c.mu.Unlock()
	link := "socket:[" + inode + "]"
	for i, pid := range pids {
		if pid == 0 {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // it just died
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == link {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("no gateway holds socket %s", inode)
}

// socketInode finds, in /proc/net/tcp and tcp6, the inode of the loopback
// socket with local port lport connected to remote port rport.
func socketInode(lport, rport int) (string, error) {
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fs) < 10 || hexPort(fs[1]) != lport || hexPort(fs[2]) != rport {
				continue
			}
			f.Close()
			return fs[9], nil
		}
		f.Close()
	}
	return "", fmt.Errorf("no socket 127.0.0.1:%d -> :%d in /proc/net/tcp", lport, rport)
}

// hexPort is the port of a /proc/net/tcp address, ADDR:PORT in hex; -1 if
// malformed.
func hexPort(s string) int {
	_, p, ok := strings.Cut(s, ":")
	if !ok {
		return -1
	}
	n, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return -1
	}
	return int(n)
}
