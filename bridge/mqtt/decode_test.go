package mqtt

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
)

// TestDecodeOnce: a record published over MQTT is decoded once on its
// way from the PUBLISH to its PUBACK, which comes after the durable
// commit: the front end decodes it (bridge.CheckRecord), and the decoded
// tx, with its id, travels on through the Committer, ordering and commit.
func TestDecodeOnce(t *testing.T) {
	node := nodetest.Start(t, nodetest.Options{})
	srv := startServer(t, node, Config{}, nil)
	key := node.Enroll(t, "dev-1", ledger.ES256)
	c := mustConnect(t, tcpAddr(srv), "dev-1", key, node.Genesis.ChainID, connectOpts{})
	const n = 5
	envs := make([][]byte, n)
	for i := range envs {
		envs[i] = c.record(t, "temp", uint64(i+1), nil)
	}
	before := ledger.Decodes()
	for _, env := range envs {
		if r := c.publish(t, dataTopic("dev-1", "temp"), env); r.ReasonCode != 0 {
			t.Fatalf("PUBACK 0x%02x %+v", r.ReasonCode, r.Properties)
		}
	}
	if got := ledger.Decodes() - before; got != n {
		t.Fatalf("%d decodes for %d records committed over MQTT, want one each", got, n)
	}
	for _, env := range envs {
		if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
			t.Fatalf("acknowledged record not in the ledger: %v", err)
		}
	}
}
