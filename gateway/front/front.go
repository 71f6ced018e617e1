// Package front adapts the gateway's chain and state to the interfaces
// that protocol front ends declare in package bridge. The daemon and the
// test node both wire front ends through it.
package front

import (
	"context"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Committer is ch as a bridge.Committer.
func Committer(ch *chain.Chain) bridge.Committer {
	return bridge.CommitterFunc(func(ctx context.Context, env []byte) (bridge.Ticket, error) {
		t, err := ch.Propose(ctx, env)
		if err != nil {
			return nil, err // not a typed nil in an interface
		}
		return t, nil
	})
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
