package device

import (
	"crypto"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// SignRecord signs a data.record tx for device id on chain chainID.
func SignRecord(key crypto.Signer, chainID string, rec ledger.Record) ([]byte, error) {
	return ledger.SignTx(key, rec.DeviceID, &ledger.Body{Kind: ledger.KindRecord, ChainID: chainID, Record: &rec})
}

// VerifyReceipt decodes a receipt and verifies it offline against the genesis.
func VerifyReceipt(g *ledger.Genesis, receipt []byte) (*ledger.Receipt, error) {
	r, err := ledger.DecodeReceipt(receipt)
	if err != nil {
		return nil, err
	}
	if err := ledger.VerifyReceipt(g, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Token makes the MQTT password of device id: a token valid for ttl.
func Token(key crypto.Signer, id, chainID string, ttl time.Duration) (string, error) {
	return ledger.SignToken(key, id, chainID, time.Now(), ttl)
}
