package chain

import (
	"errors"
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// MembershipProof returns the membership proof of the chain c holds: the
// receipts of the cluster.reconfig txs its state applied, oldest first
// (see ProveMembers). It verifies with the genesis alone
// (ledger.VerifyMembership) and proves c.State().Members() as of the
// call. A chain whose members never changed has an empty proof.
func (c *Chain) MembershipProof() (ledger.MembershipProof, error) {
	return ProveMembers(c.st.Members(), c.log)
}

// ProveMembers is MembershipProof for the member sets m, which c's
// state held at some point.
func (c *Chain) ProveMembers(m *ledger.Members) (ledger.MembershipProof, error) {
	return ProveMembers(m, c.log)
}

// ProveMembers builds the membership proof of m, the member history of
// a state that log holds the blocks of: for each change m.Changes()
// names, the receipt of its cluster.reconfig tx, built from its block in
// log; for a change at or below the base of a log that starts from a
// snapshot, the receipt the log's stored membership proof
// (ledger.Log.BaseMembers) holds for it. Each receipt is checked to be
// of that tx at that height; the proof is not verified as a whole (the
// receiver does that with its genesis).
func ProveMembers(m *ledger.Members, log *ledger.Log) (ledger.MembershipProof, error) {
	changes := m.Changes()
	p := make(ledger.MembershipProof, 0, len(changes))
	base, _ := log.Base()
	var stored ledger.MembershipProof
	for _, e := range changes {
		if e.Height <= base {
			if stored == nil {
				var err error
				if stored, err = log.BaseMembers(); err != nil {
					return nil, err
				}
			}
			r, err := storedReceipt(stored, e)
			if err != nil {
				return nil, err
			}
			p = append(p, *r)
			continue
		}
		r, err := changeReceipt(log, e)
		if err != nil {
			return nil, err
		}
		p = append(p, *r)
	}
	return p, nil
}

// errNoChangeReceipt reports a member change whose receipt cannot be
// built.
var errNoChangeReceipt = errors.New("chain: no receipt of a member change")

// storedReceipt finds the receipt of change e in a log's stored proof.
func storedReceipt(stored ledger.MembershipProof, e *ledger.Epoch) (*ledger.Receipt, error) {
	for i := range stored {
		r := &stored[i]
		if r.Header.Height == e.Height && ledger.TxID(r.Tx) == e.Tx {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: the change at block %d (tx %x) is at or below the block log's base and its membership proof (blocks/%s) does not hold it",
		errNoChangeReceipt, e.Height, e.Tx[:8], ledger.LogMembersFile)
}

// changeReceipt builds the receipt of change e from its block in log.
func changeReceipt(log *ledger.Log, e *ledger.Epoch) (*ledger.Receipt, error) {
	data, err := log.ReadHeight(e.Height)
	if err != nil {
		return nil, fmt.Errorf("%w: the change at block %d: %w", errNoChangeReceipt, e.Height, err)
	}
	b, err := ledger.DecodeBlock(data)
	if err != nil {
		return nil, fmt.Errorf("%w: the change at block %d: %w", errNoChangeReceipt, e.Height, err)
	}
	for i, tx := range b.Txs {
		if ledger.TxID(tx) == e.Tx {
			return ledger.NewReceipt(b, b.Tree(), uint64(i))
		}
	}
	return nil, fmt.Errorf("%w: block %d does not hold the change's tx %x", errNoChangeReceipt, e.Height, e.Tx[:8])
}
