package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// The base of a log that starts from a snapshot: see the Log's file
// format in log.go.

const (
	baseFileName  = "BASE"
	baseFileBytes = 8 + 32 + 4
)

// LogBaseFile is the name of a log's base file in its directory (a
// backup copies it).
const LogBaseFile = baseFileName

// LogMembersFile is the name of the file that holds the membership proof
// of a log that starts from a snapshot (see SetBaseMembers; a backup
// copies it).
const LogMembersFile = "MEMBERS"

// ErrBelowBase is wrapped by the error of a read of a block at or below
// a log's base: the gateway joined from a snapshot and never had it.
var ErrBelowBase = errors.New("ledger: below the log's base")

// BelowBaseError is the error of a read of a block at or below the base.
type BelowBaseError struct {
	Height, Base uint64
}

func (e *BelowBaseError) Error() string {
	return fmt.Sprintf("ledger: block %d is below this gateway's base height %d: it joined from a snapshot", e.Height, e.Base)
}

// Is makes errors.Is(err, ErrBelowBase) hold.
func (e *BelowBaseError) Is(target error) bool { return target == ErrBelowBase }

// Base returns the height and block hash the log starts after: 0 and
// zero for a log that starts at block 1.
func (l *Log) Base() (uint64, [32]byte) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.base, l.baseHash
}

// SetBase makes an empty log start after block height, whose hash is
// hash: the next Append is block height+1. The base is written to the
// log's BASE file atomically and made durable before SetBase returns. It
// fails on a log that holds a record or already has a base (a base never
// changes), and for height 0.
func (l *Log) SetBase(height uint64, hash [32]byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	switch {
	case height == 0:
		return errors.New("ledger: a log's base height must be above 0")
	}
	l.mu.RLock()
	n, base := len(l.recs), l.base
	l.mu.RUnlock()
	if n > 0 || base > 0 {
		return fmt.Errorf("ledger: set base %d: the log is not empty (base %d, %d records)", height, base, n)
	}
	buf := encodeBase(height, hash)
	tmp := filepath.Join(l.dir, baseFileName+".tmp")
	if err := writeSync(tmp, buf); err != nil {
		return fmt.Errorf("ledger: write log base: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, baseFileName)); err != nil {
		return fmt.Errorf("ledger: write log base: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	l.mu.Lock()
	l.base, l.baseHash = height, hash
	l.mu.Unlock()
	return nil
}

func encodeBase(height uint64, hash [32]byte) []byte {
	buf := binary.BigEndian.AppendUint64(make([]byte, 0, baseFileBytes), height)
	buf = append(buf, hash[:]...)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
}

// decodeBase decodes a BASE file.
func decodeBase(b []byte) (uint64, [32]byte, error) {
	var hash [32]byte
	if len(b) != baseFileBytes {
		return 0, hash, fmt.Errorf("%d bytes, want %d", len(b), baseFileBytes)
	}
	if crc32.Checksum(b[:40], castagnoli) != binary.BigEndian.Uint32(b[40:]) {
		return 0, hash, errors.New("crc mismatch")
	}
	h := binary.BigEndian.Uint64(b[:8])
	if h == 0 {
		return 0, hash, errors.New("base height 0")
	}
	copy(hash[:], b[8:40])
	return h, hash, nil
}

// loadBase reads the BASE file, if any, and (unless read-only) removes a
// temporary one a crash left.
func (l *Log) loadBase() error {
	if !l.opts.ReadOnly {
		for _, name := range []string{baseFileName, LogMembersFile} {
			if err := os.Remove(filepath.Join(l.dir, name+".tmp")); err == nil {
				if err := syncDir(l.dir); err != nil {
					return err
				}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("ledger: remove log base leftover: %w", err)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(l.dir, baseFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: read log base: %w", err)
	}
	h, hash, err := decodeBase(b)
	if err != nil {
		return &CorruptError{Segment: baseFileName, Reason: "log base: " + err.Error()}
	}
	l.base, l.baseHash = h, hash
	return nil
}

// SetBaseMembers stores p, the membership proof the snapshot the log is
// about to start after was accepted with: it proves the member changes
// committed at or below that height (the receipts of the cluster.reconfig
// txs in the blocks a gateway that joins from a snapshot never has), and
// may prove later ones too. It goes in the log's MEMBERS file, atomically: a
// temporary file written and fsynced, renamed, the directory fsynced.
// Call it before SetBase, on a log with no record and no base: a crash
// between the two leaves an empty log without a base, which joins again.
// The log keeps the bytes; the caller verifies them (VerifyMembership)
// before it stores them and whenever it reads them.
func (l *Log) SetBaseMembers(p MembershipProof) error {
	enc, err := p.Encode()
	if err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	l.mu.RLock()
	n, base := len(l.recs), l.base
	l.mu.RUnlock()
	if n > 0 || base > 0 {
		return fmt.Errorf("ledger: set base members: the log is not empty (base %d, %d records)", base, n)
	}
	tmp := filepath.Join(l.dir, LogMembersFile+".tmp")
	if err := writeSync(tmp, enc); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ledger: write log members: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, LogMembersFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ledger: write log members: %w", err)
	}
	return syncDir(l.dir)
}

// BaseMembers returns the membership proof SetBaseMembers stored: empty
// (and no error) for a log without one (it starts at block 1, or from a
// snapshot of a chain whose members had not changed, or it was made by a
// gateway before member changes). It is not verified here.
func (l *Log) BaseMembers() (MembershipProof, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, LogMembersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return MembershipProof{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read log members: %w", err)
	}
	p, err := DecodeMembershipProof(b)
	if err != nil {
		return nil, fmt.Errorf("ledger: the log's %s file: %w", LogMembersFile, err)
	}
	return p, nil
}

// writeSync writes data to a new file at path and fsyncs it.
func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
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
	return f.Close()
}
