//go:build linux

package mqtt

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker waits for the devices that have been silent for a while, so that
// a silent device holds no goroutine (docs/architecture.md, "Idle
// devices"). A device's goroutine waits for its next packet in Go's poller
// (sizeGuard.WaitReadable); once it has waited idle, the parker's sweep
// wakes it (a read deadline in the past), and the goroutine hands the
// socket to the parker's epoll set and ends (mochi.ErrParked). When the
// socket becomes readable, or the connection's keepalive deadline passes
// (a timer), or it is closed, the parker starts a goroutine that serves
// the device again. A device parks after idle to idle + 1 s of silence
// (the sweep runs every second, over the devices not parked), so one that
// sends more often never parks and costs nothing more a message than two
// uncontended locks; and once every device is parked the parker sleeps.
type parker struct {
	idle  time.Duration
	every time.Duration // the sweep's period: a second, or idle if shorter
	epfd  int
	wake  [2]int // a pipe: a byte written to wake[1] wakes run, to sweep or to end

	mu     sync.Mutex
	closed bool
	active map[*sizeGuard]struct{} // the guards whose client has a goroutine (it waits or reads): the sweep's
	parked map[int32]*sizeGuard    // the others, by socket
	done   chan struct{}           // closed when run returns
}

// newParker returns a parker that parks waits longer than idle, and
// starts it.
func newParker(idle time.Duration) (*parker, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &parker{idle: idle, every: min(idle, time.Second), epfd: epfd, active: map[*sizeGuard]struct{}{}, parked: map[int32]*sizeGuard{},
		done: make(chan struct{})}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	go p.run()
	return p, nil
}

func (p *parker) closeFDs() {
	syscall.Close(p.epfd)
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
}

// close ends the parker once every guard it served was closed (the
// listener closes them first). A guard that would park after it waits
// in Go's poller instead.
func (p *parker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wake[1], []byte{0})
	<-p.done
	p.closeFDs()
}

// run waits for parked sockets to become readable, and sweeps every
// second while some guard is active.
func (p *parker) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	next := time.Now().Add(p.every)
	for {
		timeout := -1 // nothing to sweep: sleep until a socket, serve or close wakes it
		p.mu.Lock()
		if len(p.active) > 0 {
			timeout = int((max(time.Until(next), 0) + time.Millisecond - 1) / time.Millisecond) // rounded up: 0 would spin
		}
		p.mu.Unlock()
		n, err := syscall.EpollWait(p.epfd, events, timeout)
		if err != nil && err != syscall.EINTR {
			// Only a bug (a bad epfd or buffer) gives another error. Fail
			// loudly: the parked devices would never be served again.
			panic(fmt.Sprintf("mqtt: epoll_wait: %v", err))
		}
		p.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd == int32(p.wake[0]) {
				if p.closed {
					p.mu.Unlock()
					return
				}
				var b [16]byte
				_, _ = syscall.Read(p.wake[0], b[:])
				continue
			}
			if g := p.parked[ev.Fd]; g != nil {
				go p.unparkLocked(g)(nil) // unparkLocked runs here, its resume on a goroutine of its own
			}
		}
		if now := time.Now(); !now.Before(next) {
			p.sweepLocked(now)
			next = now.Add(p.every)
		}
		p.mu.Unlock()
	}
}

// sweepLocked wakes the waits that have lasted idle, to park.
func (p *parker) sweepLocked(now time.Time) {
	for g := range p.active {
		g.kick(now, p.idle)
	}
}

// serve adds g, whose client's goroutine started, to the guards swept;
// the first wakes run, which sleeps while there are none.
func (p *parker) serve(g *sizeGuard) {
	p.mu.Lock()
	p.active[g] = struct{}{}
	first := len(p.active) == 1
	p.mu.Unlock()
	if first {
		_, _ = syscall.Write(p.wake[1], []byte{0})
	}
}

// forget removes g, whose client's goroutine is done.
func (p *parker) forget(g *sizeGuard) {
	p.mu.Lock()
	delete(p.active, g)
	p.mu.Unlock()
}

// park hands g's socket to the parker until it is readable, or until,
// if not zero; false if it cannot (the parker is closed), and g must
// wait in Go's poller.
func (p *parker) park(g *sizeGuard, until time.Time, resume func(error)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	// One-shot: after it fires the socket is disabled until removed. A
	// socket readable already is reported at once.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: g.fd}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(g.fd), &ev); err != nil {
		return false
	}
	g.until, g.resume = until, resume
	delete(p.active, g)
	p.parked[g.fd] = g
	if !until.IsZero() {
		if g.expiry == nil {
			g.expiry = time.AfterFunc(time.Until(until), func() { p.expire(g) })
		} else {
			g.expiry.Reset(time.Until(until))
		}
	}
	return true
}

// expire ends g's client if it is still parked at its keepalive
// deadline: as a Read whose deadline passed.
func (p *parker) expire(g *sizeGuard) {
	p.mu.Lock()
	var resume func(error)
	if p.parked[g.fd] == g && !time.Now().Before(g.until) {
		resume = p.unparkLocked(g)
	}
	p.mu.Unlock()
	if resume != nil {
		resume(opError(g, "read", os.ErrDeadlineExceeded)) // on the timer's goroutine
	}
}

// unparkLocked takes g from the epoll set and returns its resume; nil
// if g is not parked.
func (p *parker) unparkLocked(g *sizeGuard) func(error) {
	if p.parked[g.fd] != g {
		return nil
	}
	delete(p.parked, g.fd)
	p.active[g] = struct{}{}
	if g.expiry != nil {
		g.expiry.Stop()
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(g.fd), nil)
	resume := g.resume
	g.resume = nil
	return resume
}

// closing unparks g, which is being closed: its client resumes with the
// error a Read would return.
func (p *parker) closing(g *sizeGuard) {
	p.mu.Lock()
	resume := p.unparkLocked(g)
	p.mu.Unlock()
	if resume != nil {
		go resume(opError(g, "read", net.ErrClosed))
	}
}

// parkFD is the socket of rc, which the parker watches.
func parkFD(rc syscall.RawConn) (int32, error) {
	var fd int32
	err := rc.Control(func(s uintptr) { fd = int32(s) })
	return fd, err
}
