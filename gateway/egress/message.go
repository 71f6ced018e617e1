package egress

import (
	"encoding/hex"
	"encoding/json"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Message is what a connector sends for one committed record
// (docs/egress.md, "Message").
type Message struct {
	ChainID     string `json:"chain_id"`
	TxID        string `json:"tx_id"` // hex SHA-256 of the envelope: the de-duplication key
	Block       uint64 `json:"block"`
	Index       uint64 `json:"index"`      // position of the tx in its block
	BlockTime   int64  `json:"block_time"` // proposer's clock, Unix ms
	Device      string `json:"device"`
	Stream      string `json:"stream"`
	Seq         uint64 `json:"seq"`
	Time        int64  `json:"time"` // device clock, Unix ms
	ContentType string `json:"content_type"`
	// Exactly one of Payload and PayloadBase64 is set for a non-empty
	// payload: Payload holds it as a JSON value (application/json) or a
	// string (text/*), PayloadBase64 any other bytes.
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payload_base64,omitempty"`
	// Envelope is the signed COSE_Sign1 tx: its SHA-256 is TxID, and it
	// carries the device's signature.
	Envelope []byte `json:"envelope_base64"`
	// Receipt is the receipt's CBOR: it verifies against the genesis alone.
	Receipt []byte `json:"receipt_base64"`

	at Cursor // the connector's cursor once this message is acknowledged
}

// newMessage makes the message of record tx, at index i of block b.
func newMessage(b *ledger.Block, tree *ledger.Tree, i uint64, tx *ledger.Tx) (*Message, error) {
	rc, err := ledger.NewReceipt(b, tree, i)
	if err != nil {
		return nil, err
	}
	enc, err := rc.Encode()
	if err != nil {
		return nil, err
	}
	r := tx.Body.Record
	m := &Message{
		ChainID: b.Header.ChainID, TxID: hex.EncodeToString(tx.ID[:]), Block: b.Header.Height, Index: i,
		BlockTime: b.Header.Time, Device: r.DeviceID, Stream: r.Stream, Seq: r.Seq, Time: r.Time,
		ContentType: r.ContentType, Envelope: tx.Envelope, Receipt: enc,
	}
	if len(r.Payload) > 0 {
		m.Payload, m.PayloadBase64 = payload(r.ContentType, r.Payload)
	}
	return m, nil
}

// payload returns p as a JSON value when its content type says JSON and it
// is valid JSON, as a JSON string when it is UTF-8 text, else as bytes
// (base64 in the message): a consumer never gets bytes it cannot read back.
func payload(contentType string, p []byte) (json.RawMessage, []byte) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, p
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if json.Valid(p) {
			return json.RawMessage(p), nil
		}
	case strings.HasPrefix(mt, "text/"):
		if utf8.Valid(p) {
			s, err := json.Marshal(string(p))
			if err == nil {
				return s, nil
			}
		}
	}
	return nil, p
}
