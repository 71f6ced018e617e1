package main

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports for processes that must know each other's address before they
// start: a genesis or a DNS zone names every gateway's cluster port. A
// port the kernel picked (":0") and released can be handed out again to
// any bind(":0") or outbound connection on the machine before its owner
// binds it; CI saw a gateway's own broker take the cluster port reserved
// for it, and another gateway's connection take one. These ports come
// from below the kernel's ephemeral range, which neither ever uses, and
// no port is handed out twice by one test binary.
var reserved struct {
	sync.Mutex
	ports map[int]bool
}

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(t testing.TB) string { return freeAddrOn(t, "127.0.0.1") }

// freeAddrOn is freeAddr on another loopback address.
func freeAddrOn(t testing.TB, host string) string {
	t.Helper()
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.ports == nil {
		reserved.ports = map[int]bool{}
	}
	const lo = 10000
	hi := ephemeralLow()
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		if reserved.ports[port] {
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		reserved.ports[port] = true
		return addr
	}
	t.Fatalf("no free port in %d..%d on %s after 200 tries", lo, hi-1, host)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	p, _ := strconv.Atoi(port)
	return p
}

// ephemeralLow is the first port of the kernel's ephemeral range, or
// 32768 (Linux's default) when it cannot be read or leaves too little
// room below it.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < 20000 {
		return 32768
	}
	return low
}
