package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Block log on disk.
//
// The log is one directory:
//
//	LOCK          flock(2)ed (LOCK_EX) by the process that has the log open
//	00000001.log  segment 1
//	00000002.log  segment 2, and so on: numbered from 1, no gaps
//	BASE          only in a log that starts above height 1 (a gateway that
//	              joined from a snapshot): the height and block hash of the
//	              snapshot the log starts after (see SetBase)
//	MEMBERS       only in a log with a BASE whose chain changed its members
//	              at or below the base: the membership proof of those
//	              changes (see SetBaseMembers)
//
// A segment is a sequence of records and nothing else. A record is
//
//	length N   4 bytes, big-endian
//	CRC        4 bytes, big-endian: CRC-32C (Castagnoli) over the 4 length
//	           bytes followed by the N data bytes
//	data       N bytes: one encoded block
//
// Record i (0-based, counting through the segments in order) holds the block
// of height base+i+1, where base is 0 unless a BASE file says otherwise. The
// BASE file is 44 bytes: the base height (8 bytes, big-endian), the hash of
// the block at that height (32 bytes) and the CRC-32C of those 40 bytes (4
// bytes, big-endian). It is written only into an empty log, atomically (a
// temporary file written, fsynced and renamed, the directory fsynced), and
// never changes afterwards. The segment format does not change with it.
//
// Append writes a record with one write and fsyncs the segment before it
// returns; when it starts a new segment it also fsyncs the directory. A record
// goes into a new segment when it would take the current one past
// SegmentBytes (a record larger than that gets a segment of its own). So
// every segment but the last is complete, and a crash can tear only the last
// record of the last segment. OpenLog cuts such a torn tail and refuses any
// other damage with a *CorruptError, including damage to a last record that
// was written in full (bit rot, not a crash): it never cuts a record that
// could have been acknowledged. See scanSegment for the exact rule.

const (
	defaultSegmentBytes   = 64 << 20
	defaultMaxRecordBytes = 64 << 20
	maxMaxRecordBytes     = 1 << 30 // fits a uint32 length and an int on 32-bit
	recordHeaderBytes     = 8
	sectorBytes           = 512      // the smallest unit a disk writes: a crash leaves each sector old or new
	maxSegmentSeq         = 99999999 // the largest number %08d keeps at 8 digits
	lockFileName          = "LOCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LogOptions tune a Log. Zero values take defaults.
type LogOptions struct {
	// SegmentBytes bounds a segment's size: a record that would take the
	// current segment past it starts a new segment. A record larger than
	// SegmentBytes goes alone in a segment. Default 64 MiB.
	SegmentBytes int64
	// MaxRecordBytes is the largest record accepted, at most 1 GiB.
	// OpenLog treats a longer record on disk as damage, so never lower it
	// below a record already written. Default 64 MiB.
	MaxRecordBytes int
	// ReadOnly opens a snapshot of a log that another process may be
	// appending to: no lock is taken, nothing is created or cut, a torn
	// tail (which may be an append in progress) is left out, and Append
	// fails. The directory must exist.
	ReadOnly bool
	// MinRecords is the height up to which blocks are known to have been
	// durable (the gateway passes its index's height: the index applies
	// a block only after Append made it durable); for a log with no base
	// it is a number of records. OpenLog never takes one of these for a
	// torn tail: damage to it is a *CorruptError.
	MinRecords uint64
}

func (o LogOptions) withDefaults() (LogOptions, error) {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = defaultSegmentBytes
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = defaultMaxRecordBytes
	}
	if o.SegmentBytes < 0 || o.MaxRecordBytes < 0 || o.MaxRecordBytes > maxMaxRecordBytes {
		return o, fmt.Errorf("ledger: invalid log options: segment bytes %d, max record bytes %d (want 0 or 1 to %d)",
			o.SegmentBytes, o.MaxRecordBytes, maxMaxRecordBytes)
	}
	return o, nil
}

