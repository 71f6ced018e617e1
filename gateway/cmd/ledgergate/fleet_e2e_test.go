package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fleetKeys makes n device keys for devices prefix-000 on, in
// dir/keys-prefix (ID and ID.pub; the batch takes the .pub files).
func fleetKeys(t *testing.T, dir, prefix string, n int) (ids []string, keys map[string]crypto.Signer) {
	t.Helper()
	kd := filepath.Join(dir, "keys-"+prefix)
	if err := os.MkdirAll(kd, 0o755); err != nil {
		t.Fatal(err)
	}
	keys = map[string]crypto.Signer{}
	for i := range n {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		k, err := device.GenerateKey(ledger.ES256)
		if err != nil {
			t.Fatal(err)
		}
		if err := device.WriteKeyPair(filepath.Join(kd, id), k); err != nil {
			t.Fatal(err)
		}
		ids, keys[id] = append(ids, id), k
	}
	return ids, keys
}

// dialRetry connects as a device, again while the gateway says to come
// back (server unavailable), until the deadline.
func dialRetry(ctx context.Context, g *gateway, chain, id string, key crypto.Signer) (*device.Client, error) {
	for {
		cl, err := device.Dial(ctx, id, key, chain, device.DialOptions{Broker: "tcp://" + g.mqtt})
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "unavailable") {
			return cl, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func batchInfo(t *testing.T, g *gateway, id string) api.BatchBody {
	t.Helper()
	var b api.BatchBody
	if code := getJSON(t, g.api, "/api/v1/fleet/batches/"+id, &b); code != 200 {
		t.Fatalf("batch %s: HTTP %d", id, code)
	}
	return b
}

// TestFleetZeroTouch: a vendor batch of 101 device keys, approved by the
// owner; 100 devices connect over MQTT with tokens only and are enrolled
// and publishing, with no per-device admin action; a key outside the
// batch, and a batch device with another key, are refused; after the
// batch is revoked its last device is refused; a one-time token enrolls
// one device once.
func TestFleetZeroTouch(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	gen := loadGenesis(t, g)
	adm := func(args ...string) string {
		t.Helper()
		return mustCLI(t, dir, append(args, "--api", g.api, "--data", g.data)...)
	}
	mustCLI(t, dir, "vendor", "keygen", "--out", "acme")
	adm("vendor", "enroll", "--id", "acme", "--pubkey", "acme.pub", "--models", "th-2")
	ids, keys := fleetKeys(t, dir, "th", 101)
	out := mustCLI(t, dir, "fleet", "batch", "create", "--vendor-key", "acme", "--vendor", "acme", "--batch", "lot-1", "--model", "th-2",
		"--group", "sensors", "--keys", filepath.Join(dir, "keys-th"), "--api", g.api)
	if !strings.Contains(out, "101 devices") {
		t.Fatalf("batch create: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Not approved yet: refused, as an unknown device.
	if _, err := device.Dial(ctx, ids[0], keys[ids[0]], gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err == nil {
		t.Fatal("a device of a batch not approved connected")
	}
	if b := batchInfo(t, g, "lot-1"); b.Status != "pending" || b.Devices != 101 || b.Claimed != 0 {
		t.Fatalf("batch before approval: %+v", b.BatchInfo)
	}
	adm("fleet", "batch", "approve", "--batch", "lot-1")

	// 100 devices connect at once, with tokens only, and publish.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, id := range ids[:100] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := dialRetry(ctx, g, gen.ChainID, id, keys[id])
			if err != nil {
				errs <- fmt.Errorf("%s: connect: %w", id, err)
				return
			}
			defer cl.Close()
			env, err := device.SignRecord(keys[id], gen.ChainID, ledger.Record{DeviceID: id, Stream: "temp", Seq: 1, Payload: []byte("21.5")})
			if err != nil {
				errs <- err
				return
			}
			if err := cl.Publish(ctx, "temp", env); err != nil {
				errs <- fmt.Errorf("%s: publish: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("100 devices enrolled by their first CONNECT and published in %s", time.Since(start).Round(time.Millisecond))
	b := batchInfo(t, g, "lot-1")
	if b.Status != "approved" || b.Claimed != 100 {
		t.Fatalf("batch after 100 claims: %+v", b.BatchInfo)
	}
	// A claimed device is listed with its batch's model and groups.
	var d struct {
		Model  string   `json:"model"`
		Groups []string `json:"groups"`
	}
	if code := getJSON(t, g.api, "/api/v1/devices/"+ids[7], &d); code != 200 || d.Model != "th-2" || len(d.Groups) != 1 || d.Groups[0] != "sensors" {
		t.Fatalf("claimed device: HTTP %d %+v", code, d)
	}
	// Its answers carry its claim as its enrollment (protocol.md 6.18,
	// 11): its keys verify with the genesis, with the batch's key, model
	// and groups, and a configuration of one of its batch's groups
	// verifies, the groups proven by the claim.
	claimedAnswers(t, g, dir, gen, ids[7], keys[ids[7]])
	// It reconnects as an enrolled device: no second claim.
	cl, err := device.Dial(ctx, ids[7], keys[ids[7]], gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()

	// A key outside the batch, for a new id or for a batch's id: refused.
	stranger, _ := device.GenerateKey(ledger.ES256)
	for _, id := range []string{"th-999", ids[100]} {
		if _, err := device.Dial(ctx, id, stranger, gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err == nil {
			t.Fatalf("%s connected with a key outside the batch", id)
		}
	}
	// Revoked: the batch's last device is refused; the enrolled stay.
	adm("fleet", "batch", "revoke", "--batch", "lot-1", "--reason", "recall")
	if _, err := device.Dial(ctx, ids[100], keys[ids[100]], gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err == nil {
		t.Fatal("a device of a revoked batch connected")
	}
	if cl, err := device.Dial(ctx, ids[3], keys[ids[3]], gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err != nil {
		t.Fatalf("a device claimed before the revocation: %v", err)
	} else {
		cl.Close()
	}
	_, errOut, code := cli(t, dir, "device", "claim", "--key", filepath.Join(dir, "keys-th", ids[100]), "--id", ids[100], "--batch", "lot-1", "--api", g.api)
	if code == 0 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("claim from a revoked batch: exit %d %s", code, errOut)
	}
	if b := batchInfo(t, g, "lot-1"); b.Status != "revoked" || b.Claimed != 100 {
		t.Fatalf("revoked batch: %+v", b.BatchInfo)
	}

	// A one-time token: the device makes its key in the field.
	secret := strings.TrimSpace(adm("fleet", "token", "create", "--model", "th-2", "--group", "field", "--expires", "1h"))
	mustCLI(t, dir, "device", "keygen", "--alg", "ed25519", "--out", "field-1")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "field-2")
	// The claim carries the token's model and groups, or is refused with
	// what the token says (and the token stays unused).
	_, errOut, code = cli(t, dir, "device", "claim", "--key", "field-1", "--id", "field-1", "--secret", secret, "--model", "th-2", "--api", g.api)
	if code == 0 || !strings.Contains(errOut, "forbidden") || !strings.Contains(errOut, "groups") {
		t.Fatalf("token claim without the token's groups: exit %d %s", code, errOut)
	}
	out = mustCLI(t, dir, "device", "claim", "--key", "field-1", "--id", "field-1", "--secret", secret, "--model", "th-2", "--group", "field", "--api", g.api)
	if !strings.Contains(out, "enrolled") {
		t.Fatalf("token claim: %s", out)
	}
	_, errOut, code = cli(t, dir, "device", "claim", "--key", "field-2", "--id", "field-2", "--secret", secret, "--model", "th-2", "--group", "field", "--api", g.api)
	if code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("second use of a token: exit %d %s", code, errOut)
	}
	fk, err := device.LoadKey(filepath.Join(dir, "field-1"))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := device.Dial(ctx, "field-1", fk, gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatalf("the device enrolled by a token: %v", err)
	}
	fc.Close()

	// The chain verifies, and a restart rebuilds the same fleet state.
	if out := mustCLI(t, dir, "ledger", "verify", "--data", g.data); !strings.HasPrefix(out, "ok:") {
		t.Fatalf("ledger verify: %s", out)
	}
	g.stop()
	g = startGateway(t, g.data)
	if b := batchInfo(t, g, "lot-1"); b.Status != "revoked" || b.Claimed != 100 {
		t.Fatalf("batch after a restart: %+v", b.BatchInfo)
	}
	cl, err = device.Dial(ctx, ids[42], keys[ids[42]], gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatalf("a claimed device after a restart: %v", err)
	}
	cl.Close()
	_, errOut, code = cli(t, dir, "device", "claim", "--key", "field-2", "--id", "field-2", "--secret", secret, "--model", "th-2", "--group", "field", "--api", g.api)
	if code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("second use of a token after a restart: exit %d %s", code, errOut)
	}
}

// claimedAnswers checks the answers about id, a device enrolled by a
// claim of batch lot-1 (model th-2, group sensors): the CLI's key lookup
// verifies them (bridge/device.VerifyKeys), and a config.set to group
// sensors yields a ConfigAnswer that device.VerifyConfig accepts with the
// groups taken from the answer's enrollment, the claim.
func claimedAnswers(t *testing.T, g *gateway, dir string, gen *ledger.Genesis, id string, key crypto.Signer) {
	t.Helper()
	out := mustCLI(t, dir, "device", "keys", "--id", id, "--api", g.api, "--data", g.data)
	if !strings.Contains(out, "model: th-2, groups: sensors") || !strings.Contains(out, "encryption key: none") {
		t.Fatalf("device keys of claimed %s: %s", id, out)
	}
	var kb struct {
		Answer []byte `json:"answer"`
	}
	if code := getJSON(t, g.api, "/api/v1/devices/"+id+"/keys", &kb); code != http.StatusOK {
		t.Fatalf("keys of %s: HTTP %d", id, code)
	}
	ka, err := ledger.DecodeKeysAnswer(kb.Answer)
	if err != nil {
		t.Fatal(err)
	}
	k, err := device.VerifyKeys(gen, ka, id, device.Freshness{})
	if err != nil {
		t.Fatalf("keys answer of claimed %s: %v", id, err)
	}
	pub, err := ledger.MarshalPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.SigningKey.DER, pub) || k.Model != "th-2" || !slices.Equal(k.Groups, []string{"sensors"}) || k.EncKey != nil || k.Revoked {
		t.Fatalf("keys of claimed %s: %+v", id, k)
	}

	cfg := []byte("interval = 30\n")
	path := filepath.Join(dir, "sensors.toml")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := mustCLI(t, dir, "config", "publish", "--target", "group:sensors", "--file", path, "--api", g.api, "--data", g.data); !strings.Contains(out, "committed") {
		t.Fatalf("publish to group sensors: %s", out)
	}
	if out := mustCLI(t, dir, "config", "verify", "--device", id, "--file", path, "--api", g.api, "--data", g.data); !strings.Contains(out, "accepted") {
		t.Fatalf("config verify of claimed %s: %s", id, out)
	}
	sum := sha256.Sum256(cfg)
	resp, err := http.Post(g.api+"/api/v1/devices/"+id+"/config/verify", "application/octet-stream", bytes.NewReader(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cb struct {
		Answer []byte `json:"answer"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cb); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("config verify of %s: HTTP %d %v", id, resp.StatusCode, err)
	}
	ca, err := ledger.DecodeConfigAnswer(cb.Answer)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := device.VerifyConfig(gen, ca, sum, device.ConfigPolicy{Device: id}) // no groups: the claim proves them
	if err != nil || acc.Target != "group:sensors" {
		t.Fatalf("config answer of claimed %s: %+v %v", id, acc, err)
	}
	// Another device's claim is not this device's enrollment.
	other := *ca
	other.Device = "th-999"
	if _, err := device.VerifyConfig(gen, &other, sum, device.ConfigPolicy{Device: "th-999"}); !errors.Is(err, device.ErrProof) {
		t.Fatalf("a claim of %s as another device's enrollment: %v", id, err)
	}
}
