package pbft_test

import (
	"fmt"
	"io"
	"math/bits"
	"testing"
	"testing/quick"
)

// TestQuorum checks the core's quorum against a naive enumeration, for n
// from 1 to 13 (raft's quorum/quick_test.go does the same for its
// majority): the quorum is the fewest live replicas with which a request
// commits, every two such sets share at least f+1 replicas (so at least
// one correct replica, PBFT 4.1), no smaller size guarantees that, and f
// faulty replicas cannot stop it.
func TestQuorum(t *testing.T) {
	for n := 1; n <= 13; n++ {
		f := (n - 1) / 3
		q, commits, err := observedQuorum(n)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		t.Logf("n=%d f=%d: quorum %d", n, f, q)
		if commits != q {
			t.Errorf("n=%d: a request committed by %d live replicas carries %d commits", n, q, commits)
		}
		if got := minIntersecting(n, f+1); q != got {
			t.Errorf("n=%d f=%d: the core commits with %d replicas, the smallest safe quorum is %d", n, f, q, got)
		}
		if least := minIntersection(n, q); least < f+1 {
			t.Errorf("n=%d f=%d: two quorums of %d share only %d replicas", n, f, q, least)
		}
		if q > n-f {
			t.Errorf("n=%d f=%d: quorum %d needs a faulty replica", n, f, q)
		}
	}
}

// observedQuorum returns the fewest live replicas (the primary among
// them) that commit a request, and how many commits the entry carries.
func observedQuorum(n int) (q, commits int, err error) {
	for live := 1; live <= n; live++ {
		o := defaultOptions()
		o.n = n
		h, err := newCluster(o, io.Discard)
		if err != nil {
			return 0, 0, err
		}
		for i := live; i < n; i++ {
			if err := h.script(fmt.Sprintf("crash n%d", i)); err != nil {
				return 0, 0, err
			}
		}
		if err := h.script("propose n0 req-a", "deliver"); err != nil {
			return 0, 0, err
		}
		if chain := h.reps[0].chain; len(chain) > 0 {
			for _, r := range h.reps[:live] {
				if len(r.chain) != 1 {
					return 0, 0, fmt.Errorf("%d live: %s executed %d proposals, n0 one", live, r.id, len(r.chain))
				}
			}
			return live, len(chain[0].Commits), nil
		}
	}
	return 0, 0, fmt.Errorf("nothing commits with all %d replicas", n)
}

// minIntersection is the fewest replicas two sets of size q out of n
// share, by enumeration.
func minIntersection(n, q int) int {
	var sets []uint16
	for s := range uint16(1) << n {
		if bits.OnesCount16(s) == q {
			sets = append(sets, s)
		}
	}
	least := n
	for _, a := range sets {
		for _, b := range sets {
			least = min(least, bits.OnesCount16(a&b))
		}
	}
	return least
}

// minIntersecting is the smallest size whose sets out of n all share at
// least k replicas.
func minIntersecting(n, k int) int {
	for q := 1; q <= n; q++ {
		if minIntersection(n, q) >= k {
			return q
		}
	}
	return n + 1
}

// TestQuorumQuick checks random pairs of replica sets: two sets, each
// at least a quorum of the core's size, share f+1 replicas.
func TestQuorumQuick(t *testing.T) {
	quorums := map[int]int{}
	for n := 1; n <= 13; n++ {
		q, _, err := observedQuorum(n)
		if err != nil {
			t.Fatal(err)
		}
		quorums[n] = q
	}
	prop := func(nn uint8, a, b uint16) bool {
		n := 1 + int(nn)%13
		a, b = a&(1<<n-1), b&(1<<n-1)
		if bits.OnesCount16(a) < quorums[n] || bits.OnesCount16(b) < quorums[n] {
			return true
		}
		return bits.OnesCount16(a&b) >= (n-1)/3+1
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 100_000}); err != nil {
		t.Error(err)
	}
}
