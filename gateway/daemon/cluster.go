package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/blob"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/cluster"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/replica"
	"github.com/ledgergate/ledgergate/gateway/snapshot"
	"github.com/ledgergate/ledgergate/gateway/state"
	"github.com/ledgergate/ledgergate/tpm"
)

// PBFTDir holds a replica's hard state in the data directory.
const PBFTDir = "pbft"

// handler hands the transport's input to the replica, which is built
// after the transport.
type handler struct {
	r     *replica.Replica
	blobs *blob.Store
	// For Snapshot: nil snaps (snapshots off) serves none.
	snaps *snapshot.Store
	st    *state.State
	log   *ledger.Log
}

func (h *handler) Message(from string, data []byte) { h.r.Message(from, data) }

func (h *handler) Blocks(from uint64, max int) ([][]byte, error) { return h.r.Blocks(from, max) }

// Blob serves a peer a configuration blob this gateway stores; nil if it
// has none.
func (h *handler) Blob(sum [32]byte) ([]byte, error) {
	data, err := h.blobs.Get(sum)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, nil
	}
	return data, err
}

// Snapshot serves a peer the snapshot at height (0: the newest certified
// one) from this gateway's store, with the proof that it is certified
// and the chain's membership proof (chain.ProveMembers) when asked (the
// first chunk). A snapshot this gateway does not have, or whose bytes
// are not the certified ones, is none.
func (h *handler) Snapshot(height uint64, withProof bool) (*cluster.Snapshot, error) {
	if h.snaps == nil {
		return nil, nil
	}
	c, certified := h.st.Certified()
	if height == 0 {
		if !certified {
			return nil, nil
		}
		height = c.Height
	}
	data, err := h.snaps.Read(height)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !withProof {
		return &cluster.Snapshot{Height: height, Data: data}, nil
	}
	if !certified || c.Height != height || state.SnapshotHash(data) != c.Hash {
		return nil, nil
	}
	log := h.log
	p, err := state.ProofOf(c, func(height uint64) (*ledger.Block, error) { return readBlock(log, height) })
	if err != nil {
		return nil, err
	}
	proof, err := p.Encode()
	if err != nil {
		return nil, err
	}
	// The members after every change the state applied: the
	// attestations may be certified by a set that took effect above the
	// snapshot's height.
	mp, err := chain.ProveMembers(h.st.Members(), log)
	if err != nil {
		return nil, err
	}
	members, err := mp.Encode()
	if err != nil {
		return nil, err
	}
	return &cluster.Snapshot{Height: height, Data: data, Proof: proof, Members: members}, nil
}

// readBlock reads and decodes the block at height from log.
func readBlock(log *ledger.Log, height uint64) (*ledger.Block, error) {
	if n := log.Height(); height == 0 || height > n {
		return nil, fmt.Errorf("daemon: no block %d in the log (it ends at %d)", height, n)
	}
	data, err := log.ReadHeight(height)
	if err != nil {
		return nil, err
	}
	return ledger.DecodeBlock(data)
}

