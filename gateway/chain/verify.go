package chain

import (
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Summary is what Verify checked.
type Summary struct {
	// Base is the height the checks started after: 0, or the height of
	// the snapshot a log that starts from one starts from.
	Base        uint64
	Blocks, Txs uint64
	Tip         [32]byte
	// Warnings are what older gateways committed that the rules now
	// refuse, but that does not make the chain invalid: a heartbeat not
	// later than its node's previous one (gateways before heartbeat
	// times had to rise wrote them when a clock stepped back).
	Warnings []string
	// Pruned counts the data.record txs a retention policy dropped, kept
	// as stubs: their leaf hashes checked against the Merkle roots and
	// their device seqs replayed, but no signature to check.
	// PrunedBlocks are the blocks that hold any, from PrunedFrom to
	// PrunedTo.
	Pruned               uint64
	PrunedBlocks         uint64
	PrunedFrom, PrunedTo uint64
	// Members are the member sets the certificates were checked with:
	// the genesis nodes, then one epoch for each cluster.reconfig the
	// chain committed (Members.Changes), those at or below the base
	// proven by the log's membership proof (BaseChanges of them).
	Members     *ledger.Members
	BaseChanges int
}

// Verify checks the whole chain in log against its genesis: record CRCs
// (on read), heights and hash links, Merkle roots, commit certificates,
// and every tx's signature and validity, replaying the state as it goes.
// Each certificate is checked with the member set in force at its block's
// height: the genesis nodes, then the set each committed cluster.reconfig
// names from ledger.MembersFrom of its height on (tracked here with
// ledger.Members.Next, and cross-checked against the state's).
// A pruned record (a stub) is checked by its leaf hash, which the Merkle
// root covers, and its device and seq; it has no signature left. A log
// that starts from a snapshot (a base above 0) needs VerifyFrom.
func Verify(g *ledger.Genesis, log *ledger.Log, progress func(done, total uint64)) (Summary, error) {
	return VerifyFrom(g, log, nil, progress)
}

// VerifyFrom is Verify from the state base: the state at the log's base
// (restored from the snapshot the log starts from), whose tip must be the
// log's base height and hash; nil for a log that starts at block 1. The
// blocks at or below the base are not in the log and are not checked:
// Summary.Base says where the checks started. The member changes at or
// below the base are proven by the log's membership proof
// (ledger.Log.BaseMembers), which must verify with the genesis alone and
// name exactly the member history of the base state up to the base; the
// changes it names above the base must be the ones the log's blocks
// commit there.
func VerifyFrom(g *ledger.Genesis, log *ledger.Log, base *state.State, progress func(done, total uint64)) (Summary, error) {
	var sum Summary
	bh, bhash := log.Base()
	st := base
	if st == nil {
		if bh > 0 {
			return sum, fmt.Errorf("chain: the block log starts after block %d (the gateway joined from a snapshot): verifying it needs the snapshot at %d", bh, bh)
		}
		var err error
		if st, err = state.New(g); err != nil {
			return sum, err
		}
	} else if th, tip := st.Tip(); th != bh || tip != bhash {
		return sum, fmt.Errorf("chain: the base state is at block %d (%x), the log's base is block %d (%x)", th, tip[:8], bh, bhash[:8])
	}
	m, later, err := baseMembers(g, log, st)
	if err != nil {
		return sum, err
	}
	sum.Base, sum.BaseChanges, sum.Members = bh, len(m.Changes()), m
	total := log.Height()
	for h := bh + 1; h <= total; h++ {
		data, err := log.ReadHeight(h)
		if err != nil {
			return sum, fmt.Errorf("chain: block %d: %w", h, err)
		}
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			return sum, fmt.Errorf("chain: block %d: %w", h, err)
		}
		height, tip := st.Tip()
		hd := &b.Header
		if hd.Height != height+1 || string(hd.Prev) != string(tip[:]) {
			return sum, fmt.Errorf("chain: block %d: does not link to block %d (height %d, prev %x)", h, height, hd.Height, hd.Prev)
		}
		if err := m.VerifyCert(hd, &b.Cert); err != nil {
			return sum, fmt.Errorf("chain: block %d: %w", h, err)
		}
		batch := st.NewBatch()
		batch.SetTime(hd.Time)
		txs := make([]*ledger.Tx, len(b.Txs))
		// Decoded once; the size limit is CheckTx's.
		decoded, err := b.DecodeTxs(0)
		if err != nil {
			return sum, fmt.Errorf("chain: block %d: %w", h, err)
		}
		if b.IsPruned() {
			sum.PrunedBlocks++
			sum.Pruned += uint64(len(b.Pruned))
			if sum.PrunedFrom == 0 {
				sum.PrunedFrom = h
			}
			sum.PrunedTo = h
		}
		for i, tx := range decoded {
			var c *state.Checked
			var err error
			if tx.Pruned {
				// No envelope, no signature: the device's key and
				// seq rules still hold.
				c, err = batch.Check(tx)
			} else {
				c, err = st.CheckTx(tx)
			}
			if err == nil {
				err = batch.Add(c)
				if ledger.ReasonOf(err) == ledger.ReasonReplay && c.Tx.Body.Kind == ledger.KindHeartbeat {
					sum.Warnings = append(sum.Warnings, fmt.Sprintf("block %d tx %d: %v", h, i, err))
					err = nil
				}
			}
			if err != nil {
				return sum, fmt.Errorf("chain: block %d tx %d: %w", h, i, err)
			}
			txs[i] = c.Tx
			if c.Tx.Body.Kind == ledger.KindReconfig && c.Tx.Body.ClusterReconfig != nil {
				if m, err = m.Next(h, c.Tx.ID, c.Tx.Body.ClusterReconfig.Nodes); err != nil {
					return sum, fmt.Errorf("chain: block %d tx %d: %w", h, i, err)
				}
			}
		}
		if err := st.ApplyBlock(h, hd.Hash(), hd.Time, txs); err != nil {
			return sum, err
		}
		if !m.Equal(st.Members()) {
			return sum, fmt.Errorf("chain: block %d: the state's member sets differ from the ones its cluster.reconfig txs name", h)
		}
		if len(later) > 0 && later[0].Header.Height == h {
			if e := m.Last(); e.Height != h || e.Tx != ledger.TxID(later[0].Tx) {
				return sum, fmt.Errorf("chain: block %d does not commit the member change the log's membership proof (blocks/%s) names at that height", h, ledger.LogMembersFile)
			}
			later = later[1:]
		}
		sum.Members = m
		sum.Blocks++
		sum.Txs += uint64(len(txs))
		if progress != nil && (h%1000 == 0 || h == total) {
			progress(h, total)
		}
	}
	_, sum.Tip = st.Tip()
	return sum, nil
}

