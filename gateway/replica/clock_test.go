package replica

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/pbft/pbfttest"
)

// newClockCore is a single node's core whose batch deadline is 5 ticks
// and request timeout 500.
func newClockCore(t *testing.T) *pbft.Core {
	t.Helper()
	genesis := pbft.Digest(sha256.Sum256([]byte("clock genesis")))
	core, err := pbft.New(pbft.Config{
		ID: "n0", Nodes: []string{"n0"}, Domain: "clock",
		Crypto: &pbfttest.Keys{Self: "n0", Secrets: map[string][]byte{"n0": []byte("secret")}},
		App:    pbfttest.NewApp("n0", genesis), MaxBatch: 100, RequestTimeout: 500, BatchTicks: 5,
	}, pbft.HardState{}, nil, pbft.Executed{Digest: genesis})
	if err != nil {
		t.Fatal(err)
	}
	return core
}

// TestCoreClock: a single node's clock has no timer while nothing waits
// (no wake-ups when idle), sets one at the batch deadline when a request
// comes, cuts the batch when it fires, and stops again once the block
// executed. Time is passed in; nothing sleeps.
func TestCoreClock(t *testing.T) {
	core := newClockCore(t)
	const period = 2 * time.Millisecond
	k := newCoreClock(period)
	defer k.timer.Stop()
	t0 := time.Now()

	k.arm(core, t0)
	if k.c != nil {
		t.Fatal("idle: the clock's timer is armed")
	}
	// A request 1 s later: the clock starts then, its first tick with
	// work is the batch deadline, 5 ticks on.
	t1 := t0.Add(time.Second)
	if n, err := k.catchUp(core, t1); err != nil || n != 0 {
		t.Fatalf("catchUp of a stopped clock: %d ticks, %v", n, err)
	}
	req := []byte("req-a")
	if err := core.Propose(pbft.Request{ID: pbft.RequestID(req), Data: req}); err != nil {
		t.Fatal(err)
	}
	k.arm(core, t1)
	if k.c == nil || !k.at.Equal(t1.Add(5*period)) {
		t.Fatalf("after a request: timer armed %v at %v, want at %v", k.c != nil, k.at.Sub(t1), 5*period)
	}
	// A second request 3 ms later joins the batch; the deadline stays.
	if n, err := k.catchUp(core, t1.Add(3*time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("catchUp after 3 ms: %d ticks, %v; want 1", n, err)
	}
	req = []byte("req-b")
	if err := core.Propose(pbft.Request{ID: pbft.RequestID(req), Data: req}); err != nil {
		t.Fatal(err)
	}
	k.arm(core, t1.Add(3*time.Millisecond))
	if !k.at.Equal(t1.Add(5 * period)) {
		t.Fatalf("the deadline moved to %v", k.at.Sub(t1))
	}
	if core.HasReady() {
		t.Fatal("a block before the deadline")
	}
	// The timer fires late (a busy machine): the clock ticks up to the
	// deadline's tick, which cuts the block, and drops the rest.
	n, err := k.catchUp(core, t1.Add(50*time.Millisecond))
	if err != nil || n != 4 {
		t.Fatalf("catchUp at the deadline: %d ticks, %v; want 4", n, err)
	}
	if !core.HasReady() {
		t.Fatal("no block at the deadline")
	}
	rd := core.Ready()
	if len(rd.Committed) != 1 {
		t.Fatalf("committed %d blocks, want 1", len(rd.Committed))
	}
	core.Advance()
	k.arm(core, t1.Add(50*time.Millisecond))
	if k.c != nil || !k.last.IsZero() {
		t.Fatal("the clock runs after the block executed")
	}
}

// TestCoreClockBusy: a turn of the driver's loop that took longer than a
// period (a block's fsync on a slow disk) counts as one tick, as with a
// ticker, so a stall does not run out the request timer by itself.
func TestCoreClockBusy(t *testing.T) {
	core := newClockCore(t)
	const period = 2 * time.Millisecond
	k := newCoreClock(period)
	defer k.timer.Stop()
	t0 := time.Now()
	req := []byte("req-a")
	if err := core.Propose(pbft.Request{ID: pbft.RequestID(req), Data: req}); err != nil {
		t.Fatal(err)
	}
	k.arm(core, t0)
	// The turn that follows takes 3 s.
	k.arm(core, t0.Add(3*time.Second))
	if n, err := k.catchUp(core, t0.Add(3*time.Second+time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("after a 3 s turn: %d ticks, %v; want 1", n, err)
	}
}

// TestCoreClockCluster: a cluster's clock wakes for the retransmission
// tick (every half request timeout) while idle, not every period; an
// input catches the core's clock up by the periods passed, and a timer
// that fires late ticks up to the tick with work and drops the rest.
func TestCoreClockCluster(t *testing.T) {
	genesis := pbft.Digest(sha256.Sum256([]byte("clock genesis")))
	nodes := []string{"n0", "n1", "n2", "n3"}
	secrets := map[string][]byte{}
	for _, n := range nodes {
		secrets[n] = []byte("secret " + n)
	}
	core, err := pbft.New(pbft.Config{
		ID: "n1", Nodes: nodes, Domain: "clock",
		Crypto: &pbfttest.Keys{Self: "n1", Secrets: secrets},
		App:    pbfttest.NewApp("n1", genesis), MaxBatch: 100, RequestTimeout: 500, BatchTicks: 5,
	}, pbft.HardState{}, nil, pbft.Executed{Digest: genesis})
	if err != nil {
		t.Fatal(err)
	}
	const period = 2 * time.Millisecond
	k := newCoreClock(period)
	defer k.timer.Stop()
	t0 := time.Now()

	k.arm(core, t0)
	if k.c == nil || !k.at.Equal(t0.Add(250*period)) {
		t.Fatalf("idle: timer armed %v at %v, want at %v", k.c != nil, k.at.Sub(t0), 250*period)
	}
	// An input 100 ms on: the core's clock catches up 50 ticks, and the
	// timer stays where it was.
	t1 := t0.Add(100 * time.Millisecond)
	if n, err := k.catchUp(core, t1); err != nil || n != 50 {
		t.Fatalf("catchUp after 100 ms: %d ticks, %v; want 50", n, err)
	}
	k.arm(core, t1)
	if !k.at.Equal(t0.Add(250 * period)) {
		t.Fatalf("after an input: the timer moved to %v", k.at.Sub(t0))
	}
	// The timer fires 10 s late: the clock ticks up to the retransmission
	// tick and drops the rest, then waits for the next one.
	t2 := t0.Add(10 * time.Second)
	if n, err := k.catchUp(core, t2); err != nil || n != 200 {
		t.Fatalf("catchUp of a late timer: %d ticks, %v; want 200", n, err)
	}
	k.arm(core, t2)
	if !k.at.Equal(t2.Add(250 * period)) {
		t.Fatalf("after the retransmission tick: timer at %v, want %v", k.at.Sub(t2), 250*period)
	}
}
