package pbfttest

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "replay one seed")
	seedsFlag = flag.Int("seeds", 500, "how many seeds TestSim runs")
)

// TestSim runs many seeded simulations, one goroutine per core, each
// seed on its own; a failure prints the seed, and -seed N replays it
// exactly.
func TestSim(t *testing.T) {
	if *seedFlag != 0 {
		if err := Run(Scenario(*seedFlag)); err != nil {
			t.Fatal(err)
		}
		return
	}
	seeds := make(chan uint64)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				if err := Run(Scenario(seed)); err != nil {
					mu.Lock()
					failed++
					t.Errorf("%v\nreplay: go test ./gateway/pbft/pbfttest -run TestSim -seed %d", err, seed)
					mu.Unlock()
				}
			}
		}()
	}
	for seed := uint64(1); seed <= uint64(*seedsFlag); seed++ {
		mu.Lock()
		stop := failed >= 5
		mu.Unlock()
		if stop {
			t.Error("stopped after 5 failing seeds")
			break
		}
		seeds <- seed
		if seed%10000 == 0 {
			t.Logf("%d seeds", seed)
		}
	}
	close(seeds)
	wg.Wait()
	ops := map[Op]int{}
	with := 0
	for seed := uint64(1); seed <= uint64(*seedsFlag); seed++ {
		if rs := Scenario(seed).Reconfigs; len(rs) > 0 {
			with++
			for _, op := range rs {
				ops[op]++
			}
		}
	}
	t.Logf("%d seeds, %d of them with membership changes %v", *seedsFlag, with, ops)
}

// TestSimDeterministic checks that one seed, run twice, runs alike.
func TestSimDeterministic(t *testing.T) {
	for _, seed := range []uint64{3, 17, 29} {
		a, b := trace(Scenario(seed)), trace(Scenario(seed))
		if a != b {
			t.Fatalf("seed %d ran differently twice:\n%s\n%s", seed, a, b)
		}
	}
}

// TestSimReconfig runs every seed's faults with the three membership
// changes in a row (add a fifth or eighth replica, remove one, replace a
// killed one by a new replica), and checks that each took effect: the
// chain gives four member sets, every honest replica of the last is in
// it (Run's liveness check), and the last set holds the replacement.
func TestSimReconfig(t *testing.T) {
	n := uint64(*seedsFlag / 5)
	if *seedFlag != 0 {
		n = 1
	}
	for k := range n {
		seed := k + 1
		if *seedFlag != 0 {
			seed = *seedFlag
		}
		o := Scenario(seed)
		o.Reconfigs = []Op{Add, Remove, Replace}
		var sets []string
		err := runWith(o, func(s *Sim) {
			for _, e := range s.truth {
				sets = append(sets, fmt.Sprintf("%v@%d", e.Nodes, e.Start))
			}
		})
		if err != nil {
			t.Fatalf("%v\nreplay: go test ./gateway/pbft/pbfttest -run TestSimReconfig -seed %d", err, seed)
		}
		if len(sets) != 4 {
			t.Fatalf("seed %d: member sets %v, want four", seed, sets)
		}
	}
}
