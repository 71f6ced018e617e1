package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// swtpm is a software TPM 2.0 (Debian's swtpm) on a Unix socket, its state
// in a directory that outlives a restart.
type swtpm struct {
	t    *testing.T
	dir  string
	sock string
	cmd  *exec.Cmd
}

func startSwtpm(t *testing.T) *swtpm {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatal("swtpm is not installed: `make deps` installs it (Debian package swtpm)")
	}
	// A short path: Unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &swtpm{t: t, dir: dir, sock: filepath.Join(dir, "sock")}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *swtpm) start() {
	s.t.Helper()
	s.cmd = exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+s.dir,
		"--server", "type=unixio,path="+s.sock, "--ctrl", "type=unixio,path="+s.sock+".ctrl",
		"--flags", "startup-clear,not-need-init")
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", s.sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("swtpm did not listen on %s in 10s: %s", s.sock, out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling for the socket
	}
}

func (s *swtpm) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
	os.Remove(s.sock)
	os.Remove(s.sock + ".ctrl")
}

// tpmConfig writes a configuration whose node key is in s, and returns
// its path.
func tpmConfig(t *testing.T, dir string, s *swtpm, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "ledgergate.toml")
	cfg := fmt.Sprintf("[signer]\nkind = \"tpm\"\ntpm_socket = %q\n%s", s.sock, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type keyStatus struct {
	NodeID      string `json:"node_id"`
	KeyHardware bool   `json:"key_hardware"`
	Key         string `json:"key"`
	Height      uint64 `json:"height"`
}

// TestTPMNodeKey: `init` makes the node key in the TPM; the gateway signs
// with it and says so; after swtpm and the gateway restart on the same
// state, the key and the node are the same.
func TestTPMNodeKey(t *testing.T) {
	dir := t.TempDir()
	tp := startSwtpm(t)
	cfg := tpmConfig(t, dir, tp, "")
	data := filepath.Join(dir, "data")
	out := mustCLI(t, dir, "init", "--config", cfg, "--data", data, "--chain-id", "tpm-test")
	if !strings.Contains(out, "key in the TPM") {
		t.Fatalf("init: %s", out)
	}
	if out := mustCLI(t, dir, "tpm", "info", "--socket", tp.sock); !strings.Contains(out, "node key:      present at 0x81010001") {
		t.Fatalf("tpm info:\n%s", out)
	}
	pubPEM := mustCLI(t, dir, "tpm", "pubkey", "--socket", tp.sock)
	blk, _ := pem.Decode([]byte(pubPEM))
	g, err := ledger.ParseGenesis(must(os.ReadFile(filepath.Join(data, "genesis.json"))))
	if err != nil {
		t.Fatal(err)
	}
	if blk == nil || !bytes.Equal(blk.Bytes, g.Nodes[0].PublicKey) {
		t.Fatal("the genesis node key is not the TPM's key")
	}
	if _, errs, code := cli(t, dir, "tpm", "init", "--socket", tp.sock); code != 1 || !strings.Contains(errs, "already") {
		t.Fatalf("second tpm init: exit %d: %s", code, errs)
	}

	gw := startGateway(t, data, "--config", cfg)
	var st keyStatus
	getJSON(t, gw.api, "/api/v1/status", &st)
	if !st.KeyHardware || !strings.Contains(st.Key, "TPM 2.0 key at 0x81010001") {
		t.Fatalf("status: %+v", st)
	}
	if m := metrics(t, gw.api); !strings.Contains(m, "ledgergate_node_key_hardware 1") {
		t.Fatal("metric ledgergate_node_key_hardware is not 1")
	}
	a := &admin{key: must(device.LoadKey(filepath.Join(data, "admin.key"))), chainID: "tpm-test"}
	a.enroll(t, gw.api, "sensor-1", ledger.ES256)

	gw.kill()
	tp.stop()
	tp.start()
	gw = startGateway(t, data, "--config", cfg)
	var again keyStatus
	getJSON(t, gw.api, "/api/v1/status", &again)
	if again.NodeID != st.NodeID || again.Key != st.Key || again.Height != 1 {
		t.Fatalf("after restarts: %+v, before %+v", again, st)
	}
	a.enroll(t, gw.api, "sensor-2", ledger.ES256) // the restarted node still certifies blocks
	if out, errs, code := cli(t, dir, "ledger", "verify", "--data", data); code != 0 {
		t.Fatalf("ledger verify: %s%s", out, errs)
	}
}

// TestTPMRefusals: no TPM and no software key configured, or a wrong auth
// value: the gateway does not start, and says why.
func TestTPMRefusals(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	mustCLI(t, dir, "init", "--software-key", "--data", data)
	noTPM := filepath.Join(dir, "notpm.toml")
	os.WriteFile(noTPM, []byte("[signer]\nkind = \"tpm\"\ntpm_device = \"/dev/nonexistent-tpm\"\n"), 0o644)
	_, errs, code := cli(t, dir, "run", "--config", noTPM, "--data", data, "--listen", "127.0.0.1:0", "--mqtt", "off")
	if code == 0 || !strings.Contains(errs, "no TPM") || !strings.Contains(errs, "explicitly configured software key") {
		t.Fatalf("run without a TPM: exit %d: %s", code, errs)
	}

	tp := startSwtpm(t)
	os.WriteFile(filepath.Join(dir, "good"), []byte("correct horse\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad"), []byte("battery staple\n"), 0o600)
	cfg := tpmConfig(t, dir, tp, fmt.Sprintf("tpm_auth_file = %q\n", filepath.Join(dir, "good")))
	data2 := filepath.Join(dir, "data2")
	mustCLI(t, dir, "init", "--config", cfg, "--data", data2)
	bad := tpmConfig(t, filepath.Join(dir, "data2"), tp, fmt.Sprintf("tpm_auth_file = %q\n", filepath.Join(dir, "bad")))
	_, errs, code = cli(t, dir, "run", "--config", bad, "--data", data2, "--listen", "127.0.0.1:0", "--mqtt", "off")
	if code == 0 || !strings.Contains(errs, "wrong auth value") {
		t.Fatalf("run with a wrong auth value: exit %d: %s", code, errs)
	}
}

// TestTPMCluster: four gateways, each with its own swtpm holding its node
// key, commit together; their certificates verify.
func TestTPMCluster(t *testing.T) {
	c, _ := startTPMCluster(t, "tpm-cluster")
	for i := range 4 {
		c.admin.enroll(t, c.gws[i].api, fmt.Sprintf("sensor-%d", i), ledger.ES256) // through each gateway
	}
	h, _ := c.converge(4, time.Minute)
	c.checkTPM()
	t.Logf("four TPM-backed gateways at height %d", h)
}

// startTPMCluster starts four gateways, each with its own swtpm holding
// its node key, on one new chain.
func startTPMCluster(t *testing.T, chainID string) (*testCluster, []*swtpm) {
	t.Helper()
	dir := t.TempDir()
	var datas, cfgs, nodes []string
	var tps []*swtpm
	for i := 1; i <= 4; i++ {
		tp := startSwtpm(t)
		tps = append(tps, tp)
		nd := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		os.MkdirAll(nd, 0o750)
		cfg := tpmConfig(t, nd, tp, "")
		data := filepath.Join(nd, "data")
		mustCLI(t, dir, "init", "--config", cfg, "--data", data, "--node-id", fmt.Sprintf("node-%d", i))
		datas, cfgs = append(datas, data), append(cfgs, cfg)
		nodes = append(nodes, "--node", fmt.Sprintf("node-%d,%s,%s", i, freeAddr(t), filepath.Join(data, "node.pub")))
	}
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", filepath.Join(dir, "admin.key"))
	gen := filepath.Join(dir, "genesis.json")
	mustCLI(t, dir, append(append([]string{"genesis", "new", "--chain-id", chainID}, nodes...),
		"--admin", filepath.Join(dir, "admin.key.pub"), "--admin-id", "admin", "--out", gen)...)
	var gws []*gateway
	for i, data := range datas {
		mustCLI(t, dir, "init", "--config", cfgs[i], "--data", data, "--genesis", gen)
		gws = append(gws, startGateway(t, data, "--config", cfgs[i]))
	}
	a := &admin{key: must(device.LoadKey(filepath.Join(dir, "admin.key"))), chainID: chainID}
	return &testCluster{t: t, data: datas, gws: gws, admin: a}, tps
}

// checkTPM checks that every gateway's key is in a TPM and that its
// ledger verifies.
func (c *testCluster) checkTPM() {
	c.t.Helper()
	for i, data := range c.data {
		var st keyStatus
		getJSON(c.t, c.gws[i].api, "/api/v1/status", &st)
		if !st.KeyHardware {
			c.t.Errorf("node-%d: key_hardware false", i+1)
		}
		if out, errs, code := cli(c.t, c.t.TempDir(), "ledger", "verify", "--data", data); code != 0 {
			c.t.Errorf("node-%d: ledger verify: %s%s", i+1, out, errs)
		}
	}
}

// TestTPMUnavailableCluster: one gateway of four loses its TPM. The other
// three keep committing (PBFT tolerates one silent replica); that one says
// why it is not ready and keeps running; once its TPM is back it catches
// up, commits again, and every ledger verifies (issue 20, defect 3).
func TestTPMUnavailableCluster(t *testing.T) {
	c, tps := startTPMCluster(t, "tpm-gone-cluster")
	c.admin.enroll(t, c.gws[0].api, "sensor-0", ledger.ES256)
	h, _ := c.converge(1, time.Minute)

	tps[1].stop()
	c.admin.enroll(t, c.gws[0].api, "sensor-1", ledger.ES256) // three of four commit it
	c.admin.enroll(t, c.gws[2].api, "sensor-2", ledger.ES256)
	body := waitReadyz(t, c.gws[1], http.StatusServiceUnavailable, "node key: TPM unavailable", 30*time.Second)
	t.Logf("node-2's /readyz without its TPM: %s", strings.TrimSpace(body))
	h = waitHeight(t, c.gws[0], h+2, 30*time.Second)

	tps[1].start()
	waitReadyz(t, c.gws[1], http.StatusOK, "ready", time.Minute)
	c.admin.enroll(t, c.gws[1].api, "sensor-3", ledger.ES256) // through the gateway that was without
	h, _ = c.converge(h+1, time.Minute)
	c.checkTPM()
	t.Logf("all four at height %d after node-2's TPM came back", h)
}

func metrics(t *testing.T, api string) string {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestFirstStart: an installed gateway started on an empty data directory
// makes its node key and a single-node chain, and serves; with the
// default TPM signer and no TPM it refuses, saying why.
func TestFirstStart(t *testing.T) {
	dir := t.TempDir()
	soft := filepath.Join(dir, "soft.toml")
	os.WriteFile(soft, []byte("[signer]\nkind = \"software\"\n"), 0o644)
	// Not --dev: the installed defaults with a software key.
	cmd := exec.Command(ledgergateBin, "run", "--config", soft, "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--mqtt", "off", "--coap", "off", "--coap-dtls", "off")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for !strings.Contains(log.String(), "ledgergate ready") && sc.Scan() {
		log.WriteString(sc.Text() + "\n")
	}
	if !strings.Contains(log.String(), "created a single-node chain") || !strings.Contains(log.String(), "ledgergate ready") {
		t.Errorf("first start log:\n%s", log.String())
	}
	noTPM := filepath.Join(dir, "notpm.toml")
	os.WriteFile(noTPM, []byte("[signer]\nkind = \"tpm\"\ntpm_device = \"/dev/nonexistent-tpm\"\n"), 0o644)
	_, errs, code := cli(t, dir, "run", "--config", noTPM, "--data", filepath.Join(dir, "empty"), "--listen", "127.0.0.1:0", "--mqtt", "off", "--coap", "off", "--coap-dtls", "off")
	if code == 0 || !strings.Contains(errs, "no TPM") {
		t.Fatalf("first start without a TPM: exit %d: %s", code, errs)
	}
}

// waitHeight polls the status until the height is at least h; it fails
// the test, with the gateway's log, after within or when the gateway exits.
func waitHeight(t *testing.T, gw *gateway, h uint64, within time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case err := <-gw.done:
			gw.done <- err
			t.Fatalf("the gateway exited (%v) while waiting for height %d\n%s", err, h, gw.log())
		default:
		}
		var st keyStatus
		getJSON(t, gw.api, "/api/v1/status", &st)
		if st.Height >= h {
			return st.Height
		}
		if time.Now().After(deadline) {
			t.Fatalf("height %d after %s, want %d\n%s", st.Height, within, h, gw.log())
		}
		time.Sleep(100 * time.Millisecond) // polling another process's API
	}
}

