package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// ledgergateBin is the ledgergate binary, built once for these tests.
var ledgergateBin string

// TestMain builds the ledgergate binary the tests run, or takes the one
// LEDGERGATE_BIN names: benchmarks compare two versions of the gateway
// with the same benchmark code that way (docs/benchmarks.md).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ledgergate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ledgergateBin = filepath.Join(dir, "ledgergate")
	// No test reads the machine's /etc/ledgergate/ledgergate.toml: the
	// CLI processes the tests start read only the files they are given.
	os.Setenv(configEnv, "")
	if bin := os.Getenv("LEDGERGATE_BIN"); bin != "" {
		ledgergateBin = bin
	} else if out, err := exec.Command("go", "build", "-o", ledgergateBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ledgergate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is a running ledgergate process.
type gateway struct {
	t    testing.TB
	cmd  *exec.Cmd
	data string
	api  string
	mqtt string // host:port of the MQTT listener
	coap string // host:port of the CoAP UDP listener
	dtls string // host:port of the CoAP DTLS listener
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

var readyRE = regexp.MustCompile(`msg="ledgergate ready" api=(\S+) mqtt=(\S*) coap=(\S*) dtls=(\S*)`)

// startGateway runs `ledgergate run --dev` on data and waits until it is ready.
func startGateway(t testing.TB, data string, extra ...string) *gateway {
	t.Helper()
	return startGatewayEnv(t, nil, data, extra...)
}

// startGatewayEnv is startGateway with env added to the process's
// environment (e.g. the test clock hook, clock.TestOffsetEnv).
func startGatewayEnv(t testing.TB, env []string, data string, extra ...string) *gateway {
	t.Helper()
	return startGatewayBy(t, (*exec.Cmd).Start, env, data, extra...)
}

// startGatewayBy is startGatewayEnv with the process started by start
// (e.g. from a thread set up for it) instead of cmd.Start.
func startGatewayBy(t testing.TB, start func(*exec.Cmd) error, env []string, data string, extra ...string) *gateway {
	t.Helper()
	g := &gateway{t: t, data: data, done: make(chan error, 1)}
	args := append([]string{"run", "--dev", "--data", data, "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0",
		"--coap", "127.0.0.1:0", "--coap-dtls", "127.0.0.1:0"}, extra...)
	g.cmd = exec.Command(ledgergateBin, args...)
	if env != nil {
		g.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := start(g.cmd); err != nil {
		t.Fatal(err)
	}
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			g.mu.Lock()
			g.logs.WriteString(line + "\n")
			g.mu.Unlock()
			if m := readyRE.FindStringSubmatch(line); m != nil {
				ready <- m
			}
		}
		g.done <- g.cmd.Wait()
	}()
	t.Cleanup(func() { g.kill() })
	select {
	case m := <-ready:
		g.api, g.mqtt, g.coap, g.dtls = m[1], m[2], m[3], m[4]
	case err := <-g.done:
		t.Fatalf("gateway exited before ready: %v\n%s", err, g.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("gateway not ready after 60s\n%s", g.log())
	}
	return g
}

func (g *gateway) log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (g *gateway) kill() {
	if g.cmd.ProcessState != nil {
		return
	}
	g.cmd.Process.Kill()
	<-g.done
	g.done <- nil
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gateway) stop() {
	g.t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		g.done <- err
		if err != nil {
			g.t.Fatalf("gateway exit: %v\n%s", err, g.log())
		}
	case <-time.After(30 * time.Second):
		g.t.Fatalf("gateway did not stop on SIGTERM\n%s", g.log())
	}
}

// cli runs a ledgergate subcommand; it returns stdout, stderr and the exit code.
func cli(t testing.TB, dir string, args ...string) (string, string, int) {
	t.Helper()
	return cliEnv(t, dir, nil, args...)
}

// cliEnv is cli with env added to the process's environment.
func cliEnv(t testing.TB, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(ledgergateBin, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// mustCLI runs a subcommand that must succeed.
func mustCLI(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, dir, args...)
	if code != 0 {
		t.Fatalf("ledgergate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// getJSON fetches an API path into out and returns the status code.
func getJSON(t testing.TB, api, path string, out any) int {
	t.Helper()
	resp, err := http.Get(api + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// post submits a tx; it returns the status, the error reason, and the tx
// id of the receipt when accepted.
func post(ctx context.Context, api string, env []byte) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/api/v1/txs", bytes.NewReader(env))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/cose")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	var body struct {
		Reason  string `json:"reason"`
		TxID    string `json:"tx_id"`
		Receipt string `json:"receipt"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, "", "", err
	}
	if resp.StatusCode == http.StatusOK {
		raw, err := base64.StdEncoding.DecodeString(body.Receipt)
		if err != nil {
			return resp.StatusCode, "", "", err
		}
		if _, err := ledger.DecodeReceipt(raw); err != nil {
			return resp.StatusCode, "", "", err
		}
	}
	return resp.StatusCode, body.Reason, body.TxID, nil
}

// admin signs admin txs with the dev data directory's admin key.
type admin struct {
	key     crypto.Signer
	chainID string
}

func loadAdmin(t testing.TB, g *gateway) *admin {
	t.Helper()
	key, err := device.LoadKey(filepath.Join(g.data, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		ChainID string `json:"chain_id"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)
	return &admin{key: key, chainID: st.ChainID}
}

// enroll makes and enrolls a device key over the API.
func (a *admin) enroll(t testing.TB, api, id string, alg ledger.Alg) crypto.Signer {
	t.Helper()
	key, err := device.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ledger.MarshalPublicKey(key)
	env, err := ledger.SignTx(a.key, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: a.chainID,
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub}})
	if err != nil {
		t.Fatal(err)
	}
	if code, reason, _, err := post(context.Background(), api, env); err != nil || code != http.StatusOK {
		t.Fatalf("enroll %s: %d %s %v", id, code, reason, err)
	}
	return key
}

func hexID(env []byte) string {
	id := ledger.TxID(env)
	return hex.EncodeToString(id[:])
}

// txCounts returns how often each tx id occurs in the gateway's ledger,
// read block by block through the API.
func txCounts(t testing.TB, api string) map[string]int {
	t.Helper()
	var st struct {
		Height uint64 `json:"height"`
	}
	getJSON(t, api, "/api/v1/status", &st)
	seen := map[string]int{}
	for h := uint64(1); h <= st.Height; h++ {
		var blk struct {
			Txs []struct {
				ID string `json:"id"`
			} `json:"txs"`
		}
		if code := getJSON(t, api, fmt.Sprintf("/api/v1/blocks/%d", h), &blk); code != http.StatusOK {
			t.Fatalf("block %d: %d", h, code)
		}
		for _, tx := range blk.Txs {
			seen[tx.ID]++
		}
	}
	return seen
}

// ackSet is the set of acknowledged tx ids, shared by load goroutines.
type ackSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (a *ackSet) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ids == nil {
		a.ids = map[string]bool{}
	}
	a.ids[id] = true
}

func (a *ackSet) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

// waitFor polls until at least n acks arrived, for at most a minute.
func (a *ackSet) waitFor(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for a.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledgements in a minute", a.len())
		}
		time.Sleep(5 * time.Millisecond) // polling a counter, not waiting for an event
	}
}

// checkExactlyOnce fails unless every acknowledged tx is in the ledger
// exactly once (and no tx is in it twice).
func (a *ackSet) checkExactlyOnce(t testing.TB, api string) {
	t.Helper()
	seen := txCounts(t, api)
	for id := range a.ids {
		if seen[id] != 1 {
			t.Errorf("acknowledged tx %s is in the ledger %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("tx %s is in the ledger %d times", id, n)
		}
	}
}
