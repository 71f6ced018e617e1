package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/cluster"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/seeds"
	"github.com/ledgergate/ledgergate/webui"
)

// Bounds of the time between two discoveries: the answers' TTL, within
// these; after a failure, the retry.
const (
	minSeedRefresh = 5 * time.Second
	maxSeedRefresh = time.Hour
	seedRetry      = 10 * time.Second
)

// NewSeeds builds the seed discoverer of c; nil if no seed zone is
// configured.
func NewSeeds(c config.Seeds, dataDir string, logger *slog.Logger) (*seeds.Discoverer, error) {
	if len(c.Zones) == 0 {
		return nil, nil
	}
	path := c.AnchorsFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(dataDir, path)
	}
	anchors, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("daemon: seeds trust anchor: %w", err)
	}
	return seeds.New(seeds.Config{Zones: c.Zones, Anchors: string(anchors), Servers: c.Servers, MinSeeds: c.MinSeeds, Now: clock.Now, Logger: logger})
}

// pinned returns the peers of r that are genesis nodes (not self) whose
// seed key pin is their genesis key, with the first address of each; the
// others are logged and left out. The transport pins identities to the
// genesis keys anyway: a pin that disagrees means a wrong or stale zone.
func pinned(g *ledger.Genesis, self string, r *seeds.Result, logger *slog.Logger) map[string]string {
	out := map[string]string{}
	for _, p := range r.Peers {
		n, ok := g.Node(p.ID)
		switch {
		case !ok:
			logger.Warn("seed names a node that is not in the genesis", "node", p.ID, "zones", p.Zones)
		case p.ID == self:
		case sha256.Sum256(n.PublicKey) != p.KeySHA256:
			logger.Warn("seed key pin is not the node's genesis key; ignored", "node", p.ID, "zones", p.Zones)
		case len(p.Addrs) == 0:
		default:
			out[p.ID] = p.Addrs[0]
		}
	}
	return out
}

// discoverPeers keeps the transport's peer addresses up to date from the
// seed zones until ctx ends: it discovers, hands the validated addresses
// to the transport, and does it again when the answers' TTL runs out. A
// failed discovery (a bogus answer, an unreachable server) is logged with
// its reason and the last good addresses stay.
func discoverPeers(ctx context.Context, d *seeds.Discoverer, g *ledger.Genesis, self string, tr *cluster.Transport, st *seedState, logger *slog.Logger) {
	for {
		wait := seedRetry
		res, err := d.Discover(ctx)
		if ctx.Err() == nil {
			st.set(g, res, err)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			logger.Warn("seed discovery failed; keeping the last good peers", "err", err)
		default:
			addrs := pinned(g, self, res, logger)
			for id, addr := range addrs {
				if err := tr.SetPeerAddr(id, addr); err != nil {
					logger.Warn("seed peer address refused", "node", id, "err", err)
				}
			}
			wait = min(max(res.TTL(), minSeedRefresh), maxSeedRefresh)
			logger.Debug("seed discovery", "peers", len(addrs), "next", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// seedState is the outcome of the last discovery, for the dashboard.
type seedState struct {
	cfg config.Seeds
	mu  sync.Mutex
	now webui.Seeds
}

func newSeedState(c config.Seeds) *seedState {
	return &seedState{cfg: c, now: webui.Seeds{Zones: c.Zones, Servers: c.Servers, MinSeeds: c.MinSeeds}}
}

func (s *seedState) set(g *ledger.Genesis, res *seeds.Result, err error) {
	v := webui.Seeds{Zones: s.cfg.Zones, Servers: s.cfg.Servers, MinSeeds: s.cfg.MinSeeds, Checked: time.Now()}
	if err != nil {
		v.Err = err.Error()
	}
	if res != nil {
		for _, p := range res.Peers {
			n, ok := g.Node(p.ID)
			v.Peers = append(v.Peers, webui.SeedPeer{ID: p.ID, Addrs: p.Addrs, Zones: p.Zones,
				Pinned: ok && sha256.Sum256(n.PublicKey) == p.KeySHA256})
		}
		for _, l := range res.Chain {
			v.Chain = append(v.Chain, l.String())
		}
		for _, e := range res.Errors {
			v.Problems = append(v.Problems, e.Error())
		}
		v.Verified = res.Verifications
	}
	s.mu.Lock()
	s.now = v
	s.mu.Unlock()
}

func (s *seedState) get() *webui.Seeds {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.now
	return &v
}