// Log is an append-only log of records: one record is one encoded block, and
// record i holds the block of height Base()+i+1 (i+1 unless the log starts
// from a snapshot). Read takes a record number; ReadHeight a height.
//
// Append must be called by one writer at a time (calls are serialised).
// Len and Read may run concurrently with Append from other goroutines; a
// record is visible to them once Append has made it durable.
type Log struct {
	dir    string
	opts   LogOptions
	lock   *os.File   // dir/LOCK, flocked until Close
	repair *LogRepair // set by OpenLog, then read-only

	wmu    sync.Mutex // held by Append and Close; guards size and failed
	size   int64      // bytes in the last segment
	failed error      // set when a write, fsync or roll failed: Append refuses from then on

	mu     sync.RWMutex // guards the slices below; segs and closed change only under wmu too (or, for a sealed segment's file, under cmu)
	segs   []*os.File   // segs[k] is segment k+1; the last one is open for writing
	recs   []recPos     // recs[i] locates record i
	closed bool

	// base and baseHash: the height and block hash the log starts after
	// (0 and zero: the log starts at block 1). Set by OpenLog or SetBase
	// on an empty log, under mu and wmu.
	base     uint64
	baseHash [32]byte

	// rmu serialises Rewrite and Close. cmu is held shared by Read for
	// the whole read and exclusively by Rewrite while it swaps a
	// segment's file and offsets and closes the old file: a read that
	// took a record's position reads it from the file it was taken for.
	rmu sync.Mutex
	cmu sync.RWMutex

	// crashAt, if set (tests), is called at each step of Rewrite; an
	// error stops Rewrite there, as a crash would.
	crashAt func(step string) error
}

// recPos locates a record: segment index, offset of its header, data length.
type recPos struct {
	seg uint32
	n   uint32
	off int64
}

// LogRepair reports the torn tail OpenLog cut.
type LogRepair struct {
	Segment string // segment file base name, such as 00000003.log
	Offset  int64  // offset where the cut started: the torn record's first byte
	Bytes   int64  // bytes removed
	Height  uint64 // the height of the block the torn record was to hold
}

// CorruptError reports a damaged log: a record that fails its checks and is
// not a torn last record, such as a complete last record with a flipped
// bit. Nothing was cut; start-up must stop.
type CorruptError struct {
	Segment string // segment file base name
	Offset  int64  // offset of the damaged record (0 for a missing segment)
	Height  uint64 // the height of the block the damaged record holds (the first of a missing segment)
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("ledger: block log corrupt: segment %s offset %d (block %d): %s", e.Segment, e.Offset, e.Height, e.Reason)
}

var errLogClosed = errors.New("ledger: block log closed")

// OpenLog opens the log in dir, creating dir (0o750) and the first segment
// if missing. It takes an exclusive lock on dir/LOCK, scans and checks every
// record, and cuts a torn last record (see Repair). Damage anywhere else is
// returned as a *CorruptError.
func OpenLog(dir string, opts LogOptions) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, opts: opts}
	if opts.ReadOnly {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("ledger: block log dir %s: not a directory (%v)", dir, err)
		}
	} else {
		if err := makeDir(dir); err != nil {
			return nil, err
		}
		if l.lock, err = lockDir(dir); err != nil {
			return nil, err
		}
		if err := removeRewriteLeftovers(dir); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	if err := l.load(); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

// makeDir creates dir if missing and makes its entry durable.
func makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ledger: block log dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("ledger: create block log dir: %w", err)
	}
	return syncDir(filepath.Dir(filepath.Clean(dir)))
}

// LockLog takes the lock OpenLog takes on the log in dir, an existing
// directory, and fails if another process (a running gateway) holds it:
// a tool that replaces the directory holds it meanwhile. Closing the file
// releases it.
func LockLog(dir string) (*os.File, error) { return lockDir(dir) }

// lockDir takes the lock that keeps a second process out of dir.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("ledger: block log lock: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		return nil, fmt.Errorf("ledger: block log %s is in use by another process", dir)
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("ledger: block log lock %s: %w", dir, err)
	}
	return f, nil
}

