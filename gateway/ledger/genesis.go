package ledger

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
)

// Genesis fixes a chain: its id, the nodes that certify blocks, the admins
// that may enroll and revoke devices, and the validity parameters. It is
// kept as JSON (for operators); its hash is over deterministic CBOR.
type Genesis struct {
	ChainID string  `json:"chain_id" cbor:"1,keyasint"`
	Time    int64   `json:"time" cbor:"2,keyasint"` // creation, Unix milliseconds
	Nodes   []Node  `json:"nodes" cbor:"3,keyasint"`
	Admins  []Admin `json:"admins" cbor:"4,keyasint"`
	Params  Params  `json:"params" cbor:"5,keyasint"`
}

// Node is a gateway that votes. Its key is ECDSA P-256 (TPM 2.0 friendly).
type Node struct {
	ID        string   `json:"id" cbor:"1,keyasint"`
	PublicKey []byte   `json:"public_key" cbor:"2,keyasint"` // DER SubjectPublicKeyInfo
	Addrs     []string `json:"addrs,omitempty" cbor:"3,keyasint,omitempty"`
}

// Admin may enroll and revoke devices.
type Admin struct {
	ID        string `json:"id" cbor:"1,keyasint"`
	PublicKey []byte `json:"public_key" cbor:"2,keyasint"` // DER SubjectPublicKeyInfo
}

// Params are validity rules every node applies identically.
type Params struct {
	MaxTxBytes int `json:"max_tx_bytes" cbor:"1,keyasint"`
}

// DefaultMaxTxBytes is the tx size limit of a new genesis.
const DefaultMaxTxBytes = 64 << 10

// ErrGenesis reports an invalid genesis.
var ErrGenesis = errors.New("ledger: invalid genesis")

// ParseGenesis decodes a genesis file strictly and validates it.
func ParseGenesis(data []byte) (*Genesis, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var g Genesis
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGenesis, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrGenesis)
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &g, nil
}

// JSON returns the genesis file contents: indented JSON, keys base64 DER.
func (g *Genesis) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("ledger: encode genesis: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate reports every problem of the genesis at once.
func (g *Genesis) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrGenesis}, a...)...))
	}
	if !ValidID(g.ChainID) {
		bad("chain_id %q: want 1 to 64 of A-Z a-z 0-9 . _ -", g.ChainID)
	}
	if len(g.Nodes) == 0 {
		bad("no nodes")
	}
	seen := map[string]bool{}
	for i, n := range g.Nodes {
		if !ValidID(n.ID) {
			bad("nodes[%d]: invalid id %q", i, n.ID)
		}
		if seen[n.ID] {
			bad("nodes[%d]: duplicate id %q", i, n.ID)
		}
		seen[n.ID] = true
		if pk, err := ParsePublicKey(n.PublicKey); err != nil {
			bad("nodes[%d] %s: %v", i, n.ID, err)
		} else if pk.Alg != ES256 {
			bad("nodes[%d] %s: node keys must be ECDSA P-256", i, n.ID)
		}
	}
	if len(g.Admins) == 0 {
		bad("no admins: nobody could enroll a device")
	}
	for i, a := range g.Admins {
		if !ValidID(a.ID) {
			bad("admins[%d]: invalid id %q", i, a.ID)
		}
		if seen[a.ID] {
			bad("admins[%d]: duplicate id %q", i, a.ID)
		}
		seen[a.ID] = true
		if _, err := ParsePublicKey(a.PublicKey); err != nil {
			bad("admins[%d] %s: %v", i, a.ID, err)
		}
	}
	if g.Params.MaxTxBytes < 512 || g.Params.MaxTxBytes > 1<<20 {
		bad("params.max_tx_bytes %d: want 512 to 1048576", g.Params.MaxTxBytes)
	}
	return errors.Join(errs...)
}

// Hash is the SHA-256 of the genesis' deterministic CBOR encoding. It is
// the Prev of block 1.
func (g *Genesis) Hash() [32]byte {
	b, err := marshal(g)
	if err != nil {
		panic("ledger: invariant: encode genesis: " + err.Error())
	}
	return sha256.Sum256(b)
}

// Quorum is how many distinct nodes must sign a commit: the smallest q
// with 2q > n + f, f = floor((n-1)/3), so that any two quorums share at
// least f+1 nodes and so at least one honest one. When n = 3f+1 it is
// 2f+1 (PBFT 4.1).
func (g *Genesis) Quorum() int {
	n := len(g.Nodes)
	f := (n - 1) / 3
	return (n+f)/2 + 1
}

// Admin returns the admin with the given id.
func (g *Genesis) Admin(id string) (*Admin, bool) {
	for i := range g.Admins {
		if g.Admins[i].ID == id {
			return &g.Admins[i], true
		}
	}
	return nil, false
}

// Node returns the node with the given id.
func (g *Genesis) Node(id string) (*Node, bool) {
	for i := range g.Nodes {
		if g.Nodes[i].ID == id {
			return &g.Nodes[i], true
		}
	}
	return nil, false
}

// ErrCert reports a commit certificate that does not prove a commit.
var ErrCert = errors.New("ledger: invalid commit certificate")

// SignVote signs the commit vote for h in view as node.
func SignVote(s crypto.Signer, node string, h *Header, view uint64) (Sig, error) {
	digest := sha256.Sum256(VoteBytes(h.ChainID, h.Height, view, h.Hash()))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return Sig{}, fmt.Errorf("ledger: sign vote: %w", err)
	}
	return Sig{Node: node, Sig: sig}, nil
}

// VerifyCert checks that c holds valid signatures of a quorum of distinct
// genesis nodes over h. After a member change, use Members.VerifyCert.
func (g *Genesis) VerifyCert(h *Header, c *Cert) error {
	e, err := newEpoch(1, g.Nodes, 0, [32]byte{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCert, err)
	}
	return e.VerifyCert(g.ChainID, h, c)
}
