package ledger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// halve is a rewrite that keeps the first half of every record.
func halve(_ uint64, data []byte) ([]byte, error) {
	if len(data) < 2 {
		return data, nil
	}
	return data[:len(data)/2], nil
}

func halved(recs [][]byte) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i], _ = halve(0, r)
	}
	return out
}

// segmentOf returns the indexes of the records in segment seq.
func segmentOf(l *Log, seq uint32) (first, last uint64) {
	for _, s := range l.Segments() {
		if s.Seq == seq {
			return s.First - 1, s.Last - 1
		}
	}
	return 1, 0
}

func TestRewriteSegment(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(1, 60, 400)
	writeLog(t, dir, smallSegments, recs)
	l := openLog(t, dir, smallSegments)
	segs := l.Segments()
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(segs))
	}
	if segs[len(segs)-1].Sealed || !segs[0].Sealed {
		t.Fatalf("Sealed flags wrong: %+v", segs)
	}
	if _, err := l.Rewrite(uint32(len(segs)), halve); err == nil {
		t.Fatal("Rewrite of the last segment succeeded")
	}
	if _, err := l.Rewrite(0, halve); err == nil {
		t.Fatal("Rewrite of segment 0 succeeded")
	}
	// Keeping every record leaves the file alone.
	before, _ := os.Stat(segmentPath(dir, 0))
	if saved, err := l.Rewrite(1, func(_ uint64, d []byte) ([]byte, error) { return d, nil }); err != nil || saved != 0 {
		t.Fatalf("identity Rewrite = %d, %v", saved, err)
	}
	after, _ := os.Stat(segmentPath(dir, 0))
	if !os.SameFile(before, after) {
		t.Fatal("identity Rewrite replaced the file")
	}

	saved, err := l.Rewrite(1, halve)
	if err != nil {
		t.Fatal(err)
	}
	first, last := segmentOf(l, 1)
	want := append([][]byte{}, recs...)
	copy(want[first:last+1], halved(recs[first:last+1]))
	var wantSaved int64
	for i := first; i <= last; i++ {
		wantSaved += int64(len(recs[i]) - len(want[i]))
	}
	if saved != wantSaved {
		t.Fatalf("saved %d bytes, want %d", saved, wantSaved)
	}
	checkRecords(t, l, want)
	// The heights after the segment are where they were; Append goes on.
	extra := testRecords(2, 5, 400)
	for _, r := range extra {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want, extra...)
	checkRecords(t, l, want)
	// A fn error leaves the segment as it was.
	boom := errors.New("boom")
	if _, err := l.Rewrite(2, func(uint64, []byte) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Rewrite with failing fn = %v", err)
	}
	checkRecords(t, l, want)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, openLog(t, dir, smallSegments), want)
}

// TestRewriteCrash stops a rewrite at each of its steps, as a crash would
// (and at the first one tears the unsynced new file), and checks that the
// log opens again with the segment whole: every record old, or every
// record new, and no leftover file.
func TestRewriteCrash(t *testing.T) {
	for _, tc := range []struct {
		step    string
		tearTmp bool
		wantNew bool
	}{
		{step: "written", tearTmp: true},
		{step: "written"},
		{step: "synced"},
		{step: "renamed", wantNew: true},
		{step: "dir synced", wantNew: true},
	} {
		t.Run(tc.step, func(t *testing.T) {
			dir := t.TempDir()
			recs := testRecords(3, 60, 400)
			writeLog(t, dir, smallSegments, recs)
			l, err := OpenLog(dir, smallSegments)
			if err != nil {
				t.Fatal(err)
			}
			crash := errors.New("crash")
			l.crashAt = func(step string) error {
				if step != tc.step {
					return nil
				}
				if tc.tearTmp {
					tmp := filepath.Join(dir, segmentName(2)+rewriteSuffix)
					if err := os.Truncate(tmp, 100); err != nil {
						t.Fatal(err)
					}
				}
				return crash
			}
			if _, err := l.Rewrite(2, halve); !errors.Is(err, crash) {
				t.Fatalf("Rewrite = %v, want the crash", err)
			}
			first, last := segmentOf(l, 2)
			l.Close()

			l2 := openLog(t, dir, smallSegments)
			want := append([][]byte{}, recs...)
			if tc.wantNew {
				copy(want[first:last+1], halved(recs[first:last+1]))
			}
			checkRecords(t, l2, want)
			if m, _ := filepath.Glob(filepath.Join(dir, "*"+rewriteSuffix)); len(m) != 0 {
				t.Fatalf("leftovers after OpenLog: %v", m)
			}
			// The rewrite can be done again.
			if _, err := l2.Rewrite(2, halve); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRewriteConcurrentReads reads every record over and over while the
// sealed segments are rewritten and records appended: a read returns the
// record before or after its rewrite, never an error or other bytes.
func TestRewriteConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(4, 80, 400)
	writeLog(t, dir, smallSegments, recs)
	l := openLog(t, dir, smallSegments)
	nsegs := uint32(len(l.Segments()))
	short := halved(recs)

	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 3 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				default:
				}
				i := uint64((n*7 + r*13) % len(recs))
				got, err := l.Read(i)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, recs[i]) && !bytes.Equal(got, short[i]) {
					errs <- errors.New("a read returned bytes of neither form")
					return
				}
			}
		})
	}
	wg.Go(func() {
		for _, r := range testRecords(5, 40, 400) {
			if err := l.Append(r); err != nil {
				errs <- err
				return
			}
		}
	})
	for seq := uint32(1); seq < nsegs; seq++ {
		if _, err := l.Rewrite(seq, halve); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range recs[:l.Segments()[nsegs-1].First-1] {
		got, err := l.Read(uint64(i))
		if err != nil || !bytes.Equal(got, short[i]) {
			t.Fatalf("record %d not rewritten: %v", i, err)
		}
	}
}
