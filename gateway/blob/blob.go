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

// ErrMismatch reports bytes handed to PutFrom that are not the blob
// asked for: another size, or another SHA-256.
var ErrMismatch = errors.New("blob: not the blob named")

// Store is a directory of blobs. It is safe for concurrent use: writes go
// to a temporary file that is renamed into place.
type Store struct {
	dir     string
	maxSize int64
}

// Open returns the store in dir, creating dir if needed. Blobs above
// maxSize bytes are refused.
// Temporary files that a crash left behind are removed.
func Open(dir string, maxSize int64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: open %s: %w", dir, err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, "*", tmpPattern))
	for _, p := range stale {
		os.Remove(p)
	}
	return &Store{dir: dir, maxSize: maxSize}, nil
}

// tmpPattern names the temporary file of a blob being written, in the
// directory it is renamed into.
const tmpPattern = ".tmp-*"

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
	return sum, s.write(sum, func(f *os.File) error {
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("blob: write %x: %w", sum, err)
		}
		return nil
	})
}

// PutFrom stores the blob with address sum and size bytes, read from r
// straight to a temporary file beside its place and hashed on the way;
// it never holds the blob in memory. Bytes that are not that blob
// (fewer, or another SHA-256) are refused with ErrMismatch and leave
// nothing behind; an error of r is returned wrapped. PutFrom reads at
// most size bytes, and none if the store has the blob already.
func (s *Store) PutFrom(sum [32]byte, size int64, r io.Reader) error {
	if size < 0 || size > s.maxSize {
		return fmt.Errorf("blob: %d bytes, at most %d", size, s.maxSize)
	}
	return s.write(sum, func(f *os.File) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
		if err != nil {
			return fmt.Errorf("blob: write %x: %w", sum, err)
		}
		if n != size {
			return fmt.Errorf("%w: %d bytes came, %x has %d", ErrMismatch, n, sum, size)
		}
		if got := [32]byte(h.Sum(nil)); got != sum {
			return fmt.Errorf("%w: the %d bytes hash to %x, not %x", ErrMismatch, n, got, sum)
		}
		return nil
	})
}

// write stores the blob with address sum, whose bytes fill writes to a
// temporary file, durably: fsync of file and directory, then rename into
// place. A blob the store has is not written again.
func (s *Store) write(sum [32]byte, fill func(*os.File) error) error {
	p := s.path(sum)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	f, err := os.CreateTemp(dir, tmpPattern)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("blob: sync %x: %w", sum, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob: close %x: %w", sum, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("blob: store %x: %w", sum, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
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

// Open opens the blob with address sum for reading, or returns
// ErrNotFound. Like ReadAt it does not check the bytes against the
// address: it serves a large blob in parts, and the reader checks the
// hash of the whole.
func (s *Store) Open(sum [32]byte) (*os.File, error) {
	f, err := os.Open(s.path(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %x", ErrNotFound, sum)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open %x: %w", sum, err)
	}
	return f, nil
}

// Has reports whether the store has the blob.
func (s *Store) Has(sum [32]byte) bool {
	_, err := os.Stat(s.path(sum))
	return err == nil
}
