package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
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

// recordOffsets returns the offset of each record of a block log segment.
func recordOffsets(t *testing.T, seg []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off < len(seg); {
		if len(seg)-off < 8 {
			t.Fatalf("segment ends in a partial header at %d", off)
		}
		offs = append(offs, off)
		off += 8 + int(binary.BigEndian.Uint32(seg[off:]))
	}
	return offs
}

// TestBitRotInLastRecord (issue 20, defect 8): a torn last record is cut
// on start, as before, but one flipped bit in the last record of a stopped
// gateway, complete, fsynced and acknowledged, is damage, not a torn
// write: the gateway refuses to start and says where and what to do,
// `ledger verify` fails, and nothing is cut, with or without the index.
func TestBitRotInLastRecord(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	key := a.enroll(t, g.api, "dev-1", ledger.ES256)
	for seq := uint64(1); seq <= 3; seq++ {
		if code, reason, _, err := post(context.Background(), g.api, sign(t, key, a.chainID, seq)); code != 200 {
			t.Fatalf("seq %d: %d %s %v", seq, code, reason, err)
		}
	}
	g.stop()
	seg := filepath.Join(data, "blocks", "00000001.log")
	height := func() uint64 {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(len(recordOffsets(t, b)))
	}
	blocks := height()

	// A crash mid-append on a file system that extended the file before
	// the data reached the disk: a header, then zeros to its length.
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], 600)
	binary.BigEndian.PutUint32(hdr[4:], 0x12345678)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(hdr[:], make([]byte, 600)...))
	f.Close()
	g = startGateway(t, data)
	if !strings.Contains(g.log(), "cut torn tail") {
		t.Fatalf("no torn tail reported:\n%s", g.log())
	}
	if code, reason, _, err := post(context.Background(), g.api, sign(t, key, a.chainID, 4)); code != 200 {
		t.Fatalf("after the repair: %d %s %v", code, reason, err)
	}
	var st struct {
		Height uint64 `json:"height"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)
	g.stop()
	if got := height(); got != st.Height || got != blocks+1 {
		t.Fatalf("log holds %d blocks, the gateway said %d, want %d", got, st.Height, blocks+1)
	}

	// Bit rot in the last record, acknowledged (seq 4).
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, b)
	last := offs[len(offs)-1]
	b[last+8+(len(b)-last-8)/2] ^= 0x04
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("segment 00000001.log offset %d (block %d)", last, st.Height)
	for _, index := range []bool{true, false} {
		if !index { // the log's own check, without the index's height
			for _, f := range []string{"index.db", "index.db-wal", "index.db-shm"} {
				os.Remove(filepath.Join(data, f))
			}
		}
		errs, code := startFails(t, data)
		if code == 0 || !strings.Contains(errs, want) || !strings.Contains(errs, "crc mismatch") ||
			!strings.Contains(errs, fmt.Sprintf("truncate -s %d %s", last, seg)) {
			t.Fatalf("start with index=%v on bit rot in the last record: exit %d, want an error naming %q and what to do:\n%s", index, code, want, errs)
		}
		if after, _ := os.ReadFile(seg); !bytes.Equal(after, b) {
			t.Fatalf("start with index=%v changed the damaged segment", index)
		}
	}
	if out, errs, code := cli(t, t.TempDir(), "ledger", "verify", "--data", data); code == 0 || !strings.Contains(errs, want) {
		t.Fatalf("ledger verify on bit rot in the last record: exit %d, want an error naming %q:\n%s%s", code, want, out, errs)
	}
}

// startFails runs `ledgergate run --dev` on data, which must exit on its
// own; it returns the stderr and exit code. A gateway that gets ready
// instead is stopped and the test fails.
func startFails(t *testing.T, data string) (string, int) {
	t.Helper()
	cmd := exec.Command(ledgergateBin, "run", "--dev", "--data", data, "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0",
		"--coap", "127.0.0.1:0", "--coap-dtls", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var errs strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		errs.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), `msg="ledgergate ready"`) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the gateway started:\n%s", errs.String())
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return errs.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return errs.String(), 0
}

// TestBitRotInLastRecordCluster: a cluster node with bit rot in its last
// block refuses to start and says how to get the block back; cut as the
// error says, it gets the block and the ones after it back from its peers
// (each with its commit certificate: ledger verify checks them) and
// converges on the others' head.
func TestBitRotInLastRecordCluster(t *testing.T) {
	c := newCluster(t, 4)
	a := c.admin
	key := a.enroll(t, c.gws[0].api, "dev-1", ledger.ES256)
	for seq := uint64(1); seq <= 3; seq++ {
		if code, reason, _, err := post(context.Background(), c.gws[0].api, sign(t, key, a.chainID, seq)); code != 200 {
			t.Fatalf("seq %d: %d %s %v", seq, code, reason, err)
		}
	}
	height, _ := c.converge(4, time.Minute)
	c.gws[3].stop()

	seg := filepath.Join(c.data[3], "blocks", "00000001.log")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, b)
	last := offs[len(offs)-1]
	if uint64(len(offs)) != height {
		t.Fatalf("node-4's log holds %d blocks, the cluster is at %d", len(offs), height)
	}
	b[last+8+(len(b)-last-8)/2] ^= 0x01
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	errs, code := startFails(t, c.data[3])
	want := fmt.Sprintf("segment 00000001.log offset %d (block %d)", last, height)
	if code == 0 || !strings.Contains(errs, want) || !strings.Contains(errs, "back from its peers") {
		t.Fatalf("start of node-4 on bit rot: exit %d, want an error naming %q and the way back:\n%s", code, want, errs)
	}

	// The operator does what the error says.
	if err := os.Truncate(seg, int64(last)); err != nil {
		t.Fatal(err)
	}
	c.gws[3] = startGateway(t, c.data[3])
	if code, reason, _, err := post(context.Background(), c.gws[0].api, sign(t, key, a.chainID, 4)); code != 200 {
		t.Fatalf("seq 4: %d %s %v", code, reason, err)
	}
	c.converge(height+1, time.Minute)
	c.gws[3].stop()
	if out := mustCLI(t, t.TempDir(), "ledger", "verify", "--data", c.data[3]); !strings.HasPrefix(out, "ok:") {
		t.Fatalf("ledger verify on node-4: %s", out)
	}
}
