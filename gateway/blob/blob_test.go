package blob

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
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

// TestPutFrom: a streamed blob is stored when its bytes are the ones
// named, refused with ErrMismatch (leaving no file) when they are fewer
// or hash to something else, and not read when the store has it.
func TestPutFrom(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 64)
	if err != nil {
		t.Fatal(err)
	}
	img := []byte("firmware image bytes")
	sum := sha256.Sum256(img)
	size := int64(len(img))
	for _, c := range []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"short", bytes.NewReader(img[:5]), size},
		{"other bytes", bytes.NewReader([]byte("firmware image BYTES")), size},
	} {
		if err := s.PutFrom(sum, c.size, c.r); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: err = %v, want ErrMismatch", c.name, err)
		}
	}
	if err := s.PutFrom(sum, 65, bytes.NewReader(img)); err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("over the store's size: err = %v", err)
	}
	if s.Has(sum) {
		t.Fatal("a refused blob was stored")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*", tmpPattern)); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	r := io.MultiReader(bytes.NewReader(img), strings.NewReader("after the blob"))
	if err := s.PutFrom(sum, size, r); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "after the blob" {
		t.Errorf("PutFrom read past the blob: %q left", rest)
	}
	if got, err := s.Get(sum); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if err := s.PutFrom(sum, size, iotest.ErrReader(errors.New("must not be read"))); err != nil {
		t.Errorf("PutFrom of a stored blob: %v", err)
	}
	// A crash leaves a temporary file; Open removes it.
	stale := filepath.Join(filepath.Dir(s.path(sum)), ".tmp-123")
	if err := os.WriteFile(stale, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, 64); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file kept: %v", err)
	}
}
