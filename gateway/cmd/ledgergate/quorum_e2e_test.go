package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// commitTimeout is [batch] commit_timeout in TestClusterNoQuorum.
const commitTimeout = time.Second

// answerBound is how long after a send the test accepts the
// "unavailable" answer: the commit timeout and slack for two shared
// cores running four gateways.
const answerBound = commitTimeout + 4*time.Second

// TestClusterNoQuorum: four gateways, two of them stopped (SIGSTOP: the
// primary of view 0 and one backup), so no quorum. Devices on a third
// gateway get an explicit "unavailable" within the commit timeout over
// MQTT 5 (PUBACK 0x80, reason string "unavailable"), MQTT 3.1.1 (its
// PUBACK and a reject on lg/v1/<id>/rejects), CoAP (5.03 with Max-Age)
// and HTTP (503 with Retry-After); /readyz is 503 and says why. Once the
// two go on, the same bytes sent again commit, each record exactly once
// and each device's in the order it sent them (issue 19 item 7: they
// used to get no answer at all, and after the outage a record proposed
// again after a later one was refused as a replay).
func TestClusterNoQuorum(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "quorum.toml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[batch]\ncommit_timeout = %q\n", commitTimeout), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 4, "--config", conf)
	gw := c.gws[1] // node-2: the primary of view 1, whose requests wait across the view change
	ids := []string{"dev-v5", "dev-v311", "dev-coap", "dev-http", "dev-sdk"}
	keys := map[string]crypto.Signer{}
	for _, id := range ids {
		keys[id] = c.admin.enroll(t, c.gws[0].api, id, ledger.ES256)
	}
	h, _ := c.head(0)
	c.converge(h, 30*time.Second)
	pollReady(t, gw.api, http.StatusOK, "", 30*time.Second)

	chainID := c.admin.chainID
	// Each device's records, in the order it sends them.
	const v5Records = 5
	recs := map[string][][]byte{}
	for _, id := range ids {
		n := 1
		switch id {
		case "dev-v5":
			n = v5Records
		case "dev-sdk":
			n = 2
		}
		for seq := 1; seq <= n; seq++ {
			recs[id] = append(recs[id], signAs(t, keys[id], chainID, id, uint64(seq)))
		}
	}
	files := map[string]string{}
	for _, id := range []string{"dev-v311", "dev-coap"} {
		files[id] = filepath.Join(dir, id+".cose")
		if err := os.WriteFile(files[id], recs[id][0], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	host, port := hostPort(t, gw.mqtt)
	token := func(id string) string {
		tok, err := ledger.SignToken(keys[id], id, chainID, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	v5 := dialV5(t, gw.mqtt, "dev-v5", token("dev-v5"))
	sdkCtx, sdkCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer sdkCancel()
	sdk, err := device.Dial(sdkCtx, "dev-sdk", keys["dev-sdk"], chainID, device.DialOptions{Broker: "tcp://" + gw.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	rejects := subscribeOne(t, "-h", host, "-p", port, "-V", "mqttv311", "-i", "dev-v311/sub", "-u", "dev-v311",
		"-P", token("dev-v311"), "-t", device.RejectsTopic("dev-v311"), "-q", "1")

	for _, i := range []int{0, 2} {
		if err := c.gws[i].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	stopped := true
	resume := func() {
		if !stopped {
			return
		}
		stopped = false
		for _, i := range []int{0, 2} {
			if err := c.gws[i].cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(resume) // before the gateways are killed
	t.Log("stopped node-1 and node-3")

	// The device SDK sends a record refused as unavailable again, the
	// same bytes, until it commits: its Publish returns once the quorum
	// is back.
	sdkDone := make(chan error, 1)
	go func() {
		for _, env := range recs["dev-sdk"] {
			if err := sdk.Publish(sdkCtx, "s", env); err != nil {
				sdkDone <- err
				return
			}
		}
		sdkDone <- nil
	}()

	// Every front end at once: each answer within the bound.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	timed := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := f(); err != nil {
				errs <- fmt.Errorf("%s: %w", what, err)
				return
			}
			if el := time.Since(start); el > answerBound {
				errs <- fmt.Errorf("%s: answered after %s, bound %s", what, el, answerBound)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, env := range recs["dev-v5"] {
			start := time.Now()
			code, reason, err := publishV5(v5, "dev-v5", env)
			if err != nil {
				errs <- fmt.Errorf("mqtt 5 seq %d: %w", i+1, err)
				return
			}
			if code != 0x80 || reason != "unavailable" {
				errs <- fmt.Errorf("mqtt 5 seq %d: PUBACK 0x%02x %q, want 0x80 \"unavailable\"", i+1, code, reason)
			}
			if el := time.Since(start); el > answerBound {
				errs <- fmt.Errorf("mqtt 5 seq %d: PUBACK after %s, bound %s", i+1, el, answerBound)
			}
		}
	}()
	timed("mqtt 3.1.1", func() error {
		out, err := exec.Command(mosquitto(t, "mosquitto_pub"), "-d", "-h", host, "-p", port, "-V", "mqttv311", "-i", "dev-v311",
			"-u", "dev-v311", "-P", token("dev-v311"), "-t", device.DataTopic("dev-v311", "s"), "-q", "1", "-f", files["dev-v311"]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "received PUBACK") {
			return fmt.Errorf("mosquitto_pub: %v\n%s", err, out)
		}
		return nil
	})
	timed("coap", func() error {
		out, _ := coapClient(t, "coap-client-notls", "-v", "7", "-m", "post", "-t", "18", "-f", files["dev-coap"],
			"coap://"+gw.coap+"/lg/v1/data/s")
		if !strings.Contains(out, "5.03") || !strings.Contains(out, "unavailable") || !strings.Contains(out, "Max-Age:2") {
			return fmt.Errorf("coap-client: want 5.03 unavailable with Max-Age 2:\n%s", out)
		}
		return nil
	})
	timed("http", func() error {
		code, hdr, body, err := postRaw(gw.api, recs["dev-http"][0])
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "2" || !strings.Contains(body, `"unavailable"`) {
			return fmt.Errorf("HTTP %d Retry-After %q: %s, want 503 unavailable with Retry-After 2", code, hdr.Get("Retry-After"), body)
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var rj struct {
		TxID   string `json:"tx_id"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(rejects(), &rj); err != nil || rj.Reason != "unavailable" || rj.TxID != hexID(recs["dev-v311"][0]) {
		t.Errorf("mqtt 3.1.1 reject: %+v %v, want reason unavailable for tx %s", rj, err, hexID(recs["dev-v311"][0]))
	}
	// Both signals: txs waiting past the commit timeout, and (5 s after
	// the stop) too few peers heard from.
	body := pollReady(t, gw.api, http.StatusServiceUnavailable, "no quorum", 20*time.Second)
	if !strings.Contains(body, "cannot commit") || !strings.Contains(body, `"reason": "unavailable"`) {
		t.Errorf("/readyz without a quorum: %s", body)
	}
	t.Logf("/readyz: %s", body)
	var st struct {
		Ready    bool   `json:"ready"`
		NotReady string `json:"not_ready"`
	}
	if resp, err := http.Get(gw.api + "/api/v1/status"); err != nil {
		t.Error(err)
	} else {
		err := json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.Ready || !strings.Contains(st.NotReady, "no quorum") {
			t.Errorf("/api/v1/status without a quorum: %+v %v", st, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	select {
	case err := <-sdkDone:
		t.Fatalf("device SDK Publish returned without a quorum: %v", err)
	default:
	}
	resume()
	t.Log("node-1 and node-3 go on")
	// The devices send the same bytes again until each is committed:
	// "unavailable" while the view changes, then the receipt.
	deadline := time.Now().Add(90 * time.Second)
	for i, env := range recs["dev-v5"] {
		for {
			code, reason, err := publishV5(v5, "dev-v5", env)
			if err != nil {
				t.Fatalf("mqtt 5 resend seq %d: %v", i+1, err)
			}
			if code == 0 {
				break
			}
			if reason != "unavailable" || time.Now().After(deadline) {
				t.Fatalf("mqtt 5 resend seq %d: PUBACK 0x%02x %q", i+1, code, reason)
			}
		}
	}
	for {
		code, _, body, err := postRaw(gw.api, recs["dev-http"][0])
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("http resend: %d %s", code, body)
		}
	}
	for {
		out, err := exec.Command(mosquitto(t, "mosquitto_pub"), "-h", host, "-p", port, "-V", "mqttv311", "-i", "dev-v311",
			"-u", "dev-v311", "-P", token("dev-v311"), "-t", device.DataTopic("dev-v311", "s"), "-q", "1", "-f", files["dev-v311"]).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub resend: %v\n%s", err, out)
		}
		if txCommitted(t, gw.api, recs["dev-v311"][0]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mqtt 3.1.1 record not committed after resends")
		}
	}
	for {
		out, _ := coapClient(t, "coap-client-notls", "-m", "post", "-t", "18", "-f", files["dev-coap"], "coap://"+gw.coap+"/lg/v1/data/s")
		if txCommitted(t, gw.api, recs["dev-coap"][0]) {
			break
		}
		if !strings.Contains(out, "5.03") || time.Now().After(deadline) {
			t.Fatalf("coap resend: %s", out)
		}
	}
	if err := <-sdkDone; err != nil {
		t.Fatalf("device SDK Publish after the quorum came back: %v", err)
	}
	pollReady(t, gw.api, http.StatusOK, "", 30*time.Second)

	// Each record once, in every ledger; each device's in its order.
	var acked ackSet
	for _, id := range ids {
		var last [2]uint64
		for i, env := range recs[id] {
			acked.add(hexID(env))
			var tx struct {
				Height, Index, Seq uint64
			}
			if code := getJSON(t, gw.api, "/api/v1/txs/"+hexID(env), &tx); code != http.StatusOK {
				t.Fatalf("%s seq %d: HTTP %d", id, i+1, code)
			}
			if i > 0 && (tx.Height < last[0] || tx.Height == last[0] && tx.Index < last[1]) {
				t.Errorf("%s seq %d committed at %d/%d, before seq %d at %d/%d", id, i+1, tx.Height, tx.Index, i, last[0], last[1])
			}
			last = [2]uint64{tx.Height, tx.Index}
		}
	}
	h, _ = c.converge(1, time.Minute)
	t.Logf("all four at height %d", h)
	c.check(&acked)
}

// pollReady polls /readyz until it answers want with a body that
// contains contains, and returns the body.
func pollReady(t *testing.T, api string, want int, contains string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(api + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == want && strings.Contains(string(b), contains) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s; want %d within %s", resp.StatusCode, b, want, within)
		}
		time.Sleep(100 * time.Millisecond) // polling another process's API
	}
}

// postRaw submits env over the API and returns status, headers and body.
func postRaw(api string, env []byte) (int, http.Header, string, error) {
	resp, err := http.Post(api+"/api/v1/txs", "application/cose", bytes.NewReader(env))
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// txCommitted reports whether the gateway's ledger holds env.
func txCommitted(t *testing.T, api string, env []byte) bool {
	return getJSON(t, api, "/api/v1/txs/"+hexID(env), nil) == http.StatusOK
}

// dialV5 connects an MQTT 5 client (paho) as device id with token.
func dialV5(t *testing.T, addr, id, token string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte(token)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Disconnect(&paho.Disconnect{}) })
	return cl
}

// publishV5 publishes a record at QoS 1 and returns its PUBACK's reason
// code and reason string.
func publishV5(cl *paho.Client, id string, env []byte) (byte, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := cl.Publish(ctx, &paho.Publish{Topic: device.DataTopic(id, "s"), QoS: 1, Payload: env})
	if r == nil {
		return 0, "", fmt.Errorf("no PUBACK: %w", err)
	}
	reason := ""
	if r.Properties != nil {
		reason = r.Properties.ReasonString
	}
	return r.ReasonCode, reason, nil
}
