package daemon

import (
	"context"
	"crypto"
	"log/slog"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/replica"
)

// maxBlobBytes bounds a stored blob: a firmware image (as the API takes
// it), or a configuration of up to ledger.MaxConfigBytes sealed to many
// recipients. Uploads stream to disk; only blobs fetched from peers are
// in memory whole.
const maxBlobBytes = api.MaxImageBytes

// pendingBeat is how often the primary commits a heartbeat while a
// member change is pending (see heartbeat).
const pendingBeat = 50 * time.Millisecond

// heartbeat keeps blocks coming on an idle chain: when this node is the
// primary and no block committed for a whole interval, it commits a
// node.heartbeat tx signed with the node key. Devices refuse answers whose
// newest block is older than their freshness bound (a frozen or cut-off
// gateway), so an idle chain must not look like one. It returns when ctx
// ends.
//
// The chain is idle when this node has seen no new block for a whole
// interval, on its monotonic clock. Block times would not do: they are
// their proposers' wall clocks, and a block stamped by a clock that was
// ahead looks recent for as long as it was ahead. (After a restart, the
// first heartbeat comes an interval after the start.)
//
// While a member change is pending (committed, not in force yet), the
// primary commits a heartbeat every pendingBeat, idle or not, until the
// new set committed its first block: a change takes
// effect ledger.Window heights after it at the earliest, and an idle
// chain would otherwise need that many heartbeat intervals to get there.
//
// reconfigured wakes it when a member change commits. With every 0
// (heartbeats off) it commits heartbeats only while a change is pending.
func heartbeat(ctx context.Context, every time.Duration, node string, signer crypto.Signer, ch *chain.Chain, rep *replica.Replica, reconfigured <-chan struct{}, logger *slog.Logger) {
	idle := max(every/4, time.Second)
	if every == 0 {
		idle = time.Hour // only a commit of a change wakes it
	}
	t := time.NewTimer(idle)
	defer t.Stop()
	seenHeight, seenAt := uint64(0), time.Now() // the newest block this node saw, and when
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-reconfigured:
			t.Stop()
		}
		h, _ := ch.State().Tip()
		// Up to and with the first block the new set certifies: it
		// shows the new set commits.
		pending := ch.State().Members().Pending(h)
		if pending {
			t.Reset(pendingBeat)
		} else {
			t.Reset(idle)
		}
		if h != seenHeight {
			seenHeight, seenAt = h, time.Now()
		}
		if st := rep.Status(); st.Primary != node || st.Changing || ch.Halted() != nil {
			continue
		}
		if !pending && (every == 0 || time.Since(seenAt) < every) {
			continue
		}
		// A heartbeat's time must be above the last one's (the state
		// refuses it as a replay otherwise), even after the clock
		// stepped back.
		now := max(clock.Now().UnixMilli(), ch.State().LastHeartbeat(node)+1)
		env, err := ledger.SignTx(signer, node, &ledger.Body{
			Kind: ledger.KindHeartbeat, ChainID: ch.Genesis().ChainID,
			Heartbeat: &ledger.Heartbeat{Node: node, Time: now},
		})
		if unavailable(err) {
			continue // the node key's watch logs it and /readyz says it
		}
		if err != nil {
			logger.Warn("heartbeat: sign", "err", err)
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, max(every, time.Second))
		if _, err := ch.Submit(wctx, env); err != nil && ctx.Err() == nil {
			logger.Warn("heartbeat not committed", "err", err)
		}
		cancel()
	}
}
