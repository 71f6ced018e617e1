package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// testCluster is n real ledgergate processes on 127.0.0.1 sharing one
// genesis, set up with the commands docs/cluster.md walks through.
type testCluster struct {
	t     testing.TB
	data  []string
	gws   []*gateway
	admin *admin
	// mu guards the gws entries a restart replaces while devices dial
	// (see restart and mqttAddr).
	mu sync.Mutex
}

// restart starts gateway i again on its data directory (it must be
// stopped); devices of a load that reconnect dial its new address.
func (c *testCluster) restart(i int, extra ...string) *gateway {
	c.t.Helper()
	g := startGateway(c.t, c.data[i], extra...)
	c.mu.Lock()
	c.gws[i] = g
	c.mu.Unlock()
	return g
}

// mqttAddr is gateway i's current MQTT address.
func (c *testCluster) mqttAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gws[i].mqtt
}

// newCluster starts n gateways; extra goes to each `ledgergate run`.
func newCluster(t testing.TB, n int, extra ...string) *testCluster {
	t.Helper()
	dir := t.TempDir()
	c := &testCluster{t: t}
	var nodes []string
	for i := 1; i <= n; i++ {
		data := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		c.data = append(c.data, data)
		mustCLI(t, dir, "init", "--software-key", "--data", data, "--node-id", fmt.Sprintf("node-%d", i))
		nodes = append(nodes, "--node", fmt.Sprintf("node-%d,%s,%s", i, freeAddr(t), filepath.Join(data, "node.pub")))
	}
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", filepath.Join(dir, "admin.key"))
	gen := filepath.Join(dir, "genesis.json")
	mustCLI(t, dir, append(append([]string{"genesis", "new", "--chain-id", "test-cluster"}, nodes...),
		"--admin", filepath.Join(dir, "admin.key.pub"), "--admin-id", "admin", "--out", gen)...)
	for _, data := range c.data {
		mustCLI(t, dir, "init", "--software-key", "--data", data, "--genesis", gen)
	}
	for _, data := range c.data {
		c.gws = append(c.gws, startGateway(t, data, extra...))
	}
	key, err := device.LoadKey(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = &admin{key: key, chainID: "test-cluster"}
	return c
}

// seedsHost is the loopback address of the gateways a DNS zone names.
const seedsHost = "127.0.0.2"

// clusterStatus is the part of /api/v1/status these tests read.
type clusterStatus struct {
	Height  uint64 `json:"height"`
	Cluster struct {
		View     uint64 `json:"view"`
		Primary  string `json:"primary"`
		Changing bool   `json:"view_changing"`
	} `json:"cluster"`
}

func (c *testCluster) status(i int) clusterStatus {
	var st clusterStatus
	getJSON(c.t, c.gws[i].api, "/api/v1/status", &st)
	return st
}

// head returns gateway i's height and the hash of its last block.
func (c *testCluster) head(i int) (uint64, string) {
	st := c.status(i)
	if st.Height == 0 {
		return 0, ""
	}
	var b struct {
		Hash string `json:"hash"`
	}
	if code := getJSON(c.t, c.gws[i].api, fmt.Sprintf("/api/v1/blocks/%d", st.Height), &b); code != http.StatusOK {
		c.t.Fatalf("gateway %d: block %d: status %d", i+1, st.Height, code)
	}
	return st.Height, b.Hash
}

// converge waits until the gateways agree on one head of at least min
// height, and returns it.
func (c *testCluster) converge(min uint64, within time.Duration) (uint64, string) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		h0, hash0 := c.head(0)
		same := h0 >= min
		var heads []string
		for i := range c.gws {
			h, hash := c.head(i)
			heads = append(heads, fmt.Sprintf("node-%d: %d %.8s", i+1, h, hash))
			same = same && h == h0 && hash == hash0
		}
		if same {
			return h0, hash0
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("gateways did not converge on one head in %s:\n%s", within, strings.Join(heads, "\n"))
		}
		time.Sleep(100 * time.Millisecond) // polling HTTP status, not waiting for an event
	}
}

