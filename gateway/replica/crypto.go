package replica

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// nodeCrypto signs with the node key and checks against the genesis keys.
// Commits sign ledger votes, so they form ledger commit certificates.
type nodeCrypto struct {
	chainID string
	signer  crypto.Signer
	keys    map[string]*ecdsa.PublicKey
}

func newCrypto(g *ledger.Genesis, signer crypto.Signer) (*nodeCrypto, error) {
	c := &nodeCrypto{chainID: g.ChainID, signer: signer, keys: map[string]*ecdsa.PublicKey{}}
	for _, n := range g.Nodes {
		pk, err := ledger.ParsePublicKey(n.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("replica: node %s: %w", n.ID, err)
		}
		ec, ok := pk.Key.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("replica: node %s: key is not ECDSA", n.ID)
		}
		c.keys[n.ID] = ec
	}
	return c, nil
}

func (c *nodeCrypto) Sign(data []byte) ([]byte, error) {
	d := sha256.Sum256(data)
	return c.signer.Sign(rand.Reader, d[:], crypto.SHA256)
}

func (c *nodeCrypto) Verify(node string, data, sig []byte) bool {
	k := c.keys[node]
	d := sha256.Sum256(data)
	return k != nil && ecdsa.VerifyASN1(k, d[:], sig)
}

func (c *nodeCrypto) VoteBytes(seq, view uint64, d pbft.Digest) []byte {
	return ledger.VoteBytes(c.chainID, seq, view, d)
}
