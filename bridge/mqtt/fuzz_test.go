package mqtt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// FuzzDevicePublish feeds topics, response topics and payloads through
// checkPublish, which OnPublish runs on every device message to learn
// what it is. It must never panic, must accept only a record of the
// device on the topic's stream, a config report of the device, or a
// request with a well-formed argument whose answer goes under the
// device's prefix, and must refuse with a reason a device can act on.
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
		f.Add("lg/v1/dev/data/temp", "", env)
		f.Add("lg/v1/dev/data/other", "", env)
		f.Add("lg/v1/other/data/temp", "", env)
		f.Add("lg/v1/dev/data/temp", "", env[:len(env)/2])
		f.Add("lg/v1/dev/config/report", "", env)
		report, err := device.SignConfigReport(key, "chain", ledger.ConfigReport{DeviceID: dev, Seq: 8, Version: 1, SHA256: make([]byte, 32)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add("lg/v1/dev/config/report", "", report)
		f.Add("lg/v1/dev/data/temp", "", report)
		f.Add("lg/v1/dev/config/report", "", report[:len(report)-1])
		pub, err := ledger.MarshalPublicKey(key)
		if err != nil {
			f.Fatal(err)
		}
		rekey, err := device.SignRekey(key, "chain", ledger.Rekey{DeviceID: dev, Seq: 9, PublicKey: pub})
		if err != nil {
			f.Fatal(err)
		}
		f.Add("lg/v1/dev/rekey", "", rekey)
		f.Add("lg/v1/dev/rekey", "", env)
		f.Add("lg/v1/dev/data/temp", "", rekey)
	}
	hash := sha256.Sum256([]byte("config"))
	hexHash := hex.EncodeToString(hash[:])
	for _, rt := range []string{"", "lg/v1/dev/answers/1", "lg/v1/other/answers", "lg/v1/dev/+", "lg/v1/dev/#", "lg/v1/dev/\x00", "lg/v1/dev/"} {
		f.Add("lg/v1/dev/config/verify", rt, hash[:])
		f.Add("lg/v1/dev/config/verify", rt, []byte(hexHash))
		f.Add("lg/v1/dev/config/blob/get", rt, []byte{})
		f.Add("lg/v1/dev/config/blob/get", rt, []byte(strings.ToUpper(hexHash)))
		f.Add("lg/v1/dev/keys/get", rt, []byte("other-dev"))
	}
	f.Add("lg/v1/dev/config/verify", "", []byte(hexHash[1:]+"g"))
	f.Add("lg/v1/dev/config/verify", "", []byte{})
	f.Add("lg/v1/dev/config/blob/get", "", hash[:31])
	f.Add("lg/v1/dev/keys/get", "", []byte("a/b"))
	f.Add("lg/v1/dev/keys/get", "", []byte{})
	f.Add("lg/v1/dev/config/verdict", "", hash[:])
	f.Add("lg/v1/dev/config", "", []byte{})
	f.Add("lg/v1/dev/data/", "", []byte{})
	f.Add("lg/v1/dev/data/a/b", "", []byte{0xd2, 0x84})
	f.Add("lg/v1/dev/receipts", "", []byte("x"))
	f.Add("", "", []byte(nil))

	refusals := map[ledger.Reason]bool{
		ledger.ReasonMalformed: true, ledger.ReasonTooLarge: true, ledger.ReasonNotRecord: true, ledger.ReasonNotReport: true,
		ledger.ReasonTopic: true, ledger.ReasonForbidden: true,
	}
	f.Fuzz(func(t *testing.T, topic, responseTopic string, payload []byte) {
		if len(topic) > 2*maxTopicBytes || len(responseTopic) > 2*maxTopicBytes || len(payload) > 2*maxTx {
			return
		}
		m, err := checkPublish(dev, topic, responseTopic, payload, maxTx)
		if m.answerTo != "" && (!m.kind.request() || !strings.HasPrefix(m.answerTo, "lg/v1/dev/") || !validTopicName(m.answerTo)) {
			t.Fatalf("a %s answered on %q", m.kind, m.answerTo)
		}
		if err != nil {
			if m.tx != nil || m.arg != nil {
				t.Fatal("a tx or argument and an error")
			}
			reason := ledger.ReasonOf(err)
			if !refusals[reason] {
				t.Fatalf("refused with reason %q: %v", reason, err)
			}
			if codeOf(reason).Code < 0x80 {
				t.Fatalf("reason %s maps to a success code", reason)
			}
			if _, err := json.Marshal(Reject{TxID: rejectTxID(payload, m, err), Reason: reason, Error: clip(err.Error(), maxRejectError)}); err != nil {
				t.Fatal(err)
			}
			return
		}
		want := responseTopic
		if want == "" {
			want = "lg/v1/dev/" + m.kind.answerLevel()
		}
		switch m.kind {
		case kindRecord, kindReport, kindRekey:
			tx := m.tx
			if tx.Author != dev || tx.Body.Subject() != dev || m.arg != nil || m.answerTo != "" {
				t.Fatalf("accepted %s by %s about %s on %s", tx.Body.Kind, tx.Author, tx.Body.Subject(), topic)
			}
			if m.kind == kindRecord && (tx.Body.Kind != ledger.KindRecord || topic != "lg/v1/dev/data/"+tx.Body.Record.Stream) ||
				m.kind == kindReport && (tx.Body.Kind != ledger.KindConfigReport || topic != "lg/v1/dev/config/report") &&
					(tx.Body.Kind != ledger.KindFirmwareReport || topic != "lg/v1/dev/firmware/report") ||
				m.kind == kindRekey && (tx.Body.Kind != ledger.KindRekey || topic != "lg/v1/dev/rekey") {
				t.Fatalf("accepted a %s tx as a %s on %s", tx.Body.Kind, m.kind, topic)
			}
			if len(payload) > maxTx || ledger.TxID(payload) != tx.ID {
				t.Fatal("accepted tx is not the payload")
			}
		case kindVerify, kindBlob:
			if m.tx != nil || m.answerTo != want {
				t.Fatalf("%s answered on %q, want %q", m.kind, m.answerTo, want)
			}
			wantTopic := map[kind]string{kindVerify: "lg/v1/dev/config/verify", kindBlob: "lg/v1/dev/config/blob/get"}[m.kind]
			ok := len(m.arg) == 32 && (bytes.Equal(m.arg, payload) || strings.EqualFold(hex.EncodeToString(m.arg), string(payload))) ||
				m.kind == kindBlob && m.arg == nil && len(payload) == 0
			if topic != wantTopic || !ok {
				t.Fatalf("%s on %s: argument %x from payload %q", m.kind, topic, m.arg, payload)
			}
		case kindKeys:
			if m.tx != nil || m.answerTo != want || topic != "lg/v1/dev/keys/get" || !ledger.ValidID(string(m.arg)) || !bytes.Equal(m.arg, payload) {
				t.Fatalf("keys on %s answered on %q: argument %q", topic, m.answerTo, m.arg)
			}
		case kindProof:
			if m.tx != nil || m.answerTo != want || topic != "lg/v1/dev/cluster/proof/get" || len(payload) != 0 {
				t.Fatalf("proof on %s answered on %q with payload %q", topic, m.answerTo, payload)
			}
		default:
			t.Fatalf("accepted a publish of kind %d", m.kind)
		}
	})
}

