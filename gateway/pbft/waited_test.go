package pbft_test

import (
	"crypto/sha256"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/pbft/pbfttest"
)

// TestWaitedRequest: a partial batch is cut BatchTicks after its first
// request came, counting the ticks it waited before Propose (in the
// driver's queue while a block persisted), and at the next tick if it
// waited that long already.
func TestWaitedRequest(t *testing.T) {
	for _, tc := range []struct{ waited, cutAt int }{{0, 5}, {3, 2}, {5, 1}, {40, 1}} {
		genesis := pbft.Digest(sha256.Sum256([]byte("waited genesis")))
		core, err := pbft.New(pbft.Config{
			ID: "n0", Nodes: []string{"n0"}, Domain: "waited",
			Crypto: &pbfttest.Keys{Self: "n0", Secrets: map[string][]byte{"n0": []byte("secret")}},
			App:    pbfttest.NewApp("n0", genesis), MaxBatch: 100, RequestTimeout: 500, BatchTicks: 5,
		}, pbft.HardState{}, nil, pbft.Executed{Digest: genesis})
		if err != nil {
			t.Fatal(err)
		}
		if n := core.NextTick(); n != 0 {
			t.Fatalf("idle core: NextTick %d, want 0", n)
		}
		r := pbft.NewRequest([]byte("req-a"))
		r.Waited = tc.waited
		if err := core.Propose(r); err != nil {
			t.Fatal(err)
		}
		if n := core.NextTick(); n != tc.cutAt {
			t.Errorf("waited %d: NextTick %d, want %d", tc.waited, n, tc.cutAt)
		}
		for tick := 1; tick <= tc.cutAt; tick++ {
			if err := core.Tick(); err != nil {
				t.Fatal(err)
			}
			if cut := core.HasReady(); cut != (tick == tc.cutAt) {
				t.Fatalf("waited %d: a block at tick %d: %v, want it at tick %d", tc.waited, tick, cut, tc.cutAt)
			}
		}
	}
}
