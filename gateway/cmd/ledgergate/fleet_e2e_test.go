package main

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
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
	out = mustCLI(t, dir, "device", "claim", "--key", "field-1", "--id", "field-1", "--secret", secret, "--api", g.api)
	if !strings.Contains(out, "enrolled") {
		t.Fatalf("token claim: %s", out)
	}
	_, errOut, code = cli(t, dir, "device", "claim", "--key", "field-2", "--id", "field-2", "--secret", secret, "--api", g.api)
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
	_, errOut, code = cli(t, dir, "device", "claim", "--key", "field-2", "--id", "field-2", "--secret", secret, "--api", g.api)
	if code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("second use of a token after a restart: exit %d %s", code, errOut)
	}
}
