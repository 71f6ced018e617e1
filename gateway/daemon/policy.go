package daemon

import (
	"encoding/hex"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// policySource is the state as the API's policy endpoints read it.
type policySource struct{ st *state.State }

func (p policySource) Tip() uint64 {
	h, _ := p.st.Tip()
	return h
}

func (p policySource) PolicyAt(height uint64) (api.PolicyEntry, bool) {
	x := p.st.PolicyAt(height)
	if x == nil {
		return api.PolicyEntry{}, false
	}
	return policyEntry(x), true
}

func (p policySource) PolicyHistory() []api.PolicyEntry {
	h := p.st.PolicyHistory()
	out := make([]api.PolicyEntry, len(h))
	for i, x := range h {
		out[i] = policyEntry(x)
	}
	return out
}

func policyEntry(p *state.Policy) api.PolicyEntry {
	return api.PolicyEntry{Version: p.Set.Version, Height: p.Height, Index: p.Index, Tx: hex.EncodeToString(p.Tx[:]),
		Author: p.Author, Hash: hex.EncodeToString(p.Hash[:]), Rules: p.Set.Rules}
}
