//go:build linux && !race

package mqtt

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// rawTCP is a device's TCP connection whose reads and writes are made
// as raw system calls on its non-blocking socket, waiting in Go's poller
// as net.TCPConn does when the socket is empty or full.
//
// Go's net package makes each read and write through the runtime's
// entersyscall, which is there for calls that may block: another thread
// may take the goroutine's processor meanwhile. A read or write of a
// non-blocking socket does not block (it returns EAGAIN instead), so the
// step buys nothing here, and it costs: the first system call after
// every processor was idle wakes the runtime's sysmon thread, which
// then polls every 20 µs for a while. At 1,000 messages a second nearly
// every message found the gateway idle, and that wake-up cost ~1 context
// switch a message (docs/benchmarks.md, "The commit path, ninth round").
//
// Race-detector builds keep net.TCPConn (rawio_other.go): the detector
// sees the happens-before of bytes sent through a socket only in the
// standard library's system calls, and without it would report races
// between a test's goroutines and the gateway's that the socket orders.
type rawTCP struct {
	*net.TCPConn
	rc syscall.RawConn

	// One read and one write at a time: the call's buffer and result
	// live here, so a call allocates nothing.
	rmu   sync.Mutex
	rbuf  []byte
	rn    int
	rerr  syscall.Errno
	readf func(fd uintptr) bool

	wmu    sync.Mutex
	wbuf   []byte
	wn     int
	werr   syscall.Errno
	writef func(fd uintptr) bool
}

// rawIO returns c with raw reads and writes if it is a TCP connection,
// else c itself.
func rawIO(c net.Conn) net.Conn {
	t, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawTCP{TCPConn: t, rc: rc}
	r.readf = r.readOnce
	r.writef = r.writeAll
	return r
}

// Read reads as net.TCPConn.Read does: it waits in the poller while
// nothing is to be read, within the connection's deadline.
func (r *rawTCP) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	r.rbuf, r.rn, r.rerr = p, 0, 0
	err := r.rc.Read(r.readf)
	r.rbuf = nil
	if err := r.ioError("read", err, r.rerr); err != nil {
		return 0, err
	}
	if r.rn == 0 {
		return 0, io.EOF
	}
	return r.rn, nil
}

// readOnce makes one read(2); false means the socket is empty, and the
// poller waits until it is readable.
func (r *rawTCP) readOnce(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
		switch e {
		case 0:
			r.rn = int(n)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.rerr = e
			return true
		}
	}
}

// Write writes all of p as net.TCPConn.Write does, waiting in the poller
// while the socket's buffer is full.
func (r *rawTCP) Write(p []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.wbuf, r.wn, r.werr = p, 0, 0
	err := r.rc.Write(r.writef)
	r.wbuf = nil
	return r.wn, r.ioError("write", err, r.werr)
}

// writeAll writes until the buffer is sent; false means the socket is
// full, and the poller waits until it is writable.
func (r *rawTCP) writeAll(fd uintptr) bool {
	for r.wn < len(r.wbuf) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wbuf[r.wn])), uintptr(len(r.wbuf)-r.wn))
		switch e {
		case 0:
			r.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.werr = e
			return true
		}
	}
	return true
}

// ioError is the error of a read or write as net.TCPConn returns it, or
// nil: err is RawConn's own (the deadline passed, the connection is
// closed), errno the system call's.
func (r *rawTCP) ioError(op string, err error, errno syscall.Errno) error {
	if err == nil && errno != 0 {
		err = os.NewSyscallError(op, errno)
	}
	if err == nil {
		return nil
	}
	return opError(r, op, err)
}

// peekReadable is a RawConn.Read callback: whether the socket has a byte
// to read, is at its end or failed, found with a raw recv(2) that peeks
// and does not wait (see rawTCP for why raw). False means the poller
// waits until it is readable.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return e != syscall.EAGAIN
}
