// Package blob is the gateway's off-chain store: content-addressed files
// under the data directory, each named by the SHA-256 of its bytes.
//
// The store holds sealed configurations (see bridge/device.Seal): they are
// encrypted to their devices and the operators before they reach the
// gateway, so what is on disk is never the plaintext. The caller decides
// what may be stored (the gateway stores only blobs that a committed or
// submitted config.set names); the store only guarantees that Get returns
// bytes whose SHA-256 is the address asked for.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotFound reports a blob the store does not have.
var ErrNotFound = errors.New("blob: not found")

// Store is a directory of blobs. It is safe for concurrent use: writes go
// to a temporary file that is renamed into place.
type Store struct {
	dir     string
	maxSize int64
}

// Open returns the store in dir, creating dir if needed. Blobs above
// maxSize bytes are refused.
func Open(dir string, maxSize int64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", dir, err)
	}
	return &Store{dir: dir, maxSize: maxSize}, nil
}

// path is where the blob with address sum lives: a two-hex-digit fan-out
// directory keeps directories small.
func (s *Store) path(sum [32]byte) string {
	h := hex.EncodeToString(sum[:])
	return filepath.Join(s.dir, h[:2], h)
}

// Put stores data durably (fsync of file and directory) and returns its
// address. Storing a blob the store has is a no-op.
func (s *Store) Put(data []byte) ([32]byte, error) {
	sum := sha256.Sum256(data)
	if int64(len(data)) > s.maxSize {
		return sum, fmt.Errorf("blob: %d bytes, at most %d", len(data), s.maxSize)
	}
	p := s.path(sum)
	if _, err := os.Stat(p); err == nil {
		return sum, nil
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sum, fmt.Errorf("blob: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return sum, fmt.Errorf("blob: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return sum, fmt.Errorf("blob: write %x: %w", sum, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return sum, fmt.Errorf("blob: sync %x: %w", sum, err)
	}
	if err := f.Close(); err != nil {
		return sum, fmt.Errorf("blob: close %x: %w", sum, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return sum, fmt.Errorf("blob: store %x: %w", sum, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return sum, nil
}

// Get returns the blob with address sum, or ErrNotFound. A file whose
// bytes no longer hash to its name (disk corruption) is reported, not
// returned.
func (s *Store) Get(sum [32]byte) ([]byte, error) {
	data, err := os.ReadFile(s.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %x", ErrNotFound, sum)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: read %x: %w", sum, err)
	}
	if sha256.Sum256(data) != sum {
		return nil, fmt.Errorf("blob: %x is corrupt on disk (its bytes hash to something else)", sum)
	}
	return data, nil
}

// ReadAt reads len(p) bytes of the blob with address sum from offset
// off (fewer at its end, none past it) and returns how many it read and the blob's
// size, or ErrNotFound. Unlike Get it does not check the bytes against
// the address: it serves a part of a large blob (a firmware image,
// block-wise) without reading the whole, and the reader checks the
// hash of the whole.
func (s *Store) ReadAt(sum [32]byte, p []byte, off int64) (int, int64, error) {
	f, err := os.Open(s.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, fmt.Errorf("%w: %x", ErrNotFound, sum)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("blob: open %x: %w", sum, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("blob: stat %x: %w", sum, err)
	}
	if off < 0 {
		return 0, st.Size(), fmt.Errorf("blob: offset %d of blob %x", off, sum)
	}
	if off >= st.Size() {
		return 0, st.Size(), nil
	}
	n, err := f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, st.Size(), fmt.Errorf("blob: read %x: %w", sum, err)
	}
	return n, st.Size(), nil
}

// Has reports whether the store has the blob.
func (s *Store) Has(sum [32]byte) bool {
	_, err := os.Stat(s.path(sum))
	return err == nil
}
