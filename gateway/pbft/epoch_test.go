package pbft

import (
	"fmt"
	"slices"
	"testing"
	"testing/quick"
)

// naiveBoundary is Boundary by counting: the first multiple of interval
// at or after seq+window.
func naiveBoundary(seq, interval, window uint64) uint64 {
	b := seq + window
	for b%interval != 0 {
		b++
	}
	return b
}

// naiveMembers is the member set of seq by the rule as doc.go states it:
// the set of the last reconfiguration whose boundary is below seq, or the
// genesis set.
func naiveMembers(genesis []string, rs []Reconfig, seq, interval, window uint64) []string {
	nodes := genesis
	for _, r := range rs {
		if naiveBoundary(r.Seq, interval, window) < seq {
			nodes = r.Nodes
		}
	}
	return nodes
}

// TestBoundaryQuick checks Boundary against counting.
func TestBoundaryQuick(t *testing.T) {
	prop := func(seq uint32, k, w uint8) bool {
		interval := 1 + uint64(k)%32
		window := uint64(w) % 200
		return Boundary(uint64(seq), interval, window) == naiveBoundary(uint64(seq), interval, window)
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 50_000}); err != nil {
		t.Error(err)
	}
}

// TestEpochQuick checks the core's member set of every sequence number
// against the naive rule, after random reconfigurations, and that what
// the core calls known is: no reconfiguration it has not executed yet
// (one committed above told) changes the set of a sequence number at or
// below known(). That is the property the window rule rests on (doc.go,
// Reconfiguration): a vote is only ever counted with the set it belongs to.
func TestEpochQuick(t *testing.T) {
	prop := func(steps []uint8, sizes []uint8, k uint8, extra uint8) bool {
		interval := 1 + uint64(k)%8
		cfg := Config{ID: "n0", Nodes: []string{"n0", "n1", "n2", "n3"}, CheckpointInterval: interval, Window: 2 * interval}
		c := &Core{cfg: cfg, epochs: []*epoch{newEpoch(1, cfg.Nodes)}}
		var rs []Reconfig
		seq := uint64(0)
		for i, st := range steps {
			seq += 1 + uint64(st)%20
			n := 1
			if i < len(sizes) {
				n = 1 + int(sizes[i])%9
			}
			var nodes []string
			for j := range n {
				nodes = append(nodes, fmt.Sprintf("r%d-%d", i, j))
			}
			r := Reconfig{Seq: seq, Nodes: nodes}
			if err := c.addReconfig(r); err != nil {
				t.Logf("addReconfig %v: %v", r, err)
				return false
			}
			c.told = seq
			rs = append(rs, r)
		}
		for q := uint64(1); q <= c.known(); q++ {
			ep, _, ok := c.epochAt(q)
			if !ok || !slices.Equal(ep.nodes, naiveMembers(cfg.Nodes, rs, q, interval, cfg.Window)) {
				t.Logf("seq %d: core %v, naive %v", q, ep.nodes, naiveMembers(cfg.Nodes, rs, q, interval, cfg.Window))
				return false
			}
			if ep.n != len(ep.nodes) || ep.f != (ep.n-1)/3 || ep.q != (ep.n+ep.f)/2+1 {
				return false
			}
		}
		if _, _, ok := c.epochAt(c.known() + 1); ok {
			return false
		}
		// A reconfiguration committed after told changes nothing known.
		later := append(slices.Clone(rs), Reconfig{Seq: c.told + 1 + uint64(extra)%30, Nodes: []string{"late"}})
		for q := uint64(1); q <= c.known(); q++ {
			if !slices.Equal(naiveMembers(cfg.Nodes, rs, q, interval, cfg.Window), naiveMembers(cfg.Nodes, later, q, interval, cfg.Window)) {
				t.Logf("seq %d at or below known %d changed by a reconfiguration at %d", q, c.known(), later[len(later)-1].Seq)
				return false
			}
		}
		return true
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 5_000}); err != nil {
		t.Error(err)
	}
}

// TestReconfigErrors: a member set the core cannot use is an error, and a
// reconfiguration cannot take effect before one already recorded.
func TestReconfigErrors(t *testing.T) {
	cfg := Config{ID: "n0", Nodes: []string{"n0", "n1", "n2", "n3"}, CheckpointInterval: 4, Window: 8}
	c := &Core{cfg: cfg, epochs: []*epoch{newEpoch(1, cfg.Nodes)}}
	for _, bad := range [][]string{nil, {"a", "a", "b", "c"}, {"a", "", "b", "c"}} {
		if err := c.addReconfig(Reconfig{Seq: 3, Nodes: bad}); err == nil {
			t.Errorf("member set %q accepted", bad)
		}
	}
	if err := c.addReconfig(Reconfig{Seq: 10, Nodes: []string{"a", "b", "c", "d"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.addReconfig(Reconfig{Seq: 3, Nodes: []string{"e", "b", "c", "d"}}); err == nil {
		t.Error("a reconfiguration taking effect before one recorded was accepted")
	}
	// Two before one boundary: the later set wins there.
	if err := c.addReconfig(Reconfig{Seq: 11, Nodes: []string{"x", "b", "c", "d"}}); err != nil {
		t.Fatal(err)
	}
	if len(c.epochs) != 2 || c.epochs[1].start != 21 || c.epochs[1].nodes[0] != "x" {
		t.Errorf("epochs %+v, want the genesis set and x,b,c,d from 21", c.Epochs())
	}
}
