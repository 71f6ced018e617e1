package state

import (
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Batch checks the order-dependent rules for the txs of one block under
// construction, on top of the committed state. It is used by one goroutine
// and must not outlive the next Apply.
type Batch struct {
	s       *State
	pending map[string]*Device // devices touched by txs already in the batch
	ids     map[[32]byte]bool
}

// NewBatch starts a batch on the current committed state.
func (s *State) NewBatch() *Batch {
	return &Batch{s: s, pending: map[string]*Device{}, ids: map[[32]byte]bool{}}
}

// device returns the device as the batch sees it, or nil.
func (b *Batch) device(id string) *Device {
	if d, ok := b.pending[id]; ok {
		return d
	}
	if d, ok := b.s.Device(id); ok {
		return &d
	}
	return nil
}

// Add admits c to the batch if the batch so far leaves it valid.
func (b *Batch) Add(c *Checked) error {
	tx := c.Tx
	if b.ids[tx.ID] {
		return reject(ReasonReplay, "tx %x is already in this block", tx.ID[:8])
	}
	body := &tx.Body
	id := body.Subject()
	d := b.device(id)
	var next Device
	switch body.Kind {
	case ledger.KindEnroll:
		if d != nil {
			return reject(ReasonExists, "device %s is already enrolled", id)
		}
		if _, admin := b.s.admins[id]; admin {
			return reject(ReasonExists, "%s is an admin id", id)
		}
		if _, node := b.s.g.Node(id); node {
			return reject(ReasonExists, "%s is a node id", id)
		}
		pk, err := ledger.ParsePublicKey(body.Enroll.PublicKey)
		if err != nil {
			return reject(ReasonMalformed, "%v", err)
		}
		next = Device{ID: id, Key: pk}
	case ledger.KindRevoke:
		if d == nil {
			return reject(ReasonUnknownDevice, "no device %q", id)
		}
		if d.Revoked {
			return reject(ReasonRevoked, "device %s is already revoked", id)
		}
		next = *d
		next.Revoked = true
	case ledger.KindRekey, ledger.KindRecord:
		if d == nil {
			return reject(ReasonUnknownAuthor, "no device %q", id)
		}
		if d.Revoked {
			return reject(ReasonRevoked, "device %s is revoked", id)
		}
		if d.Key != c.Key { // keys are shared, never copied: identity is the key
			return reject(ReasonBadSignature, "device %s changed its key since the signature was checked", id)
		}
		seq := seqOf(body)
		if seq <= d.LastSeq {
			return reject(ReasonReplay, "device %s seq %d, last %d", id, seq, d.LastSeq)
		}
		next = *d
		next.LastSeq = seq
		if body.Rekey != nil {
			pk, err := ledger.ParsePublicKey(body.Rekey.PublicKey)
			if err != nil {
				return reject(ReasonMalformed, "%v", err)
			}
			next.Key = pk
		}
	default:
		return reject(ReasonMalformed, "unknown kind %q", body.Kind)
	}
	b.pending[id] = &next
	b.ids[tx.ID] = true
	return nil
}
