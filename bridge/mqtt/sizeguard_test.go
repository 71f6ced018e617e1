package mqtt

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// writes is a connection that records each Write, or fails them.
type writes struct {
	net.Conn
	got  []string
	fail error
}

func (w *writes) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	w.got = append(w.got, string(p))
	return len(p), nil
}

// TestGuardHoldsWrites: what is written between hold and the last
// release leaves in one write, in order, at that release; writes
// outside a hold go at once; a failed held write fails the writes after.
func TestGuardHoldsWrites(t *testing.T) {
	w := &writes{}
	g := newSizeGuard(w, 0)
	write := func(s string) {
		t.Helper()
		if n, err := g.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d %v", s, n, err)
		}
	}
	write("a")
	g.hold()
	g.hold()
	write("b")
	write("c")
	g.release()
	if !slices.Equal(w.got, []string{"a"}) {
		t.Fatalf("writes before the last release: %q", w.got)
	}
	g.release()
	write("d")
	if !slices.Equal(w.got, []string{"a", "bc", "d"}) {
		t.Fatalf("writes %q, want a, bc, d", w.got)
	}

	broken := errors.New("broken pipe")
	g.hold()
	write("e")
	w.fail = broken
	g.release()
	w.fail = nil
	if _, err := g.Write([]byte("f")); !errors.Is(err, broken) {
		t.Fatalf("a write after a failed release: %v, want %v", err, broken)
	}
}

// TestGuardWritesAcks: writeAck writes the bytes mochi's encoder makes
// for a success PUBACK, for MQTT 3.1.1 and 5, held or not.
func TestGuardWritesAcks(t *testing.T) {
	mochiAck := func(version byte, id uint16) string {
		var b bytes.Buffer
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id, ProtocolVersion: version}
		if err := pk.PubackEncode(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	w := &writes{}
	g := newSizeGuard(w, 0)
	for _, id := range []uint16{1, 0x0102, 0xffff} {
		if err := g.writeAck(id); err != nil {
			t.Fatal(err)
		}
	}
	g.hold()
	_ = g.writeAck(7)
	_ = g.writeAck(8)
	g.release()
	for _, version := range []byte{4, 5} {
		want := []string{mochiAck(version, 1), mochiAck(version, 0x0102), mochiAck(version, 0xffff), mochiAck(version, 7) + mochiAck(version, 8)}
		if !slices.Equal(w.got, want) {
			t.Fatalf("MQTT level %d: writes %x, want %x", version, w.got, want)
		}
	}
}
