package main

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestClusterMembersChange is issue 24's must-show on real processes:
// four gateways under MQTT device load; `cluster add` a fifth, `cluster
// remove` one, then kill -9 one and `cluster replace` it by a new
// gateway with a new id and key; then kill -9 another, so that the new
// one's votes are needed. Devices go on getting PUBACKs throughout
// (those of the removed or dead gateway move to another). Then, idle, a
// seventh is added, which must take effect in seconds, and whose vote is
// needed next (four of five, one dead), as is that of a member killed
// and restarted after all this. At the end the
// live gateways share one head, `ledger verify` passes on each, every
// acknowledged record is in each ledger once, and receipts from before
// and after the changes verify with the genesis alone and the receipts of
// the changes (ledger.VerifyMembership).
func TestClusterMembersChange(t *testing.T) {
	// Snapshots every 32 blocks: node-6 and node-7 join from one
	// certified after changes; node-5 fetches every block from 1.
	cfg := snapshotConfig(t, 32)
	c := newCluster(t, 4, "--config", cfg)
	dir := filepath.Dir(c.data[0])
	gen := filepath.Join(dir, "genesis.json")
	var extra []*gateway // node-5, node-6
	t.Cleanup(func() {
		if t.Failed() {
			for i, g := range append(slices.Clone(c.gws), extra...) {
				t.Logf("gateway %d log:\n%s", i+1, grepLines(g.log(), "component=pbft", "component=cluster", "level=ERROR", "level=WARN"))
			}
		}
	})
	adminArgs := func(api string) []string {
		return []string{"--api", api, "--admin-key", filepath.Join(dir, "admin.key"), "--admin-id", "admin", "--data", c.data[0]}
	}

	// The load: devices on every gateway; a device whose gateway is gone
	// or refuses sends the same bytes again to the next one of live.
	var live atomic.Pointer[[]*gateway]
	setLive := func(gs ...*gateway) { live.Store(&gs) }
	setLive(c.gws...)
	const devices = 12
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = c.admin.enroll(t, c.gws[0].api, "dev-"+strconv.Itoa(i), ledger.ES256)
	}
	h, _ := c.head(0)
	c.converge(h, 30*time.Second)
	var acked ackSet
	var moved atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range devices {
		id := "dev-" + strconv.Itoa(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pick := i
			var cl *device.Client
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			for seq := uint64(1); ctx.Err() == nil && seq <= 20_000; seq++ {
				env := signAs(t, keys[i], c.admin.chainID, id, seq)
				for ctx.Err() == nil {
					gws := *live.Load()
					g := gws[pick%len(gws)]
					var err error
					if cl == nil {
						cl, err = device.Dial(ctx, id, keys[i], c.admin.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
					}
					if err == nil {
						// A refusal as unavailable is sent again to the same
						// gateway by the client: a removed gateway says so
						// for good, so the attempt is bounded.
						pctx, pcancel := context.WithTimeout(ctx, 4*time.Second)
						err = cl.Publish(pctx, "s", env)
						pcancel()
					}
					if err == nil {
						acked.add(hexID(env))
						break
					}
					if cl != nil {
						cl.Close()
						cl = nil
					}
					pick++ // the next gateway
					moved.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(200 * time.Millisecond): // a device's pause before it tries another gateway
					}
				}
			}
		}()
	}
	stopLoad := func() {
		cancel()
		wg.Wait()
	}
	defer stopLoad()
	acked.waitFor(t, 200)

	// Add node-5.
	n5, cfg5 := newMemberDir(t, dir, gen, "node-5", false)
	out := mustCLI(t, dir, append([]string{"cluster", "add", "--id", "node-5", "--key", filepath.Join(n5, daemon.NodePubFile), "--addr", cfg5.addr}, adminArgs(c.gws[0].api)...)...)
	add := parseChange(t, out)
	t.Logf("cluster add: %s", strings.TrimSpace(out))
	// One change at a time.
	cliFails(t, dir, "is pending", append([]string{"cluster", "remove", "--id", "node-4"}, adminArgs(c.gws[0].api)...)...)
	g5 := startGateway(t, n5, "--config", cfg5.path)
	extra = append(extra, g5)
	all := []*gateway{c.gws[0], c.gws[1], c.gws[2], c.gws[3], g5}
	waitInForce(t, all, add.from, time.Minute, "node-1", "node-2", "node-3", "node-4", "node-5")
	if !strings.Contains(g5.log(), "caught up from a peer") {
		t.Errorf("node-5 is in the set without state transfer:\n%s", g5.log())
	}
	setLive(all...)
	acked.waitFor(t, acked.len()+200)
	cliFails(t, dir, "node-5 is already a member", append([]string{"cluster", "add", "--id", "node-5", "--key", filepath.Join(n5, daemon.NodePubFile), "--addr", cfg5.addr}, adminArgs(c.gws[0].api)...)...)
	cliFails(t, dir, "nobody is not a member", append([]string{"cluster", "remove", "--id", "nobody"}, adminArgs(c.gws[0].api)...)...)
	if out := mustCLI(t, dir, "cluster", "members", "--api", g5.api); !strings.Contains(out, "5 gateways, quorum 4") || !strings.Contains(out, "pending   none") {
		t.Errorf("cluster members:\n%s", out)
	}

	// Remove node-2: it then refuses devices, saying why.
	out = mustCLI(t, dir, append([]string{"cluster", "remove", "--id", "node-2"}, adminArgs(c.gws[0].api)...)...)
	remove := parseChange(t, out)
	t.Logf("cluster remove: %s", strings.TrimSpace(out))
	rest := []*gateway{c.gws[0], c.gws[2], c.gws[3], g5}
	waitInForce(t, rest, remove.from, time.Minute, "node-1", "node-3", "node-4", "node-5")
	setLive(rest...)
	cliFails(t, dir, "would leave 3 gateways", append([]string{"cluster", "remove", "--id", "node-4"}, adminArgs(c.gws[0].api)...)...)
	removed := c.gws[1]
	env := signAs(t, keys[0], c.admin.chainID, "dev-0", 1_000_000)
	code, reason, _, err := post(context.Background(), removed.api, env)
	if err != nil || code != http.StatusServiceUnavailable || reason != string(ledger.ReasonUnavailable) {
		t.Errorf("a record offered to the removed gateway: HTTP %d %q %v, want 503 unavailable", code, reason, err)
	}
	if body := postBody(t, removed.api, env); !strings.Contains(body, "removed from the cluster") {
		t.Errorf("the removed gateway's refusal does not say why: %s", body)
	}
	acked.waitFor(t, acked.len()+200)
	removed.kill()

	// node-3 dies (kill -9) and is replaced by node-6, a new gateway with
	// a new id and key.
	c.gws[2].kill()
	setLive(c.gws[0], c.gws[3], g5)
	acked.waitFor(t, acked.len()+100) // three of four order
	n6, cfg6 := newMemberDir(t, dir, gen, "node-6", true)
	out = mustCLI(t, dir, append([]string{"cluster", "replace", "--id", "node-3", "--with", "node-6", "--key", filepath.Join(n6, daemon.NodePubFile), "--addr", cfg6.addr}, adminArgs(c.gws[3].api)...)...)
	replace := parseChange(t, out)
	t.Logf("cluster replace: %s", strings.TrimSpace(out))
	g6 := startGateway(t, n6, "--config", cfg6.path)
	extra = append(extra, g6)
	final := []*gateway{c.gws[0], g6, c.gws[3], g5}
	waitInForce(t, final, replace.from, time.Minute, "node-1", "node-6", "node-4", "node-5")
	setLive(final...)
	acked.waitFor(t, acked.len()+200)

	// node-1 dies too: node-4, node-5 and node-6 are a quorum of the set
	// in force, so the commits go on only if node-6 votes.
	c.gws[0].kill()
	final = []*gateway{g6, c.gws[3], g5}
	setLive(final...)
	acked.waitFor(t, acked.len()+200)
	stopLoad()
	t.Logf("%d PUBACKs under load, %d moves to another gateway", acked.len(), moved.Load())

	// Idle: adding node-7 takes effect in seconds (heartbeats while a
	// change is pending), not 64 heartbeat intervals (an hour).
	// node-7 starts once the change names it (the members refuse a key
	// they do not know), and joins from a snapshot: the set in force
	// certified it, which node-7 checks with the genesis and the
	// membership proof its peer sends.
	n7, cfg7 := newMemberDir(t, dir, gen, "node-7", true)
	start := time.Now()
	out = mustCLI(t, dir, append([]string{"cluster", "add", "--id", "node-7", "--key", filepath.Join(n7, daemon.NodePubFile), "--addr", cfg7.addr}, adminArgs(g6.api)...)...)
	add7 := parseChange(t, out)
	g7 := startGateway(t, n7, "--config", cfg7.path)
	extra = append(extra, g7)
	final = append(final, g7)
	waitInForce(t, final, add7.from, 20*time.Second, "node-1", "node-6", "node-4", "node-5", "node-7")
	t.Logf("idle cluster: node-7 in force at height %d, %s after the add", add7.from, time.Since(start).Round(time.Millisecond))
	for _, g := range []*gateway{g6, g7} {
		j := regexp.MustCompile(`msg="joined from a snapshot" component=join peer=(node-\d) height=(\d+)`).FindStringSubmatch(g.log())
		if j == nil {
			t.Fatalf("%s did not join from a snapshot:\n%s", g.api, grepLines(g.log(), "component=join"))
		}
		h, _ := strconv.ParseUint(j[2], 10, 64)
		t.Logf("%s joined from %s's snapshot at height %d", g.api, j[1], h)
		if h < add.from {
			t.Errorf("%s joined from a snapshot at %d, certified before the first change took effect (%d)", g.api, h, add.from)
		}
	}
	// Four of the five must sign now, node-1 being dead: node-7 votes.
	env = signAs(t, keys[0], c.admin.chainID, "dev-0", 1_000_001)
	if code, reason, _, err := post(context.Background(), g7.api, env); err != nil || code != http.StatusOK {
		t.Fatalf("a record offered to node-7 in the set {node-1 (dead), node-4..7}: HTTP %d %q %v", code, reason, err)
	}
	acked.add(hexID(env))
	// node-4 restarts (kill -9): it rebuilds its member sets from its
	// log, and the next commit needs its vote again.
	c.gws[3].kill()
	g4 := startGateway(t, c.data[3])
	final = []*gateway{g6, g4, g5, g7}
	env = signAs(t, keys[0], c.admin.chainID, "dev-0", 1_000_002)
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	if code, reason, _, err := post(pctx, g6.api, env); err != nil || code != http.StatusOK {
		t.Fatalf("a record after node-4 restarted: HTTP %d %q %v", code, reason, err)
	}
	acked.add(hexID(env))

	// The audit: one head (height and hash), ledger verify on each,
	// every acknowledged record once. node-6 and node-7 joined from
	// snapshots and hold no blocks below them: their head's hash, which
	// chains every block before it, is that of node-4 and node-5, whose
	// ledgers hold every block from 1.
	head := convergeOn(t, final, time.Minute)
	for _, g := range final {
		if out, errs, code := cli(t, "", "ledger", "verify", "--data", g.data); code != 0 {
			t.Errorf("ledger verify on %s: exit %d\n%s%s", g.data, code, out, errs)
		}
		if g != g6 && g != g7 {
			acked.checkExactlyOnce(t, g.api)
		}
	}
	t.Logf("the four live members at height %d", head)

	// Receipts verify with the genesis and the receipts of the changes.
	g, err := daemon.LoadGenesis(c.data[0])
	if err != nil {
		t.Fatal(err)
	}
	var proof ledger.MembershipProof
	for _, ch := range []change{add, remove, replace, add7} {
		proof = append(proof, *fetchReceipt(t, g5.api, ch.tx))
	}
	m, err := ledger.VerifyMembership(g, proof)
	if err != nil {
		t.Fatalf("membership proof: %v", err)
	}
	if got := strings.Join(m.Last().IDs(), ","); got != "node-1,node-6,node-4,node-5,node-7" {
		t.Errorf("the proof leaves the members %s", got)
	}
	// Each gateway serves a proof of the same changes, the one a device
	// fetches (docs/protocol.md 10.2): node-5, and node-6 and node-7,
	// which joined from snapshots and keep the receipts of the changes
	// below their base in blocks/MEMBERS. (The bytes may differ: each
	// gateway keeps the certificate it collected, a quorum of signatures
	// but not always the same one.)
	for _, gw := range []*gateway{g5, g6, g7} {
		served, err := ledger.DecodeMembershipProof(fetchProof(t, gw.api))
		if err != nil {
			t.Fatal(err)
		}
		sm, err := ledger.VerifyMembership(g, served)
		if err != nil {
			t.Errorf("%s serves a membership proof that does not verify: %v", gw.api, err)
			continue
		}
		if a, b := sm.Last(), m.Last(); a.Start != b.Start || a.Tx != b.Tx || !slices.Equal(a.IDs(), b.IDs()) {
			t.Errorf("%s serves a proof that leaves %v from %d, want %v from %d", gw.api, a.IDs(), a.Start, b.IDs(), b.Start)
		}
	}
	want, err := proof.Encode()
	if err != nil {
		t.Fatal(err)
	}
	proofFile := filepath.Join(t.TempDir(), "proof.cbor")
	if err := os.WriteFile(proofFile, want, 0o644); err != nil {
		t.Fatal(err)
	}
	ids := acked.list()
	slices.Sort(ids)
	checked := map[uint64]bool{} // the member sets, by first height
	for i := 0; i < len(ids); i += max(len(ids)/40, 1) {
		r := fetchReceipt(t, g5.api, ids[i]) // node-5 holds every block from 1
		if err := m.VerifyReceipt(r); err != nil {
			t.Errorf("receipt of %s at height %d: %v", ids[i], r.Header.Height, err)
		}
		checked[m.At(r.Header.Height).Start] = true
	}
	if len(checked) < 4 {
		t.Errorf("the receipts checked are from %d member sets, want receipts from before and after the changes", len(checked))
	}
	// Without the proof, a receipt certified by the last set does not
	// verify with the genesis: the test can fail.
	last := fetchReceipt(t, g6.api, hexID(env)) // the record node-7 took
	if g0, _ := ledger.NewMembers(g); last.Header.Height < replace.from || g0.VerifyReceipt(last) == nil {
		t.Errorf("a receipt at height %d verifies with the genesis nodes alone", last.Header.Height)
	}
	// The operator's tool: the same receipt with and without the proof.
	enc, err := last.Encode()
	if err != nil {
		t.Fatal(err)
	}
	receiptFile := filepath.Join(t.TempDir(), "last.receipt")
	if err := os.WriteFile(receiptFile, enc, 0o644); err != nil {
		t.Fatal(err)
	}
	genesisFile := filepath.Join(c.data[0], "genesis.json")
	if out, errs, code := cli(t, "", "receipt", "verify", "--genesis", genesisFile, "--proof", proofFile, receiptFile); code != 0 || !strings.HasPrefix(out, "valid:") {
		t.Errorf("receipt verify --proof: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := cli(t, "", "receipt", "verify", "--genesis", genesisFile, receiptFile); code == 0 || !strings.Contains(errs, "--proof") {
		t.Errorf("receipt verify without the proof: exit %d, %s; want a failure that names --proof", code, errs)
	}
}