// load is devices publishing records over MQTT, device i to gateway
// i mod n, each waiting for its PUBACK before the next record.
type load struct {
	acked  ackSet
	byGW   []atomic.Int64 // PUBACKs from each gateway's devices
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startLoad starts the devices; a device whose publish fails stops (its
// gateway is gone).
func (c *testCluster) startLoad(devices int) *load { return c.startLoadWith(devices, false) }

// startLoadWith starts the devices. With resend, a device whose publish
// fails (a gateway stopped for longer than the MQTT client waits for a
// PUBACK) does what docs/device-protocol.md asks of devices: it sends the
// same bytes again, after a pause, on a new connection to its gateway.
func (c *testCluster) startLoadWith(devices int, resend bool) *load {
	return c.startLoadFor(devices, resend, 3*time.Minute)
}

// startLoadFor is startLoadWith for at most d.
func (c *testCluster) startLoadFor(devices int, resend bool, d time.Duration) *load {
	t := c.t
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = c.admin.enroll(t, c.gws[0].api, "dev-"+strconv.Itoa(i), ledger.ES256)
	}
	h, _ := c.head(0)
	c.converge(h, 30*time.Second) // every gateway knows every device
	ctx, cancel := context.WithTimeout(context.Background(), d)
	l := &load{cancel: cancel, byGW: make([]atomic.Int64, len(c.gws))}
	for i := range devices {
		gw := i % len(c.gws)
		acks := &l.byGW[gw]
		id := "dev-" + strconv.Itoa(i)
		dial := func() (*device.Client, error) {
			return device.Dial(ctx, id, keys[i], c.admin.chainID, device.DialOptions{Broker: "tcp://" + c.mqttAddr(gw)})
		}
		cl, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				env := signAs(t, keys[i], c.admin.chainID, id, seq)
				for {
					err := errors.New("not connected")
					if cl != nil {
						err = cl.Publish(ctx, "s", env)
					}
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return
					}
					if !resend {
						t.Logf("%s stops publishing (to node-%d): %v", id, gw+1, err)
						return // its gateway is gone
					}
					if cl != nil {
						cl.Close()
					}
					select {
					case <-ctx.Done():
						return
					case <-time.After(device.ResendPause): // a device's pause before it sends again
					}
					if cl, err = dial(); err != nil {
						cl = nil
					}
				}
				l.acked.add(hexID(env))
				acks.Add(1)
			}
		}()
	}
	return l
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// check runs `ledger verify` on every gateway and checks that every
// PUBACKed record is in every ledger exactly once.
func (c *testCluster) check(acked *ackSet) {
	t := c.t
	for i, g := range c.gws {
		if out, errs, code := cli(t, "", "ledger", "verify", "--data", c.data[i]); code != 0 {
			t.Errorf("ledger verify on node-%d: exit %d\n%s%s", i+1, code, out, errs)
		}
		acked.checkExactlyOnce(t, g.api)
	}
}

// TestClusterPrimaryKilled runs four gateways with devices on all four,
// kills the primary with SIGKILL under load, and checks that the others
// change view and go on acknowledging, that the old primary catches up
// when it returns, and that all four end with one ledger.
func TestClusterPrimaryKilled(t *testing.T) {
	c := newCluster(t, 4)
	if st := c.status(0); st.Cluster.Primary != "node-1" {
		t.Fatalf("primary is %q, want node-1 in view 0", st.Cluster.Primary)
	}
	l := c.startLoad(40)
	l.acked.waitFor(t, 300)
	c.gws[0].kill()
	before := l.acked.len()
	t.Logf("killed the primary after %d PUBACKs", before)
	l.acked.waitFor(t, before+300) // the devices on the three others
	if st := c.status(1); st.Cluster.View == 0 || st.Cluster.Primary == "node-1" {
		t.Errorf("after the primary died: view %d, primary %s", st.Cluster.View, st.Cluster.Primary)
	}

	c.gws[0] = startGateway(t, c.data[0])
	l.acked.waitFor(t, l.acked.len()+200)
	l.stop()
	h, hash := c.converge(1, time.Minute)
	t.Logf("%d PUBACKs; all four at height %d, head %.16s", l.acked.len(), h, hash)
	c.check(&l.acked)
}

// TestClusterCutOffCatchesUp stops one backup (SIGSTOP) while the others
// commit, then lets it go on: it must fetch what it missed from its peers
// (state transfer), checking each block's certificate.
func TestClusterCutOffCatchesUp(t *testing.T) {
	c := newCluster(t, 4)
	l := c.startLoad(12)
	l.acked.waitFor(t, 100)
	cut := c.gws[3]
	if err := cut.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	l.acked.waitFor(t, l.acked.len()+1500)
	if err := cut.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	l.stop()
	h, _ := c.converge(1, time.Minute)
	if !strings.Contains(cut.log(), "caught up from a peer") {
		t.Errorf("node-4 reached height %d without state transfer:\n%s", h, cut.log())
	}
	c.check(&l.acked)
}

