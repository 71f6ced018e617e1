// Package front adapts the gateway's chain and state to the interfaces
// that protocol front ends declare in package bridge. The daemon and the
// test node both wire front ends through it.
package front

import (
	"context"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Committer is ch as a bridge.Committer. behind (nil: never) reports
// whether the gateway may lack committed blocks (see unlessBehind).
func Committer(ch *chain.Chain, behind func() bool) bridge.Committer {
	return bridge.CommitterFunc(func(ctx context.Context, tx *ledger.Tx) (bridge.Ticket, error) {
		t, err := ch.Propose(ctx, tx)
		if err != nil {
			return nil, unlessBehind(err, behind) // not a typed nil in an interface
		}
		return t, nil
	})
}

// Ledger is ch as the API's api.Ledger: its submits are refused as the
// front ends' are (see unlessBehind).
func Ledger(ch *chain.Chain, behind func() bool) interface {
	Decode(env []byte) (*ledger.Tx, error)
	SubmitTx(ctx context.Context, tx *ledger.Tx) (*ledger.Receipt, error)
	Receipt(id [32]byte) (*ledger.Receipt, error)
	Block(height uint64) (*ledger.Block, error)
} {
	return apiLedger{ch, behind}
}

type apiLedger struct {
	*chain.Chain
	behind func() bool
}

func (l apiLedger) SubmitTx(ctx context.Context, tx *ledger.Tx) (*ledger.Receipt, error) {
	rc, err := l.Chain.SubmitTx(ctx, tx)
	return rc, unlessBehind(err, l.behind)
}

// unlessBehind answers unavailable (resend) instead of a refusal that
// blocks this gateway lacks could explain, while it may lack some: the
// author's enrollment or re-key (unknown_author, bad_signature), or the
// enrollment of the device a tx is about (unknown_device). Once it has
// caught up, the same bytes get the right answer.
func unlessBehind(err error, behind func() bool) error {
	if err == nil || behind == nil {
		return err
	}
	switch ledger.ReasonOf(err) {
	case ledger.ReasonUnknownAuthor, ledger.ReasonBadSignature, ledger.ReasonUnknownDevice:
		if behind() {
			return &ledger.RefusedError{Reason: ledger.ReasonUnavailable,
				Detail: "this gateway is catching up with its peers and may lack the blocks this tx depends on (" + err.Error() + "): send the same bytes again"}
		}
	}
	return err
}

// Directory is st as a bridge.Directory; behind reports whether the
// gateway may lack committed blocks (nil: never, a single node).
func Directory(st *state.State, behind func() bool) bridge.Directory {
	return directory{st: st, behind: behind}
}

type directory struct {
	st     *state.State
	behind func() bool
}

func (d directory) Behind() bool { return d.behind != nil && d.behind() }

func (d directory) ChainID() string { return d.st.Genesis().ChainID }
func (d directory) MaxTxBytes() int { return d.st.Genesis().Params.MaxTxBytes }
func (d directory) Device(id string) (bridge.Device, bool) {
	dv, ok := d.st.Device(id)
	if !ok {
		return bridge.Device{}, false
	}
	return bridge.Device{ID: dv.ID, Key: dv.Key, Revoked: dv.Revoked}, true
}

func (d directory) DeviceByKey(spki []byte) (bridge.Device, bool) {
	dv, ok := d.st.DeviceByKey(spki)
	if !ok {
		return bridge.Device{}, false
	}
	return bridge.Device{ID: dv.ID, Key: dv.Key, Revoked: dv.Revoked}, true
}
