package egress_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/egress"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// verify checks m with the genesis alone and returns the record it proves
// (docs/egress.md, "Verifying a message").
func verify(g *ledger.Genesis, m *egress.Message) (*ledger.Record, error) {
	id := sha256.Sum256(m.Envelope)
	if hex.EncodeToString(id[:]) != m.TxID {
		return nil, fmt.Errorf("tx id %s is not the envelope's hash", m.TxID)
	}
	rc, err := device.VerifyReceipt(g, m.Receipt) // decode + ledger.VerifyReceipt
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rc.Tx, m.Envelope) || rc.Header.Height != m.Block || rc.Index != m.Index {
		return nil, fmt.Errorf("the receipt proves another tx or position")
	}
	tx, err := ledger.DecodeTx(m.Envelope, g.Params.MaxTxBytes)
	if err != nil || tx.Body.Kind != ledger.KindRecord {
		return nil, fmt.Errorf("not a record: %v", err)
	}
	return tx.Body.Record, nil
}

// A consumer verifies each message it receives against the chain's genesis.
func Example_verify() {
	gj, err := os.ReadFile("genesis.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := ledger.ParseGenesis(gj)
	if err != nil {
		fmt.Println(err)
		return
	}
	var m egress.Message
	if err := json.Unmarshal([]byte(`{"tx_id": "..."}`), &m); err != nil {
		fmt.Println(err)
		return
	}
	rec, err := verify(g, &m)
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	fmt.Println(rec.DeviceID, rec.Seq)
}
