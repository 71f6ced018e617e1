package egress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// flakySink acknowledges the first ackFirst messages of its first call,
// then fails; every later call succeeds. A network fault, faked.
type flakySink struct {
	mu       sync.Mutex
	calls    int
	ackFirst int
	got      []*Message
}

func (s *flakySink) send(_ context.Context, msgs []*Message) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == 1 {
		s.got = append(s.got, msgs[:s.ackFirst]...)
		return s.ackFirst, errors.New("connection reset")
	}
	s.got = append(s.got, msgs...)
	return len(msgs), nil
}

func (s *flakySink) close() {}

// TestPartialAck: what the sink acknowledged before it failed is not sent
// again; the rest is, in order; the cursor ends at the last record, on
// disk once the connector stopped.
func TestPartialAck(t *testing.T) {
	const blocks, perBlock = 3, 10
	log := recordLog(t, blocks, perBlock)
	sink := &flakySink{ackFirst: 7}
	c := &connector{cfg: withDefaults(Config{Name: "p", Kind: KindWebhook, URL: "http://x", Batch: 12}), exporting: true,
		path: filepath.Join(t.TempDir(), "p.cursor"), blocks: log, index: heightIndex(blocks), sink: sink,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), wake: make(chan struct{}, 1), groups: map[string][]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	want := Cursor{Block: blocks, Index: perBlock - 1, Handled: blocks * perBlock}
	deadline := time.Now().Add(10 * time.Second)
	for c.status().Cursor != want {
		if time.Now().After(deadline) {
			t.Fatalf("cursor %+v after 10s", c.status().Cursor)
		}
		time.Sleep(5 * time.Millisecond) // polling the status
	}
	cancel()
	<-done
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.got) != blocks*perBlock {
		t.Fatalf("%d messages for %d records", len(sink.got), blocks*perBlock)
	}
	for i, m := range sink.got {
		if m.Seq != uint64(i+1) || m.Block != uint64(i/perBlock+1) || m.Index != uint64(i%perBlock) {
			t.Fatalf("message %d: seq %d at block %d index %d", i, m.Seq, m.Block, m.Index)
		}
	}
	if s := c.status(); s.Delivered != blocks*perBlock || s.Failing || s.LastError != "connection reset" {
		t.Errorf("status %+v", s)
	}
	if got, ok, err := loadCursor(c.path); !ok || err != nil || got != want {
		t.Errorf("cursor file %+v %v %v, want %+v", got, ok, err, want)
	}
}