// fetchProof returns the membership proof a gateway serves.
func fetchProof(t *testing.T, apiURL string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", apiURL+"/api/v1/cluster/proof", nil)
	req.Header.Set("Accept", "application/cbor")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/cluster/proof: %d %v %s", resp.StatusCode, err, b)
	}
	return b
}

// cliFails runs a ledgergate command that must fail saying want.
func cliFails(t *testing.T, dir, want string, args ...string) {
	t.Helper()
	out, errs, code := cli(t, dir, args...)
	if code == 0 || !strings.Contains(errs, want) {
		t.Errorf("ledgergate %s: exit %d, want an error saying %q:\n%s%s", strings.Join(args[:2], " "), code, want, out, errs)
	}
}

// memberConfig is a new gateway's configuration file and peer address.
type memberConfig struct{ path, addr string }

// newMemberDir makes the data directory of a gateway to add as id: its
// node key, the genesis, and a configuration with its peer address.
func newMemberDir(t *testing.T, dir, gen, id string, join bool) (string, memberConfig) {
	t.Helper()
	data := filepath.Join(dir, id)
	mustCLI(t, dir, "init", "--software-key", "--data", data, "--node-id", id)
	mustCLI(t, dir, "init", "--software-key", "--data", data, "--genesis", gen, "--node-id", id)
	c := memberConfig{path: filepath.Join(dir, id+".toml"), addr: freeAddr(t)}
	toml := fmt.Sprintf("[cluster]\nlisten = %q\njoin_from_snapshot = %t\n[snapshot]\nevery_blocks = 32\nevery_txs = 0\n", c.addr, join)
	if err := os.WriteFile(c.path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return data, c
}

// change is what a cluster command printed.
type change struct {
	tx   string
	from uint64
}

var changeRE = regexp.MustCompile(`(?s)committed in block \d+, tx ([0-9a-f]{64}).*takes effect at height (\d+)`)

func parseChange(t *testing.T, out string) change {
	t.Helper()
	m := changeRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("cluster command output: %s", out)
	}
	from, _ := strconv.ParseUint(m[2], 10, 64)
	return change{tx: m[1], from: from}
}

