package daemon

import (
	"context"
	"crypto"
	"encoding/hex"
	"log/slog"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// attestation is a snapshot written at a height the policy made due.
type attestation struct {
	height uint64
	hash   [32]byte
}

// attest commits a node.snapshot tx, signed with the node key, for each
// snapshot from due: the node's attestation that its state after that
// block has that hash. Once a quorum of nodes attested the same (height,
// hash) the snapshot is certified (docs/snapshots.md). An attestation
// that does not commit is logged and not retried: the next snapshot
// brings the next one. It returns when ctx ends.
func attest(ctx context.Context, due <-chan attestation, node string, signer crypto.Signer, ch *chain.Chain, logger *slog.Logger) {
	for {
		var a attestation
		select {
		case <-ctx.Done():
			return
		case a = <-due:
		}
		if ch.State().LastAttested(node) >= a.height {
			continue // attested before a restart
		}
		env, err := ledger.SignTx(signer, node, &ledger.Body{
			Kind: ledger.KindSnapshot, ChainID: ch.Genesis().ChainID,
			NodeSnapshot: &ledger.NodeSnapshot{Node: node, Height: a.height, Hash: a.hash[:]},
		})
		if unavailable(err) {
			continue // the node key's watch logs it and /readyz says it
		}
		if err != nil {
			logger.Warn("snapshot attestation: sign", "err", err)
			continue
		}
		if _, err := ch.Submit(ctx, env); err != nil && ctx.Err() == nil {
			logger.Warn("snapshot attestation not committed", "height", a.height, "hash", hex.EncodeToString(a.hash[:]), "err", err)
		}
	}
}
