package replica

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// app is the ledger as the core's application. It lives on the Run
// goroutine, which also applies committed blocks to the state.
type app struct {
	g       *ledger.Genesis
	st      *state.State
	self    string
	now     func() time.Time
	checked map[[32]byte]*state.Checked // txs this replica proposes or was forwarded, checked
	// verified are txs whose signature this replica verified, also as
	// pre-prepares came (precheck.go); shared with other goroutines.
	verified *verifiedCache
	spec     map[pbft.Digest]*proposal // proposals built or validated, not yet committed
	// decoded are pre-prepares' blocks the precheck decoded (precheck.go).
	decoded decodedBlocks
}

// proposal is an uncommitted block and the registry as it leaves it.
type proposal struct {
	block   *ledger.Block
	tree    *ledger.Tree
	txs     []*state.Checked
	batch   *state.Batch
	payload []byte // the block's encoding, if this replica built it
	raw     []byte // the block's encoding, built or validated here (Reconfig)
}

// Reconfig returns the member set a committed block names
// (pbft.Reconfigurer): the node ids of its cluster.reconfig, if it holds
// one. The state admits at most one per block (Members.Next refuses a
// change while one is pending). It reads only the payload: the block
// this replica validated with those bytes, or else the bytes decoded.
func (a *app) Reconfig(seq uint64, payload []byte) ([]string, bool) {
	for _, p := range a.spec { // the proposals in flight: a few
		if p.block.Header.Height == seq && bytes.Equal(p.raw, payload) {
			return reconfigOf(p.txs)
		}
	}
	b, err := ledger.DecodeBlock(payload)
	if err != nil {
		return nil, false // the core executes only blocks Validate took
	}
	txs, err := b.DecodeTxs(a.g.Params.MaxTxBytes)
	if err != nil {
		return nil, false
	}
	cs := make([]*state.Checked, len(txs))
	for i, tx := range txs {
		cs[i] = &state.Checked{Tx: tx}
	}
	return reconfigOf(cs)
}

// reconfigOf returns the node ids a cluster.reconfig among txs names.
func reconfigOf(txs []*state.Checked) ([]string, bool) {
	for _, c := range txs {
		if b := c.Tx.Body; b.Kind == ledger.KindReconfig && b.ClusterReconfig != nil {
			ids := make([]string, len(b.ClusterReconfig.Nodes))
			for i, n := range b.ClusterReconfig.Nodes {
				ids[i] = n.ID
			}
			return ids, true
		}
	}
	return nil, false
}

var errUnknownParent = errors.New("replica: proposal extends a block this replica does not hold")

// base returns the batch a proposal on parent builds on: nil for the
// committed tip.
func (a *app) base(parent pbft.Digest) (*state.Batch, error) {
	if _, tip := a.st.Tip(); tip == parent {
		return nil, nil
	}
	p := a.spec[parent]
	if p == nil {
		return nil, errUnknownParent
	}
	return p.batch, nil
}

// tipBatch is a batch on the committed state for a block at this
// replica's clock's time: how this replica judges a request the primary
// refused (a rate limit counts in windows of the block's time).
func (a *app) tipBatch() *state.Batch {
	b := a.st.NewBatch()
	b.SetTime(a.now().UnixMilli())
	return b
}

// Build makes the block at seq from reqs, all checked before.
func (a *app) Build(seq, view uint64, parent pbft.Digest, reqs []pbft.Request) (pbft.Proposal, error) {
	var out pbft.Proposal
	base, err := a.base(parent)
	if err != nil {
		return out, err
	}
	batch := a.st.NewBatchOn(base)
	now := a.now().UnixMilli() // the block's time: what policy rules see
	batch.SetTime(now)
	p := &proposal{batch: batch}
	var envs [][]byte
	for i, r := range reqs {
		c := a.checked[r.ID]
		if c == nil {
			out.Rejected = append(out.Rejected, pbft.Rejected{ID: r.ID, Index: i, Reason: string(ledger.ReasonMalformed), Detail: "not checked"})
			continue
		}
		if err := batch.Add(c); err != nil {
			out.Rejected = append(out.Rejected, pbft.Rejected{ID: r.ID, Index: i, Reason: string(ledger.ReasonOf(err)), Detail: err.Error()})
			continue
		}
		out.Included = append(out.Included, i)
		p.txs = append(p.txs, c)
		envs = append(envs, c.Tx.Envelope)
	}
	if len(envs) == 0 {
		return out, nil
	}
	p.tree = ledger.NewTree(envs)
	p.block = &ledger.Block{
		Header: ledger.Header{
			ChainID: a.g.ChainID, Height: seq, Prev: bytes.Clone(parent[:]), TxRoot: p.tree.Root(),
			NumTxs: uint64(len(envs)), Time: now, View: view, Proposer: a.self,
		},
		Txs: envs,
	}
	payload, err := p.block.Encode()
	if err != nil {
		return out, err
	}
	out.Payload, out.Digest = payload, p.block.Header.Hash()
	p.payload, p.raw = payload, payload
	a.spec[out.Digest] = p
	return out, nil
}

