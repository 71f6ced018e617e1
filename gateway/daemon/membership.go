package daemon

import (
	"fmt"
	"sync"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// buildMembershipProof builds the membership proof (docs/protocol.md
// 10.2) of the member changes a state holds, oldest first: for each, the
// receipt of its cluster.reconfig tx, looked up by tx id. It is the one
// place that makes the proof; a gateway that joined from a snapshot
// lacks the blocks below its base, so receipt fails for changes before
// it (TODO(verify): take those receipts from the snapshot's proof).
func buildMembershipProof(changes []*ledger.Epoch, receipt func(id [32]byte) (*ledger.Receipt, error)) (ledger.MembershipProof, error) {
	p := make(ledger.MembershipProof, 0, len(changes))
	for _, e := range changes {
		r, err := receipt(e.Tx)
		if err != nil {
			return nil, fmt.Errorf("daemon: membership proof: the change at height %d (tx %x): %w", e.Height, e.Tx, err)
		}
		if r.Header.Height != e.Height {
			return nil, fmt.Errorf("daemon: membership proof: the change of tx %x is at height %d, its receipt at %d", e.Tx, e.Height, r.Header.Height)
		}
		p = append(p, *r)
	}
	return p, nil
}

// membership serves the chain's membership proof to the front ends and
// the API (bridge.Membership, api.Membership). The encoding is kept until
// the state holds another change: changes are only ever appended.
type membership struct {
	members func() *ledger.Members
	receipt func(id [32]byte) (*ledger.Receipt, error)

	mu  sync.Mutex
	n   int    // changes in enc
	enc []byte // nil: not built yet
}

func newMembership(st *state.State, ch *chain.Chain) *membership {
	return &membership{members: st.Members, receipt: ch.Receipt}
}

// MembershipProof returns the encoded proof of every change the state
// holds.
func (m *membership) MembershipProof() ([]byte, error) {
	changes := m.members().Changes()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enc != nil && m.n == len(changes) {
		return m.enc, nil
	}
	p, err := buildMembershipProof(changes, m.receipt)
	if err != nil {
		return nil, err
	}
	enc, err := p.Encode()
	if err != nil {
		return nil, err
	}
	m.enc, m.n = enc, len(changes)
	return enc, nil
}