// waitInForce waits until every gateway of gws is past height from and
// has the members ids in force, with no change pending.
func waitInForce(t *testing.T, gws []*gateway, from uint64, within time.Duration, ids ...string) {
	t.Helper()
	want := strings.Join(ids, ",")
	deadline := time.Now().Add(within)
	for _, g := range gws {
		for {
			var m api.Members
			code := getJSON(t, g.api, "/api/v1/cluster/members", &m)
			got := make([]string, len(m.InForce.Nodes))
			for i, n := range m.InForce.Nodes {
				got[i] = n.ID
			}
			if code == http.StatusOK && m.Pending == nil && m.Height >= from && strings.Join(got, ",") == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: members %v (pending %v) at height %d, want %s in force from %d", g.data, got, m.Pending != nil, m.Height, want, from)
			}
			time.Sleep(100 * time.Millisecond) // polling another process's API
		}
	}
}

// convergeOn waits until gws agree on one head and returns its height.
func convergeOn(t *testing.T, gws []*gateway, within time.Duration) uint64 {
	t.Helper()
	c := &testCluster{t: t, gws: gws}
	h, _ := c.converge(1, within)
	return h
}

// fetchReceipt reads the receipt of tx id from a gateway's API.
func fetchReceipt(t *testing.T, apiURL, id string) *ledger.Receipt {
	t.Helper()
	var rb api.ReceiptBody
	if code := getJSON(t, apiURL, "/api/v1/txs/"+id+"/receipt", &rb); code != http.StatusOK {
		t.Fatalf("receipt of %s: HTTP %d", id, code)
	}
	raw, err := base64.StdEncoding.DecodeString(rb.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ledger.DecodeReceipt(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// postBody submits a tx and returns the answer's body.
func postBody(t *testing.T, apiURL string, env []byte) string {
	t.Helper()
	resp, err := http.Post(apiURL+"/api/v1/txs", "application/cose", strings.NewReader(string(env)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
