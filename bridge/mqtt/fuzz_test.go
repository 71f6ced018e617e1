package mqtt

import (
	"encoding/json"
	"testing"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// FuzzDevicePublish feeds topics and payloads through checkPublish, the
// check OnPublish runs on every device message before submitting it. It
// must never panic, must accept only a record of the device on the
// topic's stream, and must refuse with a reason a device can act on.
func FuzzDevicePublish(f *testing.F) {
	const dev, maxTx = "dev", 4096
	for _, alg := range []ledger.Alg{ledger.ES256, ledger.EdDSA} {
		key, err := device.GenerateKey(alg)
		if err != nil {
			f.Fatal(err)
		}
		env, err := device.SignRecord(key, "chain", ledger.Record{DeviceID: dev, Stream: "temp", Seq: 7, Time: 1, Payload: []byte("21.5")})
		if err != nil {
			f.Fatal(err)
		}
		f.Add("lg/v1/dev/data/temp", env)
		f.Add("lg/v1/dev/data/other", env)
		f.Add("lg/v1/other/data/temp", env)
		f.Add("lg/v1/dev/data/temp", env[:len(env)/2])
	}
	f.Add("lg/v1/dev/data/", []byte{})
	f.Add("lg/v1/dev/data/a/b", []byte{0xd2, 0x84})
	f.Add("lg/v1/dev/receipts", []byte("x"))
	f.Add("", []byte(nil))

	refusals := map[string]bool{
		bridge.ReasonMalformed: true, bridge.ReasonTooLarge: true, bridge.ReasonNotRecord: true, bridge.ReasonTopic: true,
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		if len(topic) > 2*maxTopicBytes || len(payload) > 2*maxTx {
			return
		}
		tx, err := checkPublish(dev, topic, payload, maxTx)
		if err != nil {
			if tx != nil {
				t.Fatal("a tx and an error")
			}
			reason := bridge.ReasonOf(err)
			if !refusals[reason] {
				t.Fatalf("refused with reason %q: %v", reason, err)
			}
			if codeOf(reason).Code < 0x80 {
				t.Fatalf("reason %s maps to a success code", reason)
			}
			if _, err := json.Marshal(Reject{TxID: rejectTxID(payload, err), Reason: reason, Error: clip(err.Error(), maxRejectError)}); err != nil {
				t.Fatal(err)
			}
			return
		}
		if tx.Author != dev || tx.Body.Kind != ledger.KindRecord || topic != "lg/v1/dev/data/"+tx.Body.Record.Stream {
			t.Fatalf("accepted %s by %s on %s", tx.Body.Kind, tx.Author, topic)
		}
		if len(payload) > maxTx || ledger.TxID(payload) != tx.ID {
			t.Fatal("accepted tx is not the payload")
		}
	})
}
