package ledger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogBase: a log that starts from a snapshot reads by height from its
// base on, refuses heights at or below it with a clear error, keeps its
// base across a reopen (read-only too), reports segment heights and torn
// tails by height, and takes MinRecords as a height.
func TestLogBase(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(7, 40, 300)
	hash := [32]byte{1, 2, 3}
	l := openLog(t, dir, smallSegments)
	if err := l.SetBase(0, hash); err == nil {
		t.Fatal("SetBase(0) accepted")
	}
	if err := l.SetBase(100, hash); err != nil {
		t.Fatalf("SetBase: %v", err)
	}
	if err := l.SetBase(200, hash); err == nil {
		t.Fatal("a second SetBase accepted")
	}
	if h := l.Height(); h != 100 {
		t.Fatalf("Height() of an empty log with base 100 = %d", h)
	}
	for i, rec := range recs {
		if err := l.Append(rec); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
	check := func(l *Log) {
		t.Helper()
		if b, bh := l.Base(); b != 100 || bh != hash {
			t.Fatalf("Base() = %d %x", b, bh[:4])
		}
		if h := l.Height(); h != 140 {
			t.Fatalf("Height() = %d, want 140", h)
		}
		checkRecords(t, l, recs)
		for i, w := range recs {
			got, err := l.ReadHeight(101 + uint64(i))
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("ReadHeight(%d): %v", 101+i, err)
			}
		}
		for _, h := range []uint64{1, 99, 100} {
			_, err := l.ReadHeight(h)
			if !errors.Is(err, ErrBelowBase) || !strings.Contains(err.Error(), "below this gateway's base height 100: it joined from a snapshot") {
				t.Fatalf("ReadHeight(%d) = %v", h, err)
			}
		}
		if _, err := l.ReadHeight(141); err == nil || errors.Is(err, ErrBelowBase) {
			t.Fatalf("ReadHeight(141) = %v", err)
		}
		if _, err := l.ReadHeight(0); err == nil {
			t.Fatal("ReadHeight(0) accepted")
		}
		segs := l.Segments()
		if len(segs) < 2 || segs[0].First != 101 || segs[len(segs)-1].Last != 140 {
			t.Fatalf("Segments() = %+v", segs)
		}
	}
	check(l)
	if err := l.SetBase(300, hash); err == nil {
		t.Fatal("SetBase on a log with records accepted")
	}
	l.Close()

	check(openLog(t, dir, LogOptions{ReadOnly: true}))
	l = openLog(t, dir, smallSegments)
	check(l)
	l.Close()

	// A torn tail is reported at its height; MinRecords is a height.
	segs, _ := listSegments(dir)
	last := filepath.Join(dir, segmentName(segs[len(segs)-1]))
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1})
	f.Close()
	l = openLog(t, dir, smallSegments)
	if r := l.Repair(); r == nil || r.Height != 141 {
		t.Fatalf("Repair() = %+v, want height 141", r)
	}
	l.Close()
	// The last record torn (its data cut short) with the index at 140: damage.
	fi, _ := os.Stat(last)
	if err := os.Truncate(last, fi.Size()-1); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, err := OpenLog(dir, LogOptions{SegmentBytes: 4096, MinRecords: 140}); !errors.As(err, &ce) || ce.Height != 140 {
		t.Fatalf("OpenLog with MinRecords 140 = %v, want a *CorruptError at 140", err)
	}
	l = openLog(t, dir, LogOptions{SegmentBytes: 4096, MinRecords: 139})
	if h := l.Height(); h != 139 {
		t.Fatalf("Height() after the cut = %d", h)
	}
}

// TestLogBaseFile: a damaged BASE file stops OpenLog; a temporary one a
// crash left is removed and the log opens without a base.
func TestLogBaseFile(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, LogOptions{})
	if err := l.SetBase(5, [32]byte{9}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	xorByte(t, filepath.Join(dir, baseFileName), 3, 1)
	var ce *CorruptError
	if _, err := OpenLog(dir, LogOptions{}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "log base") {
		t.Fatalf("OpenLog with a damaged BASE = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, baseFileName), []byte("short"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLog(dir, LogOptions{}); !errors.As(err, &ce) {
		t.Fatalf("OpenLog with a short BASE = %v", err)
	}

	dir = t.TempDir()
	l = openLog(t, dir, LogOptions{})
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, baseFileName+".tmp"), encodeBase(5, [32]byte{}), 0o640); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, LogOptions{})
	if b, _ := l.Base(); b != 0 {
		t.Fatalf("a temporary BASE was taken: base %d", b)
	}
	if _, err := os.Stat(filepath.Join(dir, baseFileName+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("the temporary BASE is still there: %v", err)
	}
}

// FuzzDecodeBase: a BASE file from disk decodes without panicking, and
// what decodes encodes back to the same bytes.
func FuzzDecodeBase(f *testing.F) {
	f.Add(encodeBase(5, [32]byte{9}))
	f.Add([]byte("short"))
	f.Add(make([]byte, baseFileBytes))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, hash, err := decodeBase(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeBase(h, hash), b) {
			t.Fatalf("%x decodes to %d %x, which encodes otherwise", b, h, hash)
		}
	})
}

// TestLogBaseMembers: the membership proof stored beside a log's base
// round-trips across a reopen (read-only too), may be set only before
// the base and the first record, a log without one reads as an empty
// proof, a temporary file a crash left is removed, and a damaged file is
// an error, not an empty proof.
func TestLogBaseMembers(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, smallSegments)
	if p, err := l.BaseMembers(); err != nil || len(p) != 0 {
		t.Fatalf("BaseMembers of a log without one: %d receipts, %v", len(p), err)
	}
	proof := MembershipProof{{Tx: []byte("a change"), Header: Header{ChainID: "c", Height: 7}, Index: 0}}
	if err := l.SetBaseMembers(proof); err != nil {
		t.Fatalf("SetBaseMembers: %v", err)
	}
	if err := l.SetBase(100, [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetBaseMembers(proof); err == nil {
		t.Fatal("SetBaseMembers after SetBase accepted")
	}
	want, _ := proof.Encode()
	check := func(l *Log) {
		t.Helper()
		p, err := l.BaseMembers()
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := p.Encode(); !bytes.Equal(got, want) {
			t.Fatalf("BaseMembers = %x, want %x", got, want)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, LogMembersFile+".tmp"), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenLog(dir, LogOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	check(ro)
	if err := ro.SetBaseMembers(proof); err == nil {
		t.Fatal("SetBaseMembers on a read-only log accepted")
	}
	ro.Close()
	l = openLog(t, dir, smallSegments)
	check(l)
	if _, err := os.Stat(filepath.Join(dir, LogMembersFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file a crash left is still there: %v", err)
	}
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, LogMembersFile), []byte{0xff, 0x00}, 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, smallSegments)
	if _, err := l.BaseMembers(); err == nil || !strings.Contains(err.Error(), LogMembersFile) {
		t.Fatalf("a damaged MEMBERS file: %v", err)
	}
	l.Close()

	// A log with a record takes none.
	l2 := openLog(t, t.TempDir(), smallSegments)
	defer l2.Close()
	if err := l2.Append(testRecords(1, 10, 10)[0]); err != nil {
		t.Fatal(err)
	}
	if err := l2.SetBaseMembers(proof); err == nil {
		t.Fatal("SetBaseMembers on a log with a record accepted")
	}
}