// load reads the base, opens and scans every segment, or creates the first one.
func (l *Log) load() error {
	if err := l.loadBase(); err != nil {
		return err
	}
	seqs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	if len(seqs) == 0 && l.opts.ReadOnly {
		return nil
	}
	if len(seqs) == 0 {
		f, err := createSegment(l.dir, 1)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, f)
		return nil
	}
	for k, seq := range seqs {
		if want := uint32(k + 1); seq != want {
			return &CorruptError{Segment: segmentName(want), Height: l.base + uint64(len(l.recs)) + 1, Reason: "segment missing"}
		}
		name := segmentName(seq)
		last := k == len(seqs)-1
		flag := os.O_RDONLY
		if last && !l.opts.ReadOnly {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(filepath.Join(l.dir, name), flag, 0)
		if err != nil {
			return fmt.Errorf("ledger: open segment: %w", err)
		}
		l.segs = append(l.segs, f)
		size, err := l.scanSegment(f, uint32(k), last)
		if err != nil {
			return err
		}
		l.size = size
	}
	return nil
}

// scanSegment checks and indexes the records of segment k and returns its
// size.
//
// A crash during Append can tear the last record of the last segment and
// nothing else: its one write reached the disk only in part. The file may
// end inside the record, or the file system may have extended the file
// before the data reached the disk, so that sectors of the record read as
// zeros. These shapes of the last record are a torn tail, and are cut:
//
//   - fewer than 8 bytes (a header) left;
//   - a declared length that runs past the end of the file, with at most
//     MaxRecordBytes+8 bytes left from the record's start (a single
//     interrupted write could have left them), unless the bytes left are a
//     whole record that matches the CRC under its own length: then the
//     record is complete and its length field is damaged;
//   - a record that ends exactly at the end of the file and fails its CRC
//     while a sector of its data (split at 512-byte file offsets) is all
//     zeros: that part of the write never reached the disk;
//   - nothing but zero bytes from the record's start to the end of the file.
//     An all-zero header is never a record: the CRC-32C of a zero length
//     is not zero.
//
// A last record that is complete (its whole length present, ending at the
// end of the file), has data in every sector and fails its CRC was written
// in full, so no crash tore it: it was damaged later (bit rot) and may
// have been acknowledged. That, any other failed check, any failed check
// in a segment that is not the last, and a torn shape of one of the first
// MinRecords records are a *CorruptError.
func (l *Log) scanSegment(f *os.File, k uint32, last bool) (int64, error) {
	name := segmentName(k + 1)
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("ledger: stat segment: %w", err)
	}
	size := fi.Size()
	corrupt := func(off int64, format string, a ...any) error {
		return &CorruptError{Segment: name, Offset: off, Height: l.base + uint64(len(l.recs)) + 1, Reason: fmt.Sprintf(format, a...)}
	}
	if size == 0 && !last {
		return 0, corrupt(0, "empty segment before the last")
	}
	maxLen := int64(l.opts.MaxRecordBytes)
	r := bufio.NewReaderSize(f, 64<<10)
	buf := make([]byte, 64<<10)
	var hdr [recordHeaderBytes]byte
	for off := int64(0); off < size; {
		left := size - off
		if left < recordHeaderBytes {
			if last {
				return l.cutTorn(f, name, off, size, fmt.Sprintf("%d bytes of a record header", left))
			}
			return 0, corrupt(off, "%d bytes left, too few for a record header", left)
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, fmt.Errorf("ledger: read segment %s: %w", name, err)
		}
		if last && hdr == [recordHeaderBytes]byte{} {
			zeros, err := onlyZeros(r, left-recordHeaderBytes)
			if err != nil {
				return 0, fmt.Errorf("ledger: read segment %s: %w", name, err)
			}
			if zeros {
				return l.cutTorn(f, name, off, size, fmt.Sprintf("%d zero bytes", left))
			}
			return 0, corrupt(off, "zeroed record header before the end of the segment")
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		end := off + recordHeaderBytes + n
		if end > size {
			if last && left <= maxLen+recordHeaderBytes {
				rest := left - recordHeaderBytes
				crc, err := recordCRC(r, buf, rest)
				if err != nil {
					return 0, fmt.Errorf("ledger: read segment %s: %w", name, err)
				}
				if crc == binary.BigEndian.Uint32(hdr[4:8]) {
					return 0, corrupt(off, "record length %d runs past the end of the segment, but the %d bytes to the end are a whole record that matches its CRC: the length field is damaged", n, rest)
				}
				return l.cutTorn(f, name, off, size, fmt.Sprintf("a record of length %d with %d bytes written", n, rest))
			}
			return 0, corrupt(off, "record length %d runs past end of segment", n)
		}
		if n > maxLen {
			return 0, corrupt(off, "record length %d over limit %d", n, maxLen)
		}
		crc := crc32.Update(0, castagnoli, hdr[0:4])
		for rest := n; rest > 0; {
			chunk := buf[:min(rest, int64(len(buf)))]
			if _, err := io.ReadFull(r, chunk); err != nil {
				return 0, fmt.Errorf("ledger: read segment %s: %w", name, err)
			}
			crc = crc32.Update(crc, castagnoli, chunk)
			rest -= int64(len(chunk))
		}
		if crc != binary.BigEndian.Uint32(hdr[4:8]) {
			if !last || end != size {
				return 0, corrupt(off, "crc mismatch")
			}
			sector, err := zeroSector(f, buf, off+recordHeaderBytes, end)
			if err != nil {
				return 0, fmt.Errorf("ledger: read segment %s: %w", name, err)
			}
			if sector < 0 {
				return 0, corrupt(off, "crc mismatch in the last record, which is complete (its %d bytes are all there and none of its sectors reads as zeros): damaged after it was written, not torn by a crash", n)
			}
			return l.cutTorn(f, name, off, size, fmt.Sprintf("a record of length %d that fails its CRC, zeros at offset %d", n, sector))
		}
		l.recs = append(l.recs, recPos{seg: k, n: uint32(n), off: off})
		off = end
	}
	return size, nil
}

