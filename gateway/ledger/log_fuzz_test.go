package ledger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLogOpen opens a log whose only segment holds the fuzzer's bytes.
// OpenLog must either refuse with a *CorruptError and leave the file alone,
// or cut at most a torn tail and leave a log whose every record reads back,
// which takes appends and reopens cleanly.
func FuzzLogOpen(f *testing.F) {
	var seg []byte
	for _, rec := range [][]byte{[]byte("block 1"), {}, bytes.Repeat([]byte{0xab}, 300)} {
		seg = appendRecord(seg, rec)
	}
	f.Add(seg)
	for _, n := range []int{len(seg) - 1, len(seg) - 150, len(seg) - 300, len(seg) - 305, 17, 15, 9, 3, 0} {
		f.Add(seg[:n])
	}
	for _, at := range []int{20, len(seg) - 150, len(seg) - 1, len(seg) - 308, len(seg) - 305} {
		flipped := bytes.Clone(seg)
		flipped[at] ^= 1 // the last three: bit rot in the last record, not a torn write
		f.Add(flipped)
	}
	zeroed := bytes.Clone(seg)
	clear(zeroed[len(seg)-100:]) // the file extended, the last record's data not written
	f.Add(zeroed)

	const limit = 64 << 10
	opts := LogOptions{SegmentBytes: 4 << 10, MaxRecordBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > limit {
			data = data[:limit]
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "00000001.log")
		if err := os.WriteFile(file, data, 0o640); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLog(dir, opts)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("OpenLog: %v, want nil or a *CorruptError", err)
			}
			if got, _ := os.ReadFile(file); !bytes.Equal(got, data) {
				t.Fatal("OpenLog changed a segment it refused")
			}
			return
		}
		defer l.Close()

		kept := int64(len(data))
		if r := l.Repair(); r != nil {
			if r.Segment != "00000001.log" || r.Offset+r.Bytes != int64(len(data)) || r.Bytes <= 0 {
				t.Fatalf("Repair() = %+v for a %d-byte segment", r, len(data))
			}
			kept = r.Offset
		}
		if got, _ := os.ReadFile(file); !bytes.Equal(got, data[:kept]) {
			t.Fatalf("segment after OpenLog is not the first %d bytes of the input", kept)
		}
		n := l.Len()
		for i := range n {
			if _, err := l.Read(i); err != nil {
				t.Fatalf("Read(%d) of %d: %v", i, n, err)
			}
		}

		if err := l.Append([]byte("next")); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		l, err = OpenLog(dir, opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		if r := l.Repair(); r != nil {
			t.Fatalf("reopen: Repair() = %+v, want nil", r)
		}
		if l.Len() != n+1 {
			t.Fatalf("reopen: Len() = %d, want %d", l.Len(), n+1)
		}
		if got, err := l.Read(n); err != nil || string(got) != "next" {
			t.Fatalf("reopen: Read(%d) = %q, %v; want \"next\"", n, got, err)
		}
	})
}
