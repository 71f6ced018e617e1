package index

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestCopyInto: the copy of an index open for writing answers every query
// as the index does and reports its height; CopyInto refuses a dst that
// exists and never creates a missing source.
func TestCopyInto(t *testing.T) {
	s := newScenario(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	x := open(t, path)
	apply(t, x, s.c.blocks...)
	want := takeSnapshot(t, x, s.c)
	wantH, err := x.Height()
	if err != nil {
		t.Fatal(err)
	}
	// x stays open: the copy is of a live index, its WAL included.
	dst := filepath.Join(dir, "copy.db")
	h, err := CopyInto(context.Background(), path, dst)
	if err != nil {
		t.Fatal(err)
	}
	if h != wantH || h == 0 {
		t.Errorf("copy height %d, want %d", h, wantH)
	}
	y := open(t, dst)
	if got := takeSnapshot(t, y, s.c); !reflect.DeepEqual(got, want) {
		t.Errorf("copy:\n got %+v\nwant %+v", got, want)
	}
	if _, err := CopyInto(context.Background(), path, dst); err == nil {
		t.Error("CopyInto over an existing file succeeded")
	}
	missing := filepath.Join(dir, "missing.db")
	if _, err := CopyInto(context.Background(), missing, filepath.Join(dir, "c2.db")); err == nil {
		t.Error("CopyInto of a missing index succeeded")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("CopyInto created its missing source: %v", err)
	}
}
