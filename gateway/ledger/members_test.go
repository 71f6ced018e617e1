package ledger

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestMembersFrom(t *testing.T) {
	for _, c := range []struct{ h, want uint64 }{
		{1, 81}, {15, 81}, {16, 81}, {17, 97}, {32, 97}, {33, 113}, {1000, 1073},
	} {
		if got := MembersFrom(c.h); got != c.want {
			t.Errorf("MembersFrom(%d) = %d, want %d", c.h, got, c.want)
		}
		// The rule's point: the boundary is a checkpoint at least a window
		// above the change.
		if b := MembersFrom(c.h) - 1; b%CheckpointInterval != 0 || b < c.h+Window || b >= c.h+Window+CheckpointInterval {
			t.Errorf("MembersFrom(%d) - 1 = %d: not the first checkpoint at or after h+%d", c.h, b, Window)
		}
	}
}

// memberChain is a genesis of four nodes (node-a to node-d) and an admin,
// with every node key the tests sign with, spare ones included.
type memberChain struct {
	g    *Genesis
	keys map[string]*ecdsa.PrivateKey
}

func newMemberChain(t testing.TB) *memberChain {
	t.Helper()
	c := &memberChain{keys: map[string]*ecdsa.PrivateKey{}}
	g, keys, _ := testChainOf(t, 4, 1)
	c.g = g
	for i, n := range g.Nodes {
		c.keys[n.ID] = keys[i]
	}
	for _, id := range []string{"node-e", "node-f"} {
		c.keys[id] = newP256(t)
	}
	return c
}

func (c *memberChain) node(t testing.TB, id string) Node {
	return Node{ID: id, PublicKey: pubDER(t, c.keys[id])}
}

func (c *memberChain) set(t testing.TB, ids ...string) []Node {
	var out []Node
	for _, id := range ids {
		out = append(out, c.node(t, id))
	}
	return out
}

