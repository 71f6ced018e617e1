//go:build !linux || race

package mqtt

import "net"

// rawIO returns c: raw system calls are for Linux builds without the race
// detector (rawio_linux.go).
func rawIO(c net.Conn) net.Conn { return c }
