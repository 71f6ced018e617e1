package ledger

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// The consensus constants that fix when a member change takes effect
// (docs/protocol.md section 8.1). They are PBFT's checkpoint interval and
// window (gateway/pbft Config), and part of the protocol: a device
// verifying a membership proof computes MembersFrom with them.
const (
	CheckpointInterval = 16
	Window             = 64
)

// MaxMembers bounds a member set: every block certificate names a quorum
// of them.
const MaxMembers = 64

// MembersFrom returns the first height that the member set named by a
// cluster.reconfig committed at height h orders and certifies: the one
// after the first checkpoint at or after h + Window. Until then the set
// before orders; a replica that has not executed h yet accepts no vote
// at or above MembersFrom(h), so no vote is counted with a set it does
// not know.
func MembersFrom(h uint64) uint64 {
	return CheckpointInterval*((h+Window+CheckpointInterval-1)/CheckpointInterval) + 1
}

// Epoch is a member set and the first height it certifies. The genesis
// nodes are the epoch at height 1; each committed cluster.reconfig adds
// one. An Epoch is not changed once made.
type Epoch struct {
	Start uint64 // first height this set orders and certifies
	Nodes []Node // in primary order
	// Height and Tx name the cluster.reconfig that made this epoch (its
	// block and tx id); zero for the genesis epoch.
	Height uint64
	Tx     [32]byte

	keys map[string]*PublicKey
}

// newEpoch parses the keys of nodes, which checkNodes accepted.
func newEpoch(start uint64, nodes []Node, height uint64, tx [32]byte) (*Epoch, error) {
	e := &Epoch{Start: start, Nodes: slices.Clone(nodes), Height: height, Tx: tx, keys: map[string]*PublicKey{}}
	for _, n := range nodes {
		pk, err := ParsePublicKey(n.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("ledger: node %s: %w", n.ID, err)
		}
		e.keys[n.ID] = pk
	}
	return e, nil
}

// N is the number of members, F how many may fail.
func (e *Epoch) N() int { return len(e.Nodes) }
func (e *Epoch) F() int { return (len(e.Nodes) - 1) / 3 }

// Quorum is how many distinct members must sign a commit: the smallest q
// with 2q > n + f, so that any two quorums share at least f+1 members
// (2f+1 when n = 3f+1, PBFT 4.1).
func (e *Epoch) Quorum() int {
	n := len(e.Nodes)
	return (n+(n-1)/3)/2 + 1
}

// Key returns a member's parsed key.
func (e *Epoch) Key(id string) (*PublicKey, bool) {
	k, ok := e.keys[id]
	return k, ok
}

// Node returns a member.
func (e *Epoch) Node(id string) (*Node, bool) {
	for i := range e.Nodes {
		if e.Nodes[i].ID == id {
			return &e.Nodes[i], true
		}
	}
	return nil, false
}

// Primary returns the member that proposes in view v.
func (e *Epoch) Primary(v uint64) string { return e.Nodes[v%uint64(len(e.Nodes))].ID }

// IDs returns the members' ids in primary order.
func (e *Epoch) IDs() []string {
	ids := make([]string, len(e.Nodes))
	for i, n := range e.Nodes {
		ids[i] = n.ID
	}
	return ids
}

// VerifyCert checks that c holds valid signatures of a quorum of distinct
// members of e over h.
func (e *Epoch) VerifyCert(chainID string, h *Header, c *Cert) error {
	if h.ChainID != chainID {
		return fmt.Errorf("%w: chain %q, genesis is %q", ErrCert, h.ChainID, chainID)
	}
	digest := sha256.Sum256(VoteBytes(h.ChainID, h.Height, c.View, h.Hash()))
	seen := make(map[string]bool, len(c.Sigs))
	for _, s := range c.Sigs {
		if seen[s.Node] {
			return fmt.Errorf("%w: node %q signed twice", ErrCert, s.Node)
		}
		seen[s.Node] = true
		pk, ok := e.keys[s.Node]
		if !ok {
			return fmt.Errorf("%w: %q is not a member at height %d", ErrCert, s.Node, h.Height)
		}
		ec, ok := pk.Key.(*ecdsa.PublicKey)
		if !ok || !ecdsa.VerifyASN1(ec, digest[:], s.Sig) {
			return fmt.Errorf("%w: bad signature by node %s", ErrCert, s.Node)
		}
	}
	if len(seen) < e.Quorum() {
		return fmt.Errorf("%w: %d signatures, quorum is %d", ErrCert, len(seen), e.Quorum())
	}
	return nil
}

// Members is a chain's member sets by height: the genesis nodes, then one
// epoch for each committed cluster.reconfig. A Members is not changed
// once made (Next returns a new one), so it may be shared.
type Members struct {
	g      *Genesis
	epochs []*Epoch
}

// ErrMembers reports a member set or a member history that is not valid.
var ErrMembers = errors.New("ledger: invalid member set")

