package api

import (
	"net/http"
	"strconv"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// PolicyEntry is a committed policy.set (docs/policy.md): the policy
// and where the chain holds it.
type PolicyEntry struct {
	Version uint64        `json:"version"`
	Height  uint64        `json:"height"` // the block that committed it
	Index   uint64        `json:"index"`  // of the tx in the block
	Tx      string        `json:"tx"`     // tx id, hex
	Author  string        `json:"author"` // the admin
	Hash    string        `json:"hash"`   // SHA-256 of the policy's encoding, hex
	Rules   []ledger.Rule `json:"rules"`
}

// Policy is the body of GET /api/v1/policy: the policy in force after
// the block at Height (this gateway's tip, or the height asked for);
// Policy is null when none was ever set.
type Policy struct {
	Height uint64       `json:"height"`
	Policy *PolicyEntry `json:"policy"`
}

// PolicyHistory is the body of GET /api/v1/policy/history: every
// policy.set committed, oldest first.
type PolicyHistory struct {
	Height  uint64        `json:"height"` // this gateway's tip
	Changes []PolicyEntry `json:"changes"`
}

// PolicySource is what the policy endpoints read: the chain's state
// (the daemon adapts state.State's Policy, PolicyAt and PolicyHistory).
type PolicySource interface {
	// Tip is the height of the last applied block.
	Tip() uint64
	// PolicyAt is the policy in force after the block at height, false
	// if none.
	PolicyAt(height uint64) (PolicyEntry, bool)
	// PolicyHistory lists every policy.set committed, oldest first.
	PolicyHistory() []PolicyEntry
}

// SetPolicy enables the policy endpoints. It must be called before the
// server serves.
func (s *Server) SetPolicy(p PolicySource) { s.policy = p }

func (s *Server) policyInForce(w http.ResponseWriter, r *http.Request) {
	if s.policy == nil {
		writeError(w, http.StatusNotFound, string(ledger.ReasonNotFound), "this gateway does not report its policy")
		return
	}
	tip := s.policy.Tip()
	h := tip
	if q := r.URL.Query().Get("height"); q != "" {
		v, err := strconv.ParseUint(q, 10, 64)
		if err != nil || v > tip {
			writeError(w, http.StatusBadRequest, string(ledger.ReasonMalformed), "height: want 0 to "+strconv.FormatUint(tip, 10)+", this gateway's tip")
			return
		}
		h = v
	}
	out := Policy{Height: h}
	if p, ok := s.policy.PolicyAt(h); ok {
		out.Policy = &p
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) policyHistory(w http.ResponseWriter, _ *http.Request) {
	if s.policy == nil {
		writeError(w, http.StatusNotFound, string(ledger.ReasonNotFound), "this gateway does not report its policy")
		return
	}
	out := PolicyHistory{Height: s.policy.Tip(), Changes: s.policy.PolicyHistory()}
	if out.Changes == nil {
		out.Changes = []PolicyEntry{}
	}
	writeJSON(w, http.StatusOK, out)
}
