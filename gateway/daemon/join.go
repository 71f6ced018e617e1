package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ledgergate/ledgergate/gateway/cluster"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/snapshot"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// BaseState is the state at the base of dir's block log, a log that starts
// from a snapshot (the gateway joined from one): the snapshot file at the
// base height, checked against its own hash, decoded as a snapshot of g's
// chain, and whose tip is the log's base height and hash. It reads and
// changes nothing else, so it can run beside a running gateway.
func BaseState(dir string, g *ledger.Genesis, blog *ledger.Log) (*state.State, error) {
	base, hash := blog.Base()
	if base == 0 {
		return nil, fmt.Errorf("daemon: the block log of %s starts at block 1: it has no base snapshot", dir)
	}
	why := func(err error) error {
		return fmt.Errorf("daemon: the block log starts after block %d (the gateway joined from a snapshot), and the snapshot at %d is not usable: %w", base, base, err)
	}
	s, err := snapshot.OpenReadOnly(filepath.Join(dir, SnapshotsDir))
	if err != nil {
		return nil, why(err)
	}
	enc, err := s.Read(base)
	if err != nil {
		return nil, why(err)
	}
	st, err := state.Restore(g, enc)
	if err != nil {
		return nil, why(err)
	}
	if h, tip := st.Tip(); h != base || tip != hash {
		return nil, why(fmt.Errorf("it holds the state at block %d (%x), the log's base is %x", h, tip[:8], hash[:8]))
	}
	return st, nil
}

// Bounds of a join: each peer gets joinPeerTimeout to serve its
// snapshot, and the whole join at most joinTimeout; then the gateway
// starts from block 1 as it would without a snapshot.
const (
	joinPeerTimeout = 60 * time.Second
	joinTimeout     = 3 * time.Minute
)

// joinFromSnapshot makes the empty block log of a cluster gateway (a new
// gateway, or one whose disk was replaced) start from the newest
// certified snapshot a peer serves: the peers are asked in turn (in the
// transport's order), and the first snapshot that snapshot.Accept takes
// with the genesis alone (and the membership proof the peer sends with
// it, which Accept checks with the genesis) is written to the snapshot
// store with its proof, the membership proof beside the log's base
// (blocks/MEMBERS), then recorded as the log's base. The state is then
// loaded from it as from a local snapshot, and state transfer fetches
// only the blocks after it. A peer
// that serves nothing, fails, or serves a snapshot that is not certified
// is logged and the next one asked; with none usable the log stays empty
// and the gateway fetches every block from 1. It returns the base height
// (0: none). When ctx ends (the gateway is stopped) it returns ctx's
// error with the log still empty.
func (d *Daemon) joinFromSnapshot(ctx context.Context, gw *gateway) (uint64, error) {
	g := gw.g
	logger := d.logger.With("component", "join")
	st, err := state.New(g)
	if err != nil {
		return 0, err
	}
	tr, err := newTransport(g, gw.nodeID, gw.cfg.Cluster.Listen, len(gw.cfg.Seeds.Zones) > 0, gw.key, st, &handler{}, logger)
	if err != nil {
		return 0, err
	}
	defer tr.Close() // never Run: it only dials out
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	logger.Info("the block log is empty: asking the peers for a certified snapshot to start from")
	refused := 0 // snapshots offered and refused: worth a warning, unlike a new chain's none
	// The peers the transport knows (the genesis nodes, and whatever
	// else its peer set holds), in its order.
	for _, n := range tr.Peers() {
		if n.ID == gw.nodeID {
			continue
		}
		pctx, pcancel := context.WithTimeout(ctx, joinPeerTimeout)
		s, err := tr.FetchSnapshot(pctx, n.ID, state.MaxSnapshotBytes)
		pcancel()
		if stop := context.Cause(parent); stop != nil {
			return 0, fmt.Errorf("daemon: join from a snapshot: stopped: %w", stop)
		}
		if errors.Is(err, cluster.ErrNoSnapshot) {
			logger.Info("peer has no certified snapshot", "peer", n.ID)
			continue
		}
		if err != nil {
			logger.Warn("could not fetch a snapshot from a peer", "peer", n.ID, "err", err)
			continue
		}
		acc, err := snapshot.Accept(g, s.Data, s.Proof, s.Members)
		if err != nil {
			logger.Warn("refused a peer's snapshot: not certified by a quorum of the members in force", "peer", n.ID, "height", s.Height, "err", err)
			refused++
			continue
		}
		height, hash := acc.State.Tip()
		if err := d.writeBase(gw, height, hash, s.Data, s.Proof, acc.Members); err != nil {
			return 0, err
		}
		logger.Info("joined from a snapshot", "peer", n.ID, "height", height, "bytes", len(s.Data), "attestations", len(acc.Proof.Receipts),
			"member_changes", len(acc.Members))
		return height, nil
	}
	level := slog.LevelInfo // a new chain, or peers not up yet: what a cluster's first start sees
	if refused > 0 {
		level = slog.LevelWarn
	}
	logger.Log(parent, level, "no peer served a usable certified snapshot: fetching every block from 1", "refused", refused)
	return 0, nil
}

// writeBase stores the accepted snapshot (data at height, tip hash), its
// proof and the membership proof of the member changes at or below it
// (blocks/MEMBERS), then makes the block log start after it. The log's
// base is written last: a crash before it leaves an empty log, and the
// next start joins again.
func (d *Daemon) writeBase(gw *gateway, height uint64, hash [32]byte, data, proof []byte, members ledger.MembershipProof) error {
	store, err := snapshot.Open(filepath.Join(gw.cfg.DataDir, SnapshotsDir))
	if err != nil {
		return fmt.Errorf("daemon: join: %w", err)
	}
	store.SpareBase(height)
	if err := store.Write(height, data); err != nil {
		return fmt.Errorf("daemon: join: %w", err)
	}
	if err := store.WriteBaseProof(proof); err != nil {
		return fmt.Errorf("daemon: join: %w", err)
	}
	if err := gw.blog.SetBaseMembers(members); err != nil {
		return fmt.Errorf("daemon: join: %w", err)
	}
	if err := gw.blog.SetBase(height, hash); err != nil {
		return fmt.Errorf("daemon: join: %w", err)
	}
	return nil
}

// BaseProof checks the proof stored with the snapshot dir's block log
// starts from (the gateway joined from it): it must verify with g alone
// and the membership proof stored beside the log's base (blocks/MEMBERS,
// the member changes at or below it) and name the log's base height and
// the snapshot's hash. It returns how many members attested it.
func BaseProof(dir string, g *ledger.Genesis, blog *ledger.Log) (int, error) {
	base, _ := blog.Base()
	s, err := snapshot.OpenReadOnly(filepath.Join(dir, SnapshotsDir))
	if err != nil {
		return 0, err
	}
	data, err := s.Read(base)
	if err != nil {
		return 0, err
	}
	proof, err := s.ReadBaseProof()
	if err != nil {
		return 0, err
	}
	members, err := blog.BaseMembers()
	if err != nil {
		return 0, err
	}
	enc, err := members.Encode()
	if err != nil {
		return 0, err
	}
	acc, err := snapshot.Accept(g, data, proof, enc)
	if err != nil {
		return 0, err
	}
	p := acc.Proof
	if p.Height != base {
		return 0, fmt.Errorf("daemon: the base proof certifies height %d, the log's base is %d", p.Height, base)
	}
	return len(p.Receipts), nil
}
