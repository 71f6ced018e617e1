package mqtt

import (
	"errors"
	"net"
	"slices"
	"testing"
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
