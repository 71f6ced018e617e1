package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestDeviceRekeyCLI: `device rekey` signs a re-key with the old key,
// submits it and waits for the commit; then the new key publishes, its
// counter going on from the re-key's seq, and the old key is refused.
func TestDeviceRekeyCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	g := startGateway(t, data)
	api, dataFlag, genesis := "--api="+g.api, "--data="+data, filepath.Join(data, "genesis.json")
	broker := "--broker=tcp://" + g.mqtt
	if err := os.WriteFile(filepath.Join(dir, "reading.json"), []byte(`{"temp": 21.5}`), 0o644); err != nil {
		t.Fatal(err)
	}
	publish := func(key string) (string, string, int) {
		return cli(t, dir, "device", "publish", "--key", key, "--id", "sensor-1", "--in", "reading.json",
			"--genesis", genesis, broker, "--timeout", "60s")
	}

	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "sensor-1")
	mustCLI(t, dir, "device", "enroll", "--id", "sensor-1", "--pubkey", "sensor-1.pub", "--enc-pubkey", "sensor-1.enc.pub", api, dataFlag)
	if out, errs, code := publish("sensor-1"); code != 0 || !strings.Contains(out, "committed: seq 1,") {
		t.Fatalf("publish with the enrolled key: exit %d\n%s%s", code, out, errs)
	}
	before := mustCLI(t, dir, "device", "keys", "--id", "sensor-1", api, "--genesis", genesis)

	// A new key without an encryption key is refused unless asked for.
	mustCLI(t, dir, "device", "keygen", "--alg", "ed25519", "--out", "sensor-1.next")
	if err := os.Rename(filepath.Join(dir, "sensor-1.next.enc.pub"), filepath.Join(dir, "hidden.enc.pub")); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := cli(t, dir, "device", "rekey", "--key", "sensor-1", "--id", "sensor-1", "--new-key", "sensor-1.next", api); code == 0 || !strings.Contains(errs, "--no-enc-key") {
		t.Fatalf("rekey without NEW.enc.pub: exit %d: %s", code, errs)
	}
	if err := os.Rename(filepath.Join(dir, "hidden.enc.pub"), filepath.Join(dir, "sensor-1.next.enc.pub")); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := cli(t, dir, "device", "rekey", "--key", "sensor-1", "--id", "sensor-1", "--new-key", "sensor-1", api); code != 2 || !strings.Contains(errs, "another key") {
		t.Fatalf("rekey to the same key: exit %d: %s", code, errs)
	}

	out := mustCLI(t, dir, "device", "rekey", "--key", "sensor-1", "--id", "sensor-1", "--new-key", "sensor-1.next", "--receipt-out", "rekey.receipt", api)
	if !regexp.MustCompile(`device\.rekey sensor-1: committed in block \d+, tx [0-9a-f]{64}, seq 2\n`).MatchString(out) || !strings.Contains(out, "--key sensor-1.next from now on") {
		t.Fatalf("device rekey: %s", out)
	}
	if out := mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "rekey.receipt"); !strings.HasPrefix(out, "valid:") {
		t.Fatalf("rekey receipt: %s", out)
	}
	after := mustCLI(t, dir, "device", "keys", "--id", "sensor-1", api, "--genesis", genesis)
	if !strings.Contains(after, "signing key: EdDSA") || after == before {
		t.Fatalf("device keys after the re-key:\n%s\nbefore:\n%s", after, before)
	}
	if out, errs, code := publish("sensor-1.next"); code != 0 || !strings.Contains(out, "committed: seq 3,") {
		t.Fatalf("publish with the new key: exit %d\n%s%s", code, out, errs)
	}
	// The old key can no longer even connect: its token does not verify.
	if out, errs, code := publish("sensor-1"); code == 0 || !strings.Contains(errs, "connect refused") {
		t.Fatalf("publish with the old key: exit %d\n%s%s", code, out, errs)
	}
	// A record signed with the old key, over the API: bad_signature.
	mustCLI(t, dir, "device", "sign", "--key", "sensor-1", "--id", "sensor-1", "--seq", "9", "--in", "reading.json", "--genesis", genesis, "--out", "old.cose")
	if _, errs, code := cli(t, dir, "tx", "submit", "old.cose", api); code == 0 || !strings.Contains(errs, "(bad_signature,") {
		t.Fatalf("record signed with the old key: exit %d: %s", code, errs)
	}
}

// TestRekeyOverMQTT: a device re-keys over MQTT with the SDK and its
// session continues: on the same connection, records signed with the new
// key commit (PUBACK success) and a record signed with the old key is
// refused as bad_signature. Afterwards only the new key connects.
func TestRekeyOverMQTT(t *testing.T) {
	g := startGateway(t, filepath.Join(t.TempDir(), "data"))
	a := loadAdmin(t, g)
	oldKey := a.enroll(t, g.api, "dev-1", ledger.ES256)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := device.Dial(ctx, "dev-1", oldKey, a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seq := device.OpenSeq(filepath.Join(t.TempDir(), "dev-1.seq"))
	rec := ledger.Record{Stream: "s", Time: time.Now().UnixMilli(), Payload: []byte("before")}
	if _, err := cl.PublishRecord(ctx, seq, rec); err != nil {
		t.Fatalf("record with the enrolled key: %v", err)
	}

	newKey, err := device.GenerateKey(ledger.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := device.GenerateEncKey()
	if err != nil {
		t.Fatal(err)
	}
	encPub, err := device.EncPublicKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	env, err := cl.Rekey(ctx, seq, newKey, encPub)
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	receipt, err := cl.Receipt(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.VerifyReceipt(loadGenesis(t, g), receipt); err != nil {
		t.Fatalf("rekey receipt: %v", err)
	}
	var dev struct {
		Alg     string `json:"alg"`
		LastSeq uint64 `json:"last_seq"`
	}
	if code := getJSON(t, g.api, "/api/v1/devices/dev-1", &dev); code != http.StatusOK || dev.LastSeq != 2 {
		t.Fatalf("device after the re-key: %d %+v", code, dev)
	}

	// The same connection goes on with the new key.
	for i := 0; i < 3; i++ {
		rec.Payload = []byte("after")
		if _, err := cl.PublishRecord(ctx, seq, rec); err != nil {
			t.Fatalf("record %d with the new key on the same connection: %v", i, err)
		}
	}
	// A record signed with the old key, on the same connection: refused.
	n, err := seq.Next()
	if err != nil {
		t.Fatal(err)
	}
	old, err := device.SignRecord(oldKey, a.chainID, ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: n, Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = cl.Publish(ctx, "s", old)
	var re *device.RefusedError
	if !errors.As(err, &re) || re.Reason != "bad_signature" {
		t.Fatalf("record signed with the old key: %v, want bad_signature", err)
	}
	// A replay of a seq used before the re-key, signed with the new key,
	// is refused with the last seq.
	replay, err := device.SignRecord(newKey, a.chainID, ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: 1, Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Publish(ctx, "s", replay); !errors.As(err, &re) || re.Reason != "replay" || re.LastSeq == nil || *re.LastSeq != 5 {
		t.Fatalf("replay after the re-key: %v, want replay with last seq 5", err)
	}
	// The old key cannot connect any more.
	if _, err := device.Dial(ctx, "dev-1", oldKey, a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err == nil || !strings.Contains(err.Error(), "connect refused") {
		t.Fatalf("dial with the old key: %v", err)
	}
	cl2, err := device.Dial(ctx, "dev-1", newKey, a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatalf("dial with the new key: %v", err)
	}
	cl2.Close()
}
