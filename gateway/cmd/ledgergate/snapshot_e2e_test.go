package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/cluster"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/snapshot"
	"github.com/ledgergate/ledgergate/gateway/state"
	"github.com/ledgergate/ledgergate/tpm"
)

// snapshotConfig writes a configuration with [snapshot] every_blocks =
// every (and no tx trigger) for `run --dev --config`.
func snapshotConfig(t *testing.T, every int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snapshot.toml")
	if err := os.WriteFile(path, []byte("[snapshot]\nevery_blocks = "+strconv.Itoa(every)+"\nevery_txs = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var stateReadyRE = regexp.MustCompile(`msg="state ready" height=(\d+) snapshot=(\d+) replayed_blocks=(\d+)`)

// started reads how a start built its state from its "state ready" line:
// the height, the snapshot it loaded (0: none) and the blocks it replayed.
func (g *gateway) started(t *testing.T) (height, snap, replayed uint64) {
	t.Helper()
	m := stateReadyRE.FindStringSubmatch(g.log())
	if m == nil {
		t.Fatalf("no \"state ready\" line in the log:\n%s", g.log())
	}
	n := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return n(m[1]), n(m[2]), n(m[3])
}

// waitFile polls until path exists, for at most 30 s.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 30s", path)
		}
		time.Sleep(10 * time.Millisecond) // polling a file another process writes
	}
}

func snapFile(data string, h uint64) string {
	return filepath.Join(data, "snapshots", fmt.Sprintf("%020d.snap", h))
}

// snapHeights lists the heights of the snapshot files in data, newest
// first.
func snapHeights(t *testing.T, data string) []uint64 {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(data, "snapshots", "*.snap"))
	var hs []uint64
	for i := len(files) - 1; i >= 0; i-- {
		h, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(files[i]), ".snap"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	return hs
}

// TestSnapshotRestart: a gateway writes snapshots as it commits and, a
// chain of one being its own quorum, certifies them with its node.snapshot
// attestations; a restart loads the newest snapshot and replays only the
// blocks after it (its "state ready" line and /metrics count them); with
// the newest damaged, the start falls back to the older one; with both
// damaged, to the whole log. Each time the devices go on where they
// stopped, and `ledger verify` passes.
func TestSnapshotRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := snapshotConfig(t, 5)
	g := startGateway(t, data, "--config", cfg)
	a := loadAdmin(t, g)
	ids := []string{"dev-0", "dev-1"}
	keys := map[string]crypto.Signer{}
	for i, id := range ids {
		keys[id] = a.enroll(t, g.api, id, []ledger.Alg{ledger.ES256, ledger.EdDSA}[i])
	}
	seq := map[string]uint64{}
	postNext := func(g *gateway, id string) {
		t.Helper()
		seq[id]++
		if code, reason, _, err := post(context.Background(), g.api, signAs(t, keys[id], a.chainID, id, seq[id])); code != http.StatusOK {
			t.Fatalf("%s seq %d: %d %s %v", id, seq[id], code, reason, err)
		}
	}
	for r := 0; r < 21; r++ { // a block each, and the attestations' blocks
		postNext(g, ids[r%2])
	}
	waitFile(t, snapFile(data, 20))
	waitLog(t, g, `msg="snapshot certified" component=snapshot height=20`)
	g.stop()

	restart := func(wantSnap uint64) *gateway {
		t.Helper()
		g := startGateway(t, data, "--config", cfg)
		height, snap, replayed := g.started(t)
		if height < 23 || snap != wantSnap || replayed != height-wantSnap || (snap != 0 && replayed >= height) {
			t.Fatalf("start at height %d from snapshot %d replayed %d blocks; want snapshot %d and %d blocks\n%s",
				height, snap, replayed, wantSnap, height-wantSnap, g.log())
		}
		resp, err := http.Get(g.api + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "ledgergate_start_replayed_blocks "+strconv.FormatUint(replayed, 10)+"\n") {
			t.Errorf("/metrics lacks ledgergate_start_replayed_blocks %d", replayed)
		}
		for _, id := range ids { // the restored registry: each device's next seq commits
			postNext(g, id)
		}
		return g
	}
	hs := snapHeights(t, data)
	if len(hs) != 2 || hs[0] < 20 {
		t.Fatalf("snapshots %v, want the newest two, from 20 on", hs)
	}
	g = restart(hs[0])
	t.Logf("restart from snapshot %d: %s", hs[0], stateReadyRE.FindString(g.log()))
	g.stop()

	// The newest snapshot damaged: the older one serves.
	hs = snapHeights(t, data)
	flipByte(t, snapFile(data, hs[0]), 40)
	g = restart(hs[1])
	if !strings.Contains(g.log(), "snapshot not usable, skipped") {
		t.Errorf("the damaged snapshot was not reported:\n%s", g.log())
	}
	g.stop()

	// Every snapshot damaged: the whole log.
	for _, h := range snapHeights(t, data) {
		flipByte(t, snapFile(data, h), 41)
	}
	g = restart(0)
	g.stop()
	out := mustCLI(t, t.TempDir(), "ledger", "verify", "--data", data)
	if !strings.HasPrefix(out, "ok:") {
		t.Fatalf("ledger verify: %s", out)
	}
}

