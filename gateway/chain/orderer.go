package chain

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Orderer puts checked txs into one order shared by every node and returns
// certified blocks.
type Orderer interface {
	// Propose queues a checked tx for ordering and returns at once.
	Propose(c *state.Checked) error
	// Run orders until ctx ends. It calls commit for each round, one at a
	// time, blocks in height order; an error from commit stops Run.
	Run(ctx context.Context, commit func(*Round) error) error
}

// Round is what one ordering round decided.
type Round struct {
	Block    *ledger.Block    // nil if every tx of the round was rejected
	Tree     *ledger.Tree     // the block's Merkle tree
	Txs      []*state.Checked // the block's txs, in block order
	Rejected []Rejected       // txs refused when the block was built
}

// Rejected is a tx refused by the order-dependent rules.
type Rejected struct {
	ID  [32]byte
	Err error
}

// maybeCommitted reports whether the refusal may be of the tx itself,
// committed already: a replay or an existing enrollment.
func (rj Rejected) maybeCommitted() bool {
	r := ledger.ReasonOf(rj.Err)
	return r == ledger.ReasonReplay || r == ledger.ReasonExists
}

// BatchConfig bounds the blocks an orderer cuts.
type BatchConfig struct {
	MaxTxs     int           // txs per block
	MaxBytes   int           // sum of envelope sizes per block
	MaxDelay   time.Duration // how long the first tx of a block may wait for more
	MaxPending int           // txs queued for ordering before Propose refuses
}

// DefaultBatch is the batching of a new node.
var DefaultBatch = BatchConfig{MaxTxs: 1000, MaxBytes: 4 << 20, MaxDelay: 2 * time.Millisecond, MaxPending: 100_000}

// ErrOverloaded is returned when more txs wait for ordering than allowed.
// Its reject reason is "overloaded", so front ends can tell a device to
// back off (MQTT 5: 0x97 quota exceeded).
var ErrOverloaded error = &ledger.RefusedError{Reason: ledger.ReasonOverloaded, Detail: "chain: too many txs wait for ordering, try again"}

// Solo is the single-node orderer: it cuts blocks from its queue and
// certifies them with its own signature (a quorum of one).
type Solo struct {
	cfg    BatchConfig
	st     *state.State
	signer crypto.Signer
	node   string
	now    func() time.Time
	queue  chan *state.Checked
}

// NewSolo returns a single-node orderer for node, signing with signer.
func NewSolo(cfg BatchConfig, st *state.State, signer crypto.Signer, node string) *Solo {
	return &Solo{cfg: cfg, st: st, signer: signer, node: node, now: clock.Now, queue: make(chan *state.Checked, cfg.MaxPending)}
}

// Propose queues c, or returns ErrOverloaded if the queue is full.
func (s *Solo) Propose(c *state.Checked) error {
	select {
	case s.queue <- c:
		return nil
	default:
		return ErrOverloaded
	}
}

// Run cuts and commits blocks until ctx ends.
func (s *Solo) Run(ctx context.Context, commit func(*Round) error) error {
	var carry *state.Checked // a tx that did not fit the last block
	for ctx.Err() == nil {
		first := carry
		carry = nil
		if first == nil {
			select {
			case <-ctx.Done():
				return nil
			case first = <-s.queue:
			}
		}
		batch, size := []*state.Checked{first}, len(first.Tx.Envelope)
		timer := time.NewTimer(s.cfg.MaxDelay)
	collect:
		for len(batch) < s.cfg.MaxTxs {
			var c *state.Checked
			select {
			case c = <-s.queue:
			default:
				select {
				case c = <-s.queue:
				case <-timer.C:
					break collect
				case <-ctx.Done():
					break collect
				}
			}
			if size+len(c.Tx.Envelope) > s.cfg.MaxBytes {
				carry = c
				break
			}
			batch = append(batch, c)
			size += len(c.Tx.Envelope)
		}
		timer.Stop()
		round, err := s.build(batch)
		if err != nil {
			return err
		}
		if err := commit(round); err != nil {
			return err
		}
	}
	return nil
}

// build validates the batch in order and makes the certified block.
func (s *Solo) build(batch []*state.Checked) (*Round, error) {
	r := &Round{}
	b := s.st.NewBatch()
	now := s.now().UnixMilli() // the block's time: what policy rules see
	b.SetTime(now)
	var envs [][]byte
	for _, c := range batch {
		if err := b.Add(c); err != nil {
			r.Rejected = append(r.Rejected, Rejected{ID: c.Tx.ID, Err: err})
			continue
		}
		r.Txs = append(r.Txs, c)
		envs = append(envs, c.Tx.Envelope)
	}
	if len(r.Txs) == 0 {
		return r, nil
	}
	height, prev := s.st.Tip()
	r.Tree = ledger.NewTree(envs)
	blk := &ledger.Block{
		Header: ledger.Header{
			ChainID:  s.st.Genesis().ChainID,
			Height:   height + 1,
			Prev:     prev[:],
			TxRoot:   r.Tree.Root(),
			NumTxs:   uint64(len(envs)),
			Time:     now,
			View:     0,
			Proposer: s.node,
		},
		Txs: envs,
	}
	sig, err := ledger.SignVote(s.signer, s.node, &blk.Header, 0)
	if err != nil {
		return nil, fmt.Errorf("chain: certify block %d: %w", blk.Header.Height, err)
	}
	blk.Cert = ledger.Cert{View: 0, Sigs: []ledger.Sig{sig}}
	r.Block = blk
	return r, nil
}