// waitReadyz polls /readyz until it answers code with a body containing
// contains, and returns the body; it fails the test, with the gateway's
// log, after within or when the gateway exits.
func waitReadyz(t *testing.T, gw *gateway, code int, contains string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		select {
		case err := <-gw.done:
			gw.done <- err
			t.Fatalf("the gateway exited (%v) while waiting for /readyz %d %q\n%s", err, code, contains, gw.log())
		default:
		}
		resp, err := http.Get(gw.api + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v\n%s", err, gw.log())
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == code && strings.Contains(b.String(), contains) {
			return b.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s; want %d with %q within %s\n%s", resp.StatusCode, b.String(), code, contains, within, gw.log())
		}
		time.Sleep(100 * time.Millisecond) // polling another process's API
	}
}

// TestTPMHeartbeat: with the node key in a TPM, an idle single-node chain
// commits heartbeat blocks (issue 20, defect 3: go-cose asked the TPM to
// sign a digest without saying which hash, the TPM signer refused, and
// the chain stayed at height 0).
func TestTPMHeartbeat(t *testing.T) {
	dir := t.TempDir()
	tp := startSwtpm(t)
	cfg := tpmConfig(t, dir, tp, "[batch]\nheartbeat = \"1s\"\n")
	data := filepath.Join(dir, "data")
	mustCLI(t, dir, "init", "--config", cfg, "--data", data, "--chain-id", "tpm-heartbeat")
	gw := startGateway(t, data, "--config", cfg)
	waitHeight(t, gw, 2, 30*time.Second)
	var b struct {
		Txs []struct{ Kind, Author string }
	}
	getJSON(t, gw.api, "/api/v1/blocks/1", &b)
	if len(b.Txs) != 1 || b.Txs[0].Kind != string(ledger.KindHeartbeat) {
		t.Errorf("block 1 of an idle chain: %+v", b.Txs)
	}
	if strings.Contains(gw.log(), "heartbeat: sign") {
		t.Errorf("heartbeat signing failed:\n%s", gw.log())
	}
	if out, errs, code := cli(t, dir, "ledger", "verify", "--data", data); code != 0 {
		t.Fatalf("ledger verify: %s%s", out, errs)
	}
}

