package pbft_test

import (
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strings"
	"testing"
	"testing/quick"

	"github.com/ledgergate/ledgergate/gateway/pbft/pbfttest"
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

// TestQuorumAfterReconfig is TestQuorum for a member set a
// reconfiguration installed: four genesis replicas change to m members
// (n1, n2, ... : the old primary leaves, spares join), for m = 1 and 4 to
// 7 (the test application refuses 2 and 3, as ledgergate will);
// in the new set's first view, the fewest live members with which a
// request commits is the naive smallest safe quorum of m, whatever the old
// n, and its certificate carries that many commits, all of members.
func TestQuorumAfterReconfig(t *testing.T) {
	for _, m := range []int{1, 4, 5, 6, 7} {
		f := (m - 1) / 3
		var set []string
		for i := 1; i <= m; i++ {
			set = append(set, fmt.Sprintf("n%d", i))
		}
		observed := 0
		for live := 1; live <= m && observed == 0; live++ {
			commits, err := commitAfterReconfig(set, live)
			if err != nil {
				t.Fatalf("m=%d live=%d: %v", m, live, err)
			}
			if commits > 0 {
				observed = live
				if commits != live {
					t.Errorf("m=%d: committed by %d live members with %d commits", m, live, commits)
				}
			}
		}
		t.Logf("m=%d f=%d: quorum %d", m, f, observed)
		if want := minIntersecting(m, f+1); observed != want {
			t.Errorf("m=%d f=%d: the new set commits with %d members, the smallest safe quorum is %d", m, f, observed, want)
		}
	}
}

// commitAfterReconfig changes four replicas to set, lets every member
// install the new set's first view, crashes all but live members (the
// view's primary kept), proposes a request at the primary and returns
// how many commits its entry carries (0: it did not commit).
func commitAfterReconfig(set []string, live int) (int, error) {
	o := defaultOptions()
	o.checkpoint, o.spare = 2, 4
	h, err := newCluster(o, io.Discard)
	if err != nil {
		return 0, err
	}
	cmds := []string{"propose n0 " + pbfttest.ReconfigPrefix + "1:" + strings.Join(set, ",") +
		" req-a req-b req-c req-d req-e req-f req-g req-h req-i"}
	for range 4 {
		cmds = append(cmds, "deliver", "tick n0")
	}
	cmds = append(cmds, "deliver", "tick all 10", "deliver")
	if err := h.script(cmds...); err != nil {
		return 0, err
	}
	r1, _ := h.replica(set[0])
	st := r1.core.Status()
	if st.Epoch != 11 || st.Changing {
		return 0, fmt.Errorf("%s did not settle in the new set: %+v", set[0], st)
	}
	primary, _ := h.replica(st.Primary)
	keep := map[string]bool{primary.id: true}
	for _, id := range set {
		if len(keep) < live {
			keep[id] = true
		}
	}
	for _, r := range h.reps {
		if !keep[r.id] {
			if err := h.script("crash " + r.id); err != nil {
				return 0, err
			}
		}
	}
	if err := h.script("propose "+primary.id+" req-z", "deliver"); err != nil {
		return 0, err
	}
	if uint64(len(primary.chain)) < 11 {
		return 0, nil
	}
	e := primary.chain[10]
	for _, v := range e.Commits {
		if !slices.Contains(set, v.Node) {
			return 0, fmt.Errorf("s11 carries a commit of %s, not a member", v.Node)
		}
	}
	return len(e.Commits), nil
}
