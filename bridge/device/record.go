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

// SignRekey signs, with key, the device's current key, a device.rekey tx
// for device rk.DeviceID: it replaces the signing key with rk.PublicKey
// (a DER SubjectPublicKeyInfo) and the encryption key with rk.EncKey
// (none if empty). rk.Seq comes from the counter of the device's records.
func SignRekey(key crypto.Signer, chainID string, rk ledger.Rekey) ([]byte, error) {
	return ledger.SignTx(key, rk.DeviceID, &ledger.Body{Kind: ledger.KindRekey, ChainID: chainID, Rekey: &rk})
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
