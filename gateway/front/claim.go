package front

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Limits of the claims a gateway submits for devices' first CONNECTs:
// each one in flight costs a node signature and a tx through consensus.
const (
	MaxClaimsInFlight      = 64
	MaxBatchClaimsInFlight = 16
)

// Claimer is the gateway's bridge.Claimer: for the first CONNECT of a
// device an approved batch names, it signs, as this node, a device.claim
// carrying the device's token as evidence (docs/protocol.md 6.19, path
// b), submits it and waits for its commit. A CONNECT of a device no
// approved batch names costs a map lookup; one whose token does not
// verify with the batch's key, one signature check; neither reaches
// consensus. At most MaxClaimsInFlight claims are in flight, at most
// MaxBatchClaimsInFlight of one batch (a CONNECT waits for a slot within
// its bound); one device has one claim in flight and its other CONNECTs
// wait for it. The map of batch slots keeps one small channel per
// approved batch that was ever claimed from.
type Claimer struct {
	st     *state.State
	ch     *chain.Chain
	signer crypto.Signer
	node   string
	log    *slog.Logger

	slots chan struct{} // MaxClaimsInFlight

	mu       sync.Mutex
	inflight map[string]*pendingClaim // device -> its claim in flight
	perBatch map[string]chan struct{} // batch -> MaxBatchClaimsInFlight slots
}

type pendingClaim struct {
	PendingClaim
	done chan struct{}
	err  error
}

// PendingClaim is a claim in flight, for the API.
type PendingClaim struct {
	Device string    `json:"device"`
	Batch  string    `json:"batch"`
	Since  time.Time `json:"since"`
}

// NewClaimer returns a Claimer that signs as node with signer.
func NewClaimer(st *state.State, ch *chain.Chain, signer crypto.Signer, node string, logger *slog.Logger) *Claimer {
	return &Claimer{st: st, ch: ch, signer: signer, node: node, log: logger, slots: make(chan struct{}, MaxClaimsInFlight),
		inflight: map[string]*pendingClaim{}, perBatch: map[string]chan struct{}{}}
}

// Pending lists the claims in flight, by device.
func (c *Claimer) Pending() []PendingClaim {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PendingClaim, 0, len(c.inflight))
	for _, d := range slices.Sorted(maps.Keys(c.inflight)) {
		out = append(out, c.inflight[d].PendingClaim)
	}
	return out
}

// Claim implements bridge.Claimer.
func (c *Claimer) Claim(ctx context.Context, device string, token []byte) error {
	if c.enrolled(device) {
		return nil
	}
	batch, key, ok := c.st.BatchKey(device)
	if !ok {
		return bridge.ErrNotClaimable
	}
	tok, err := ledger.ClaimToken(token, c.st.Genesis().ChainID)
	if err != nil || tok.Claims.Subject != device || tok.Verify(key) != nil {
		return bridge.ErrNotClaimable
	}
	c.mu.Lock()
	if p := c.inflight[device]; p != nil {
		c.mu.Unlock()
		select {
		case <-p.done:
			return p.err
		case <-ctx.Done():
			return &ledger.RefusedError{Reason: ledger.ReasonUnavailable, Detail: "the claim of " + device + " is still in flight"}
		}
	}
	p := &pendingClaim{PendingClaim: PendingClaim{Device: device, Batch: batch, Since: time.Now()}, done: make(chan struct{})}
	c.inflight[device] = p
	bslots := c.perBatch[batch]
	if bslots == nil {
		bslots = make(chan struct{}, MaxBatchClaimsInFlight)
		c.perBatch[batch] = bslots
	}
	c.mu.Unlock()

	p.err = c.slotted(ctx, bslots, func() error { return c.submit(ctx, device, batch, token) })
	c.mu.Lock()
	delete(c.inflight, device)
	c.mu.Unlock()
	close(p.done)
	return p.err
}

// slotted runs f holding a slot of the batch and one of the gateway,
// waiting for them until ctx ends (the CONNECT's bound): overloaded then.
func (c *Claimer) slotted(ctx context.Context, bslots chan struct{}, f func() error) error {
	full := &ledger.RefusedError{Reason: ledger.ReasonOverloaded, Detail: "too many enrollments in flight: connect again in a few seconds"}
	select {
	case bslots <- struct{}{}:
		defer func() { <-bslots }()
	case <-ctx.Done():
		return full
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return full
	}
	return f()
}

// submit signs and submits the claim, and waits until the device is
// enrolled: by this claim, or, if it is refused as exists, by another
// gateway's, whose block this gateway may still be applying.
func (c *Claimer) submit(ctx context.Context, device, batch string, token []byte) error {
	claim, ok := c.st.BatchClaim(batch, device)
	if !ok {
		return &ledger.RefusedError{Reason: ledger.ReasonNotFound, Detail: fmt.Sprintf("batch %s does not name %s", batch, device)}
	}
	claim.Evidence = token
	env, err := ledger.SignTx(c.signer, c.node, &ledger.Body{Kind: ledger.KindDeviceClaim, ChainID: c.st.Genesis().ChainID, DeviceClaim: claim})
	if err != nil {
		return &ledger.RefusedError{Reason: ledger.ReasonInternal, Detail: fmt.Sprintf("sign the claim: %v", err)}
	}
	rc, err := c.ch.Submit(ctx, env)
	switch {
	case err == nil:
		c.log.Info("device enrolled from its batch", "device", device, "batch", batch, "height", rc.Header.Height)
	case ledger.ReasonOf(err) == ledger.ReasonExists:
		c.log.Info("device claim lost to another", "device", device, "batch", batch, "detail", err.Error())
	default:
		return err
	}
	// Committed (or another claim was): the device is in the state once
	// this gateway applied the block.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.enrolled(device) {
		select {
		case <-ctx.Done():
			return errors.Join(err, &ledger.RefusedError{Reason: ledger.ReasonUnavailable, Detail: "the enrollment of " + device + " is not applied here yet"})
		case <-t.C:
		}
	}
	return nil
}

func (c *Claimer) enrolled(device string) bool {
	_, ok := c.st.Device(device)
	return ok
}
