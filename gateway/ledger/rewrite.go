package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Rewriting sealed segments (retention).
//
// Rewrite replaces a sealed segment (any but the last) by one holding the
// same records, each possibly transformed (a block in pruned form): the
// new segment is written to NNNNNNNN.log.tmp, fsynced, renamed over
// NNNNNNNN.log, and the directory fsynced. rename(2) replaces the name at
// once, so a crash at any point leaves on disk either the old segment or
// the new one, each whole; a leftover .tmp file (a crash before the
// rename) is not a segment and OpenLog deletes it. The new segment has as
// many records as the old, so record i still holds the block of height
// i+1. In memory the segment's file and its records' offsets change
// together under the log's locks, and the old file is closed only when
// no Read is between taking a record's position and reading it.

const rewriteSuffix = ".tmp"

// Segment describes one segment file of a Log.
type Segment struct {
	Seq    uint32 // 1 for 00000001.log
	First  uint64 // height of the block in its first record (0 if empty)
	Last   uint64 // height of the block in its last record (0 if empty)
	Bytes  int64  // the size of its records
	Sealed bool   // not the last segment: Append never writes it again
}

// Segments describes the log's segments, in order.
func (l *Log) Segments() []Segment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]Segment, len(l.segs))
	for k := range out {
		out[k] = Segment{Seq: uint32(k + 1), Sealed: k < len(l.segs)-1}
	}
	for i, p := range l.recs {
		s := &out[p.seg]
		if s.First == 0 {
			s.First = l.base + uint64(i) + 1
		}
		s.Last = l.base + uint64(i) + 1
		s.Bytes += recordHeaderBytes + int64(p.n)
	}
	return out
}

// Rewrite rewrites sealed segment seq with each record's data replaced by
// fn(height, data); fn returns data itself to keep a record as it is. If
// fn keeps every record the segment is not rewritten. It returns the
// bytes the segment shrank by. Rewrites are serialised with each other
// and with Close; Append and Read go on meanwhile. A failed Rewrite
// leaves the old segment in use (and maybe a .tmp file, deleted by the
// next Rewrite of the segment or the next OpenLog).
func (l *Log) Rewrite(seq uint32, fn func(height uint64, data []byte) ([]byte, error)) (int64, error) {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.opts.ReadOnly {
		return 0, errors.New("ledger: block log opened read-only")
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return 0, errLogClosed
	}
	k := int(seq) - 1
	if seq == 0 || k >= len(l.segs)-1 {
		n := len(l.segs)
		l.mu.RUnlock()
		return 0, fmt.Errorf("ledger: rewrite segment %d: only sealed segments (1 to %d) can be rewritten", seq, n-1)
	}
	var first uint64
	var pos []recPos
	for i, p := range l.recs {
		if p.seg == uint32(k) {
			if pos == nil {
				first = uint64(i)
			}
			pos = append(pos, p)
		}
	}
	l.mu.RUnlock()

	// Records of a sealed segment never change but by a Rewrite, which
	// rmu keeps out: read them outside the locks.
	recs := make([][]byte, len(pos))
	changed := false
	var oldBytes, newBytes int64
	for j := range pos {
		data, err := l.Read(first + uint64(j))
		if err != nil {
			return 0, err
		}
		out, err := fn(l.base+first+uint64(j)+1, data)
		if err != nil {
			return 0, fmt.Errorf("ledger: rewrite segment %d: block %d: %w", seq, l.base+first+uint64(j)+1, err)
		}
		if len(out) > l.opts.MaxRecordBytes {
			return 0, fmt.Errorf("ledger: rewrite segment %d: block %d: %d bytes over limit %d", seq, l.base+first+uint64(j)+1, len(out), l.opts.MaxRecordBytes)
		}
		if !bytes.Equal(out, data) {
			changed = true
		}
		recs[j] = out
		oldBytes += recordHeaderBytes + int64(len(data))
		newBytes += recordHeaderBytes + int64(len(out))
	}
	if !changed {
		return 0, nil
	}

	name := filepath.Join(l.dir, segmentName(seq))
	tmp := name + rewriteSuffix
	f, err := l.writeSegment(tmp, recs)
	if err != nil {
		return 0, err
	}
	if err := l.step("synced"); err != nil {
		f.Close()
		return 0, err
	}
	if err := os.Rename(tmp, name); err != nil {
		f.Close()
		os.Remove(tmp)
		return 0, fmt.Errorf("ledger: rewrite segment %d: %w", seq, err)
	}
	if err := l.step("renamed"); err != nil {
		f.Close()
		return 0, err
	}
	if err := syncDir(l.dir); err != nil {
		// The name now points at the new segment, maybe not durably.
		// The old file stays in use here: it holds the same blocks, and
		// the next OpenLog reads whichever of the two the disk kept.
		f.Close()
		return 0, fmt.Errorf("ledger: rewrite segment %d: %w", seq, err)
	}
	if err := l.step("dir synced"); err != nil {
		f.Close()
		return 0, err
	}

	l.cmu.Lock()
	l.mu.Lock()
	old := l.segs[k]
	l.segs[k] = f
	off := int64(0)
	for j, rec := range recs {
		l.recs[first+uint64(j)] = recPos{seg: uint32(k), n: uint32(len(rec)), off: off}
		off += recordHeaderBytes + int64(len(rec))
	}
	l.mu.Unlock()
	err = old.Close()
	l.cmu.Unlock()
	if err != nil {
		return oldBytes - newBytes, fmt.Errorf("ledger: rewrite segment %d: close old file: %w", seq, err)
	}
	return oldBytes - newBytes, nil
}

// writeSegment writes recs as a segment file at path, fsynced, and
// returns it open.
func (l *Log) writeSegment(path string, recs [][]byte) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("ledger: rewrite: remove leftover: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("ledger: rewrite: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("ledger: rewrite %s: %w", filepath.Base(path), err)
	}
	var buf []byte
	var off int64
	for _, rec := range recs {
		buf = appendRecord(buf[:0], rec)
		if _, err := f.WriteAt(buf, off); err != nil {
			return fail(err)
		}
		off += int64(len(buf))
	}
	if err := l.step("written"); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	return f, nil
}

// step calls the test hook at a step of Rewrite.
func (l *Log) step(name string) error {
	if l.crashAt == nil {
		return nil
	}
	return l.crashAt(name)
}

// removeRewriteLeftovers deletes the .tmp files of rewrites a crash
// interrupted before their rename: they are not segments.
func removeRewriteLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("ledger: list block log: %w", err)
	}
	removed := false
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".log"+rewriteSuffix) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("ledger: remove rewrite leftover: %w", err)
			}
			removed = true
		}
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}
