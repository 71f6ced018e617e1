package pbfttest

import (
	"flag"
	"testing"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "replay one seed")
	seedsFlag = flag.Int("seeds", 500, "how many seeds TestSim runs")
)

// TestSim runs many seeded simulations; a failure prints the seed, and
// -seed N replays it exactly.
func TestSim(t *testing.T) {
	if *seedFlag != 0 {
		if err := Run(Scenario(*seedFlag)); err != nil {
			t.Fatal(err)
		}
		return
	}
	failed := 0
	for seed := uint64(1); seed <= uint64(*seedsFlag); seed++ {
		if err := Run(Scenario(seed)); err != nil {
			t.Errorf("%v\nreplay: go test ./gateway/pbft/pbfttest -run TestSim -seed %d", err, seed)
			if failed++; failed >= 5 {
				t.Fatal("stopping after 5 failing seeds")
			}
		}
	}
}

// TestSimReplaysExactly checks determinism: one seed, run twice, fails or
// passes alike and executes the same.
func TestSimDeterministic(t *testing.T) {
	for _, seed := range []uint64{3, 17} {
		a, b := trace(Scenario(seed)), trace(Scenario(seed))
		if a != b {
			t.Fatalf("seed %d ran differently twice:\n%s\n%s", seed, a, b)
		}
	}
}
