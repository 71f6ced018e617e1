package blob

import (
	"crypto/sha256"
	"errors"
	"os"
	"testing"
)

func TestPutGet(t *testing.T) {
	s, err := Open(t.TempDir(), 16)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := s.Put([]byte("sealed config"))
	if err != nil || sum != sha256.Sum256([]byte("sealed config")) {
		t.Fatalf("Put = %x, %v", sum, err)
	}
	if again, err := s.Put([]byte("sealed config")); err != nil || again != sum {
		t.Fatalf("Put again = %x, %v", again, err)
	}
	if got, err := s.Get(sum); err != nil || string(got) != "sealed config" || !s.Has(sum) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if _, err := s.Get(sha256.Sum256([]byte("other"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing): err = %v, want ErrNotFound", err)
	}
	if _, err := s.Put(make([]byte, 17)); err == nil {
		t.Error("Put of 17 bytes into a store of 16 succeeded")
	}
	if err := os.WriteFile(s.path(sum), []byte("flipped bits!"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(sum); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a corrupt blob: err = %v, want a corruption error", err)
	}
}

// TestReadAt: a part of a blob, a short read at its end, nothing past
// it, and ErrNotFound for a blob the store lacks.
func TestReadAt(t *testing.T) {
	s, err := Open(t.TempDir(), 1024)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := s.Put([]byte("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off  int64
		want string
	}{{0, "0123"}, {4, "4567"}, {8, "89"}, {10, ""}, {99, ""}} {
		p := make([]byte, 4)
		n, size, err := s.ReadAt(sum, p, c.off)
		if err != nil || size != 10 || string(p[:n]) != c.want {
			t.Errorf("ReadAt(%d) = %q, %d, %v; want %q, 10", c.off, p[:n], size, err, c.want)
		}
	}
	if _, _, err := s.ReadAt(sum, make([]byte, 4), -1); err == nil {
		t.Error("ReadAt(-1) succeeded")
	}
	if _, _, err := s.ReadAt(sha256.Sum256([]byte("other")), make([]byte, 4), 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadAt(missing): err = %v, want ErrNotFound", err)
	}
}