// flipByte changes one byte of a file.
func flipByte(t *testing.T, path string, at int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[at%len(data)] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotKill9: with a snapshot every other block, a gateway under
// load is killed with SIGKILL three times. A kill lands while a snapshot
// is being written only now and then (the test logs how often), so each
// round also leaves a half-written one of its own. Each start is ready,
// loads a snapshot, removes the half-written files, has every
// acknowledged tx exactly once, and
// lets each device go on from its last committed seq; `ledger verify`
// passes at the end.
func TestSnapshotKill9(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := snapshotConfig(t, 2)
	g := startGateway(t, data, "--config", cfg)
	a := loadAdmin(t, g)
	const devices = 8
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = a.enroll(t, g.api, "dev-"+strconv.Itoa(i), ledger.EdDSA)
	}
	var acked ackSet
	next := make([]uint64, devices) // the next seq of each device
	for i := range next {
		next[i] = 1
	}
	for round := 0; round < 3; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		for i := 0; i < devices; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for n := 0; n < 500 && ctx.Err() == nil; n++ {
					env := signAs(t, keys[i], a.chainID, "dev-"+strconv.Itoa(i), next[i])
					code, _, id, err := post(ctx, g.api, env)
					if err != nil {
						return // the gateway is gone
					}
					if code == http.StatusOK {
						acked.add(id)
						next[i]++
					}
				}
			}(i)
		}
		acked.waitFor(t, (round+1)*150)
		g.kill()
		wg.Wait()
		cancel()
		torn, _ := filepath.Glob(filepath.Join(data, "snapshots", "*.tmp"))
		t.Logf("round %d: the kill left %d snapshot writes half done", round, len(torn))
		// A kill between a write's first bytes and its rename, made
		// sure of: half of the newest snapshot in a temporary file of
		// the next height.
		newest, _ := filepath.Glob(filepath.Join(data, "snapshots", "*.snap"))
		if len(newest) == 0 {
			t.Fatal("no snapshot written")
		}
		last := newest[len(newest)-1]
		half, err := os.ReadFile(last)
		if err != nil {
			t.Fatal(err)
		}
		inject := strings.TrimSuffix(last, ".snap") + "9.snap.1.tmp"
		if err := os.WriteFile(inject, half[:len(half)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		torn = append(torn, inject)
		g = startGateway(t, data, "--config", cfg)
		height, snap, replayed := g.started(t)
		t.Logf("round %d: killed after %d acks; restart at height %d from snapshot %d, %d blocks replayed", round, acked.len(), height, snap, replayed)
		if snap == 0 || replayed != height-snap {
			t.Fatalf("start from snapshot %d replayed %d of %d blocks\n%s", snap, replayed, height, g.log())
		}
		for _, f := range torn {
			if _, err := os.Stat(f); err == nil {
				t.Fatalf("the start left the half-written %s", f)
			}
		}
		acked.checkExactlyOnce(t, g.api)
		// A tx sent and killed before its answer may have committed: the
		// device learns its last seq from the registry.
		for i := range keys {
			var d struct {
				LastSeq uint64 `json:"last_seq"`
			}
			getJSON(t, g.api, "/api/v1/devices/dev-"+strconv.Itoa(i), &d)
			next[i] = d.LastSeq + 1
		}
	}
	for i, key := range keys {
		id := "dev-" + strconv.Itoa(i)
		if code, reason, _, err := post(context.Background(), g.api, signAs(t, key, a.chainID, id, next[i])); code != http.StatusOK {
			t.Fatalf("%s after the last restart: %d %s %v", id, code, reason, err)
		}
	}
	g.stop()
	out := mustCLI(t, t.TempDir(), "ledger", "verify", "--data", data)
	if !strings.HasPrefix(out, "ok:") {
		t.Fatalf("ledger verify: %s", out)
	}
}

