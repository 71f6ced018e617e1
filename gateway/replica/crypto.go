package replica

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// nodeCrypto signs with the node key and checks against the keys of the
// members: every node that was ever a member, as the committed state
// leaves the member sets (the core counts a vote only with the set of
// its sequence number). Commits sign ledger votes, so they form ledger
// commit certificates.
type nodeCrypto struct {
	chainID string
	signer  crypto.Signer
	st      *state.State
}

func newCrypto(g *ledger.Genesis, st *state.State, signer crypto.Signer) *nodeCrypto {
	return &nodeCrypto{chainID: g.ChainID, signer: signer, st: st}
}

func (c *nodeCrypto) Sign(data []byte) ([]byte, error) {
	d := sha256.Sum256(data)
	return c.signer.Sign(rand.Reader, d[:], crypto.SHA256)
}

func (c *nodeCrypto) Verify(node string, data, sig []byte) bool {
	// Members are replaced, never changed, as blocks apply: a set that
	// changed since is read at the next vote.
	pk, ok := c.st.Members().Ever(node)
	if !ok {
		return false
	}
	k, ok := pk.Key.(*ecdsa.PublicKey)
	d := sha256.Sum256(data)
	return ok && ecdsa.VerifyASN1(k, d[:], sig)
}

func (c *nodeCrypto) VoteBytes(seq, view uint64, d pbft.Digest) []byte {
	return ledger.VoteBytes(c.chainID, seq, view, d)
}
