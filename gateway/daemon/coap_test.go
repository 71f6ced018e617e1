package daemon

import (
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/coap"
	"github.com/ledgergate/ledgergate/gateway/config"
)

// TestCoAPDefaults keeps the configuration file's defaults of the CoAP
// limits equal to the front end's own.
func TestCoAPDefaults(t *testing.T) {
	c := config.Default().CoAP
	for name, v := range map[string][2]int{
		"max_handshakes":          {c.MaxHandshakes, coap.DefaultMaxHandshakes},
		"max_handshakes_per_addr": {c.MaxHandshakesPerAddr, coap.DefaultMaxHandshakesPerAddr},
		"max_sessions":            {c.MaxSessions, coap.DefaultMaxSessions},
		"max_sessions_per_addr":   {c.MaxSessionsPerAddr, coap.DefaultMaxSessionsPerAddr},
		"max_sessions_per_device": {c.MaxSessionsPerDevice, coap.DefaultMaxSessionsPerDevice},
		"max_transfers":           {c.MaxTransfers, coap.DefaultMaxTransfers},
		"max_transfers_per_addr":  {c.MaxTransfersPerAddr, coap.DefaultMaxTransfersPerAddr},
		"block_timeout":           {int(time.Duration(c.BlockTimeout)), int(coap.DefaultBlockTimeout)},
		"udp_block_timeout":       {int(time.Duration(c.UDPBlockTimeout)), int(coap.DefaultUDPBlockTimeout)},
	} {
		if v[0] != v[1] {
			t.Errorf("coap.%s: config default %d, coap default %d", name, v[0], v[1])
		}
	}
}