// FuzzSizeGuard: the framing scan reaches the same verdict, at the same
// packet, however the client's bytes are split across reads, and never
// panics.
func FuzzSizeGuard(f *testing.F) {
	f.Add([]byte{0x30, 3, 0, 1, 'x', 0xc0, 0}, uint8(3), uint16(6))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, uint8(1), uint16(100))
	f.Add([]byte{0x30, 0x80, 0x01}, uint8(2), uint16(100))
	f.Fuzz(func(t *testing.T, stream []byte, split uint8, max uint16) {
		if len(stream) > 4096 || max < 2 {
			return
		}
		whole := &sizeGuard{max: uint32(max)}
		wantStart, wantOver := whole.scan(stream)
		parts := &sizeGuard{max: uint32(max)}
		step := int(split%16) + 1
		for off := 0; off < len(stream); off += step {
			end := min(off+step, len(stream))
			start, over := parts.scan(stream[off:end])
			if over {
				if !wantOver {
					t.Fatalf("split by %d: over at offset %d, whole stream is not", step, off)
				}
				if start >= 0 && off+start != wantStart {
					t.Fatalf("split by %d: packet at %d, whole stream says %d", step, off+start, wantStart)
				}
				return
			}
			if parts.max == 0 { // malformed length: stopped watching
				return
			}
		}
		if wantOver {
			t.Fatalf("split by %d: not over, whole stream is at %d", step, wantStart)
		}
	})
}
