package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// retentionBudget is the must-show's retention.max_bytes: "20MB".
const retentionBudget = 20_000_000

// dataDirUsage is what the budget covers: the block log, the index and
// its WAL (and shared-memory file).
func dataDirUsage(data string) (total int64, parts string, err error) {
	var sizes []string
	add := func(name string, n int64) {
		total += n
		sizes = append(sizes, fmt.Sprintf("%s %d", name, n))
	}
	entries, err := os.ReadDir(filepath.Join(data, "blocks"))
	if err != nil {
		return 0, "", err
	}
	var blocks int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			blocks += fi.Size()
		}
	}
	add("blocks", blocks)
	for _, f := range []string{"index.db", "index.db-wal", "index.db-shm"} {
		fi, err := os.Stat(filepath.Join(data, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, "", err
		}
		add(f, fi.Size())
	}
	return total, strings.Join(sizes, ", "), nil
}

// TestRetentionBudget is issue 24's must-show for retention: a gateway
// with [retention] max_bytes = "20MB" takes a steady load of 4 KiB
// records (about 100 a second, some 50 MB in all: 2.5 times the budget)
// for about two minutes, while the block log, index and WAL are measured
// every second: they never pass the budget. Then `ledger verify` passes
// and says what was pruned, a receipt a device got before any pruning
// still verifies offline against the genesis, the API says the early
// record was pruned, and after a restart (which replays the pruned log)
// every device's old sequence numbers are still refused as replays.
func TestRetentionBudget(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "gw.toml")
	if err := os.WriteFile(cfg, []byte("[retention]\nmax_bytes = \"20MB\"\ninterval = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, data, "--config", cfg)
	a := loadAdmin(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	const (
		devices     = 4
		perDevice   = 3000 // 12,000 records of 4 KiB: about 50 MB of envelopes
		interval    = 40 * time.Millisecond
		payloadSize = 4096
	)
	keys := make([]crypto.Signer, devices)
	clients := make([]*device.Client, devices)
	for i := range devices {
		id := fmt.Sprintf("dev-%d", i)
		keys[i] = a.enroll(t, g.api, id, ledger.EdDSA)
		cl, err := device.Dial(ctx, id, keys[i], a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
	}
	payload := bytes.Repeat([]byte("r"), payloadSize)
	record := func(i int, seq uint64) []byte {
		env, err := device.SignRecord(keys[i], a.chainID, ledger.Record{DeviceID: fmt.Sprintf("dev-%d", i), Stream: "s", Seq: seq,
			Time: time.Now().UnixMilli(), Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}

	// The early record, and its receipt as the device holds it.
	early := record(0, 1)
	if err := clients[0].Publish(ctx, "s", early); err != nil {
		t.Fatal(err)
	}
	rc, err := clients[0].Receipt(ctx, early)
	if err != nil {
		t.Fatal(err)
	}
	receiptFile := filepath.Join(dir, "early.receipt")
	if err := os.WriteFile(receiptFile, rc, 0o644); err != nil {
		t.Fatal(err)
	}

	// Sample the usage every second until the load is done.
	var (
		samples, over       int
		largest, largestWAL int64
		firstOver           string
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			n, parts, err := dataDirUsage(data)
			if err != nil {
				continue // a segment renamed while listed: the next sample counts
			}
			samples++
			largest = max(largest, n)
			if fi, err := os.Stat(filepath.Join(data, "index.db-wal")); err == nil {
				largestWAL = max(largestWAL, fi.Size())
			}
			if n > retentionBudget {
				over++
				if firstOver == "" {
					firstOver = fmt.Sprintf("%d bytes (%s) at sample %d", n, parts, samples)
				}
			}
		}
	}()

	var acked atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	start := time.Now()
	for i := range devices {
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			first := uint64(1)
			if i == 0 {
				first = 2
			}
			for seq := first; seq <= perDevice; seq++ {
				select {
				case <-ctx.Done():
					errs <- fmt.Errorf("dev-%d: %w after %d records", i, ctx.Err(), seq-1)
					return
				case <-tick.C:
				}
				if err := clients[i].Publish(ctx, "s", record(i, seq)); err != nil {
					errs <- fmt.Errorf("dev-%d seq %d: %w", i, seq, err)
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopSampling)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatalf("%v\n%s", err, tail(g.log(), 4000))
	}
	took := time.Since(start)
	t.Logf("%d records of %d bytes in %s; %d samples, largest usage %d bytes of a budget of %d, largest WAL %d bytes",
		acked.Load()+1, payloadSize, took.Round(time.Second), samples, largest, retentionBudget, largestWAL)
	if samples < 10 {
		t.Fatalf("only %d samples of the usage were taken", samples)
	}
	if over > 0 {
		t.Fatalf("usage over the budget in %d of %d samples, first %s\n%s", over, samples, firstOver, tail(g.log(), 4000))
	}
	if sent := (acked.Load() + 1) * payloadSize; sent < 2*retentionBudget {
		t.Fatalf("the load sent %d bytes of payload, less than twice the budget: the test proves nothing", sent)
	}

	// Status reports the storage and what was pruned.
	var st struct {
		Storage struct {
			Enabled      bool   `json:"enabled"`
			MaxBytes     int64  `json:"max_bytes"`
			UsedBytes    int64  `json:"used_bytes"`
			PrunedHeight uint64 `json:"pruned_height"`
		} `json:"storage"`
	}
	if code := getJSON(t, g.api, "/api/v1/status", &st); code != http.StatusOK || !st.Storage.Enabled ||
		st.Storage.MaxBytes != retentionBudget || st.Storage.PrunedHeight == 0 || st.Storage.UsedBytes == 0 || st.Storage.UsedBytes > retentionBudget {
		t.Fatalf("status: %d %+v", code, st.Storage)
	}
	// The early record's payload is gone, and the API says why.
	for _, path := range []string{"/api/v1/txs/" + hexID(early), "/api/v1/txs/" + hexID(early) + "/receipt"} {
		resp, err := http.Get(g.api + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error, Reason string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(body.Error, "retention pruned the records of blocks 1 to") {
			t.Errorf("GET %s for the early record: %d %+v %v, want 404 saying retention pruned it", path, resp.StatusCode, body, err)
		}
	}
	// Record queries return what is kept and say what was pruned.
	var page struct {
		Records []struct {
			Block uint64 `json:"block"`
		} `json:"records"`
		PrunedHeight uint64 `json:"pruned_height"`
	}
	if code := getJSON(t, g.api, "/api/v1/records?device=dev-0&limit=100", &page); code != http.StatusOK ||
		page.PrunedHeight < st.Storage.PrunedHeight || len(page.Records) == 0 || page.Records[0].Block <= page.PrunedHeight {
		t.Errorf("GET /api/v1/records: %d, pruned height %d (status %d), %d records", code, page.PrunedHeight, st.Storage.PrunedHeight, len(page.Records))
	}
	var metrics bytes.Buffer
	if resp, err := http.Get(g.api + "/metrics"); err == nil {
		metrics.ReadFrom(resp.Body)
		resp.Body.Close()
	}
	for _, m := range []string{"ledgergate_storage_used_bytes", "ledgergate_storage_budget_bytes 2e+07", "ledgergate_pruned_height"} {
		if !strings.Contains(metrics.String(), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	for _, cl := range clients {
		cl.Close()
	}
	g.stop()

	out := mustCLI(t, dir, "ledger", "verify", "--data", data)
	if !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "pruned: ") {
		t.Fatalf("ledger verify: %s", out)
	}
	t.Logf("ledger verify: %s", strings.TrimSpace(out))
	out = mustCLI(t, dir, "receipt", "verify", "--genesis", filepath.Join(data, "genesis.json"), receiptFile)
	if !strings.HasPrefix(out, "valid:") || !strings.Contains(out, hexID(early)) {
		t.Fatalf("receipt verify of the early receipt: %s", out)
	}

	// A restart replays the pruned log: old seqs are still replays.
	g = startGateway(t, data, "--config", cfg)
	for i := range devices {
		for _, seq := range []uint64{1, 2, perDevice} {
			code, reason, _, err := post(ctx, g.api, record(i, seq))
			if err != nil || code != http.StatusConflict || reason != string(ledger.ReasonReplay) {
				t.Errorf("dev-%d seq %d after the restart: %d %q %v, want 409 replay", i, seq, code, reason, err)
			}
		}
		if code, reason, _, err := post(ctx, g.api, record(i, perDevice+1)); err != nil || code != http.StatusOK {
			t.Errorf("dev-%d seq %d after the restart: %d %q %v, want it committed", i, perDevice+1, code, reason, err)
		}
	}
}
