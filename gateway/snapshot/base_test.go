package snapshot

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestLoadFromBase: a gateway whose block log starts from a snapshot (it
// joined from one) starts from that snapshot, checked against the log's
// base hash, or from a newer one, and replays the blocks after it; the
// base snapshot is never pruned; without a usable one the start fails
// with a clear error instead of replaying from block 1.
func TestLoadFromBase(t *testing.T) {
	g, full := chainOf(t, 9)
	top := full.Height()
	const base = 5
	data, err := full.ReadHeight(base)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ledger.DecodeBlock(data)
	if err != nil {
		t.Fatal(err)
	}
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	if err := blog.SetBase(base, b.Header.Hash()); err != nil {
		t.Fatal(err)
	}
	for h := uint64(base + 1); h <= top; h++ {
		rec, err := full.ReadHeight(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := blog.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.SpareBase(base)
	write(t, s, g, full, base)

	want := stateAt(t, g, full, top)
	_, wantTip := want.Tip()
	st, ld, err := Load(s, g, blog, quiet)
	if err != nil || ld.Height != base {
		t.Fatalf("Load = height %d, %v; want the base snapshot %d", ld.Height, err, base)
	}
	n, err := chain.Replay(blog, st, nil)
	if err != nil || n != top-base {
		t.Fatalf("Replay = %d, %v; want %d blocks", n, err, top-base)
	}
	if h, tip := st.Tip(); h != top || tip != wantTip {
		t.Fatalf("state at %d after the replay, want %d with the full replay's tip", h, top)
	}

	// Newer snapshots: the newest is used, the base one is kept.
	for _, h := range []uint64{7, 8, top} {
		write(t, s, g, full, h)
	}
	if hs, _ := s.Heights(); len(hs) != 3 || hs[2] != base {
		t.Fatalf("heights %v: want the newest two and the base", hs)
	}
	if _, ld, err := Load(s, g, blog, quiet); err != nil || ld.Height != top {
		t.Fatalf("Load = height %d, %v; want %d", ld.Height, err, top)
	}

	// A base hash the snapshot does not match: refused, and no start.
	s2, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write(t, s2, g, full, base-1)
	write(t, s2, g, full, base)
	flip(t, s2, base, 10)
	_, ld, err = Load(s2, g, blog, quiet)
	if err == nil || !strings.Contains(err.Error(), "joined from a snapshot") || len(ld.Skipped) != 2 {
		t.Fatalf("Load with no usable snapshot for a based log = %v, skipped %v", err, ld.Skipped)
	}
}
