package device

import (
	"fmt"
	"sync"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// genesisMembers is the genesis nodes as the only member set: what the
// functions that take a genesis verify with.
func genesisMembers(g *ledger.Genesis) (*ledger.Members, error) {
	m, err := ledger.NewMembers(g)
	if err != nil {
		return nil, fmt.Errorf("%w: genesis: %w", ErrProof, err)
	}
	return m, nil
}

// Verifier checks receipts, heads and answers with the member sets it
// holds (docs/protocol.md 8.1 and 10.2): the genesis nodes, then each
// change it followed from a membership proof. The functions that take a
// genesis (VerifyReceipt, VerifyConfig, ...) verify with the genesis
// nodes alone and fail on anything certified after a member change; a
// device that may outlive a change keeps a Verifier and, when a check
// fails, fetches the proof and calls FollowProof (protocol.md 14.5).
//
// A Verifier is safe for concurrent use. Its sets only grow: a proof
// never takes it back to a set it has left.
type Verifier struct {
	mu sync.RWMutex
	m  *ledger.Members
}

// NewVerifier returns a Verifier that holds the genesis nodes only.
func NewVerifier(g *ledger.Genesis) (*Verifier, error) {
	m, err := genesisMembers(g)
	if err != nil {
		return nil, err
	}
	return &Verifier{m: m}, nil
}

// NewVerifierFrom returns a Verifier holding m (from
// ledger.VerifyMembership, or another Verifier's Members).
func NewVerifierFrom(m *ledger.Members) *Verifier { return &Verifier{m: m} }

// Members returns the member sets the Verifier holds now.
func (v *Verifier) Members() *ledger.Members {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.m
}

// FollowProof verifies a membership proof (its encoding) from the sets
// the Verifier holds and keeps the sets it proves. The receipts of
// changes the Verifier already followed (at or below the height of the
// newest it holds) are skipped; each of the rest must follow
// (ledger.Members.Follow). On error the Verifier is unchanged. It
// returns how many changes it followed.
func (v *Verifier) FollowProof(proof []byte) (int, error) {
	p, err := ledger.DecodeMembershipProof(proof)
	if err != nil {
		return 0, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	m, n := v.m, 0
	for i := range p {
		if p[i].Header.Height <= m.Last().Height {
			continue
		}
		next, err := m.Follow(&p[i])
		if err != nil {
			return 0, fmt.Errorf("%w: membership proof receipt %d: %w", ledger.ErrMembers, i, err)
		}
		m, n = next, n+1
	}
	v.m = m
	return n, nil
}

// VerifyReceipt decodes a receipt and verifies it with the member set in
// force at its height.
func (v *Verifier) VerifyReceipt(receipt []byte) (*ledger.Receipt, error) {
	r, err := ledger.DecodeReceipt(receipt)
	if err != nil {
		return nil, err
	}
	if err := v.Members().VerifyReceipt(r); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyHead checks a head's certificate with the member set in force at
// its height.
func (v *Verifier) VerifyHead(h *ledger.Head) error { return v.Members().VerifyHead(h) }

// VerifyConfig is the package's VerifyConfig with the Verifier's sets.
func (v *Verifier) VerifyConfig(a *ledger.ConfigAnswer, hash [32]byte, p ConfigPolicy) (*Accepted, error) {
	return verifyConfig(v.Members(), a, hash, p)
}

// Manifest is the package's Manifest with the Verifier's sets.
func (v *Verifier) Manifest(a *ledger.ConfigAnswer, p ConfigPolicy) (*ledger.ConfigSet, error) {
	cs, _, err := configOf(v.Members(), a, p)
	return cs, err
}

// VerifyKeys is the package's VerifyKeys with the Verifier's sets.
func (v *Verifier) VerifyKeys(a *ledger.KeysAnswer, id string, f Freshness) (*DeviceKeys, error) {
	return verifyKeys(v.Members(), a, id, f)
}

// CheckFirmware is the package's CheckFirmware with the Verifier's sets.
func (v *Verifier) CheckFirmware(vendorKey *ledger.PublicKey, a *ledger.FirmwareAnswer, p FirmwarePolicy) (*ledger.FirmwarePublish, error) {
	return checkFirmware(v.Members(), vendorKey, a, p)
}

// VerifyFirmware is the package's VerifyFirmware with the Verifier's sets.
func (v *Verifier) VerifyFirmware(vendorKey *ledger.PublicKey, a *ledger.FirmwareAnswer, image []byte, p FirmwarePolicy) (*ledger.FirmwarePublish, error) {
	return verifyFirmware(v.Members(), vendorKey, a, image, p)
}