// fetchBlob returns a Fetcher that asks the peers for a blob, one after
// the other, each for at most a few seconds.
func fetchBlob(tr *cluster.Transport) directory.Fetcher {
	return func(ctx context.Context, sum [32]byte) ([]byte, error) {
		var errs []error
		for _, p := range tr.Peers() {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			data, err := tr.FetchBlob(pctx, p.ID, sum)
			cancel()
			if err == nil {
				return data, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}

// newTransport builds the transport to the other members (see
// memberPeers), as st's member sets name them.
// With seeds, a node may have no address in the genesis: discovery gives it.
func newTransport(g *ledger.Genesis, self, listen string, withSeeds bool, signer tpm.Signer, st *state.State, h *handler, logger *slog.Logger) (*cluster.Transport, error) {
	tip, _ := st.Tip()
	m := st.Members()
	peers, err := memberPeers(m, tip, self, withSeeds)
	if err != nil {
		return nil, err
	}
	if listen == "" {
		listen = selfAddr(m, self)
	}
	if listen == "" {
		return nil, fmt.Errorf("daemon: node %s has no address in the genesis or a member change; set [cluster] listen", self)
	}
	return cluster.New(cluster.Config{
		Self: self, Listen: listen, Signer: signer, Peers: peers, Logger: logger,
		Height: func() uint64 { h, _ := st.Tip(); return h },
	}, h)
}

// heights returns each connected peer's reported height.
func heights(t *cluster.Transport) func() map[string]uint64 {
	return func() map[string]uint64 {
		out := map[string]uint64{}
		for _, p := range t.Peers() {
			if p.Connected {
				out[p.ID] = p.Height
			}
		}
		return out
	}
}

// behind reports whether this gateway may lack committed blocks (see
// bridge.Directory.Behind).
func behind(t *cluster.Transport, st *state.State) func() bool {
	return func() bool {
		tip, _ := st.Tip()
		return isBehind(tip, t.Peers(), st.Members().At(tip+1).Quorum(), time.Now())
	}
}

// isBehind: a peer heard from lately reports a height above tip, or fewer
// peers were heard from lately than a quorum needs besides this gateway,
// so it cannot tell the chain's height. A peer is heard from on its own
// connection to us, which carries its height: our connection to it can
// be up long before (it reconnects to a restarted gateway with backoff).
func isBehind(tip uint64, peers []cluster.PeerStatus, quorum int, now time.Time) bool {
	heard := 0
	for _, p := range peers {
		if p.LastSeen.IsZero() || now.Sub(p.LastSeen) >= peerSilence {
			continue
		}
		heard++
		if p.Height > tip {
			return true
		}
	}
	return heard < quorum-1
}

// clusterStatus is the consensus part of the API's status.
func clusterStatus(r *replica.Replica, t *cluster.Transport, st *state.State) func() api.Cluster {
	return func() api.Cluster {
		s := r.Status()
		c := api.Cluster{View: s.View, Primary: s.Primary, ViewChanging: s.Changing, StableCheckpoint: s.Stable, Peers: []api.Peer{}}
		if t == nil {
			return c
		}
		height, _ := st.Tip()
		for _, p := range t.Peers() {
			c.Peers = append(c.Peers, api.Peer{ID: p.ID, Addr: p.Addr, Connected: p.Connected, Height: p.Height, Lag: int64(height) - int64(p.Height)})
		}
		return c
	}
}

// clusterMetrics exports the consensus state at each scrape.
type clusterMetrics struct {
	status                                    func() api.Cluster
	view, stable, changing, connected, lagged *prometheus.Desc
}

func newClusterMetrics(status func() api.Cluster) *clusterMetrics {
	return &clusterMetrics{
		status:    status,
		view:      prometheus.NewDesc("ledgergate_pbft_view", "The PBFT view this replica is in.", nil, nil),
		stable:    prometheus.NewDesc("ledgergate_pbft_stable_checkpoint", "Height of the last stable checkpoint.", nil, nil),
		changing:  prometheus.NewDesc("ledgergate_pbft_view_changing", "1 while the replica waits for a new view.", nil, nil),
		connected: prometheus.NewDesc("ledgergate_peer_connected", "1 if the connection to the peer is up.", []string{"peer"}, nil),
		lagged:    prometheus.NewDesc("ledgergate_peer_lag_blocks", "Blocks the peer is behind this gateway.", []string{"peer"}, nil),
	}
}

func (m *clusterMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.view
	ch <- m.stable
	ch <- m.changing
	ch <- m.connected
	ch <- m.lagged
}

func (m *clusterMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.status()
	ch <- prometheus.MustNewConstMetric(m.view, prometheus.GaugeValue, float64(s.View))
	ch <- prometheus.MustNewConstMetric(m.stable, prometheus.GaugeValue, float64(s.StableCheckpoint))
	changing := 0.0
	if s.ViewChanging {
		changing = 1
	}
	ch <- prometheus.MustNewConstMetric(m.changing, prometheus.GaugeValue, changing)
	for _, p := range s.Peers {
		up := 0.0
		if p.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(m.connected, prometheus.GaugeValue, up, p.ID)
		ch <- prometheus.MustNewConstMetric(m.lagged, prometheus.GaugeValue, float64(p.Lag), p.ID)
	}
}

// peerSilence is how long a peer may send nothing (it sends a status
// frame every second) before /readyz stops counting it towards a quorum.
const peerSilence = 5 * time.Second

// health says why this gateway cannot commit now, for /readyz: its disk
// filled (halted, which says so as a storage_full refusal), the node key
// cannot sign (nodeKey: the TPM went away), fewer peers heard from lately
// than a quorum needs, a view change running longer than the commit
// timeout, or a tx waiting past it (stalled, the chain's own check). nil:
// it can commit.
func health(st *state.State, r *replica.Replica, t *cluster.Transport, commitTimeout time.Duration, halted, nodeKey, stalled func() error) func() error {
	return func() error {
		if err := halted(); err != nil {
			return err
		}
		var why []string
		if err := nodeKey(); err != nil {
			why = append(why, err.Error())
		}
		if err := r.Member(); err != nil {
			why = append(why, err.Error())
		}
		if t != nil {
			// The members of the set in force, this gateway aside.
			tip, _ := st.Tip()
			in := st.Members().At(tip + 1)
			heard := 0
			for _, p := range t.Peers() {
				if _, ok := in.Key(p.ID); ok && !p.LastSeen.IsZero() && time.Since(p.LastSeen) < peerSilence {
					heard++
				}
			}
			if need := in.Quorum() - 1; heard < need {
				why = append(why, fmt.Sprintf("no quorum: heard from %d of %d peers in the last %s, a quorum of %d gateways needs %d",
					heard, in.N()-1, peerSilence, in.Quorum(), need))
			}
		}
		if s := r.Status(); s.Changing && time.Since(s.ChangingSince) > commitTimeout {
			why = append(why, fmt.Sprintf("view change to view %d running for %s", s.View, time.Since(s.ChangingSince).Round(time.Millisecond)))
		}
		if err := stalled(); err != nil {
			why = append(why, err.Error())
		}
		if len(why) == 0 {
			return nil
		}
		return errors.New("daemon: " + strings.Join(why, "; "))
	}
}
