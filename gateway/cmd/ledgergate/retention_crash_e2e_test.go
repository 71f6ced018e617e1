package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestRetentionKill: a gateway with a retention budget is killed (SIGKILL)
// three times while devices publish and retention prunes, each time as
// soon as a segment rewrite is seen under way (its .tmp file exists) if
// one is seen within the round, else at the round's end. After each
// restart every acknowledged record is in the chain (whole or pruned),
// and at the end `ledger verify` passes.
func TestRetentionKill(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "gw.toml")
	if err := os.WriteFile(cfg, []byte("[retention]\nmax_bytes = \"8MiB\"\ninterval = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, data, "--config", cfg)
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "dev-1", ledger.EdDSA)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	payload := bytes.Repeat([]byte("k"), 4096)
	var acked []string
	seq := uint64(0)
	midRewrite := 0
	for round := range 3 {
		cl, err := device.Dial(ctx, "dev-1", key, a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
		if err != nil {
			t.Fatal(err)
		}
		// Publish until 700 records are acknowledged in this round (some
		// 3 MB: pruning runs), watching for a rewrite under way.
		seen := make(chan struct{})
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if m, _ := filepath.Glob(filepath.Join(data, "blocks", "*.log.tmp")); len(m) > 0 {
					close(seen)
					return
				}
				time.Sleep(time.Millisecond) // polling the directory
			}
		}()
	publish:
		for n := 0; n < 700; n++ {
			select {
			case <-seen:
				break publish
			default:
			}
			seq++
			env, err := device.SignRecord(key, a.chainID, ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: seq, Payload: payload})
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.Publish(ctx, "s", env); err != nil {
				t.Fatalf("round %d seq %d: %v", round, seq, err)
			}
			acked = append(acked, hexID(env))
		}
		select {
		case <-seen:
			midRewrite++
		default:
		}
		close(stop)
		g.kill()
		cl.Close()
		g = startGateway(t, data, "--config", cfg)
		// Every acknowledged record is committed, once: the device's
		// count of records (pruned ones included) and its last seq say so.
		var dev struct {
			LastSeq uint64 `json:"last_seq"`
			Records int    `json:"records"`
		}
		if code := getJSON(t, g.api, "/api/v1/devices/dev-1", &dev); code != http.StatusOK || dev.LastSeq != seq || dev.Records != len(acked) {
			t.Fatalf("round %d: device %d %+v, want last seq %d and %d records", round, code, dev, seq, len(acked))
		}
	}
	t.Logf("%d of 3 kills landed while a segment rewrite was under way", midRewrite)
	g.stop()
	out := mustCLI(t, dir, "ledger", "verify", "--data", data)
	if !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "pruned: ") {
		t.Fatalf("ledger verify after the kills: %s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(data, "blocks", "*.tmp")); len(m) != 0 {
		t.Fatalf("rewrite leftovers after restarts: %v", m)
	}
}
