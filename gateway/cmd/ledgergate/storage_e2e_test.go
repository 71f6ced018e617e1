package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestStorageFull (issue 20, defect 9): the file system of the block log
// fills while devices publish. The gateway stops committing but not
// running: devices in flight, and those after, are refused storage_full
// over MQTT and the API (not internal), /readyz is 503 storage_full and
// says what to do, and GET /api/v1/status and the dashboard answer. Once
// space is freed, a restart resumes, and a device that sends its refused
// record again gets it committed.
func TestStorageFull(t *testing.T) {
	for _, c := range []struct {
		name  string
		mount string // what goes on the small file system, under the data directory
		size  string
	}{
		{"block log", "blocks", "192k"}, // the log's append fails
		{"data directory", ".", "1m"},   // the index (SQLite) or the log fails, whichever comes first
	} {
		t.Run(c.name, func(t *testing.T) { testStorageFull(t, c.mount, c.size) })
	}
}

func testStorageFull(t *testing.T, mount, size string) {
	data := filepath.Join(t.TempDir(), "data")
	small := filepath.Join(data, mount)
	if err := os.MkdirAll(small, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size="+size+",mode=0750"); err != nil {
		t.Skipf("a full disk needs a small file system, and mounting a tmpfs failed (not root?): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(small, 0); err != nil {
			t.Errorf("unmount %s: %v", small, err)
		}
	})
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const devices = 4
	keys := make([]crypto.Signer, devices)
	clients := make([]*device.Client, devices)
	for i := range devices {
		id := fmt.Sprintf("dev-%d", i)
		keys[i] = a.enroll(t, g.api, id, ledger.ES256)
		cl, err := device.Dial(ctx, id, keys[i], a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients[i] = cl
	}

	// Each device publishes records of 2 KiB until one is refused.
	payload := bytes.Repeat([]byte("m"), 2048)
	record := func(i int, seq uint64) []byte {
		env, err := device.SignRecord(keys[i], a.chainID, ledger.Record{DeviceID: fmt.Sprintf("dev-%d", i), Stream: "s", Seq: seq, Payload: payload})
		if err != nil {
			t.Error(err)
		}
		return env
	}
	type result struct {
		acked   uint64 // records acknowledged
		refused []byte // the record refused
		err     error
	}
	results := make([]result, devices)
	var wg sync.WaitGroup
	for i := range devices {
		wg.Go(func() {
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				env := record(i, seq)
				if err := clients[i].Publish(ctx, "s", env); err != nil {
					results[i] = result{acked: seq - 1, refused: env, err: err}
					return
				}
			}
		})
	}
	wg.Wait()
	for i, r := range results {
		var re *device.RefusedError
		if !errors.As(r.err, &re) || re.Reason != string(ledger.ReasonStorageFull) {
			t.Errorf("dev-%d after %d acknowledged records: %v, want a storage_full refusal", i, r.acked, r.err)
		}
	}
	if t.Failed() {
		g.cmd.Process.Signal(syscall.SIGQUIT)
		<-g.done
		g.done <- nil
		t.Fatalf("gateway log:\n%s", g.log())
	}

	// The API refuses a tx the same way: 507 storage_full.
	if code, reason, _, err := post(ctx, g.api, record(0, results[0].acked+2)); code != http.StatusInsufficientStorage || reason != string(ledger.ReasonStorageFull) {
		t.Errorf("POST /api/v1/txs on a full disk: %d %q %v, want 507 storage_full", code, reason, err)
	}
	// /readyz says why, and what to do.
	resp, err := http.Get(g.api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct{ Reason, Error string }
	err = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || err != nil || ready.Reason != string(ledger.ReasonStorageFull) ||
		!strings.HasPrefix(ready.Error, "storage full: ") || !strings.Contains(ready.Error, "restart") {
		t.Errorf("/readyz on a full disk: %d %+v %v, want 503 storage_full saying storage full and to restart", resp.StatusCode, ready, err)
	}
	// Reads answer: the status (not ready, and why), a block, the dashboard.
	var st struct {
		Height   uint64 `json:"height"`
		Ready    bool   `json:"ready"`
		NotReady string `json:"not_ready"`
	}
	if code := getJSON(t, g.api, "/api/v1/status", &st); code != http.StatusOK || st.Ready || !strings.HasPrefix(st.NotReady, "storage full: ") || st.Height < devices {
		t.Errorf("GET /api/v1/status on a full disk: %d %+v", code, st)
	}
	if code := getJSON(t, g.api, fmt.Sprintf("/api/v1/blocks/%d", st.Height), nil); code != http.StatusOK {
		t.Errorf("GET /api/v1/blocks/%d on a full disk: %d", st.Height, code)
	}
	if resp, err := http.Get(g.api + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("dashboard on a full disk: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	select {
	case err := <-g.done:
		g.done <- err
		t.Fatalf("the gateway exited on a full disk: %v\n%s", err, g.log())
	default:
	}
	t.Logf("full disk: %s", ready.Error)
	if !strings.Contains(g.log(), "storage full") {
		t.Errorf("the gateway did not log the full disk:\n%s", g.log())
	}

	// Free space and restart: the refused records commit when sent again.
	if err := syscall.Mount("tmpfs", small, "tmpfs", syscall.MS_REMOUNT, "size=64m,mode=0750"); err != nil {
		t.Fatal(err)
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		g.done <- err
	case <-time.After(30 * time.Second):
		t.Fatalf("the gateway did not stop on SIGTERM\n%s", g.log())
	}
	g = startGateway(t, data)
	for i, r := range results {
		if code, reason, _, err := post(ctx, g.api, r.refused); code != http.StatusOK {
			t.Errorf("dev-%d: the refused record sent again: %d %s %v", i, code, reason, err)
		}
		var d struct {
			LastSeq uint64 `json:"last_seq"`
		}
		getJSON(t, g.api, fmt.Sprintf("/api/v1/devices/dev-%d", i), &d)
		if d.LastSeq != r.acked+1 {
			t.Errorf("dev-%d: last seq %d, want %d", i, d.LastSeq, r.acked+1)
		}
	}
	g.stop()
	if out := mustCLI(t, t.TempDir(), "ledger", "verify", "--data", data); !strings.HasPrefix(out, "ok:") {
		t.Fatalf("ledger verify: %s", out)
	}
}
