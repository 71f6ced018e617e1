package api

import (
	"encoding/base64"
	"net/http"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Membership is what the API reads of the chain's member changes.
type Membership interface {
	// MembershipProof returns the encoded MembershipProof of the chain
	// (docs/protocol.md 10.2): the empty proof before any change.
	MembershipProof() ([]byte, error)
}

// SetMembership enables GET /api/v1/cluster/proof.
func (s *Server) SetMembership(m Membership) {
	s.membership = m
	s.handle("GET /api/v1/cluster/proof", s.clusterProof)
}

// ProofBody answers GET /api/v1/cluster/proof without Accept:
// application/cbor.
type ProofBody struct {
	Changes int    `json:"changes"` // cluster.reconfig txs the proof holds
	Proof   string `json:"proof"`   // CBOR MembershipProof, base64: check it with the genesis
}

// rawAnswer is an answer the API serves as it got it.
type rawAnswer []byte

func (a rawAnswer) Encode() ([]byte, error) { return a, nil }

func (s *Server) clusterProof(w http.ResponseWriter, r *http.Request) {
	b, err := s.membership.MembershipProof()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeAnswer(w, r, rawAnswer(b), func(enc []byte) any {
		p, err := ledger.DecodeMembershipProof(enc)
		n := len(p)
		if err != nil {
			n = -1 // not expected: the gateway built it; the bytes still go out
		}
		return ProofBody{Changes: n, Proof: base64.StdEncoding.EncodeToString(enc)}
	})
}
