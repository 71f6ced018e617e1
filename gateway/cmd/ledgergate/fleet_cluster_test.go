package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
)

// TestFleetClusterClaimRace: on four gateways, each device of an approved
// batch connects to two gateways at once, so both submit its claim. The
// device is enrolled once (every gateway counts each device claimed
// once), and both connections are accepted: the gateway whose claim lost
// sees the device enrolled by the other's.
func TestFleetClusterClaimRace(t *testing.T) {
	c := newCluster(t, 4)
	dir := filepath.Dir(c.data[0])
	api0 := c.gws[0].api
	admin := []string{"--api", api0, "--admin-key", filepath.Join(dir, "admin.key"), "--admin-id", "admin", "--data", c.data[0]}
	mustCLI(t, dir, "vendor", "keygen", "--out", "acme")
	mustCLI(t, dir, append([]string{"vendor", "enroll", "--id", "acme", "--pubkey", "acme.pub", "--models", "th-2"}, admin...)...)
	const n = 8
	ids, keys := fleetKeys(t, dir, "race", n)
	mustCLI(t, dir, "fleet", "batch", "create", "--vendor-key", "acme", "--vendor", "acme", "--batch", "lot-r", "--model", "th-2",
		"--keys", filepath.Join(dir, "keys-race"), "--api", api0)
	mustCLI(t, dir, append([]string{"fleet", "batch", "approve", "--batch", "lot-r"}, admin...)...)
	waitBatch := func(claimed int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for i, g := range c.gws {
			for {
				var b api.BatchBody
				if getJSON(t, g.api, "/api/v1/fleet/batches/lot-r", &b) == 200 && b.Status == "approved" && b.Claimed == claimed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("gateway %d: batch %+v, want approved with %d claimed", i+1, b.BatchInfo, claimed)
				}
				time.Sleep(50 * time.Millisecond) // polling another process's API
			}
		}
	}
	waitBatch(0)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i, id := range ids {
		// Device i connects to gateways i mod 4 and i+1 mod 4 at once.
		for _, gi := range []int{i % 4, (i + 1) % 4} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := dialRetry(ctx, c.gws[gi], "test-cluster", id, keys[id])
				if err != nil {
					errs <- fmt.Errorf("%s on gateway %d: %w", id, gi+1, err)
					return
				}
				cl.Close()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	c.converge(1, 30*time.Second)
	waitBatch(n) // n claims committed, not 2n: each device once
	// Both gateways did submit: some claims lost to the other's.
	var enrolled, lost int
	for _, g := range c.gws {
		log := g.log()
		enrolled += strings.Count(log, "device enrolled from its batch")
		lost += strings.Count(log, "device claim lost to another")
	}
	t.Logf("claims committed %d, lost to another gateway's %d", enrolled, lost)
	if enrolled != n || lost == 0 {
		t.Fatalf("claims committed %d (want %d), lost %d (want some): the gateways did not race", enrolled, n, lost)
	}
	for i, g := range c.gws {
		var d struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		for _, id := range ids {
			if code := getJSON(t, g.api, "/api/v1/devices/"+id, &d); code != 200 || d.Status != "active" {
				t.Errorf("gateway %d: device %s: HTTP %d %+v", i+1, id, code, d)
			}
		}
	}
	// Every gateway's chain verifies: the same claims, the same verdicts.
	for i := range c.gws {
		if out, errs, code := cli(t, "", "ledger", "verify", "--data", c.data[i]); code != 0 {
			t.Fatalf("gateway %d: ledger verify: exit %d\n%s%s", i+1, code, out, errs)
		}
	}
	// Each device connects to every gateway now as an enrolled device.
	for i := range c.gws {
		cl, err := device.Dial(ctx, ids[0], keys[ids[0]], "test-cluster", device.DialOptions{Broker: "tcp://" + c.mqttAddr(i)})
		if err != nil {
			t.Fatalf("gateway %d: %v", i+1, err)
		}
		cl.Close()
	}
}
