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

// heartbeat keeps blocks coming on an idle chain: when this node is the
// primary and no block committed for a whole interval, it commits a
// node.heartbeat tx signed with the node key. Devices refuse answers whose
// newest block is older than their freshness bound (a frozen or cut-off
// gateway), so an idle chain must not look like one. It returns when ctx
// ends.
//
// The chain is idle when, for a whole interval, this node has seen no new
// block (on its monotonic clock) or the newest block's time is an interval
// old (on its wall clock). Either alone fails when a clock steps: block
// times are their proposers' wall clocks, so a proposer whose clock was
// ahead leaves a block time that looks recent for as long as it was
// ahead; and a node that just started has seen no block yet.
func heartbeat(ctx context.Context, every time.Duration, node string, signer crypto.Signer, ch *chain.Chain, rep *replica.Replica, logger *slog.Logger) {
	t := time.NewTicker(max(every/4, time.Second))
	defer t.Stop()
	seenHeight, seenAt := uint64(0), time.Now() // the newest block this node saw, and when
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h, _ := ch.State().Tip()
		if h != seenHeight {
			seenHeight, seenAt = h, time.Now()
		}
		if st := rep.Status(); st.Primary != node || st.Changing || ch.Halted() != nil {
			continue
		}
		if time.Since(seenAt) < every && !blockTimeOld(ch, h, every, logger) {
			continue
		}
		now := clock.Now()
		env, err := ledger.SignTx(signer, node, &ledger.Body{
			Kind: ledger.KindHeartbeat, ChainID: ch.Genesis().ChainID,
			Heartbeat: &ledger.Heartbeat{Node: node, Time: now.UnixMilli()},
		})
		if unavailable(err) {
			continue // the node key's watch logs it and /readyz says it
		}
		if err != nil {
			logger.Warn("heartbeat: sign", "err", err)
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, every)
		if _, err := ch.Submit(wctx, env); err != nil && ctx.Err() == nil {
			logger.Warn("heartbeat not committed", "err", err)
		}
		cancel()
	}
}

// blockTimeOld reports whether block h's time (the genesis, h = 0: none)
// is at least every before this node's wall clock.
func blockTimeOld(ch *chain.Chain, h uint64, every time.Duration, logger *slog.Logger) bool {
	if h == 0 {
		return true
	}
	b, err := ch.Block(h)
	if err != nil {
		logger.Warn("heartbeat: read the newest block", "err", err)
		return false
	}
	return clock.Now().Sub(time.UnixMilli(b.Header.Time)) >= every
}