// block makes the block at height holding txs, certified by signers.
func (c *memberChain) block(t testing.TB, height uint64, txs [][]byte, signers ...string) *Block {
	t.Helper()
	tree := NewTree(txs)
	b := &Block{Header: Header{ChainID: c.g.ChainID, Height: height, Prev: make([]byte, 32), TxRoot: tree.Root(),
		NumTxs: uint64(len(txs)), Time: 1_700_000_000_000, View: 0, Proposer: signers[0]}, Txs: txs}
	for _, id := range signers {
		s, err := SignVote(c.keys[id], id, &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	return b
}

// reconfig is the receipt of a cluster.reconfig to nodes committed at
// height and certified by signers.
func (c *memberChain) reconfig(t testing.TB, height uint64, nodes []Node, signers ...string) Receipt {
	t.Helper()
	env, err := SignTx(fixedEd25519(), "admin", &Body{Kind: KindReconfig, ChainID: c.g.ChainID, ClusterReconfig: &ClusterReconfig{Nodes: nodes}})
	if err != nil {
		t.Fatal(err)
	}
	return c.receipt(t, c.block(t, height, [][]byte{env}, signers...))
}

func (c *memberChain) receipt(t testing.TB, b *Block) Receipt {
	t.Helper()
	r, err := NewReceipt(b, NewTree(b.Txs), 0)
	if err != nil {
		t.Fatal(err)
	}
	return *r
}

func TestMembersNextRules(t *testing.T) {
	c := newMemberChain(t)
	m, err := NewMembers(c.g)
	if err != nil {
		t.Fatal(err)
	}
	next, err := m.Next(10, [32]byte{1}, c.set(t, "node-a", "node-b", "node-c", "node-e"))
	if err != nil {
		t.Fatal(err)
	}
	if e := next.At(80); e.Start != 1 || e.N() != 4 || e.Nodes[3].ID != "node-d" {
		t.Fatalf("at 80: %+v, want the genesis set", e.IDs())
	}
	if e := next.At(81); e.Start != 81 || e.Nodes[3].ID != "node-e" || e.Height != 10 || e.Tx != [32]byte{1} {
		t.Fatalf("at 81: start %d %v, want the new set from 81", e.Start, e.IDs())
	}
	if !next.Pending(80) || next.Pending(81) {
		t.Fatal("pending: want true at 80 and false at 81")
	}
	if _, err := m.Next(10, [32]byte{}, c.set(t, "node-a", "node-b", "node-c", "node-e")); err != nil {
		t.Fatal("Next changed the Members it was called on")
	}
	bad := map[string]func() error{
		"pending": func() error {
			_, err := next.Next(80, [32]byte{}, c.set(t, "node-a", "node-b", "node-c", "node-f"))
			return err
		},
		"three nodes": func() error {
			_, err := m.Next(10, [32]byte{}, c.set(t, "node-a", "node-b", "node-c"))
			return err
		},
		"id twice": func() error {
			_, err := m.Next(10, [32]byte{}, c.set(t, "node-a", "node-b", "node-c", "node-c"))
			return err
		},
		"former id, new key": func() error {
			s := c.set(t, "node-a", "node-b", "node-c", "node-e")
			s[3].ID = "node-d"
			_, err := m.Next(10, [32]byte{}, s)
			return err
		},
		"not P-256": func() error {
			s := c.set(t, "node-a", "node-b", "node-c")
			s = append(s, Node{ID: "node-x", PublicKey: pubDER(t, fixedEd25519())})
			_, err := m.Next(10, [32]byte{}, s)
			return err
		},
	}
	for name, f := range bad {
		if err := f(); !errors.Is(err, ErrMembers) {
			t.Errorf("%s: %v, want ErrMembers", name, err)
		}
	}
	// Once in force, the next change is allowed again.
	if _, err := next.Next(81, [32]byte{2}, c.set(t, "node-a", "node-b", "node-c", "node-e", "node-f")); err != nil {
		t.Fatal(err)
	}
}

func TestMembersSmallChainCannotChange(t *testing.T) {
	c := newMemberChain(t)
	one := *c.g
	one.Nodes = one.Nodes[:1]
	m, err := NewMembers(&one)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Next(5, [32]byte{}, c.set(t, "node-a", "node-b", "node-c", "node-e")); err == nil || !strings.Contains(err.Error(), "does not run consensus") {
		t.Fatalf("a single-node chain changed its members: %v", err)
	}
}

func TestVerifyMembership(t *testing.T) {
	c := newMemberChain(t)
	first := c.set(t, "node-a", "node-b", "node-c", "node-e")            // node-d replaced by node-e
	second := c.set(t, "node-a", "node-b", "node-c", "node-e", "node-f") // node-f added
	p := MembershipProof{
		c.reconfig(t, 10, first, "node-b", "node-c", "node-d"),   // certified by the genesis set
		c.reconfig(t, 100, second, "node-a", "node-c", "node-e"), // by the first new set (from 81)
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := DecodeMembershipProof(enc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := VerifyMembership(c.g, dec)
	if err != nil {
		t.Fatal(err)
	}
	if e := m.Last(); e.Start != MembersFrom(100) || e.N() != 5 || e.Quorum() != 4 {
		t.Fatalf("last set from %d of %d (quorum %d), want from %d of 5 (quorum 4)", e.Start, e.N(), e.Quorum(), MembersFrom(100))
	}

	// A record after both changes, certified by the newest set: it
	// verifies with the proof, not with the genesis alone.
	env, err := SignTx(fixedEd25519(), "dev-1", record("dev-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	late := c.receipt(t, c.block(t, 200, [][]byte{env}, "node-b", "node-c", "node-e", "node-f"))
	if err := m.VerifyReceipt(&late); err != nil {
		t.Fatalf("receipt after the changes: %v", err)
	}
	if err := VerifyReceipt(c.g, &late); !errors.Is(err, ErrCert) {
		t.Fatalf("receipt after the changes with the genesis alone: %v, want ErrCert", err)
	}
	// Certified by three of five: not a quorum of the newest set.
	short := c.receipt(t, c.block(t, 200, [][]byte{env}, "node-b", "node-c", "node-e"))
	if err := m.VerifyReceipt(&short); !errors.Is(err, ErrCert) {
		t.Fatalf("3 of 5 signatures: %v, want ErrCert", err)
	}
	// Before the first change took effect, the genesis set certifies.
	early := c.receipt(t, c.block(t, 80, [][]byte{env}, "node-a", "node-b", "node-d"))
	if err := m.VerifyReceipt(&early); err != nil {
		t.Fatalf("receipt at 80: %v", err)
	}

	broken := map[string]MembershipProof{
		"second change certified by the genesis set": {p[0], c.reconfig(t, 100, second, "node-a", "node-b", "node-d")},
		"changes out of order":                       {p[1], p[0]},
		"second change while the first is pending":   {p[0], c.reconfig(t, 50, second, "node-a", "node-b", "node-c")},
		"a record, not a change":                     {p[0], late},
	}
	for name, bp := range broken {
		if _, err := VerifyMembership(c.g, bp); !errors.Is(err, ErrMembers) {
			t.Errorf("%s: %v, want ErrMembers", name, err)
		}
	}
	// Signed by someone who is not an admin of the genesis.
	env, err = SignTx(newP256(t), "admin", &Body{Kind: KindReconfig, ChainID: c.g.ChainID, ClusterReconfig: &ClusterReconfig{Nodes: first}})
	if err != nil {
		t.Fatal(err)
	}
	forged := MembershipProof{c.receipt(t, c.block(t, 10, [][]byte{env}, "node-a", "node-b", "node-c"))}
	if _, err := VerifyMembership(c.g, forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("change not signed by the admin: %v, want ErrBadSignature", err)
	}
}

func TestRestoreMembers(t *testing.T) {
	c := newMemberChain(t)
	m, _ := NewMembers(c.g)
	m, err := m.Next(10, [32]byte{7}, c.set(t, "node-a", "node-b", "node-c", "node-e"))
	if err != nil {
		t.Fatal(err)
	}
	var epochs []Epoch
	for _, e := range m.Epochs() {
		epochs = append(epochs, *e)
	}
	back, err := RestoreMembers(c.g, epochs)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back.Last().IDs(), back.Last().Start) != fmt.Sprint(m.Last().IDs(), m.Last().Start) {
		t.Fatal("restored members differ")
	}
	epochs[1].Start++
	if _, err := RestoreMembers(c.g, epochs); !errors.Is(err, ErrMembers) {
		t.Fatalf("a start the rule does not give: %v, want ErrMembers", err)
	}
}

// FuzzMembershipProof: any bytes decode or fail, and verify or fail,
// without a panic; a proof that verifies gives sets the rules allow.
func FuzzMembershipProof(f *testing.F) {
	c := newMemberChain(f)
	p := MembershipProof{
		c.reconfig(f, 10, c.set(f, "node-a", "node-b", "node-c", "node-e"), "node-b", "node-c", "node-d"),
		c.reconfig(f, 100, c.set(f, "node-a", "node-b", "node-c", "node-e", "node-f"), "node-a", "node-c", "node-e"),
	}
	for i := range len(p) + 1 {
		enc, err := p[:i].Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		p, err := DecodeMembershipProof(data)
		if err != nil {
			return
		}
		m, err := VerifyMembership(c.g, p)
		if err != nil {
			return
		}
		for _, e := range m.Changes() {
			if e.N() < 4 || e.Start != MembersFrom(e.Height) {
				t.Fatalf("verified a set of %d from %d for a change at %d", e.N(), e.Start, e.Height)
			}
		}
	})
}
