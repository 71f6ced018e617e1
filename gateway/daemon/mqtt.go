package daemon

import (
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
)

// newMQTT builds the MQTT front end, or returns nil if no listener is configured.
func newMQTT(c config.MQTT, ch *chain.Chain, st *state.State, behind func() bool, dir *directory.Directory, ms bridge.Membership, limiter *bridge.Limiter, claimer bridge.Claimer, logger *slog.Logger, reg prometheus.Registerer) (*mqtt.Server, error) {
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
		Committer: front.Committer(ch, behind), Directory: front.Directory(st, behind), Answers: dir.Answers(), Membership: ms, Limiter: limiter, Logger: logger, Registry: reg,
		Claimer: claimer, Now: clock.Now, // device tokens are checked against the gateway's wall clock
	})
}

// frontListeners are the commit listeners of the front ends (nil if
// off), registered on the chain after the directory's:
//   - the CoAP observers of the committed txs' receipts are notified;
//   - devices whose revocation or re-key just committed are
//     disconnected (MQTT): a connection authenticated with a key that is
//     no longer the device's must not stay up;
//   - the retained manifests are republished (MQTT) and their observers
//     notified (CoAP) for the devices whose configuration or firmware
//     offer changed.
//
// They run on the commit path: the slow parts run on other goroutines.
func frontListeners(m *mqtt.Server, c *coap.Server, dir *directory.Directory) []func(*ledger.Block, []*ledger.Tx) {
	var ls []func(*ledger.Block, []*ledger.Tx)
	if c != nil {
		ls = append(ls, func(_ *ledger.Block, txs []*ledger.Tx) {
			ids := make([][32]byte, len(txs))
			for i, tx := range txs {
				ids[i] = tx.ID
			}
			c.Committed(ids)
		})
	}
	if m != nil {
		ls = append(ls, func(_ *ledger.Block, txs []*ledger.Tx) {
			for _, tx := range txs {
				switch tx.Body.Kind {
				case ledger.KindRevoke:
					m.Revoked(tx.Body.Subject())
				case ledger.KindRekey:
					m.Rekeyed(tx.Body.Subject(), tx.ID)
				}
			}
		})
	}
	if m != nil || c != nil {
		ls = append(ls, func(_ *ledger.Block, txs []*ledger.Tx) {
			ids := dir.Affected(txs)
			if len(ids) == 0 {
				return
			}
			if m != nil {
				m.Changed(ids)
			}
			if c != nil {
				c.Changed(ids)
			}
		})
	}
	return ls
}
