package daemon

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/egress"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// EgressDir holds the egress connectors' cursors, under the data directory.
const EgressDir = "egress"

// newEgress makes the egress connectors of cfg; nil if there are none.
func newEgress(cfg config.Config, g *ledger.Genesis, node string, blog *ledger.Log, idx *index.Index, logger *slog.Logger, reg prometheus.Registerer) (*egress.Manager, error) {
	if len(cfg.Egress) == 0 {
		return nil, nil
	}
	for i, e := range cfg.Egress {
		for _, n := range e.Nodes {
			if _, ok := g.Node(n); !ok {
				// A typo here would leave the connector run by no gateway.
				logger.Warn("egress connector names a node that is not in the genesis", "egress", e.Name, "index", i, "node", n)
			}
		}
	}
	path := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cfg.DataDir, p)
	}
	cs := make([]egress.Config, len(cfg.Egress))
	for i, e := range cfg.Egress {
		cs[i] = egress.Config{
			Name: e.Name, Kind: e.Kind, Devices: e.Devices, Groups: e.Groups, Streams: e.Streams, Nodes: e.Nodes,
			Start: e.Start, URL: e.URL, Batch: e.Batch, Timeout: time.Duration(e.Timeout), Window: e.Window,
			CAFile: path(e.CAFile), CertFile: path(e.CertFile), KeyFile: path(e.KeyFile),
			Protocol: e.Protocol, Topic: e.Topic, ClientID: e.ClientID, Username: e.Username, PasswordFile: path(e.PasswordFile),
			Stream: e.Stream, Subject: e.Subject, CredsFile: path(e.CredsFile), TokenFile: path(e.TokenFile),
			SecretFile: path(e.SecretFile),
		}
		if cs[i].ClientID == "" {
			// Unique per gateway: two gateways that export under one
			// client id would take each other's session.
			cs[i].ClientID = "ledgergate-" + node + "-" + e.Name
		}
	}
	return egress.New(cs, egress.Deps{
		Dir: filepath.Join(cfg.DataDir, EgressDir), Node: node, Blocks: blog, Index: idx, Logger: logger, Registry: reg,
	})
}