// nopHandler is the cluster.Handler of a transport that only fetches.
type nopHandler struct{}

func (nopHandler) Message(string, []byte)                           {}
func (nopHandler) Blocks(uint64, int) ([][]byte, error)             { return nil, nil }
func (nopHandler) Blob([32]byte) ([]byte, error)                    { return nil, nil }
func (nopHandler) Snapshot(uint64, bool) (*cluster.Snapshot, error) { return nil, nil }

// TestClusterSnapshotServed: four gateways under load write snapshots at
// the same heights, attest them, and certify them; a node whose disk was
// replaced (node-4, its process gone, its key kept) fetches the newest
// certified snapshot and its proof from each peer over the cluster
// transport and accepts it with the genesis alone. The same bytes with
// one changed, or with a proof made to name their hash, are refused.
func TestClusterSnapshotServed(t *testing.T) {
	c := newCluster(t, 4, "--config", snapshotConfig(t, 8))
	l := c.startLoad(8)
	for i := range c.gws {
		waitLog(t, c.gws[i], `msg="snapshot certified" component=snapshot height=(16|[2-9][0-9]|[1-9][0-9]{2,}) `)
	}
	l.stop()
	c.gws[3].kill()

	g, err := daemon.LoadGenesis(c.data[3])
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm.LoadSoftwareKey(filepath.Join(c.data[3], daemon.NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var peers []cluster.Peer
	for _, n := range g.Nodes[:3] {
		pk, err := ledger.ParsePublicKey(n.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, cluster.Peer{ID: n.ID, Addr: n.Addrs[0], PublicKey: pk.Key.(*ecdsa.PublicKey)})
	}
	tr, err := cluster.New(cluster.Config{Self: "node-4", Listen: "127.0.0.1:0", Signer: key, Peers: peers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nopHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, peer := range []string{"node-1", "node-2", "node-3"} {
		s, err := tr.FetchSnapshot(ctx, peer, state.MaxSnapshotBytes)
		if err != nil {
			t.Fatalf("%s: %v", peer, err)
		}
		acc, err := snapshot.Accept(g, s.Data, s.Proof, s.Members)
		if err != nil {
			t.Fatalf("%s's snapshot at %d: %v", peer, s.Height, err)
		}
		st, proof := acc.State, acc.Proof
		if h, _ := st.Tip(); h != s.Height || s.Height < 16 || s.Height%8 != 0 || len(proof.Receipts) < g.Quorum() {
			t.Fatalf("%s served the state at %d as %d, proof of %d receipts", peer, h, s.Height, len(proof.Receipts))
		}
		t.Logf("%s: snapshot at %d, %d bytes, proof of %d attestations", peer, s.Height, len(s.Data), len(proof.Receipts))

		changed := bytes.Clone(s.Data)
		changed[len(changed)/2] ^= 1
		if _, err := snapshot.Accept(g, changed, s.Proof, s.Members); !errors.Is(err, snapshot.ErrNotCertified) {
			t.Fatalf("a changed byte: %v, want ErrNotCertified", err)
		}
		p, err := ledger.DecodeSnapshotProof(s.Proof)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(changed)
		p.Hash = sum[:]
		forged, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := snapshot.Accept(g, changed, forged, s.Members); !errors.Is(err, snapshot.ErrNotCertified) {
			t.Fatalf("a proof renamed to the changed bytes' hash: %v, want ErrNotCertified", err)
		}
	}
}
