package daemon

import (
	"sync"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// membership serves the chain's membership proof to the front ends and
// the API (bridge.Membership, api.Membership). The encoding is kept until
// the state holds another change: changes are only ever appended.
type membership struct {
	members func() *ledger.Members
	prove   func(*ledger.Members) (ledger.MembershipProof, error) // chain.ProveMembers

	mu  sync.Mutex
	n   int    // changes in enc
	enc []byte // nil: not built yet
}

func newMembership(st *state.State, ch *chain.Chain) *membership {
	return &membership{members: st.Members, prove: ch.ProveMembers}
}

// MembershipProof returns the encoded proof of every change the state
// holds.
func (m *membership) MembershipProof() ([]byte, error) {
	members := m.members()
	changes := members.Changes()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enc != nil && m.n == len(changes) {
		return m.enc, nil
	}
	p, err := m.prove(members)
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
