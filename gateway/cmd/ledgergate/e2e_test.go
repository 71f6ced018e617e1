package main

import (
	"context"
	"crypto"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestEndToEnd is the README's first steps, with the binary: keys, enroll,
// sign, submit, offline receipt verification, revoke and replay.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	g := startGateway(t, data)
	if !strings.Contains(g.log(), "software key, not hardware-backed") {
		t.Errorf("log does not flag the software key:\n%s", g.log())
	}
	var st struct {
		KeyHardware bool   `json:"key_hardware"`
		Key         string `json:"key"`
		Height      uint64 `json:"height"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)
	if st.KeyHardware || !strings.Contains(st.Key, "software key, not hardware-backed") {
		t.Errorf("status does not flag the software key: %+v", st)
	}

	// Before any member change the membership proof is the empty one
	// (docs/protocol.md 10.2), and receipt verify takes it.
	req, _ := http.NewRequest("GET", g.api+"/api/v1/cluster/proof", nil)
	req.Header.Set("Accept", "application/cbor")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(proof) != "\x80" {
		t.Fatalf("GET /api/v1/cluster/proof: %d %x", resp.StatusCode, proof)
	}
	os.WriteFile(filepath.Join(dir, "proof.cbor"), proof, 0o644)

	api := "--api=" + g.api
	dataFlag := "--data=" + data
	genesis := filepath.Join(data, "genesis.json")
	for _, alg := range []string{"es256", "ed25519"} {
		mustCLI(t, dir, "device", "keygen", "--alg", alg, "--out", alg)
		if fi, err := os.Stat(filepath.Join(dir, alg)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("private key mode: %v %v", fi.Mode(), err)
		}
		mustCLI(t, dir, "device", "enroll", "--id", "sensor-"+alg, "--pubkey", alg+".pub", api, dataFlag)
	}
	os.WriteFile(filepath.Join(dir, "reading.json"), []byte(`{"temp":21.5}`), 0o644)
	for _, alg := range []string{"es256", "ed25519"} {
		id := "sensor-" + alg
		mustCLI(t, dir, "device", "sign", "--key", alg, "--id", id, "--seq", "1", "--stream", "temp",
			"--in", "reading.json", "--content-type", "application/json", "--genesis", genesis, "--out", alg+".msg")
		out := mustCLI(t, dir, "tx", "submit", alg+".msg", "--receipt-out", alg+".receipt", api)
		if !strings.Contains(out, "committed") {
			t.Fatalf("submit: %s", out)
		}
		out = mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, alg+".receipt")
		if !strings.HasPrefix(out, "valid:") || !strings.Contains(out, id) {
			t.Fatalf("receipt verify: %s", out)
		}
		if out := mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "--proof", "proof.cbor", alg+".receipt"); !strings.HasPrefix(out, "valid:") {
			t.Fatalf("receipt verify --proof: %s", out)
		}
	}

	// The record is in the ledger, under its device, with its block.
	env, _ := os.ReadFile(filepath.Join(dir, "es256.msg"))
	var tx struct {
		Height uint64 `json:"height"`
		Kind   string `json:"kind"`
		Device string `json:"device"`
		Stream string `json:"stream"`
	}
	if code := getJSON(t, g.api, "/api/v1/txs/"+hexID(env), &tx); code != http.StatusOK || tx.Kind != "data.record" || tx.Device != "sensor-es256" || tx.Stream != "temp" {
		t.Fatalf("tx lookup: %d %+v", code, tx)
	}
	var blk struct {
		Header      ledger.Header `json:"header"`
		CertSigners []string      `json:"cert_signers"`
		Txs         []struct {
			ID string `json:"id"`
		} `json:"txs"`
	}
	getJSON(t, g.api, "/api/v1/blocks/"+strconv.FormatUint(tx.Height, 10), &blk)
	if blk.Header.Height != tx.Height || len(blk.Txs) != 1 || blk.Txs[0].ID != hexID(env) || len(blk.CertSigners) != 1 {
		t.Fatalf("block: %+v", blk)
	}
	var recs struct {
		Records []struct{ Seq uint64 } `json:"records"`
	}
	getJSON(t, g.api, "/api/v1/devices/sensor-es256/records", &recs)
	if len(recs.Records) != 1 || recs.Records[0].Seq != 1 {
		t.Fatalf("records: %+v", recs)
	}

	// Submitting the same tx again is safe: the same receipt.
	out := mustCLI(t, dir, "tx", "submit", "es256.msg", api)
	if !strings.Contains(out, hexID(env)) {
		t.Fatalf("resubmit: %s", out)
	}
	// A new record that reuses seq 1: replay.
	mustCLI(t, dir, "device", "sign", "--key", "ed25519", "--id", "sensor-ed25519", "--seq", "1", "--stream", "other", "--in", "reading.json", "--genesis", genesis, "--out", "replay.msg")
	if _, errs, code := cli(t, dir, "tx", "submit", "replay.msg", api); code == 0 || !strings.Contains(errs, "(replay,") {
		t.Fatalf("replay: exit %d: %s", code, errs)
	}
	// Revoke; the device's next record is refused.
	mustCLI(t, dir, "device", "revoke", "--id", "sensor-es256", "--reason", "lost", api, dataFlag)
	mustCLI(t, dir, "device", "sign", "--key", "es256", "--id", "sensor-es256", "--seq", "2", "--in", "reading.json", "--genesis", genesis, "--out", "after.msg")
	if _, errs, code := cli(t, dir, "tx", "submit", "after.msg", api); code == 0 || !strings.Contains(errs, "(revoked,") {
		t.Fatalf("revoked: exit %d: %s", code, errs)
	}
	out = mustCLI(t, dir, "device", "list", api)
	if !regexp.MustCompile(`sensor-es256\s+revoked`).MatchString(out) || !regexp.MustCompile(`sensor-ed25519\s+active`).MatchString(out) {
		t.Fatalf("device list:\n%s", out)
	}

	// The chain verifies while the gateway runs.
	if out := mustCLI(t, dir, "ledger", "verify", dataFlag); !strings.Contains(out, "ok: 5 blocks, 5 txs") {
		t.Fatalf("ledger verify on a running gateway: %s", out)
	}
	// Receipts verify offline: with the gateway gone.
	g.stop()
	out = mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "es256.receipt")
	if !strings.HasPrefix(out, "valid:") {
		t.Fatalf("offline verify: %s", out)
	}
	// A receipt against another chain's genesis fails.
	other := filepath.Join(dir, "other")
	mustCLI(t, dir, "init", "--software-key", "--data", other)
	if _, errs, code := cli(t, dir, "receipt", "verify", "--genesis", filepath.Join(other, "genesis.json"), "es256.receipt"); code == 0 || !strings.Contains(errs, "invalid receipt") {
		t.Fatalf("verify against another chain: exit %d %s", code, errs)
	}
	out = mustCLI(t, dir, "ledger", "verify", dataFlag)
	if !strings.Contains(out, "ok: 5 blocks, 5 txs") {
		t.Fatalf("ledger verify: %s", out)
	}
}

// TestAPIErrors checks that bad requests get JSON errors with reasons and
// leave the gateway serving.
func TestAPIErrors(t *testing.T) {
	g := startGateway(t, filepath.Join(t.TempDir(), "data"))
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "dev-1", ledger.ES256)
	ctx := context.Background()
	cases := []struct {
		name   string
		env    []byte
		status int
		reason string
	}{
		{"random bytes", []byte("\x00\x01garbage"), 400, "malformed"},
		{"empty", nil, 400, "malformed"},
		{"too large", make([]byte, 70<<10), 413, "too_large"},
		{"wrong chain", sign(t, key, "other", 1), 400, "wrong_chain"},
		{"unknown device", signAs(t, key, a.chainID, "dev-9", 1), 403, "unknown_author"},
	}
	for _, c := range cases {
		code, reason, _, err := post(ctx, g.api, c.env)
		if err != nil || code != c.status || reason != c.reason {
			t.Errorf("%s: got %d %q %v, want %d %q", c.name, code, reason, err, c.status, c.reason)
		}
	}
	for path, want := range map[string]int{
		"/api/v1/txs/zz":            400,
		"/api/v1/txs/" + hexID(nil): 404,
		"/api/v1/blocks/0":          400,
		"/api/v1/blocks/99":         404,
		"/api/v1/devices/nobody":    404,
		"/api/v1/blocks?limit=0":    400,
		"/api/v1/nothing":           404,
		"/healthz":                  200,
		"/readyz":                   200,
		"/metrics":                  200,
	} {
		if code := getJSON(t, g.api, path, nil); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	// Still serving.
	if code, reason, _, err := post(ctx, g.api, sign(t, key, a.chainID, 1)); code != 200 {
		t.Fatalf("after bad input: %d %s %v", code, reason, err)
	}
	resp, err := http.Get(g.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`ledgergate_rejects_total{reason="malformed"} 2`, "ledgergate_height 2", "ledgergate_commit_latency_seconds_bucket", "ledgergate_txs_committed_total 2"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func sign(t testing.TB, key crypto.Signer, chain string, seq uint64) []byte {
	return signAs(t, key, chain, "dev-1", seq)
}

func signAs(t testing.TB, key crypto.Signer, chain, id string, seq uint64) []byte {
	t.Helper()
	env, err := device.SignRecord(key, chain, ledger.Record{DeviceID: id, Stream: "s", Seq: seq, Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestIndexRebuild deletes index.db and checks that the rebuilt index
// answers every query as before, both on start and with `ledger reindex`.
func TestIndexRebuild(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	ctx := context.Background()
	for d := 0; d < 5; d++ {
		id := "dev-" + strconv.Itoa(d)
		key := a.enroll(t, g.api, id, []ledger.Alg{ledger.ES256, ledger.EdDSA}[d%2])
		for seq := uint64(1); seq <= 4; seq++ {
			if code, reason, _, err := post(ctx, g.api, signAs(t, key, a.chainID, id, seq)); code != 200 {
				t.Fatalf("%s seq %d: %d %s %v", id, seq, code, reason, err)
			}
		}
	}
	queries := []string{"/api/v1/devices", "/api/v1/devices/dev-3", "/api/v1/devices/dev-3/records",
		"/api/v1/blocks", "/api/v1/blocks/7", "/api/v1/blocks?before=10&limit=3"}
	snapshot := func(api string) map[string]any {
		m := map[string]any{}
		for _, q := range queries {
			var v any
			if code := getJSON(t, api, q, &v); code != 200 {
				t.Fatalf("GET %s: %d", q, code)
			}
			m[q] = v
		}
		var st struct {
			Counts any `json:"counts"`
		}
		getJSON(t, api, "/api/v1/status", &st)
		m["counts"] = st.Counts
		return m
	}
	before := snapshot(g.api)
	g.stop()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(data, "index.db"+suffix))
	}
	g = startGateway(t, data)
	if after := snapshot(g.api); !reflect.DeepEqual(before, after) {
		t.Fatalf("rebuilt index answers differently:\nbefore %v\nafter  %v", before, after)
	}
	g.stop()
	out := mustCLI(t, t.TempDir(), "ledger", "reindex", "--data", data)
	if !strings.Contains(out, "reindexed 25 blocks") {
		t.Fatalf("reindex: %s", out)
	}
	g = startGateway(t, data)
	if after := snapshot(g.api); !reflect.DeepEqual(before, after) {
		t.Fatal("index after `ledger reindex` answers differently")
	}
}
