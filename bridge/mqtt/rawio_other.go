//go:build !linux || race

package mqtt

import (
	"net"
	"syscall"
)

// rawIO returns c: raw system calls are for Linux builds without the race
// detector (rawio_linux.go).
func rawIO(c net.Conn) net.Conn { return c }

// peekReadable is a RawConn.Read callback: whether the socket has a byte
// to read, is at its end or failed, found with a recv(2) that peeks and
// does not wait. False means the poller waits until it is readable.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
