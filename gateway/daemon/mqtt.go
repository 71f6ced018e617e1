package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/coap"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/front"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
	"github.com/ledgergate/ledgergate/webui"
)

// newMQTT builds the MQTT front end, or returns nil if no listener is configured.
func newMQTT(c config.MQTT, ch *chain.Chain, st *state.State, behind func() bool, dir *directory.Directory, limiter *bridge.Limiter, logger *slog.Logger, reg prometheus.Registerer) (*mqtt.Server, error) {
	if c.Listen == "" && c.TLSListen == "" {
		return nil, nil
	}
	cfg := mqtt.Config{
		Listen: c.Listen, TLSListen: c.TLSListen, MaxPacketBytes: c.MaxPacketBytes,
		MaxClients: c.MaxClients, ReceiveMaximum: c.ReceiveMaximum,
		MaxDeviceSessions: c.MaxDeviceSessions, MaxSubscriptions: c.MaxSubscriptions,
	}
	if c.TLSListen != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("daemon: mqtt tls: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return mqtt.New(cfg, mqtt.Deps{
		Committer: front.Committer(ch, behind), Directory: front.Directory(st, behind), Answers: dir.Answers(), Limiter: limiter, Logger: logger, Registry: reg,
		Now: clock.Now, // device tokens are checked against the gateway's wall clock
	})
}

// onCommit returns the chain's OnCommit hook:
//   - it disconnects devices whose revocation or re-key just committed: a
//     connection authenticated with a key that is no longer the device's
//     must not stay up;
//   - it republishes the retained manifests (MQTT) and notifies their
//     observers (CoAP) for the devices whose configuration or firmware
//     offer changed;
//   - it has the blobs of new configurations fetched from peers;
//   - it notifies the CoAP observers of the committed txs' receipts.
//
// It runs on the commit path: the slow parts run on other goroutines.
func onCommit(ctx context.Context, front func() *mqtt.Server, coapFront func() *coap.Server, dir func() *directory.Directory,
	ui func() *webui.Server) func(*ledger.Block, []*ledger.Tx) {
	return func(b *ledger.Block, txs []*ledger.Tx) {
		if u := ui(); u != nil {
			u.Committed(b, txs)
		}
		s, c, d := front(), coapFront(), dir()
		if d != nil {
			d.Committed(ctx, txs)
		}
		if c != nil {
			ids := make([][32]byte, len(txs))
			for i, tx := range txs {
				ids[i] = tx.ID
			}
			c.Committed(ids) // CoAP observers of these receipts
		}
		if s != nil {
			for _, tx := range txs {
				switch tx.Body.Kind {
				case ledger.KindRevoke:
					s.Revoked(tx.Body.Subject())
				case ledger.KindRekey:
					s.Rekeyed(tx.Body.Subject(), tx.ID)
				}
			}
		}
		if d == nil || s == nil && c == nil {
			return
		}
		if ids := d.Affected(txs); len(ids) > 0 {
			if s != nil {
				s.Changed(ids)
			}
			if c != nil {
				c.Changed(ids)
			}
		}
	}
}
