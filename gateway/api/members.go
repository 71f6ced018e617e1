package api

import (
	"net/http"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Members is the body of GET /api/v1/cluster/members: the member set in
// force after this gateway's tip, and the one a committed change makes
// from a later height, if any (docs/cluster.md).
type Members struct {
	Height  uint64     `json:"height"` // this gateway's tip
	InForce MemberSet  `json:"in_force"`
	Pending *MemberSet `json:"pending,omitempty"`
}

// MemberSet is a member set and the first height it orders and
// certifies.
type MemberSet struct {
	From   uint64        `json:"from"`
	Quorum int           `json:"quorum"`
	Nodes  []ledger.Node `json:"nodes"` // in primary order
	// ChangeHeight and ChangeTx name the cluster.reconfig that made the
	// set (its block and tx id, hex); absent for the genesis nodes.
	ChangeHeight uint64 `json:"change_height,omitempty"`
	ChangeTx     string `json:"change_tx,omitempty"`
}

// SetMembers sets where the members endpoint and the status (nodes,
// quorum) read the member sets from. It must be called before the server
// serves.
func (s *Server) SetMembers(f func() Members) { s.members = f }

func (s *Server) clusterMembers(w http.ResponseWriter, _ *http.Request) {
	if s.members == nil {
		writeError(w, http.StatusNotFound, string(ledger.ReasonNotFound), "this gateway does not report its members")
		return
	}
	writeJSON(w, http.StatusOK, s.members())
}
