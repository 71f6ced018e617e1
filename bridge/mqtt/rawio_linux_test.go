//go:build linux && !race

package mqtt

import "testing"

// TestRawIOIsRaw: on Linux the listener's TCP connections take the raw
// path, so the tests above test it and not net.TCPConn.
func TestRawIOIsRaw(t *testing.T) {
	served, _ := rawPair(t)
	if _, ok := served.(*rawTCP); !ok {
		t.Fatalf("rawIO gave %T, want *rawTCP", served)
	}
}