// cutTorn cuts the torn last record at off, described by what, unless it
// is one of the first MinRecords records: a record known to have been
// durable is damaged, not torn.
func (l *Log) cutTorn(f *os.File, name string, off, size int64, what string) (int64, error) {
	if h := l.base + uint64(len(l.recs)) + 1; h <= l.opts.MinRecords {
		return 0, &CorruptError{Segment: name, Offset: off, Height: h,
			Reason: fmt.Sprintf("the last record looks torn (%s), but %d records were durable before: it was written in full and damaged since", what, l.opts.MinRecords)}
	}
	return l.cut(f, name, off, size)
}

// cut truncates the torn tail of the last segment at off and records the repair.
func (l *Log) cut(f *os.File, name string, off, size int64) (int64, error) {
	if l.opts.ReadOnly {
		return off, nil // leave it out of the snapshot, and on disk
	}
	if err := f.Truncate(off); err != nil {
		return 0, fmt.Errorf("ledger: cut torn tail of %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("ledger: cut torn tail of %s: %w", name, err)
	}
	l.repair = &LogRepair{Segment: name, Offset: off, Bytes: size - off, Height: l.base + uint64(len(l.recs)) + 1}
	return off, nil
}

// writableLocked reports why the log takes no write, if it does not; wmu
// is held.
func (l *Log) writableLocked() error {
	switch {
	case l.closed:
		return errLogClosed
	case l.opts.ReadOnly:
		return errors.New("ledger: block log opened read-only")
	case l.failed != nil:
		return l.failed
	}
	return nil
}

// Append writes rec as the next record and fsyncs it. After a failed write,
// fsync or segment roll the log's state on disk is unknown: Append keeps
// failing, and the log must be closed and reopened, which cuts a torn tail.
func (l *Log) Append(rec []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	switch {
	case len(rec) > l.opts.MaxRecordBytes:
		return fmt.Errorf("ledger: block log record of %d bytes over limit %d", len(rec), l.opts.MaxRecordBytes)
	}
	buf := appendRecord(make([]byte, 0, recordHeaderBytes+len(rec)), rec)
	if l.size > 0 && l.size+int64(len(buf)) > l.opts.SegmentBytes {
		if err := l.roll(); err != nil {
			l.failed = err
			return err
		}
	}
	k := len(l.segs) - 1
	f := l.segs[k]
	if _, err := f.WriteAt(buf, l.size); err != nil {
		l.failed = fmt.Errorf("ledger: append to block log: %w", err)
		return l.failed
	}
	if err := f.Sync(); err != nil {
		l.failed = fmt.Errorf("ledger: append to block log: %w", err)
		return l.failed
	}
	l.mu.Lock()
	l.recs = append(l.recs, recPos{seg: uint32(k), n: uint32(len(rec)), off: l.size})
	l.mu.Unlock()
	l.size += int64(len(buf))
	return nil
}

// roll starts the next segment. Called with wmu held.
func (l *Log) roll() error {
	seq := len(l.segs) + 1
	if seq > maxSegmentSeq {
		return fmt.Errorf("ledger: block log full: %d segments", len(l.segs))
	}
	f, err := createSegment(l.dir, uint32(seq))
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.segs = append(l.segs, f)
	l.mu.Unlock()
	l.size = 0
	return nil
}

// AppendLogRecord appends rec framed as a block log record, as a segment
// file holds it: its length (4 bytes, big-endian), the CRC-32C of the
// length and the data (4 bytes), and the data. A backup writes segment
// files with it that OpenLog reads as its own.
func AppendLogRecord(dst, rec []byte) []byte { return appendRecord(dst, rec) }

// LogSegmentName is the file name of segment seq (1, 2, ...) of a log.
func LogSegmentName(seq uint32) string { return segmentName(seq) }

// appendRecord appends rec's record (header and data) to dst.
func appendRecord(dst, rec []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(rec)))
	crc := crc32.Update(crc32.Update(0, castagnoli, dst[start:]), castagnoli, rec)
	dst = binary.BigEndian.AppendUint32(dst, crc)
	return append(dst, rec...)
}