// Validate checks a primary's block at seq on top of parent: header, and
// every tx against the registry the blocks before leave, signatures
// included.
func (a *app) Validate(seq, view uint64, parent pbft.Digest, payload []byte) (pbft.Digest, [][32]byte, error) {
	if d, p := a.built(seq, parent, payload); p != nil {
		// The primary validates its own proposal: Build checked it, and
		// its txs were checked (signatures included) as they came in.
		ids := make([][32]byte, len(p.txs))
		for i, c := range p.txs {
			ids[i] = c.Tx.ID
		}
		return d, ids, nil
	}
	b, ids := a.decoded.take(seq, payload)
	if b == nil {
		var err error
		if b, err = ledger.DecodeBlock(payload); err != nil {
			return pbft.Digest{}, nil, err
		}
	}
	h := &b.Header
	// The proposer is checked against the set in force at seq, which the
	// committed state knows: a change takes effect ledger.Window heights
	// after its block at the earliest.
	switch {
	case h.ChainID != a.g.ChainID:
		return pbft.Digest{}, nil, fmt.Errorf("replica: block for chain %q", h.ChainID)
	case h.Height != seq:
		return pbft.Digest{}, nil, fmt.Errorf("replica: block %d proposed at %d", h.Height, seq)
	case !bytes.Equal(h.Prev, parent[:]):
		return pbft.Digest{}, nil, errors.New("replica: block does not extend its parent")
	case h.View > view || h.Proposer != a.st.Members().At(seq).Primary(h.View):
		return pbft.Digest{}, nil, fmt.Errorf("replica: block by %s in view %d was not its primary's", h.Proposer, h.View)
	case len(b.Cert.Sigs) > 0 || b.Cert.View != 0 || len(b.Txs) == 0:
		return pbft.Digest{}, nil, errors.New("replica: proposal with a certificate or no txs")
	}
	base, err := a.base(parent)
	if err != nil {
		return pbft.Digest{}, nil, err
	}
	batch := a.st.NewBatchOn(base)
	batch.SetTime(h.Time)
	p := &proposal{block: b, tree: ledger.NewTree(b.Txs), batch: batch, raw: payload}
	if len(ids) != len(b.Txs) {
		ids = make([][32]byte, len(b.Txs))
		for i, env := range b.Txs {
			ids[i] = ledger.TxID(env)
		}
	}
	var verify []*state.Checked
	for i, env := range b.Txs {
		id := ids[i]
		known := a.checked[id]
		if known == nil {
			known = a.verified.get(id)
		}
		var tx *ledger.Tx
		if known != nil {
			tx = known.Tx // decoded when this gateway checked it
		} else if tx, err = ledger.DecodeTx(env, a.g.Params.MaxTxBytes); err != nil {
			return pbft.Digest{}, nil, fmt.Errorf("replica: tx %d: %w", i, err)
		}
		c, err := batch.Check(tx)
		if err != nil {
			return pbft.Digest{}, nil, fmt.Errorf("replica: tx %d: %w", i, err)
		}
		if known != nil && known.Key == c.Key {
			c = known
		} else {
			verify = append(verify, c)
		}
		if err := batch.Add(c); err != nil {
			return pbft.Digest{}, nil, fmt.Errorf("replica: tx %d: %w", i, err)
		}
		p.txs = append(p.txs, c)
		ids[i] = tx.ID
	}
	if err := verifyAll(verify); err != nil {
		return pbft.Digest{}, nil, err
	}
	d := pbft.Digest(h.Hash())
	a.spec[d] = p
	return d, ids, nil
}

// built returns the proposal this replica built at seq on parent whose
// encoding is payload, and its digest; nil if there is none.
func (a *app) built(seq uint64, parent pbft.Digest, payload []byte) (pbft.Digest, *proposal) {
	for d, p := range a.spec { // the proposals in flight: a few
		if p.payload != nil && p.block.Header.Height == seq && bytes.Equal(p.block.Header.Prev, parent[:]) && bytes.Equal(p.payload, payload) {
			return d, p
		}
	}
	return pbft.Digest{}, nil
}

// verifyAll verifies signatures on every core.
func verifyAll(cs []*state.Checked) error {
	return onEveryCore(cs, 64, func(c *state.Checked) error {
		if err := c.Tx.Verify(c.Key); err != nil {
			return fmt.Errorf("replica: tx %x: %w", c.Tx.ID[:8], err)
		}
		return nil
	})
}

// onEveryCore calls f for each of xs, chunk of them at a time on each of
// at most GOMAXPROCS goroutines, and returns the first error.
func onEveryCore[T any](xs []T, chunk int, f func(T) error) error {
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := 0; i < len(xs); i += chunk {
		part := xs[i:min(i+chunk, len(xs))]
		g.Go(func() error {
			for _, x := range part {
				if err := f(x); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// committed forgets what a committed block made obsolete.
func (a *app) committed(d pbft.Digest, height uint64) {
	if p := a.spec[d]; p != nil {
		p.batch.Applied()
		for _, c := range p.txs {
			delete(a.checked, c.Tx.ID)
		}
	}
	delete(a.spec, d)
	for k, p := range a.spec {
		if p.block.Header.Height <= height {
			p.batch.Applied()
			delete(a.spec, k)
		}
	}
}