// baseMembers returns the member sets in force after st, the state at
// log's base: the genesis nodes for a log that starts at block 1, else
// the sets the log's membership proof proves with g alone up to the base,
// which must be st's (the changes st holds are the ones committed at or
// below the base, and the proof must prove exactly them). later are the
// proof's receipts of changes above the base, oldest first, which the
// log's blocks must commit.
func baseMembers(g *ledger.Genesis, log *ledger.Log, st *state.State) (m *ledger.Members, later ledger.MembershipProof, err error) {
	bh, _ := log.Base()
	if bh == 0 {
		m, err := ledger.NewMembers(g)
		return m, nil, err
	}
	p, err := log.BaseMembers()
	if err != nil {
		return nil, nil, fmt.Errorf("chain: %w", err)
	}
	if _, err := ledger.VerifyMembership(g, p); err != nil {
		return nil, nil, fmt.Errorf("chain: the membership proof the block log starts with: %w", err)
	}
	below, later := splitMembership(p, bh)
	if m, err = ledger.VerifyMembership(g, below); err != nil {
		return nil, nil, fmt.Errorf("chain: the membership proof the block log starts with: %w", err)
	}
	if !m.Equal(st.Members()) {
		return nil, nil, fmt.Errorf("chain: the membership proof the block log starts with proves %d member change(s) at or below its base %d, the state there holds %d: the member changes at or below the base are not proven (blocks/%s)",
			len(m.Changes()), bh, len(st.Members().Changes()), ledger.LogMembersFile)
	}
	return m, later, nil
}

// splitMembership splits a membership proof (oldest first) into the
// receipts of changes committed at or below height and those above.
func splitMembership(p ledger.MembershipProof, height uint64) (below, above ledger.MembershipProof) {
	i := 0
	for i < len(p) && p[i].Header.Height <= height {
		i++
	}
	return p[:i:i], p[i:]
}