// Len is the number of records.
func (l *Log) Len() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return uint64(len(l.recs))
}

// Height is the height of the last block in the log: Base() + Len(), so
// the base height for a log with no records yet.
func (l *Log) Height() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.base + uint64(len(l.recs))
}

// ReadHeight returns the block at height h, after checking its CRC. A
// height at or below the base (a log that starts from a snapshot) is an
// error wrapping ErrBelowBase; one above Height is out of range.
func (l *Log) ReadHeight(h uint64) ([]byte, error) {
	l.mu.RLock()
	base, n := l.base, uint64(len(l.recs))
	l.mu.RUnlock()
	switch {
	case h == 0:
		return nil, errors.New("ledger: no block at height 0")
	case h <= base:
		return nil, &BelowBaseError{Height: h, Base: base}
	case h > base+n:
		return nil, fmt.Errorf("ledger: block %d out of range: the log ends at %d", h, base+n)
	}
	return l.Read(h - base - 1)
}

// Read returns record i (0-based: the block of height Base()+i+1), after
// checking its CRC.
func (l *Log) Read(i uint64) ([]byte, error) {
	l.cmu.RLock()
	defer l.cmu.RUnlock()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, errLogClosed
	}
	if n := uint64(len(l.recs)); i >= n {
		l.mu.RUnlock()
		return nil, fmt.Errorf("ledger: block log record %d out of range: log has %d", i, n)
	}
	p := l.recs[i]
	f := l.segs[p.seg]
	l.mu.RUnlock()

	// A concurrent Close makes ReadAt fail with os.ErrClosed; it cannot
	// read another file.
	name := segmentName(p.seg + 1)
	buf := make([]byte, recordHeaderBytes+int(p.n))
	if _, err := f.ReadAt(buf, p.off); err != nil {
		return nil, fmt.Errorf("ledger: read block log record %d in %s: %w", i, name, err)
	}
	data := buf[recordHeaderBytes:]
	if binary.BigEndian.Uint32(buf[0:4]) != p.n {
		return nil, &CorruptError{Segment: name, Offset: p.off, Reason: "record length changed"}
	}
	if crc32.Update(crc32.Update(0, castagnoli, buf[0:4]), castagnoli, data) != binary.BigEndian.Uint32(buf[4:8]) {
		return nil, &CorruptError{Segment: name, Offset: p.off, Reason: "crc mismatch"}
	}
	return data, nil
}