// NewMembers returns the members of a chain with no change yet: the
// genesis nodes from height 1.
func NewMembers(g *Genesis) (*Members, error) {
	e, err := newEpoch(1, g.Nodes, 0, [32]byte{})
	if err != nil {
		return nil, err
	}
	return &Members{g: g, epochs: []*Epoch{e}}, nil
}

// RestoreMembers rebuilds a member history from its epochs (a snapshot's),
// checking that it starts with the genesis nodes and that each change
// follows the rules.
func RestoreMembers(g *Genesis, epochs []Epoch) (*Members, error) {
	m, err := NewMembers(g)
	if err != nil {
		return nil, err
	}
	if len(epochs) == 0 || epochs[0].Start != 1 || !sameNodes(epochs[0].Nodes, g.Nodes) {
		return nil, fmt.Errorf("%w: history does not start with the genesis nodes", ErrMembers)
	}
	for _, e := range epochs[1:] {
		if m, err = m.Next(e.Height, e.Tx, e.Nodes); err != nil {
			return nil, err
		}
		if m.Last().Start != e.Start {
			return nil, fmt.Errorf("%w: epoch from height %d, the change at %d takes effect at %d", ErrMembers, e.Start, e.Height, m.Last().Start)
		}
	}
	return m, nil
}

// At returns the epoch in force at height (height 0 and 1: the genesis').
func (m *Members) At(height uint64) *Epoch {
	i := len(m.epochs) - 1
	for i > 0 && m.epochs[i].Start > height {
		i--
	}
	return m.epochs[i]
}

// Last returns the newest epoch, which may start above the tip (pending).
func (m *Members) Last() *Epoch { return m.epochs[len(m.epochs)-1] }

// Epochs returns the epochs, oldest first. They must not be changed.
func (m *Members) Epochs() []*Epoch { return m.epochs }

// Equal reports whether m and o hold the same member history: the same
// epochs, each from the same height with the same nodes, made by the
// same change.
func (m *Members) Equal(o *Members) bool {
	return slices.EqualFunc(m.epochs, o.epochs, func(a, b *Epoch) bool {
		return a.Start == b.Start && a.Height == b.Height && a.Tx == b.Tx && sameNodes(a.Nodes, b.Nodes)
	})
}

// Changes returns the epochs made by cluster.reconfig txs (all but the
// genesis epoch), oldest first.
func (m *Members) Changes() []*Epoch { return m.epochs[1:] }

// Pending reports whether a change committed before height has not taken
// effect at it yet: a cluster.reconfig is refused then, so that each
// change is certified by the set before it.
func (m *Members) Pending(height uint64) bool { return m.Last().Start > height }

// Ever returns the key id had when it was last a member, if it ever was.
func (m *Members) Ever(id string) (*PublicKey, bool) {
	for i := len(m.epochs) - 1; i >= 0; i-- {
		if k, ok := m.epochs[i].keys[id]; ok {
			return k, true
		}
	}
	return nil, false
}

// VerifyCert checks that c holds valid signatures of a quorum of distinct
// members in force at h's height.
func (m *Members) VerifyCert(h *Header, c *Cert) error {
	return m.At(h.Height).VerifyCert(m.g.ChainID, h, c)
}

// Next returns the members after the cluster.reconfig tx committed at
// height names nodes: a new epoch from MembersFrom(height). It fails
// while an earlier change is pending, or if nodes is not a valid set or
// gives a former member's id a new key.
func (m *Members) Next(height uint64, tx [32]byte, nodes []Node) (*Members, error) {
	if err := CheckMembers(nodes); err != nil {
		return nil, err
	}
	if m.Pending(height) {
		return nil, fmt.Errorf("%w: the change to the set from height %d is pending at %d", ErrMembers, m.Last().Start, height)
	}
	if m.Last().N() < 4 {
		return nil, fmt.Errorf("%w: a chain of %d node(s) does not run consensus and cannot change its members", ErrMembers, m.Last().N())
	}
	for _, n := range nodes {
		if old, ok := m.Ever(n.ID); ok && string(old.DER) != string(n.PublicKey) {
			return nil, fmt.Errorf("%w: node id %s was a member with another key: give the new gateway a new id", ErrMembers, n.ID)
		}
	}
	e, err := newEpoch(MembersFrom(height), nodes, height, tx)
	if err != nil {
		return nil, err
	}
	return &Members{g: m.g, epochs: append(slices.Clip(m.epochs), e)}, nil
}

