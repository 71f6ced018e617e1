package device

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Counter hands out a device's sequence numbers: a SeqFile, or what the
// device keeps its counter in.
type Counter interface {
	// Next returns the next number, stored before it is returned.
	Next() (uint64, error)
	// Set stores last as the last number used: Next returns last+1.
	Set(last uint64) error
}

// SeqFile is a device's sequence counter, kept in a file so that a device
// never reuses a number after a restart: the gateway refuses a record
// whose seq is not above the device's last one (replay protection).
type SeqFile struct{ path string }

// OpenSeq uses path as the counter (created on first Next).
func OpenSeq(path string) *SeqFile { return &SeqFile{path: path} }

// Last returns the last number handed out, 0 if none.
func (s *SeqFile) Last() (uint64, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("device: read seq: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("device: seq file %s: %w", s.path, err)
	}
	return n, nil
}

// Next returns the next number and stores it durably before returning, so
// a crash after Next never hands the same number out twice.
func (s *SeqFile) Next() (uint64, error) {
	last, err := s.Last()
	if err != nil {
		return 0, err
	}
	return last + 1, s.Set(last + 1)
}

// Set stores n as the last number used (after a record was signed with an
// explicit seq).
func (s *SeqFile) Set(n uint64) error {
	if err := writeAtomic(s.path, []byte(fmt.Sprintf("%d\n", n))); err != nil {
		return fmt.Errorf("device: store seq: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data durably: a temporary file, fsync,
// rename, directory fsync. A crash leaves the old contents or the new.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
