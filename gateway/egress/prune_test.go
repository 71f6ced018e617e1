package egress

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestCollectSkipsPruned: records a retention policy pruned before a
// connector delivered them are skipped (their payloads are gone) and
// counted as handled; the records after them are delivered as before.
func TestCollectSkipsPruned(t *testing.T) {
	const blocks, perBlock = 4, 5
	full := recordLog(t, blocks, perBlock)
	log, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{SegmentBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := range uint64(blocks) {
		data, err := full.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		if err := log.Append(data); err != nil { // a segment a block
			t.Fatal(err)
		}
	}
	// Prune blocks 1 and 2 (segments 1 and 2) as retention does.
	for seq := uint32(1); seq <= 2; seq++ {
		if _, err := log.Rewrite(seq, func(_ uint64, data []byte) ([]byte, error) {
			out, _, err := ledger.PruneRecord(data)
			return out, err
		}); err != nil {
			t.Fatal(err)
		}
	}
	c := &connector{cfg: withDefaults(Config{Name: "p", Kind: KindWebhook, URL: "http://x", Batch: 100}), exporting: true,
		path: filepath.Join(t.TempDir(), "p.cursor"), blocks: log, index: heightIndex(blocks),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), groups: map[string][]string{}}
	msgs, next, err := c.collect(Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2*perBlock {
		t.Fatalf("%d messages, want the %d records of blocks 3 and 4", len(msgs), 2*perBlock)
	}
	if msgs[0].Block != 3 || msgs[0].Index != 0 {
		t.Fatalf("first message at block %d index %d, want 3, 0", msgs[0].Block, msgs[0].Index)
	}
	if want := (Cursor{Block: blocks, Index: perBlock - 1, Handled: blocks * perBlock}); next != want {
		t.Fatalf("cursor %+v, want %+v", next, want)
	}
}

// TestCollectFromBase: on a gateway that joined from a snapshot (its
// block log starts after block 2), a connector whose cursor is at or
// below the base starts with the block after it; a group filter on a
// device the index does not know (enrolled before the base) says why it
// cannot decide.
func TestCollectFromBase(t *testing.T) {
	const blocks, perBlock = 4, 5
	full := recordLog(t, blocks, perBlock)
	hdr, err := full.ReadHeight(2)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := ledger.DecodeBlock(hdr)
	if err != nil {
		t.Fatal(err)
	}
	log, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	if err := log.SetBase(2, b2.Header.Hash()); err != nil {
		t.Fatal(err)
	}
	for h := uint64(3); h <= blocks; h++ {
		data, err := full.ReadHeight(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := log.Append(data); err != nil {
			t.Fatal(err)
		}
	}
	c := &connector{cfg: withDefaults(Config{Name: "p", Kind: KindWebhook, URL: "http://x", Batch: 100}), exporting: true,
		path: filepath.Join(t.TempDir(), "p.cursor"), blocks: log, index: heightIndex(blocks),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), groups: map[string][]string{}}
	for _, cur := range []Cursor{{}, {Block: 1, Index: 2, Handled: 3}, {Block: 2, Index: perBlock - 1, Handled: 10}} {
		msgs, _, err := c.collect(cur)
		if err != nil {
			t.Fatalf("collect from %+v: %v", cur, err)
		}
		if len(msgs) != 2*perBlock || msgs[0].Block != 3 || msgs[0].Index != 0 {
			t.Fatalf("collect from %+v: %d messages from block %d, want the %d of blocks 3 and 4", cur, len(msgs), msgs[0].Block, 2*perBlock)
		}
	}
	c.cfg.Groups = []string{"g"}
	if _, _, err := c.collect(Cursor{}); err == nil || !strings.Contains(err.Error(), "joined from a snapshot") {
		t.Fatalf("a group filter on a device before the base: %v", err)
	}
}
