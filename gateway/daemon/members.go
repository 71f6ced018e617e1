package daemon

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/cluster"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
	"github.com/ledgergate/ledgergate/tpm"
)

// NodeIDFile holds, in the data directory of a gateway that a member
// change adds (its key is not in the genesis), the node id the change
// names it by: `ledgergate init --genesis FILE --node-id ID` writes it.
const NodeIDFile = "node-id"

// memberPeers returns the peers a gateway at tip talks to: the members of
// every epoch from the one in force after tip on (the pending one
// included, so that a joining member follows the commits before its set
// takes effect), this gateway aside, each dialled at its first address
// hint and pinned to its key. A member of an epoch that ended only is
// dropped. A member with no address is found by seed discovery.
func memberPeers(m *ledger.Members, tip uint64, self string, withSeeds bool) ([]cluster.Peer, error) {
	cur := m.At(tip + 1)
	seen := map[string]bool{self: true}
	var peers []cluster.Peer
	for _, e := range m.Epochs() {
		if e.Start < cur.Start {
			continue
		}
		for _, n := range e.Nodes {
			if seen[n.ID] {
				continue
			}
			seen[n.ID] = true
			addr := ""
			switch {
			case len(n.Addrs) > 0:
				addr = n.Addrs[0]
			case !withSeeds && e.Start == 1:
				return nil, fmt.Errorf("daemon: genesis node %s has no address to reach it at; configure [seeds] to find it", n.ID)
			}
			k, _ := e.Key(n.ID)
			ec, ok := k.Key.(*ecdsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("daemon: node %s: key is not ECDSA P-256", n.ID)
			}
			peers = append(peers, cluster.Peer{ID: n.ID, Addr: addr, PublicKey: ec})
		}
	}
	return peers, nil
}

// selfAddr is this gateway's first address hint in the newest member set
// that names it, "" if none does.
func selfAddr(m *ledger.Members, self string) string {
	es := m.Epochs()
	for i := len(es) - 1; i >= 0; i-- {
		if n, ok := es[i].Node(self); ok && len(n.Addrs) > 0 {
			return n.Addrs[0]
		}
	}
	return ""
}

// followMembers keeps the transport's peers those of memberPeers as the
// chain grows, until ctx ends: a member change committed, took effect,
// or the epoch of a removed member ended. committed wakes it at each
// block (it looks again after a failure, a second later).
func followMembers(ctx context.Context, tr *cluster.Transport, st *state.State, self string, withSeeds bool, committed <-chan struct{}, logger *slog.Logger) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var last *ledger.Members
	var lastFrom uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-committed:
		case <-retry.C:
		}
		tip, _ := st.Tip()
		m := st.Members()
		from := m.At(tip + 1).Start
		if m == last && from == lastFrom {
			continue
		}
		peers, err := memberPeers(m, tip, self, withSeeds)
		if err == nil {
			err = tr.SetPeers(peers)
		}
		if err != nil {
			logger.Warn("peer set not changed to the members", "err", err)
			retry.Reset(time.Second)
			continue
		}
		if last != nil {
			ids := make([]string, len(peers))
			for i, p := range peers {
				ids[i] = p.ID
			}
			logger.Info("peers follow the members", "height", tip, "in_force_from", from, "peers", strings.Join(ids, ","))
		}
		last, lastFrom = m, from
	}
}

// membersInfo reports the member sets for the API.
func membersInfo(st *state.State) func() api.Members {
	return func() api.Members {
		tip, _ := st.Tip()
		m := st.Members()
		out := api.Members{Height: tip, InForce: memberSet(m.At(tip + 1))}
		if last := m.Last(); last.Start > tip+1 {
			p := memberSet(last)
			out.Pending = &p
		}
		return out
	}
}

func memberSet(e *ledger.Epoch) api.MemberSet {
	s := api.MemberSet{From: e.Start, Quorum: e.Quorum(), Nodes: e.Nodes, ChangeHeight: e.Height}
	if e.Height > 0 {
		s.ChangeTx = hex.EncodeToString(e.Tx[:])
	}
	return s
}

// findMember returns this gateway's node id: its key's in the genesis,
// or, for a gateway a member change adds, the id init wrote to
// NodeIDFile (checked against the member sets once the state is loaded,
// see checkMember).
func findMember(dir string, g *ledger.Genesis, signer tpm.Signer) (string, error) {
	id, err := findNode(g, signer)
	if err == nil || len(g.Nodes) == 1 {
		return id, err
	}
	b, rerr := os.ReadFile(filepath.Join(dir, NodeIDFile))
	if errors.Is(rerr, os.ErrNotExist) {
		return "", err
	}
	if rerr != nil {
		return "", fmt.Errorf("daemon: %w", rerr)
	}
	id = strings.TrimSpace(string(b))
	if !ledger.ValidID(id) {
		return "", fmt.Errorf("daemon: %s: invalid node id %q", filepath.Join(dir, NodeIDFile), id)
	}
	if _, ok := g.Node(id); ok {
		return "", fmt.Errorf("daemon: %s names %s, a genesis node with another key", filepath.Join(dir, NodeIDFile), id)
	}
	return id, nil
}

// checkMember checks that the member sets name id with signer's key, if
// they name it at all (a gateway not yet added follows the chain until a
// change names it).
func checkMember(m *ledger.Members, id string, signer tpm.Signer) error {
	k, ok := m.Ever(id)
	if !ok {
		return nil
	}
	pub, _ := signer.Public().(*ecdsa.PublicKey)
	if ec, ok := k.Key.(*ecdsa.PublicKey); !ok || pub == nil || !ec.Equal(pub) {
		return fmt.Errorf("daemon: node %s is a member with another key than this gateway's (%s): a member change must name this gateway's key, or give it a new id", id, signer.Describe())
	}
	return nil
}
