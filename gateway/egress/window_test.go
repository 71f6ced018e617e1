package egress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// windowSink is a sink far away: it acknowledges each message after a
// random delay, so acknowledgements come out of order; the first time
// message failSeq is sent, it arrives but its acknowledgement is lost (a
// connection reset). The network's faults, faked; the pipelining is
// pipeline's, as the MQTT and NATS sinks use it.
type windowSink struct {
	t       *testing.T
	window  int
	failSeq uint64
	status  func() Status // the connector's, to check its cursor

	mu          sync.Mutex
	rng         *rand.Rand
	arrived     []*Message      // every message published, in order
	acked       map[Cursor]bool // positions the sink acknowledged
	inFlight    int             // published, not yet acknowledged or failed
	maxInFlight int             // the most inFlight was
	failed      bool            // failSeq failed once
}

func (s *windowSink) send(ctx context.Context, msgs []*Message) (int, error) {
	s.checkCursor()
	n, err := pipeline(ctx, msgs, s.window, s.publish)
	s.checkCursor()
	return n, err
}

// checkCursor fails the test if the connector's cursor is at or after a
// message the sink did not acknowledge.
func (s *windowSink) checkCursor() {
	cur := s.status().Cursor
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.arrived {
		if !s.acked[m.at] && (m.at.Block < cur.Block || m.at.Block == cur.Block && m.at.Index <= cur.Index) {
			// A message sent again and acknowledged then is in acked.
			s.t.Errorf("cursor %+v passed the unacknowledged message at %+v", cur, m.at)
		}
	}
}

func (s *windowSink) publish(m *Message) (published, error) {
	s.mu.Lock()
	s.arrived = append(s.arrived, m)
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	fail := m.Seq == s.failSeq && !s.failed
	s.failed = s.failed || fail
	delay := time.Duration(s.rng.IntN(3000)) * time.Microsecond
	s.mu.Unlock()
	done := make(chan error, 1)
	time.AfterFunc(delay, func() {
		s.mu.Lock()
		s.inFlight--
		if !fail {
			s.acked[m.at] = true
		}
		s.mu.Unlock()
		if fail {
			done <- errors.New("connection reset")
		} else {
			done <- nil
		}
	})
	return func(ctx context.Context) error {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

func (s *windowSink) close() {}

// TestPipeline: a connector keeps up to a window of messages unacknowledged
// at a sink that acknowledges out of order and fails one message in the
// middle; nothing is lost, first arrivals are in commit order, and the
// cursor never passes a message the sink did not acknowledge.
func TestPipeline(t *testing.T) {
	const blocks, perBlock, window = 4, 50, 16
	log := recordLog(t, blocks, perBlock)
	c := &connector{cfg: withDefaults(Config{Name: "w", Kind: KindNATS, URL: "nats://x", Batch: 30, Window: window}), exporting: true,
		path: filepath.Join(t.TempDir(), "w.cursor"), blocks: log, index: heightIndex(blocks),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), wake: make(chan struct{}, 1), groups: map[string][]string{}}
	sink := &windowSink{t: t, window: window, failSeq: 77, status: c.status, rng: rand.New(rand.NewPCG(1, 2)), acked: map[Cursor]bool{}}
	c.sink = sink
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	want := Cursor{Block: blocks, Index: perBlock - 1, Handled: blocks * perBlock}
	deadline := time.Now().Add(20 * time.Second)
	for c.status().Cursor != want {
		if time.Now().After(deadline) {
			t.Fatalf("cursor %+v after 20s", c.status().Cursor)
		}
		time.Sleep(5 * time.Millisecond) // polling the status
	}
	cancel()
	<-done
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.maxInFlight < 2 || sink.maxInFlight > window {
		t.Errorf("at most %d messages in flight, want 2 to %d", sink.maxInFlight, window)
	}
	if !sink.failed {
		t.Fatal("the failure was not injected")
	}
	seen := map[uint64]bool{}
	var last uint64
	dups := 0
	for _, m := range sink.arrived {
		if seen[m.Seq] {
			dups++
			continue
		}
		if m.Seq != last+1 {
			t.Fatalf("first arrival of seq %d after seq %d", m.Seq, last)
		}
		seen[m.Seq], last = true, m.Seq
	}
	if len(seen) != blocks*perBlock || dups == 0 {
		t.Errorf("%d records of %d arrived, %d duplicates (the failure must cause some)", len(seen), blocks*perBlock, dups)
	}
	if s := c.status(); s.Failing || s.LastError != "connection reset" {
		t.Errorf("status %+v", s)
	}
	t.Logf("%d arrivals, %d duplicates, at most %d in flight", len(sink.arrived), dups, sink.maxInFlight)
}

func TestBatchOfWindows(t *testing.T) {
	for _, c := range []struct {
		kind          string
		batch, window int
		want          int
	}{
		{KindWebhook, 100, 64, 100},
		{KindNATS, 100, 64, 128},
		{KindMQTT, 100, 1, 100},
		{KindMQTT, 100, 1000, 1000},
		{KindNATS, 128, 64, 128},
	} {
		if got := (&connector{cfg: Config{Kind: c.kind, Batch: c.batch, Window: c.window}}).batch(); got != c.want {
			t.Errorf("%s batch %d window %d: %d, want %d", c.kind, c.batch, c.window, got, c.want)
		}
	}
}
