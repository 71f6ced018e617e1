package main

import (
	"context"
	"crypto"
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestCrashKill9: many goroutines submit, the gateway is killed with
// SIGKILL mid-stream, and restarted. Every tx whose submit returned a
// receipt is in the ledger exactly once, and `ledger verify` passes.
func TestCrashKill9(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	const devices, maxPerDevice, killAfter = 16, 2000, 400
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = a.enroll(t, g.api, "dev-"+strconv.Itoa(i), ledger.ES256)
	}

	var acked ackSet
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < devices; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for seq := uint64(1); seq <= maxPerDevice && ctx.Err() == nil; seq++ {
				env := signAs(t, keys[i], a.chainID, "dev-"+strconv.Itoa(i), seq)
				code, _, id, err := post(ctx, g.api, env)
				if err != nil {
					return // the gateway is gone
				}
				if code == http.StatusOK {
					acked.add(id)
				}
			}
		}(i)
	}
	acked.waitFor(t, killAfter)
	g.kill()
	wg.Wait()
	cancel()
	t.Logf("killed after %d acknowledged txs", acked.len())

	g = startGateway(t, data)
	acked.checkExactlyOnce(t, g.api)
	// The gateway goes on where it stopped: each device's next seq commits.
	for i, key := range keys {
		id := "dev-" + strconv.Itoa(i)
		var d struct {
			LastSeq uint64 `json:"last_seq"`
		}
		getJSON(t, g.api, "/api/v1/devices/"+id, &d)
		if code, reason, _, err := post(context.Background(), g.api, signAs(t, key, a.chainID, id, d.LastSeq+1)); code != 200 {
			t.Fatalf("%s after restart: %d %s %v", id, code, reason, err)
		}
	}
	g.stop()
	out := mustCLI(t, t.TempDir(), "ledger", "verify", "--data", data)
	if !strings.HasPrefix(out, "ok:") {
		t.Fatalf("ledger verify: %s", out)
	}
}

// TestTornTailAndCorruption: a torn last record is cut on start; a flipped
// byte before the tail stops start-up with the segment and offset.
func TestTornTailAndCorruption(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "dev-1", ledger.EdDSA)
	for seq := uint64(1); seq <= 5; seq++ {
		if code, reason, _, err := post(context.Background(), g.api, sign(t, key, a.chainID, seq)); code != 200 {
			t.Fatalf("seq %d: %d %s %v", seq, code, reason, err)
		}
	}
	g.stop()
	seg := filepath.Join(data, "blocks", "00000001.log")

	// A crash mid-append: a header that promises more than was written.
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], 500)
	f.Write(append(hdr[:], "partial block"...))
	f.Close()
	g = startGateway(t, data)
	if !strings.Contains(g.log(), "cut torn tail") {
		t.Fatalf("no torn tail reported:\n%s", g.log())
	}
	var st struct {
		Height uint64 `json:"height"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)
	if st.Height != 6 {
		t.Fatalf("height %d after cutting the tail, want 6", st.Height)
	}
	if code, reason, _, err := post(context.Background(), g.api, sign(t, key, a.chainID, 6)); code != 200 {
		t.Fatalf("after repair: %d %s %v", code, reason, err)
	}
	g.stop()
	mustCLI(t, t.TempDir(), "ledger", "verify", "--data", data)

	// A flipped byte in the first record: not a torn tail, so no start.
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0x40
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	want := "segment 00000001.log offset 0"
	_, errs, code := cli(t, t.TempDir(), "run", "--dev", "--data", data, "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, want) {
		t.Fatalf("start on a corrupt log: exit %d, want an error naming %q:\n%s", code, want, errs)
	}
	if _, errs, code := cli(t, t.TempDir(), "ledger", "verify", "--data", data); code == 0 || !strings.Contains(errs, want) {
		t.Fatalf("ledger verify on a corrupt log: exit %d:\n%s", code, errs)
	}
}
