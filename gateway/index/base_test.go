package index

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestBase: the index of a gateway that joined from a snapshot starts
// after its base: its height is the base until a block above it comes,
// it takes the block after the base first, counts say where it starts,
// and the base survives a Reset and a reopen; a base is set only on an
// index without blocks.
func TestBase(t *testing.T) {
	c := newChain(t)
	k := newP256(t)
	c.next(c.enroll("dev-1", k))
	c.next(record(t, "dev-1", k, 1))
	c.next(record(t, "dev-1", k, 2))
	c.next(record(t, "dev-1", k, 3))
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	if err := x.SetBase(2); err != nil {
		t.Fatal(err)
	}
	if h, err := x.Height(); err != nil || h != 2 {
		t.Fatalf("Height() = %d, %v; want the base 2", h, err)
	}
	if n, err := x.Counts(); err != nil || n.Blocks != 2 || n.Base != 2 || n.Txs != 0 {
		t.Fatalf("Counts() = %+v, %v", n, err)
	}
	if err := x.ApplyBlock(c.blocks[0]); !errors.Is(err, ErrHeight) {
		t.Fatalf("ApplyBlock(1) on an index based at 2 = %v, want ErrHeight", err)
	}
	if err := Rebuild(context.Background(), x, 4, c.read, nil); err != nil {
		t.Fatalf("Rebuild from the base: %v", err)
	}
	if n, err := x.Counts(); err != nil || n.Blocks != 4 || n.Base != 2 || n.Txs != 2 {
		t.Fatalf("Counts() = %+v, %v; want height 4, base 2, 2 txs", n, err)
	}
	if err := x.SetBase(3); err == nil {
		t.Fatal("SetBase on an index with blocks accepted")
	}
	if err := x.Reset(); err != nil {
		t.Fatal(err)
	}
	if h, err := x.Height(); err != nil || h != 2 {
		t.Fatalf("Height() after Reset = %d, %v; want the base 2", h, err)
	}
	x.Close()
	x = open(t, path)
	if b, err := x.Base(); err != nil || b != 2 {
		t.Fatalf("Base() after a reopen = %d, %v", b, err)
	}
	if err := x.SetBase(0); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(context.Background(), x, 4, c.read, nil); err != nil {
		t.Fatalf("Rebuild from 1 once the base is 0: %v", err)
	}
	if n, _ := x.Counts(); n.Blocks != 4 || n.Base != 0 || n.Devices != 1 {
		t.Fatalf("Counts() = %+v", n)
	}
}
