package daemon

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/coap"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/front"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// newCoAP builds the CoAP front end, or returns nil if no listener is
// configured. It serves devices the directory's answers and firmware
// images, as the MQTT front end does, and shares the budget of records
// waiting to commit with it.
func newCoAP(c config.CoAP, dataDir string, ch *chain.Chain, st *state.State, behind func() bool, dir *directory.Directory, ms bridge.Membership,
	limiter *bridge.Limiter, logger *slog.Logger, reg prometheus.Registerer) (*coap.Server, error) {
	if c.Listen == "" && c.DTLSListen == "" {
		return nil, nil
	}
	cfg := coap.Config{Listen: c.Listen, DTLSListen: c.DTLSListen,
		MaxHandshakes: c.MaxHandshakes, MaxHandshakesPerAddr: c.MaxHandshakesPerAddr,
		MaxSessions: c.MaxSessions, MaxSessionsPerAddr: c.MaxSessionsPerAddr, MaxSessionsPerDevice: c.MaxSessionsPerDevice,
		MaxTransfers: c.MaxTransfers, MaxTransfersPerAddr: c.MaxTransfersPerAddr,
		BlockTimeout: time.Duration(c.BlockTimeout), UDPBlockTimeout: time.Duration(c.UDPBlockTimeout)}
	if c.DTLSListen != "" {
		cert, err := dtlsCertificate(c, dataDir)
		if err != nil {
			return nil, err
		}
		cfg.DTLSCertificate = &cert
	}
	return coap.New(cfg, coap.Deps{
		Committer: front.Committer(ch, behind), Directory: front.Directory(st, behind), Receipts: ch,
		Answers: dir.Answers(), Images: dir, Membership: ms,
		Limiter: limiter, Logger: logger, Registry: reg,
	})
}