// TestTPMUnavailable: the TPM goes away while the gateway runs (swtpm
// stops, its socket is gone) and comes back on the same socket with the
// same state. The gateway keeps running: /readyz says why it cannot
// commit, a tx that comes in meanwhile waits (its proposal needs the node
// key: this used to end the process), and once the TPM answers again the
// gateway is ready, commits that tx once and heartbeat blocks, without a
// restart (issue 20, defect 3).
func TestTPMUnavailable(t *testing.T) {
	dir := t.TempDir()
	tp := startSwtpm(t)
	cfg := tpmConfig(t, dir, tp, "[batch]\nheartbeat = \"1s\"\n")
	data := filepath.Join(dir, "data")
	mustCLI(t, dir, "init", "--config", cfg, "--data", data, "--chain-id", "tpm-gone")
	gw := startGateway(t, data, "--config", cfg)
	waitHeight(t, gw, 1, 30*time.Second)

	tp.stop()
	body := waitReadyz(t, gw, http.StatusServiceUnavailable, "node key: TPM unavailable", 30*time.Second)
	t.Logf("/readyz without the TPM: %s", strings.TrimSpace(body))
	var st keyStatus
	getJSON(t, gw.api, "/api/v1/status", &st)

	a := &admin{key: must(device.LoadKey(filepath.Join(data, "admin.key"))), chainID: "tpm-gone"}
	pub, _ := ledger.MarshalPublicKey(must(device.GenerateKey(ledger.ES256)))
	env, err := ledger.SignTx(a.key, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: a.chainID,
		Enroll: &ledger.Enroll{DeviceID: "sensor-1", PublicKey: pub}})
	if err != nil {
		t.Fatal(err)
	}
	code, reason, _, err := post(context.Background(), gw.api, env)
	t.Logf("a tx without the TPM: %d %s %v", code, reason, err)
	if err == nil && code == http.StatusOK {
		t.Fatal("a tx committed without the node key")
	}
	waitReadyz(t, gw, http.StatusServiceUnavailable, "node key: TPM unavailable", 30*time.Second)

	tp.start()
	waitReadyz(t, gw, http.StatusOK, "ready", 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for { // the same bytes again, as a client does after "unavailable"
		code, reason, _, err := post(context.Background(), gw.api, env)
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tx after the TPM came back: %d %s %v\n%s", code, reason, err, gw.log())
		}
		time.Sleep(100 * time.Millisecond) // polling another process's API
	}
	h := waitHeight(t, gw, st.Height+3, 30*time.Second)
	t.Logf("height %d without the TPM, %d after it came back", st.Height, h)
	if n := txCounts(t, gw.api)[hexID(env)]; n != 1 {
		t.Errorf("the tx sent while the TPM was away is in the ledger %d times, want once", n)
	}
	gw.stop()
	if out, errs, code := cli(t, dir, "ledger", "verify", "--data", data); code != 0 {
		t.Fatalf("ledger verify: %s%s", out, errs)
	}
}