// CheckMembers checks the syntax of a new member set: 4 to MaxMembers
// nodes (a set of 2 or 3 tolerates no fault, and a single gateway does
// not run consensus), distinct valid ids, ECDSA P-256 keys.
func CheckMembers(nodes []Node) error {
	if len(nodes) < 4 || len(nodes) > MaxMembers {
		return fmt.Errorf("%w: %d nodes, want 4 to %d", ErrMembers, len(nodes), MaxMembers)
	}
	seen := map[string]bool{}
	for i, n := range nodes {
		if !ValidID(n.ID) {
			return fmt.Errorf("%w: nodes[%d]: invalid id %q", ErrMembers, i, n.ID)
		}
		if seen[n.ID] {
			return fmt.Errorf("%w: nodes[%d]: id %s twice", ErrMembers, i, n.ID)
		}
		seen[n.ID] = true
		pk, err := ParsePublicKey(n.PublicKey)
		if err != nil {
			return fmt.Errorf("%w: node %s: %v", ErrMembers, n.ID, err)
		}
		if pk.Alg != ES256 {
			return fmt.Errorf("%w: node %s: node keys must be ECDSA P-256", ErrMembers, n.ID)
		}
		if len(n.Addrs) > maxAddrs {
			return fmt.Errorf("%w: node %s: %d addresses, at most %d", ErrMembers, n.ID, len(n.Addrs), maxAddrs)
		}
		for _, a := range n.Addrs {
			if a == "" || len(a) > maxTextLen {
				return fmt.Errorf("%w: node %s: address %q: want 1 to %d bytes", ErrMembers, n.ID, a, maxTextLen)
			}
		}
	}
	return nil
}

// maxAddrs bounds a member's address hints.
const maxAddrs = 8

// sameNodes reports whether a and b are the same set in the same order.
func sameNodes(a, b []Node) bool {
	return slices.EqualFunc(a, b, func(x, y Node) bool {
		return x.ID == y.ID && string(x.PublicKey) == string(y.PublicKey) && slices.Equal(x.Addrs, y.Addrs)
	})
}

// MembershipProof proves the member changes of a chain to anyone holding
// its genesis: the receipts of its cluster.reconfig txs, oldest first,
// each certified by the set the ones before it leave (docs/protocol.md
// section 10.2).
type MembershipProof []Receipt

// MaxMembershipProofBytes bounds an encoded MembershipProof a decoder
// takes: a receipt of a change is a few KiB.
const MaxMembershipProofBytes = 1 << 20

// Encode returns the proof's deterministic encoding.
func (p MembershipProof) Encode() ([]byte, error) {
	if p == nil {
		p = MembershipProof{}
	}
	b, err := marshal(p)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode membership proof: %w", err)
	}
	return b, nil
}

// DecodeMembershipProof parses a proof (outside bytes). It does not
// verify it.
func DecodeMembershipProof(data []byte) (MembershipProof, error) {
	if len(data) > MaxMembershipProofBytes {
		return nil, fmt.Errorf("%w: membership proof of %d bytes, limit %d", ErrMembers, len(data), MaxMembershipProofBytes)
	}
	var p MembershipProof
	if err := unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: membership proof: %w", ErrMembers, err)
	}
	return p, nil
}

// VerifyMembership checks p with nothing but the genesis and returns the
// member sets it proves. Each receipt must verify with the set in force
// at its height, as the receipts before it leave the sets, and carry a
// cluster.reconfig signed by a genesis admin that the rules allow there
// (Members.Next).
func VerifyMembership(g *Genesis, p MembershipProof) (*Members, error) {
	m, err := NewMembers(g)
	if err != nil {
		return nil, err
	}
	for i := range p {
		if m, err = m.Follow(&p[i]); err != nil {
			return nil, fmt.Errorf("%w: membership proof receipt %d: %w", ErrMembers, i, err)
		}
	}
	return m, nil
}

// Follow returns the members after the change r is a receipt of: r must
// verify with m and carry a cluster.reconfig signed by a genesis admin.
// A device that keeps its last Members follows later receipts from there.
func (m *Members) Follow(r *Receipt) (*Members, error) {
	if err := m.VerifyReceipt(r); err != nil {
		return nil, err
	}
	tx, err := DecodeTx(r.Tx, m.g.Params.MaxTxBytes)
	if err != nil {
		return nil, err
	}
	if tx.Body.Kind != KindReconfig || tx.Body.ClusterReconfig == nil {
		return nil, fmt.Errorf("a receipt of a %s tx, not of a cluster.reconfig", tx.Body.Kind)
	}
	a, ok := m.g.Admin(tx.Author)
	if !ok {
		return nil, fmt.Errorf("cluster.reconfig by %q, not a genesis admin", tx.Author)
	}
	pk, err := ParsePublicKey(a.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := tx.Verify(pk); err != nil {
		return nil, err
	}
	return m.Next(r.Header.Height, tx.ID, tx.Body.ClusterReconfig.Nodes)
}

// Genesis returns the genesis the member sets start from.
func (m *Members) Genesis() *Genesis { return m.g }

// VerifyHead checks a head's certificate with the members in force at
// its height (docs/protocol.md 11.1).
func (m *Members) VerifyHead(h *Head) error { return m.VerifyCert(&h.Header, &h.Cert) }

// VerifyReceipt checks that r's tx is in a block that a quorum of the
// members in force at its height committed.
func (m *Members) VerifyReceipt(r *Receipt) error {
	return verifyReceipt(m.g, r, m.At(r.Header.Height))
}
