package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// smallSegments makes a few records fill several segments.
var smallSegments = LogOptions{SegmentBytes: 4096}

// testRecords returns n records of random content, sized 0 to maxLen bytes.
func testRecords(seed uint64, n, maxLen int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	recs := make([][]byte, n)
	for i := range recs {
		rec := make([]byte, rng.IntN(maxLen+1))
		for j := range rec {
			rec[j] = byte(rng.Uint32())
		}
		recs[i] = rec
	}
	return recs
}

func openLog(t *testing.T, dir string, opts LogOptions) *Log {
	t.Helper()
	l, err := OpenLog(dir, opts)
	if err != nil {
		t.Fatalf("OpenLog: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// writeLog appends recs to a new log in dir, closes it and returns where
// each record went.
func writeLog(t *testing.T, dir string, opts LogOptions, recs [][]byte) []recPos {
	t.Helper()
	l := openLog(t, dir, opts)
	for i, rec := range recs {
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
	pos := slices.Clone(l.recs)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return pos
}

// checkRecords checks that l holds exactly want.
func checkRecords(t *testing.T, l *Log, want [][]byte) {
	t.Helper()
	if got := l.Len(); got != uint64(len(want)) {
		t.Fatalf("Len() = %d, want %d", got, len(want))
	}
	for i, w := range want {
		got, err := l.Read(uint64(i))
		if err != nil {
			t.Fatalf("Read(%d): %v", i, err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("Read(%d) = %d bytes, differs from the %d appended", i, len(got), len(w))
		}
	}
}

func segmentPath(dir string, seg uint32) string { return filepath.Join(dir, segmentName(seg+1)) }

// xorByte flips bits of the byte at off in file.
func xorByte(t *testing.T, file string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, file string) int64 {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestLogAppendReopen(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(1, 60, 1500)
	recs[10] = make([]byte, 3*smallSegments.SegmentBytes) // larger than a segment
	recs[11] = nil                                        // empty record

	l := openLog(t, dir, smallSegments)
	for i, rec := range recs {
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
	checkRecords(t, l, recs)
	pos := slices.Clone(l.recs)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	nsegs := pos[len(pos)-1].seg + 1
	if nsegs < 5 {
		t.Fatalf("records went into %d segments, want several", nsegs)
	}
	// No segment grows past SegmentBytes, except by one record on its own.
	for seg := range nsegs {
		size := fileSize(t, segmentPath(dir, seg))
		var n int
		for _, p := range pos {
			if p.seg == seg {
				n++
			}
		}
		if size > smallSegments.SegmentBytes && n != 1 {
			t.Errorf("segment %d: %d bytes in %d records, over SegmentBytes %d", seg+1, size, n, smallSegments.SegmentBytes)
		}
	}
	if p := pos[10]; p.off != 0 || pos[9].seg == p.seg || pos[11].seg == p.seg {
		t.Errorf("record larger than a segment at %+v, want alone in a segment", p)
	}

	l = openLog(t, dir, smallSegments)
	if r := l.Repair(); r != nil {
		t.Errorf("Repair() = %+v after a clean close, want nil", r)
	}
	checkRecords(t, l, recs)
	more := testRecords(2, 5, 1000)
	for _, rec := range more {
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append after reopen: %v", err)
		}
	}
	checkRecords(t, l, append(recs, more...))
}

func TestLogNewDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "blocks")
	l := openLog(t, dir, LogOptions{})
	if n := l.Len(); n != 0 {
		t.Fatalf("Len() = %d, want 0", n)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("log dir: %v, %v; want mode 0750", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "00000001.log")); err != nil {
		t.Fatalf("first segment: %v", err)
	}
	if err := l.Append([]byte("block 1")); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, l, [][]byte{[]byte("block 1")})
}

func TestLogTornTail(t *testing.T) {
	layouts := []struct {
		name    string
		lastLen int // length of the last record
	}{
		{"shared segment", 700},
		{"alone in segment", 6000}, // larger than SegmentBytes
	}
	cuts := []struct {
		name string
		at   func(n int64) int64 // cut point relative to the record's start, given its data length
	}{
		{"1 header byte", func(int64) int64 { return 1 }},
		{"length only", func(int64) int64 { return 4 }},
		{"7 header bytes", func(int64) int64 { return 7 }},
		{"header only", func(int64) int64 { return 8 }},
		{"half the data", func(n int64) int64 { return 8 + n/2 }},
		{"all but one byte", func(n int64) int64 { return 8 + n - 1 }},
	}
	for _, lay := range layouts {
		for _, cut := range cuts {
			t.Run(lay.name+"/"+cut.name, func(t *testing.T) {
				dir := t.TempDir()
				recs := testRecords(3, 20, 1000)
				recs[len(recs)-1] = bytes.Repeat([]byte{0x5a}, lay.lastLen)
				pos := writeLog(t, dir, smallSegments, recs)
				last := pos[len(pos)-1]
				file := segmentPath(dir, last.seg)
				size := last.off + cut.at(int64(last.n))
				if err := os.Truncate(file, size); err != nil {
					t.Fatal(err)
				}

				l := openLog(t, dir, smallSegments)
				want := LogRepair{Segment: segmentName(last.seg + 1), Offset: last.off, Bytes: size - last.off, Height: uint64(len(recs))}
				if r := l.Repair(); r == nil || *r != want {
					t.Fatalf("Repair() = %+v, want %+v", r, want)
				}
				if got := fileSize(t, file); got != last.off {
					t.Fatalf("segment is %d bytes after the cut, want %d", got, last.off)
				}
				recs = recs[:len(recs)-1]
				checkRecords(t, l, recs)

				next := []byte("after the repair")
				if err := l.Append(next); err != nil {
					t.Fatalf("Append after repair: %v", err)
				}
				recs = append(recs, next)
				checkRecords(t, l, recs)
				l.Close()

				l = openLog(t, dir, smallSegments)
				if r := l.Repair(); r != nil {
					t.Fatalf("second reopen: Repair() = %+v, want nil", r)
				}
				checkRecords(t, l, recs)
			})
		}
	}
}

// A log cut exactly between records is not torn: nothing to repair.
func TestLogCutAtRecordBoundary(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(4, 10, 500)
	pos := writeLog(t, dir, smallSegments, recs)
	last := pos[len(pos)-1]
	if err := os.Truncate(segmentPath(dir, last.seg), last.off); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, smallSegments)
	if r := l.Repair(); r != nil {
		t.Fatalf("Repair() = %+v, want nil", r)
	}
	checkRecords(t, l, recs[:len(recs)-1])
}

// damageCase picks a record of a log and damages it.
type damageCase struct {
	name string
	pick func(pos []recPos) int // index of the record to damage
	at   func(p recPos) int64   // offset in the segment of the byte to flip
	mask byte
}

// Records to damage, in a log of several segments.
var (
	middleOfFirstSegment = func(pos []recPos) int {
		for i := range pos {
			if pos[i].seg == 0 && pos[i+1].seg == 0 && pos[i].off > 0 {
				return i
			}
		}
		return -1
	}
	lastOfNonLastSegment = func(pos []recPos) int {
		for i := range pos[:len(pos)-1] {
			if pos[i+1].seg != pos[i].seg {
				return i
			}
		}
		return -1
	}
	middleOfLastSegment = func(pos []recPos) int {
		last := pos[len(pos)-1].seg
		for i := range pos[:len(pos)-1] {
			if pos[i].seg == last && pos[i].off > 0 {
				return i
			}
		}
		return -1
	}
	// firstOfLastSegment is the record with the most bytes after it in the last segment.
	firstOfLastSegment = func(pos []recPos) int {
		for i := range pos {
			if pos[i].seg == pos[len(pos)-1].seg {
				return i
			}
		}
		return -1
	}
)

// Bytes to flip.
var (
	dataByte      = func(p recPos) int64 { return p.off + 8 + int64(p.n)/2 }
	lengthLowByte = func(p recPos) int64 { return p.off + 3 }
	lengthTopByte = func(p recPos) int64 { return p.off }
	crcByte       = func(p recPos) int64 { return p.off + 5 }
)

// damaged is a log with one damaged record, reopened.
type damaged struct {
	l      *Log  // the reopened log, if OpenLog succeeded
	err    error // what OpenLog returned
	recs   [][]byte
	pos    []recPos
	i      int     // the damaged record
	before []int64 // segment sizes before OpenLog
	after  []int64 // and after
}

func segmentSizes(t *testing.T, dir string, pos []recPos) []int64 {
	t.Helper()
	var sizes []int64
	for seg := range pos[len(pos)-1].seg + 1 {
		sizes = append(sizes, fileSize(t, segmentPath(dir, seg)))
	}
	return sizes
}

// damage writes a log of several segments, damages one record as c says,
// and reopens the log with opts.
func damage(t *testing.T, opts LogOptions, c damageCase) damaged {
	t.Helper()
	dir := t.TempDir()
	// At least 40 records of 100 to 700 bytes, and 2 KiB in the last segment.
	var recs [][]byte
	l := openLog(t, dir, opts)
	for i, rec := range testRecords(5, 100, 600) {
		if len(recs) >= 40 && l.size >= 2048 {
			break
		}
		rec = append(rec, make([]byte, 100)...)
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
		recs = append(recs, rec)
	}
	pos := slices.Clone(l.recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if pos[len(pos)-1].seg < 2 {
		t.Fatalf("log has %d segments, want at least 3", pos[len(pos)-1].seg+1)
	}
	i := c.pick(pos)
	if i < 0 {
		t.Fatal("no record fits the case")
	}
	xorByte(t, segmentPath(dir, pos[i].seg), c.at(pos[i]), c.mask)
	before := segmentSizes(t, dir, pos)
	l, err := OpenLog(dir, opts)
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return damaged{l: l, err: err, recs: recs, pos: pos, i: i, before: before, after: segmentSizes(t, dir, pos)}
}

func TestLogCorrupt(t *testing.T) {
	opts := LogOptions{SegmentBytes: 4096, MaxRecordBytes: 1024}
	cases := []damageCase{
		{"data/middle of first segment", middleOfFirstSegment, dataByte, 0x01},
		{"data/last record of a non-last segment", lastOfNonLastSegment, dataByte, 0x80},
		{"data/middle of last segment", middleOfLastSegment, dataByte, 0xff},
		{"crc/middle of last segment", middleOfLastSegment, crcByte, 0x10},
		{"length/shorter or longer, middle of first segment", middleOfFirstSegment, lengthLowByte, 0x01},
		{"length/shorter or longer, middle of last segment", middleOfLastSegment, lengthLowByte, 0x01},
		{"length/past the end, last record of a non-last segment", lastOfNonLastSegment, lengthTopByte, 0x80},
		{"length/past the end, middle of first segment", middleOfFirstSegment, lengthTopByte, 0x80},
		// More than MaxRecordBytes+8 bytes follow: no single write left them.
		{"length/past the end, first of last segment", firstOfLastSegment, lengthTopByte, 0x80},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := damage(t, opts, c)
			var ce *CorruptError
			if !errors.As(d.err, &ce) {
				t.Fatalf("OpenLog: %v, want *CorruptError", d.err)
			}
			p := d.pos[d.i]
			if want := segmentName(p.seg + 1); ce.Segment != want || ce.Offset != p.off {
				t.Fatalf("CorruptError at %s offset %d, want %s offset %d", ce.Segment, ce.Offset, want, p.off)
			}
			if !slices.Equal(d.before, d.after) {
				t.Fatalf("segment sizes went from %v to %v: OpenLog cut a corrupt log", d.before, d.after)
			}
		})
	}
}

func TestLogCorruptErrorMessage(t *testing.T) {
	err := &CorruptError{Segment: "00000001.log", Offset: 1234, Height: 7, Reason: "crc mismatch"}
	if got, want := err.Error(), "ledger: block log corrupt: segment 00000001.log offset 1234 (block 7): crc mismatch"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// Bit rot in the last record of the log, complete and fsynced, is not a
// torn write (issue 20, defect 8): OpenLog refuses it, read-only too, and
// changes nothing. A torn write leaves part of the record missing (the file
// ends inside it) or reading as zeros; a flipped bit leaves every byte there.
func TestLogDamagedLastRecordIsRefused(t *testing.T) {
	recs := testRecords(6, 12, 1500)
	for i := range recs {
		recs[i] = append(recs[i], 0xee) // no record ends in a zero byte (a zeroed sector)
	}
	bitOf := func(b byte) byte { // the lowest bit that is 0 in b: flipping it makes b larger
		m := byte(1)
		for b&m != 0 {
			m <<= 1
		}
		return m
	}
	cases := []struct {
		name string
		at   func(p recPos) int64
		mask func(b byte) byte
	}{
		{"data, first byte", func(p recPos) int64 { return p.off + 8 }, func(byte) byte { return 0x01 }},
		{"data, middle", func(p recPos) int64 { return p.off + 8 + int64(p.n)/2 }, func(byte) byte { return 0x10 }},
		{"data, last byte", func(p recPos) int64 { return p.off + 8 + int64(p.n) - 1 }, func(byte) byte { return 0x80 }},
		{"crc", func(p recPos) int64 { return p.off + 5 }, func(byte) byte { return 0x04 }},
		{"length, shorter", func(p recPos) int64 { return p.off + 3 }, func(b byte) byte { return b & -b }},
		{"length, longer", func(p recPos) int64 { return p.off + 3 }, bitOf},
		{"length, top bit", func(p recPos) int64 { return p.off }, func(byte) byte { return 0x80 }},
	}
	for _, readOnly := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/read-only=%v", c.name, readOnly), func(t *testing.T) {
				dir := t.TempDir()
				pos := writeLog(t, dir, smallSegments, recs)
				last := pos[len(pos)-1]
				file := segmentPath(dir, last.seg)
				b, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				at := c.at(last)
				mask := c.mask(b[at])
				if mask == 0 {
					t.Fatalf("no bit to flip in byte 0x%02x", b[at])
				}
				xorByte(t, file, at, mask)
				before, _ := os.ReadFile(file)

				_, err = OpenLog(dir, LogOptions{SegmentBytes: smallSegments.SegmentBytes, ReadOnly: readOnly})
				var ce *CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("OpenLog: %v, want a *CorruptError", err)
				}
				if want := segmentName(last.seg + 1); ce.Segment != want || ce.Offset != last.off || ce.Height != uint64(len(recs)) {
					t.Fatalf("CorruptError at %s offset %d block %d, want %s offset %d block %d",
						ce.Segment, ce.Offset, ce.Height, want, last.off, len(recs))
				}
				if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
					t.Fatal("OpenLog changed a segment it refused")
				}
			})
		}
	}
}

