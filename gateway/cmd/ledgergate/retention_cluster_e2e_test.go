package main

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestClusterCatchUpFromPruned: three gateways of four prune under a
// small budget while the fourth is down; the fourth, restarted without a
// retention policy, catches up by state transfer from blocks its peers
// pruned. It checks their certificates and Merkle roots, applies their
// stubs (its devices' last seqs equal its peers'), stores them pruned
// (`ledger verify` on it says so) and ends on the same head.
func TestClusterCatchUpFromPruned(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "retention.toml")
	if err := os.WriteFile(cfg, []byte("[retention]\nmax_bytes = \"4MiB\"\ninterval = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 4, "--config", cfg)
	const devices, perDevice = 4, 300 // 1,200 records of 4 KiB: past the budget's 70%
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = c.admin.enroll(t, c.gws[0].api, fmt.Sprintf("dev-%d", i), ledger.EdDSA)
	}
	h, _ := c.converge(devices, time.Minute) // node-4 knows every device
	c.gws[3].kill()
	t.Logf("node-4 stopped at height %d", h)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	payload := bytes.Repeat([]byte("p"), 4096)
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for i := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("dev-%d", i)
			cl, err := device.Dial(ctx, id, keys[i], c.admin.chainID, device.DialOptions{Broker: "tcp://" + c.gws[i%3].mqtt})
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			for seq := uint64(1); seq <= perDevice; seq++ {
				env, err := device.SignRecord(keys[i], c.admin.chainID, ledger.Record{DeviceID: id, Stream: "s", Seq: seq, Payload: payload})
				if err == nil {
					err = cl.Publish(ctx, "s", env)
				}
				if err != nil {
					errs <- fmt.Errorf("%s seq %d: %w", id, seq, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Wait until the three pruned.
	deadline := time.Now().Add(time.Minute)
	for i := range 3 {
		for {
			var st struct {
				Storage struct {
					PrunedHeight uint64 `json:"pruned_height"`
				} `json:"storage"`
			}
			getJSON(t, c.gws[i].api, "/api/v1/status", &st)
			if st.Storage.PrunedHeight > h {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node-%d pruned nothing above height %d", i+1, h)
			}
			time.Sleep(100 * time.Millisecond) // polling the status
		}
	}

	c.gws[3] = startGateway(t, c.data[3]) // no retention policy
	top, hash := c.converge(h+1, 2*time.Minute)
	if !strings.Contains(c.gws[3].log(), "caught up from a peer") {
		t.Fatalf("node-4 reached height %d without state transfer", top)
	}
	t.Logf("all four at height %d, head %.16s", top, hash)
	for i := range devices {
		var d0, d3 struct {
			LastSeq uint64 `json:"last_seq"`
			Records uint64 `json:"records"`
		}
		path := fmt.Sprintf("/api/v1/devices/dev-%d", i)
		if getJSON(t, c.gws[0].api, path, &d0) != http.StatusOK || getJSON(t, c.gws[3].api, path, &d3) != http.StatusOK ||
			d3 != d0 || d3.LastSeq != perDevice {
			t.Errorf("dev-%d: node-4 %+v, node-1 %+v, want last seq %d on both", i, d3, d0, perDevice)
		}
	}
	for _, g := range c.gws {
		g.stop()
	}
	for i, data := range c.data {
		out := mustCLI(t, dir, "ledger", "verify", "--data", data)
		if !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "pruned: ") {
			t.Errorf("ledger verify on node-%d: %s", i+1, out)
		}
	}
}
