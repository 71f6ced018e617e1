package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func testNode(t *testing.T, id string) ledger.Node {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ledger.MarshalPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return ledger.Node{ID: id, PublicKey: der, Addrs: []string{"127.0.0.1:7" + id[len(id)-1:]}}
}

// TestMemberPeers: the peers are the members of the set in force and of
// a pending one, this gateway aside; a removed member is dropped once
// its set ended.
func TestMemberPeers(t *testing.T) {
	var nodes []ledger.Node
	for i := 1; i <= 5; i++ {
		nodes = append(nodes, testNode(t, fmt.Sprintf("n%d", i)))
	}
	g := &ledger.Genesis{ChainID: "c", Nodes: nodes[:4]}
	m0, err := ledger.NewMembers(g)
	if err != nil {
		t.Fatal(err)
	}
	// At height 10, n2 is replaced by n5: in force from 81.
	m, err := m0.Next(10, [32]byte{1}, []ledger.Node{nodes[0], nodes[4], nodes[2], nodes[3]})
	if err != nil {
		t.Fatal(err)
	}
	from := ledger.MembersFrom(10)
	for _, tc := range []struct {
		m    *ledger.Members
		tip  uint64
		self string
		want string
	}{
		{m0, 5, "n1", "n2,n3,n4"},
		{m, 10, "n1", "n2,n3,n4,n5"},       // the pending set's new member too
		{m, from - 2, "n5", "n1,n2,n3,n4"}, // the new member follows the old set
		{m, from - 1, "n1", "n3,n4,n5"},    // n2's set ended
		{m, from - 1, "n2", "n1,n3,n4,n5"}, // the removed one, for what it is worth
	} {
		peers, err := memberPeers(tc.m, tc.tip, tc.self, false)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range peers {
			ids = append(ids, p.ID)
			n, _ := tc.m.Last().Node(p.ID)
			if n == nil {
				n, _ = tc.m.At(1).Node(p.ID)
			}
			if p.Addr != n.Addrs[0] {
				t.Errorf("%s dialled at %s, want %s", p.ID, p.Addr, n.Addrs[0])
			}
		}
		slices.Sort(ids)
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("tip %d, self %s: peers %s, want %s", tc.tip, tc.self, got, tc.want)
		}
	}
	if a := selfAddr(m, "n5"); a != nodes[4].Addrs[0] {
		t.Errorf("selfAddr(n5) = %q", a)
	}
}