// The torn writes a crash can leave of a last record whose length made it
// to the disk: the file system extended the file, but sectors of the
// record never got their data and read as zeros. They are cut.
func TestLogTornLastRecordZeroSectors(t *testing.T) {
	const n = 3000 // the last record's data: 6 sectors or more
	cases := []struct {
		name string
		zero func(p recPos) (from, to int64) // the bytes of the segment that read as zeros
	}{
		{"all the data", func(p recPos) (int64, int64) { return p.off + 8, p.off + 8 + n }},
		{"from the second sector on", func(p recPos) (int64, int64) {
			return (p.off/sectorBytes + 1) * sectorBytes, p.off + 8 + n
		}},
		{"one sector in the middle", func(p recPos) (int64, int64) {
			s := (p.off/sectorBytes + 3) * sectorBytes
			return s, s + sectorBytes
		}},
		{"the part in the last sector", func(p recPos) (int64, int64) {
			end := p.off + 8 + n
			return (end - 1) / sectorBytes * sectorBytes, end
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			recs := testRecords(7, 5, 300)
			recs = append(recs, bytes.Repeat([]byte{0x5a}, n))
			pos := writeLog(t, dir, LogOptions{}, recs)
			last := pos[len(pos)-1]
			file := segmentPath(dir, last.seg)
			from, to := c.zero(last)
			f, err := os.OpenFile(file, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, to-from), from); err != nil {
				t.Fatal(err)
			}
			f.Close()

			l := openLog(t, dir, LogOptions{})
			want := LogRepair{Segment: segmentName(last.seg + 1), Offset: last.off, Bytes: 8 + n, Height: uint64(len(recs))}
			if r := l.Repair(); r == nil || *r != want {
				t.Fatalf("Repair() = %+v, want %+v", r, want)
			}
			checkRecords(t, l, recs[:len(recs)-1])
		})
	}
}