// TestClusterConfigBlob: a configuration uploaded to one gateway is
// served by every other, which fetch its blob from their peers and check
// it against the ledger.
func TestClusterConfigBlob(t *testing.T) {
	c := newCluster(t, 4)
	dir := filepath.Dir(c.data[0])
	api0 := c.gws[0].api
	admin := []string{"--api", api0, "--admin-key", filepath.Join(dir, "admin.key"), "--admin-id", "admin", "--data", c.data[0]}
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "meter")
	mustCLI(t, dir, append([]string{"device", "enroll", "--id", "meter", "--pubkey", "meter.pub", "--enc-pubkey", "meter.enc.pub"}, admin...)...)
	conf := filepath.Join(dir, "meter.toml")
	if err := os.WriteFile(conf, []byte("interval = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, append([]string{"config", "publish", "--target", "meter", "--file", conf}, admin...)...)

	// currentBlob is the blob of the config a gateway says the device
	// should run, "" if it has none yet. Each answer is decoded into a
	// fresh value: one without "current" must not leave the previous
	// gateway's blob in place.
	currentBlob := func(api string) string {
		var cur struct {
			Current struct{ Blob string }
		}
		if getJSON(t, api, "/api/v1/devices/meter/config", &cur) != http.StatusOK {
			return ""
		}
		return cur.Current.Blob
	}
	// The publish answered once gateway 1 committed; the others follow.
	var blobHex string
	deadline := time.Now().Add(30 * time.Second)
	for _, g := range c.gws {
		for blobHex = currentBlob(g.api); blobHex == ""; blobHex = currentBlob(g.api) {
			if time.Now().After(deadline) {
				t.Fatalf("gateway %s has not indexed the config", g.api)
			}
			time.Sleep(50 * time.Millisecond) // polling another process's API
		}
	}
	for i, g := range c.gws[1:] {
		resp, err := http.Get(g.api + "/api/v1/blobs/" + blobHex)
		if err != nil {
			t.Fatal(err)
		}
		blob := readAll(t, resp)
		if sum := sha256.Sum256(blob); hex.EncodeToString(sum[:]) != blobHex {
			t.Errorf("gateway %d served a blob that hashes to %x", i+2, sum)
		}
	}
	// A blob no config.set names is neither served nor fetched.
	if code := getJSON(t, c.gws[3].api, "/api/v1/blobs/"+strings.Repeat("ab", 32), nil); code != http.StatusNotFound {
		t.Errorf("unknown blob: HTTP %d, want 404", code)
	}
}

// TestClusterBackupsStopped is issue 20's first defect on real processes:
// two of four gateways stopped (SIGSTOP) under load long enough for the
// two left, without a quorum, to ask for a new view many times over, then
// let go on (SIGCONT). Within a bound, every gateway must leave its view
// change, all must share one view, and every gateway's own devices must
// get PUBACKs again. A gateway left alone in a higher view used to stay
// view_changing for minutes while the others committed, its devices
// unanswered (and a gateway that became primary behind the others
// exited). The field saw it with 50 s stops and the default 1 s
// view-change timeout; here the timeout is 100 ms and the stop 15 s:
// more timeouts in less time, and view changes that cascade under the
// load of the resumed gateways. Whether a run ends with a lone gateway
// depends on timing; the simulator (gateway/pbft/pbfttest, pause=true)
// and testdata/lone_rejoin.txt reproduce it every time.
func TestClusterBackupsStopped(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "ledgergate.toml")
	if err := os.WriteFile(cfg, []byte("[cluster]\nview_change_timeout = \"100ms\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 4, "--config", cfg)
	t.Cleanup(func() {
		if t.Failed() {
			for i, g := range c.gws {
				t.Logf("node-%d log (pbft):\n%s", i+1, grepLines(g.log(), "component=pbft", "ledgergate run", "level=ERROR"))
			}
		}
	})
	l := c.startLoadWith(24, true)
	defer l.stop()
	l.acked.waitFor(t, 100)

	primary := c.status(0).Cluster.Primary
	var stopped []int
	for i := range c.gws {
		if fmt.Sprintf("node-%d", i+1) != primary && len(stopped) < 2 {
			stopped = append(stopped, i)
		}
	}
	for _, i := range stopped {
		if err := c.gws[i].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stopped node-%d and node-%d (primary %s) after %d PUBACKs", stopped[0]+1, stopped[1]+1, primary, l.acked.len())
	// The two left have no quorum: they ask for a new view. Stopped for
	// 15 s: past the peers' read timeouts, which drop the connections
	// and what was queued on them.
	stopUntil := time.Now().Add(15 * time.Second)
	changing := false
	for time.Now().Before(stopUntil) {
		for i := range c.gws {
			if !slices.Contains(stopped, i) && c.status(i).Cluster.Changing {
				changing = true
			}
		}
		time.Sleep(200 * time.Millisecond) // polling HTTP status during a fault of fixed length
	}
	if !changing {
		t.Error("the two gateways left never reported a view change while the others were stopped")
	}
	for _, i := range stopped {
		if err := c.gws[i].cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}

	// Every gateway out of its view change, in one view, and each one's
	// own devices answered again: generous bounds, a loaded 2-core
	// machine may run this.
	base := make([]int64, len(c.gws))
	for i := range base {
		base[i] = l.byGW[i].Load()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var views []string
		settled := true
		view := c.status(0).Cluster.View
		for i := range c.gws {
			st := c.status(i)
			acks := l.byGW[i].Load() - base[i]
			views = append(views, fmt.Sprintf("node-%d: view %d changing %v height %d, %d PUBACKs since SIGCONT", i+1, st.Cluster.View, st.Cluster.Changing, st.Height, acks))
			settled = settled && !st.Cluster.Changing && st.Cluster.View == view && acks >= 20
		}
		if settled {
			t.Logf("settled:\n%s", strings.Join(views, "\n"))
			for i, g := range c.gws {
				t.Logf("node-%d view changes:\n%s", i+1, grepLines(g.log(), "component=pbft"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after SIGCONT the gateways have not settled in one view with every gateway's devices answered:\n%s", strings.Join(views, "\n"))
		}
		time.Sleep(200 * time.Millisecond) // polling HTTP status, not waiting for an event
	}
	l.stop()
	c.converge(1, time.Minute)
	c.check(&l.acked)
}

// grepLines returns the lines of s that hold any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
