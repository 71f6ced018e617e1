package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestReadmeFirstStepsThenPublish is the README's first steps in order,
// with the binary against a gateway process: keygen, enroll, sign seq 1
// offline, submit, verify the receipt, then `device publish`, which goes
// on above seq 1. A lost counter file is resynced from the gateway's
// replay refusal; an explicit --seq that was used is refused with the
// last seq in the error.
func TestReadmeFirstStepsThenPublish(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	g := startGateway(t, data)
	api, dataFlag, genesis := "--api="+g.api, "--data="+data, filepath.Join(data, "genesis.json")
	broker := "--broker=tcp://" + g.mqtt

	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "sensor-1")
	mustCLI(t, dir, "device", "enroll", "--id", "sensor-1", "--pubkey", "sensor-1.pub", api, dataFlag)
	if err := os.WriteFile(filepath.Join(dir, "reading.json"), []byte(`{"temp": 21.5}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "device", "sign", "--key", "sensor-1", "--id", "sensor-1", "--seq", "1", "--stream", "temp",
		"--in", "reading.json", "--content-type", "application/json", "--genesis", genesis, "--out", "msg1.cose")
	mustCLI(t, dir, "tx", "submit", "msg1.cose", "--receipt-out", "msg1.receipt", api)
	if out := mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "msg1.receipt"); !strings.HasPrefix(out, "valid:") {
		t.Fatalf("receipt verify: %s", out)
	}
	mustCLI(t, dir, "device", "list", api)

	publish := func(extra ...string) (string, string, int) {
		args := append([]string{"device", "publish", "--key", "sensor-1", "--id", "sensor-1", "--stream", "temp",
			"--in", "reading.json", "--receipt-out", "r.cbor", "--genesis", genesis, broker, "--timeout", "60s"}, extra...)
		return cli(t, dir, args...)
	}
	if out, errs, code := publish(); code != 0 || !strings.Contains(out, "committed: seq 2,") {
		t.Fatalf("device publish after the first steps: exit %d\n%s%s", code, out, errs)
	}
	if out := mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "r.cbor"); !strings.HasPrefix(out, "valid:") {
		t.Fatalf("receipt verify: %s", out)
	}

	// The counter file is lost: the first try reuses seq 1, the gateway
	// refuses it as a replay with its last seq (2), and publish goes on
	// at 3, once.
	if err := os.Remove(filepath.Join(dir, "sensor-1.seq")); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := publish(); code != 0 || !strings.Contains(out, "committed: seq 3,") {
		t.Fatalf("device publish with a lost counter: exit %d\n%s%s", code, out, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sensor-1.seq")); err != nil || strings.TrimSpace(string(b)) != "3" {
		t.Fatalf("sensor-1.seq: %q %v, want 3", b, err)
	}

	// An explicit seq is not resynced: the error says what to use.
	if out, errs, code := publish("--seq", "2"); code == 0 || !strings.Contains(errs, "replay") || !strings.Contains(errs, "last seq is 3: use --seq 4") {
		t.Fatalf("device publish --seq 2: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := publish("--seq", "7"); code != 0 || !strings.Contains(out, "committed: seq 7,") {
		t.Fatalf("device publish --seq 7: exit %d\n%s%s", code, out, errs)
	}
	// device sign without --seq goes on from the counter, which the
	// explicit seq moved.
	if out := mustCLI(t, dir, "device", "sign", "--key", "sensor-1", "--id", "sensor-1", "--in", "reading.json",
		"--genesis", genesis, "--out", "msg8.cose"); !strings.Contains(out, "seq 8,") {
		t.Fatalf("device sign without --seq: %s", out)
	}
	mustCLI(t, dir, "tx", "submit", "msg8.cose", api)
}

// TestReplayLastSeqOverHTTP: the API's replay refusal carries last_seq,
// and `tx submit` says what to use.
func TestReplayLastSeqOverHTTP(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "dev-1", ledger.EdDSA)
	for seq := uint64(1); seq <= 4; seq++ {
		if code, reason, _, err := post(context.Background(), g.api, sign(t, key, a.chainID, seq)); code != http.StatusOK {
			t.Fatalf("seq %d: %d %s %v", seq, code, reason, err)
		}
	}
	// Seq 3 again, in another record (the same one would get its receipt).
	replay, err := device.SignRecord(key, a.chainID, ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: 3, Payload: []byte("again")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(g.api+"/api/v1/txs", "application/cose", bytes.NewReader(replay))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Reason  string  `json:"reason"`
		Error   string  `json:"error"`
		LastSeq *uint64 `json:"last_seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusConflict || body.Reason != "replay" || body.LastSeq == nil || *body.LastSeq != 4 {
		t.Fatalf("replay: HTTP %d %+v, want 409 replay with last_seq 4", resp.StatusCode, body)
	}
	if err := os.WriteFile(filepath.Join(dir, "replay.cose"), replay, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := cli(t, dir, "tx", "submit", "replay.cose", "--api="+g.api); code == 0 || !strings.Contains(errs, "(replay, HTTP 409); the device's last seq is 4: sign again with --seq 5") {
		t.Fatalf("tx submit of a replay: exit %d: %s", code, errs)
	}
	// Other refusals carry none.
	stranger, _ := device.GenerateKey(ledger.EdDSA)
	resp2, err := http.Post(g.api+"/api/v1/txs", "application/cose", bytes.NewReader(sign(t, stranger, a.chainID, 9)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var other map[string]any
	if err := json.NewDecoder(resp2.Body).Decode(&other); err != nil {
		t.Fatal(err)
	}
	if _, has := other["last_seq"]; has || other["reason"] != "bad_signature" {
		t.Fatalf("forged record: %v, want bad_signature without last_seq", other)
	}
}
