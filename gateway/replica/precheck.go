package replica

import (
	"bytes"
	"context"
	"sync"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// A backup first sees most of a block's txs in the primary's PRE-PREPARE
// (a gateway forwards its devices' requests to the primary only). It
// checks their signatures there, as the message arrives, off the Run
// goroutine and on every core: the Run goroutine goes on stepping votes
// and committing blocks meanwhile, and App.Validate then finds the txs
// verified (verifiedCache) and only applies the order-dependent rules.
// Validate still verifies whatever was not checked before (a tx whose
// author a block in flight enrolls, a pre-prepare that found the queue
// full), so the verdicts do not depend on this stage.

// maxPrechecks bounds the pre-prepares waiting for their txs' check; one
// that finds the queue full goes to the Run goroutine unchecked.
const maxPrechecks = 16

// verifiedCache holds txs whose signature this replica verified, by id,
// for App.Validate; it is safe for concurrent use. It keeps two
// generations of at most gen entries each and drops the older when the
// newer is full, so it is bounded without bookkeeping per block: a tx is
// looked up a few blocks after it went in, if ever.
type verifiedCache struct {
	mu        sync.Mutex
	gen       int
	cur, prev map[[32]byte]*state.Checked
}

func newVerifiedCache(gen int) *verifiedCache {
	return &verifiedCache{gen: gen, cur: make(map[[32]byte]*state.Checked, gen)}
}

func (v *verifiedCache) put(c *state.Checked) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cur) >= v.gen {
		v.prev, v.cur = v.cur, make(map[[32]byte]*state.Checked, v.gen)
	}
	v.cur[c.Tx.ID] = c
}

func (v *verifiedCache) get(id [32]byte) *state.Checked {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.cur[id]; c != nil {
		return c
	}
	return v.prev[id]
}

// decodedBlocks hands the blocks the precheck decoded, with their txs'
// ids, to App.Validate, which would otherwise decode the pre-prepare's
// payload and hash its txs a second time. It is safe for concurrent use,
// and its zero value is empty. Entries are by height and stand only for
// the exact payload they came from; Validate takes its entry out, and
// the map is bounded (a pre-prepare that never reaches Validate leaves
// one behind until it is dropped with the others).
type decodedBlocks struct {
	mu sync.Mutex
	m  map[uint64]decodedBlock
}

type decodedBlock struct {
	payload []byte
	block   *ledger.Block
	ids     [][32]byte
}

// maxDecoded bounds decodedBlocks: more than the pre-prepares in flight.
const maxDecoded = 4 * maxPrechecks

func (d *decodedBlocks) put(payload []byte, b *ledger.Block, ids [][32]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[uint64]decodedBlock{}
	}
	if len(d.m) >= maxDecoded {
		clear(d.m)
	}
	d.m[b.Header.Height] = decodedBlock{payload: payload, block: b, ids: ids}
}

// take returns the block at height decoded from payload and its txs'
// ids, and forgets it; nil if it has none.
func (d *decodedBlocks) take(height uint64, payload []byte) (*ledger.Block, [][32]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[height]
	if !ok || !bytes.Equal(e.payload, payload) {
		return nil, nil
	}
	delete(d.m, height)
	return e.block, e.ids
}

// prechecker checks the txs of each pre-prepare from r.prechecks, then
// hands the message to the Run goroutine, in the order they came, until
// ctx ends.
func (r *Replica) prechecker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-r.prechecks:
			r.precheck(m)
			select {
			case r.inbox <- m:
			case <-ctx.Done():
				return
			}
		}
	}
}

// precheck verifies, on every core, the txs of a pre-prepare's block that
// this replica has not verified, against the committed state, and keeps
// those that pass in r.verified. What fails is left to App.Validate,
// which decides with the blocks in flight.
func (r *Replica) precheck(m *pbft.Message) {
	b, err := ledger.DecodeBlock(m.Payload)
	if err != nil {
		return // Validate refuses it
	}
	var todo [][]byte
	ids := make([][32]byte, len(b.Txs))
	for i, env := range b.Txs {
		ids[i] = ledger.TxID(env)
		if r.verified.get(ids[i]) == nil {
			todo = append(todo, env)
		}
	}
	r.app.decoded.put(m.Payload, b, ids)
	st := r.cfg.State
	_ = onEveryCore(todo, 32, func(env []byte) error {
		if c, err := st.Check(env); err == nil {
			r.verified.put(c)
		}
		return nil
	})
}
