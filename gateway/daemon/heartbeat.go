package daemon

import (
	"context"
	"crypto"
	"log/slog"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/chain"
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
func heartbeat(ctx context.Context, every time.Duration, node string, signer crypto.Signer, ch *chain.Chain, rep *replica.Replica, logger *slog.Logger) {
	t := time.NewTicker(max(every/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if st := rep.Status(); st.Primary != node || st.Changing {
			continue
		}
		var last time.Time
		if h, _ := ch.State().Tip(); h > 0 {
			b, err := ch.Block(h)
			if err != nil {
				logger.Warn("heartbeat: read the newest block", "err", err)
				continue
			}
			last = time.UnixMilli(b.Header.Time)
		}
		if time.Since(last) < every {
			continue
		}
		now := time.Now()
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
