package coap

import (
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestDecodeOnce: a record posted over CoAP is decoded once on its way
// from the POST to its 2.04, which comes after the durable commit: the
// front end decodes it (it learns the device from the record's author),
// and the decoded tx, with its id, travels on through the Committer,
// ordering and commit.
func TestDecodeOnce(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	cc := dialUDP(t, s.udpAddr, blockwise.SZX1024)
	const n = 5
	envs := make([][]byte, n)
	for i := range envs {
		envs[i] = d.record(t, "temp", uint64(i+1), nil)
	}
	before := ledger.Decodes()
	for _, env := range envs {
		wantCode(t, post(t, cc, "temp", env), codes.Changed)
	}
	if got := ledger.Decodes() - before; got != n {
		t.Fatalf("%d decodes for %d records committed over CoAP, want one each", got, n)
	}
	for _, env := range envs {
		if _, err := node.Chain.Receipt(ledger.TxID(env)); err != nil {
			t.Fatalf("acknowledged record not in the ledger: %v", err)
		}
	}
}