// Repair reports the torn tail OpenLog cut, or nil if it cut nothing.
func (l *Log) Repair() *LogRepair { return l.repair }

// Close closes the segments and releases the lock. It is idempotent. Every
// appended record is already durable, so Close does not sync.
func (l *Log) Close() error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.closeFiles()
}

// closeFiles closes what OpenLog opened, the lock last.
func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range l.segs {
		errs = append(errs, f.Close())
	}
	if l.lock != nil { // a read-only log has none
		errs = append(errs, l.lock.Close())
	}
	l.segs, l.recs = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ledger: close block log: %w", err)
	}
	return nil
}

func segmentName(seq uint32) string { return fmt.Sprintf("%08d.log", seq) }

// listSegments returns the numbers of dir's segment files, ascending.
// Other files are ignored.
func listSegments(dir string) ([]uint32, error) {
	entries, err := os.ReadDir(dir) // sorted by name: numeric order, as names are fixed width
	if err != nil {
		return nil, fmt.Errorf("ledger: list block log: %w", err)
	}
	var seqs []uint32
	for _, e := range entries {
		digits, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || len(digits) != 8 {
			continue
		}
		seq, err := strconv.ParseUint(digits, 10, 32)
		if err != nil || seq == 0 {
			continue
		}
		seqs = append(seqs, uint32(seq))
	}
	return seqs, nil
}

// createSegment creates segment seq and makes its directory entry durable.
func createSegment(dir string, seq uint32) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, segmentName(seq)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("ledger: create segment: %w", err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ledger: sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ledger: sync dir %s: %w", dir, err)
	}
	return nil
}

// recordCRC returns the CRC a record of the next n bytes of r would have:
// over n as the 4-byte length, then the bytes. buf is scratch space.
func recordCRC(r io.Reader, buf []byte, n int64) (uint32, error) {
	crc := crc32.Update(0, castagnoli, binary.BigEndian.AppendUint32(nil, uint32(n)))
	for n > 0 {
		chunk := buf[:min(n, int64(len(buf)))]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return 0, err
		}
		crc = crc32.Update(crc, castagnoli, chunk)
		n -= int64(len(chunk))
	}
	return crc, nil
}

// zeroSector returns the offset of the first piece of f's bytes [start,
// end), split at multiples of sectorBytes, that is all zeros, or -1 if
// there is none. buf is scratch space of at least 2*sectorBytes.
func zeroSector(f *os.File, buf []byte, start, end int64) (int64, error) {
	for off := start; off < end; {
		stop := min(end, (off+int64(len(buf)))/sectorBytes*sectorBytes) // a piece never spans two reads
		chunk := buf[:stop-off]
		if _, err := f.ReadAt(chunk, off); err != nil {
			return 0, err
		}
		for p := off; p < stop; {
			next := min((p/sectorBytes+1)*sectorBytes, stop)
			if !slices.ContainsFunc(chunk[p-off:next-off], func(c byte) bool { return c != 0 }) {
				return p, nil
			}
			p = next
		}
		off = stop
	}
	return -1, nil
}

// onlyZeros reports whether the next n bytes of r are all zero.
func onlyZeros(r io.Reader, n int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for n > 0 {
		chunk := buf[:min(n, int64(len(buf)))]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return false, err
		}
		for _, c := range chunk {
			if c != 0 {
				return false, nil
			}
		}
		n -= int64(len(chunk))
	}
	return true, nil
}
