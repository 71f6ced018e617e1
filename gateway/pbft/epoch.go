package pbft

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Reconfig is a committed change of the member set: the proposal at Seq
// carried it, and Nodes is the whole new set, in primary order. It takes
// effect after Boundary(Seq, CheckpointInterval, Window).
type Reconfig struct {
	Seq   uint64
	Nodes []string
}

// Epoch is a member set and the sequence numbers it orders: from Start
// up to the next epoch's Start (exclusive).
type Epoch struct {
	Start uint64
	Nodes []string
}

// Reconfigurer is implemented by an App whose proposals may carry a
// reconfiguration. The core asks it, for each proposal it executes,
// before it executes the next one; it must answer the same on every
// replica (it reads only the committed payload). A set the core cannot
// use (empty, an id empty or repeated) stops the core with an error: the
// application refuses such a reconfiguration before it is proposed
// (App.Build, App.Validate).
type Reconfigurer interface {
	// Reconfig returns the member set a committed proposal names, and
	// whether it names one.
	Reconfig(seq uint64, payload []byte) (nodes []string, ok bool)
}

// Boundary returns the last sequence number the old member set orders
// when a reconfiguration commits at seq: the first checkpoint at or
// after seq+window. The new set orders from Boundary+1 on.
//
// Seq+window is the rule's point: a replica that has not executed seq
// yet accepts no message above its window, low+window <= seq-1+window,
// so every message it accepts is below the boundary, and it never counts
// a vote with a member set it does not know yet. The checkpoint at the
// boundary is signed by the old set and is the new set's first stable
// checkpoint (its "genesis"), as a reconfiguration in BFT-SMaRt takes
// effect after the consensus instance that decided it.
func Boundary(seq, interval, window uint64) uint64 {
	return interval * ((seq + window + interval - 1) / interval)
}

// epoch is an Epoch with its sizes.
type epoch struct {
	start uint64
	nodes []string
	n, f  int
	q     int // 2f+1, or more when n > 3f+1: any two quorums share f+1
}

func newEpoch(start uint64, nodes []string) *epoch {
	n := len(nodes)
	f := (n - 1) / 3
	return &epoch{start: start, nodes: slices.Clone(nodes), n: n, f: f, q: (n+f)/2 + 1}
}

func (e *epoch) has(id string) bool { return slices.Contains(e.nodes, id) }

// primary returns view v's primary in this epoch.
func (e *epoch) primary(v uint64) string { return e.nodes[v%uint64(e.n)] }

// checkNodes checks a member set: not empty, ids not empty, none twice.
func checkNodes(nodes []string) error {
	if len(nodes) == 0 {
		return errors.New("pbft: a member set needs a node")
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if seen[n] || n == "" {
			return fmt.Errorf("pbft: node id %q empty or repeated", n)
		}
		seen[n] = true
	}
	return nil
}

// addReconfig records a reconfiguration committed at r.Seq: a new epoch
// from its boundary on, or, when the last epoch already starts there (two
// reconfigurations before one boundary), the later set replaces it.
func (c *Core) addReconfig(r Reconfig) error {
	if err := checkNodes(r.Nodes); err != nil {
		return err
	}
	start := Boundary(r.Seq, c.cfg.CheckpointInterval, c.cfg.Window) + 1
	last := c.epochs[len(c.epochs)-1]
	switch {
	case start < last.start:
		return fmt.Errorf("pbft: reconfiguration at %d after one that takes effect at %d", r.Seq, last.start)
	case start == last.start && len(c.epochs) > 1:
		c.epochs[len(c.epochs)-1] = newEpoch(start, r.Nodes)
	default:
		c.epochs = append(c.epochs, newEpoch(start, r.Nodes))
	}
	return nil
}

// Reconfigured tells the core of a reconfiguration in a proposal that
// state transfer executed: call it for each, in order, before Caught.
// (Proposals the core hands out in Ready.Committed it asks the App about
// itself: see Reconfigurer.) One at or below what the core knows is
// ignored.
func (c *Core) Reconfigured(r Reconfig) error {
	if r.Seq <= c.told {
		return nil
	}
	return c.addReconfig(r)
}

// known is the highest sequence number whose member set is known: no
// reconfiguration this replica has not executed yet can change it.
func (c *Core) known() uint64 {
	return Boundary(c.told+1, c.cfg.CheckpointInterval, c.cfg.Window)
}

// epochAt returns the epoch of seq, if it is known.
func (c *Core) epochAt(seq uint64) (*epoch, int, bool) {
	if seq > c.known() {
		return nil, 0, false
	}
	i := len(c.epochs) - 1
	for i > 0 && c.epochs[i].start > seq {
		i--
	}
	return c.epochs[i], i, true
}

// end returns the last sequence number of epoch i (MaxUint64: none known).
func (c *Core) end(i int) uint64 {
	if i+1 < len(c.epochs) {
		return c.epochs[i+1].start - 1
	}
	return math.MaxUint64
}

// pos is how far this replica knows the chain decided: executed, proven
// stable, or shown by another replica's commit certificate.
func (c *Core) pos() uint64 {
	p := max(c.low, c.lastExec)
	if c.topCert != nil {
		p = max(p, c.topCert.Seq)
	}
	return p
}

// cur returns the epoch this replica is in: that of the first sequence
// number above what it knows decided. ok is false when it does not know
// that epoch yet (it must fetch).
func (c *Core) cur() (*epoch, int, bool) { return c.epochAt(c.pos() + 1) }

// member reports whether this replica is a member of its current epoch.
func (c *Core) member() bool {
	ep, _, ok := c.cur()
	return ok && ep.has(c.cfg.ID)
}

// settled reports whether this replica's view was installed in its
// current epoch: only then does it take part in ordering that epoch's
// sequence numbers.
func (c *Core) settled() bool {
	ep, _, ok := c.cur()
	return ok && c.viewEp == ep.start-1
}

// processable reports whether this replica may take part in ordering
// seq: its member set is known, it is in the current epoch (the barrier:
// no certificate mixes two sets), and the view was installed in it.
func (c *Core) processable(seq uint64) bool {
	ep, i, ok := c.epochAt(seq)
	if !ok || !c.settled() {
		return false
	}
	cur, ci, _ := c.cur()
	return i == ci && ep == cur && seq <= c.end(ci)
}

// senderKnown reports whether id is a member of an epoch this replica
// knows: a cheap filter before a message's own checks.
func (c *Core) senderKnown(id string) bool {
	for _, e := range c.epochs {
		if e.has(id) {
			return true
		}
	}
	return false
}

// enterEpoch starts a view change when this replica is a member of its
// current epoch but its view was installed in an earlier one (it
// executed past a boundary, or restarted there): every epoch's first view
// is installed by a new-view of its own members, so that no vote of the
// old set's views ever counts in the new one. A replica already changing
// views asks again, with a view-change of the new epoch.
func (c *Core) enterEpoch() error {
	ep, _, ok := c.cur()
	if !ok || c.viewEp == ep.start-1 || !ep.has(c.cfg.ID) {
		return nil
	}
	if c.changing {
		if vc := c.myVCs[c.view]; vc != nil && c.vcStart(vc) >= ep.start-1 {
			return nil
		}
		return c.sendViewChange()
	}
	return c.startViewChange(c.view + 1)
}

// Epochs returns the member sets this replica knows, oldest first.
func (c *Core) Epochs() []Epoch {
	out := make([]Epoch, len(c.epochs))
	for i, e := range c.epochs {
		out[i] = Epoch{Start: e.start, Nodes: slices.Clone(e.nodes)}
	}
	return out
}
