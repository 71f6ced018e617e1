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