// MinRecords: a record known to have been durable (the gateway's index
// holds its block) is never cut as a torn tail, whatever it looks like.
func TestLogMinRecords(t *testing.T) {
	for _, c := range []struct {
		min  uint64
		torn bool
	}{{5, true}, {6, false}, {100, false}} {
		t.Run(strconv.FormatUint(c.min, 10), func(t *testing.T) {
			dir := t.TempDir()
			recs := testRecords(8, 6, 400)
			pos := writeLog(t, dir, LogOptions{}, recs)
			last := pos[len(pos)-1]
			file := segmentPath(dir, last.seg)
			if err := os.Truncate(file, last.off+8+int64(last.n)/2); err != nil {
				t.Fatal(err)
			}
			size := fileSize(t, file)
			l, err := OpenLog(dir, LogOptions{MinRecords: c.min})
			if c.torn {
				if err != nil {
					t.Fatalf("OpenLog: %v", err)
				}
				defer l.Close()
				if r := l.Repair(); r == nil || r.Offset != last.off {
					t.Fatalf("Repair() = %+v, want a cut at %d", r, last.off)
				}
				checkRecords(t, l, recs[:5])
				return
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset != last.off || ce.Height != 6 {
				t.Fatalf("OpenLog: %v, want a *CorruptError at offset %d, block 6", err, last.off)
			}
			if fileSize(t, file) != size {
				t.Fatal("OpenLog cut a record known to be durable")
			}
		})
	}
}

func TestLogReadOutOfRange(t *testing.T) {
	l := openLog(t, t.TempDir(), LogOptions{})
	if _, err := l.Read(0); err == nil {
		t.Fatal("Read(0) of an empty log succeeded")
	}
	if err := l.Append([]byte("one")); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{1, 2, 1 << 63} {
		if _, err := l.Read(i); err == nil || !strings.HasPrefix(err.Error(), "ledger: ") {
			t.Errorf("Read(%d) = %v, want a ledger error", i, err)
		}
	}
}

func TestLogReadChecksCRC(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, LogOptions{})
	for _, rec := range []string{"one", "two", "three"} {
		if err := l.Append([]byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	p := l.recs[1]
	xorByte(t, segmentPath(dir, p.seg), p.off+8, 0x01)
	_, err := l.Read(1)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Segment != "00000001.log" || ce.Offset != p.off {
		t.Fatalf("Read of a damaged record: %v, want *CorruptError at 00000001.log offset %d", err, p.off)
	}
}

func TestLogMaxRecordBytes(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, LogOptions{MaxRecordBytes: 100})
	if err := l.Append(make([]byte, 100)); err != nil {
		t.Fatalf("Append at the limit: %v", err)
	}
	if err := l.Append(make([]byte, 101)); err == nil {
		t.Fatal("Append over the limit succeeded")
	}
	if n := l.Len(); n != 1 {
		t.Fatalf("Len() = %d after a refused append, want 1", n)
	}
	// A refused record leaves the log usable.
	if err := l.Append([]byte("next")); err != nil {
		t.Fatalf("Append after a refused record: %v", err)
	}
	checkRecords(t, l, [][]byte{make([]byte, 100), []byte("next")})
}

func TestLogOptionsInvalid(t *testing.T) {
	for _, opts := range []LogOptions{
		{SegmentBytes: -1},
		{MaxRecordBytes: -1},
		{MaxRecordBytes: maxMaxRecordBytes + 1},
	} {
		if l, err := OpenLog(t.TempDir(), opts); err == nil {
			l.Close()
			t.Errorf("OpenLog(%+v) succeeded", opts)
		}
	}
}

func TestLogLocked(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, LogOptions{})
	_, err := OpenLog(dir, LogOptions{})
	if want := fmt.Sprintf("ledger: block log %s is in use by another process", dir); err == nil || err.Error() != want {
		t.Fatalf("second OpenLog: %v, want %q", err, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, LogOptions{})
	l2.Close()
}

func TestLogClose(t *testing.T) {
	l := openLog(t, t.TempDir(), LogOptions{})
	if err := l.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Append([]byte("y")); err == nil {
		t.Error("Append after Close succeeded")
	}
	if _, err := l.Read(0); err == nil {
		t.Error("Read after Close succeeded")
	}
}

func TestLogMissingSegment(t *testing.T) {
	dir := t.TempDir()
	pos := writeLog(t, dir, smallSegments, testRecords(6, 30, 1000))
	if pos[len(pos)-1].seg < 2 {
		t.Fatal("want at least 3 segments")
	}
	if err := os.Remove(segmentPath(dir, 1)); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLog(dir, smallSegments)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Segment != "00000002.log" {
		t.Fatalf("OpenLog: %v, want *CorruptError for 00000002.log", err)
	}
}

func TestLogEmptySegment(t *testing.T) {
	t.Run("last", func(t *testing.T) {
		// A crash after a roll created the segment, before the write.
		dir := t.TempDir()
		recs := testRecords(7, 5, 100)
		writeLog(t, dir, LogOptions{}, recs)
		if err := os.WriteFile(filepath.Join(dir, "00000002.log"), nil, 0o640); err != nil {
			t.Fatal(err)
		}
		l := openLog(t, dir, LogOptions{})
		if r := l.Repair(); r != nil {
			t.Errorf("Repair() = %+v, want nil", r)
		}
		if err := l.Append([]byte("into segment 2")); err != nil {
			t.Fatal(err)
		}
		checkRecords(t, l, append(recs, []byte("into segment 2")))
		if l.recs[len(recs)].seg != 1 {
			t.Errorf("record went to segment %d, want 2", l.recs[len(recs)].seg+1)
		}
	})
	t.Run("not last", func(t *testing.T) {
		dir := t.TempDir()
		for _, name := range []string{"00000001.log", "00000002.log"} {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		_, err := OpenLog(dir, LogOptions{})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Segment != "00000001.log" {
			t.Fatalf("OpenLog: %v, want *CorruptError for 00000001.log", err)
		}
	})
}

// Readers see every record as soon as Append returns, while it runs.
func TestLogReadDuringAppend(t *testing.T) {
	l := openLog(t, t.TempDir(), smallSegments)
	recs := testRecords(8, 200, 300)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				n := l.Len()
				if n > 0 {
					got, err := l.Read(n - 1)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, recs[n-1]) {
						errs <- fmt.Errorf("Read(%d) differs from the record appended", n-1)
						return
					}
				}
				if n == uint64(len(recs)) {
					return
				}
			}
		})
	}
	for i, rec := range recs {
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkLogAppend(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			l, err := OpenLog(b.TempDir(), LogOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			rec := make([]byte, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := l.Append(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// appendBytes appends raw bytes to a file, as a crash could leave them.
func appendBytes(t *testing.T, file string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestLogZeroFilledTail(t *testing.T) {
	for _, zeros := range []int{1, 7, 8, 9, 4096} {
		t.Run(strconv.Itoa(zeros), func(t *testing.T) {
			dir := t.TempDir()
			recs := [][]byte{[]byte("one"), []byte("two")}
			pos := writeLog(t, dir, LogOptions{}, recs)
			seg := segmentPath(dir, 0)
			end := fileSize(t, seg)
			appendBytes(t, seg, make([]byte, zeros))
			l := openLog(t, dir, LogOptions{})
			want := LogRepair{Segment: segmentName(pos[0].seg + 1), Offset: end, Bytes: int64(zeros), Height: 3}
			if r := l.Repair(); r == nil || *r != want {
				t.Fatalf("Repair() = %+v, want %+v", r, want)
			}
			checkRecords(t, l, recs)
		})
	}
}

func TestLogZeroedHeaderBeforeData(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, LogOptions{}, [][]byte{[]byte("one")})
	seg := segmentPath(dir, 0)
	end := fileSize(t, seg)
	appendBytes(t, seg, append(make([]byte, 16), 1)) // zeros, then something that is not zero
	_, err := OpenLog(dir, LogOptions{})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != end {
		t.Fatalf("got %v, want a CorruptError at offset %d", err, end)
	}
	if fileSize(t, seg) != end+17 {
		t.Fatal("a refused segment was changed")
	}
}

func TestLogReadOnlySnapshot(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenLog(dir+"/missing", LogOptions{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing directory succeeded")
	}
	recs := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	w := openLog(t, dir, LogOptions{})
	for _, r := range recs[:2] {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot while the writer holds the lock.
	ro := openLog(t, dir, LogOptions{ReadOnly: true})
	checkRecords(t, ro, recs[:2])
	if err := ro.Append([]byte("x")); err == nil {
		t.Fatal("append to a read-only log succeeded")
	}
	// A half-written record, as a reader may see during an append, is left out and left alone.
	seg := segmentPath(dir, 0)
	size := fileSize(t, seg)
	appendBytes(t, seg, []byte{0, 0, 0, 100, 1, 2, 3, 4, 5})
	ro2 := openLog(t, dir, LogOptions{ReadOnly: true})
	checkRecords(t, ro2, recs[:2])
	if ro2.Repair() != nil || fileSize(t, seg) != size+9 {
		t.Fatal("a read-only open changed the log")
	}
	if err := ro2.Close(); err != nil {
		t.Fatal(err)
	}
}