// TestTPMUnavailableStop: a gateway whose replica waits for a TPM that
// went away stops cleanly on SIGTERM (exit 0), and starts again once the
// TPM is back.
func TestTPMUnavailableStop(t *testing.T) {
	dir := t.TempDir()
	tp := startSwtpm(t)
	cfg := tpmConfig(t, dir, tp, "")
	data := filepath.Join(dir, "data")
	mustCLI(t, dir, "init", "--config", cfg, "--data", data, "--chain-id", "tpm-stop")
	gw := startGateway(t, data, "--config", cfg)
	tp.stop()
	key := must(device.LoadKey(filepath.Join(data, "admin.key")))
	pub, _ := ledger.MarshalPublicKey(must(device.GenerateKey(ledger.ES256)))
	env, err := ledger.SignTx(key, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "tpm-stop",
		Enroll: &ledger.Enroll{DeviceID: "sensor-1", PublicKey: pub}})
	if err != nil {
		t.Fatal(err)
	}
	if code, reason, _, err := post(context.Background(), gw.api, env); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a tx without the TPM: %d %s %v, want 503", code, reason, err)
	}
	waitReadyz(t, gw, http.StatusServiceUnavailable, "node key: TPM unavailable", 30*time.Second)
	gw.stop() // fails the test unless the exit is clean

	tp.start()
	gw = startGateway(t, data, "--config", cfg)
	a := &admin{key: key, chainID: "tpm-stop"}
	a.enroll(t, gw.api, "sensor-2", ledger.ES256)
	if out, errs, code := cli(t, dir, "ledger", "verify", "--data", data); code != 0 {
		t.Fatalf("ledger verify: %s%s", out, errs)
	}
}
