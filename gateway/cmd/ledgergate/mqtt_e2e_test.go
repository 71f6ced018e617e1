package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// mosquitto returns the path of a mosquitto client; `make test` installs them.
func mosquitto(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (Debian package mosquitto-clients)", name)
	}
	return p
}

// subscribeOne starts mosquitto_sub for one message and returns a
// function that waits for its payload. It returns once the SUBACK came.
// mosquitto_sub writes to a file, which is polled.
func subscribeOne(t *testing.T, args ...string) func() []byte {
	t.Helper()
	outPath := filepath.Join(t.TempDir(), "sub.out")
	f, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	// stdbuf: mosquitto_sub's stdio is block-buffered into a file, which
	// would hide the SUBACK line until it exits.
	cmd := exec.Command("stdbuf", append([]string{"-oL", "-eL", mosquitto(t, "mosquitto_sub"), "-d", "-C", "1", "-F", "%x", "-W", "60"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	// poll reads the output until match finds something or mosquitto_sub ends.
	poll := func(what string, match func(lines []string) []byte) []byte {
		deadline := time.Now().Add(70 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(outPath)
			lines := strings.Split(string(b), "\n")
			if v := match(lines); v != nil {
				return v
			}
			select {
			case <-exited:
				b, _ = os.ReadFile(outPath)
				if v := match(strings.Split(string(b), "\n")); v != nil {
					return v
				}
				t.Fatalf("mosquitto_sub ended before %s:\n%s", what, b)
			case <-time.After(20 * time.Millisecond): // polling a file
			}
		}
		t.Fatalf("mosquitto_sub: no %s in 70s", what)
		return nil
	}
	poll("SUBACK", func(lines []string) []byte {
		for _, l := range lines {
			if strings.Contains(l, "received SUBACK") {
				return []byte{1}
			}
		}
		return nil
	})
	return func() []byte {
		return poll("message", func(lines []string) []byte {
			for _, l := range lines {
				if b, err := hex.DecodeString(strings.TrimSpace(l)); err == nil && len(b) > 0 {
					return b
				}
			}
			return nil
		})
	}
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// TestMosquittoQoS1: a record made by `device sign`, published by
// mosquitto_pub with a token, is acknowledged after commit; mosquitto_sub
// receives its receipt, which `receipt verify` accepts.
func TestMosquittoQoS1(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	g := startGateway(t, data)
	genesis := filepath.Join(data, "genesis.json")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "sensor")
	mustCLI(t, dir, "device", "enroll", "--id", "sensor-1", "--pubkey", "sensor.pub", "--api", g.api, "--data", data)
	os.WriteFile(filepath.Join(dir, "reading.json"), []byte(`{"temp":21.5}`), 0o644)
	mustCLI(t, dir, "device", "sign", "--key", "sensor", "--id", "sensor-1", "--seq", "1", "--stream", "temp",
		"--in", "reading.json", "--genesis", genesis, "--out", "msg.cose")
	token := strings.TrimSpace(mustCLI(t, dir, "device", "token", "--key", "sensor", "--id", "sensor-1", "--genesis", genesis))
	host, port := hostPort(t, g.mqtt)

	receipt := subscribeOne(t, "-h", host, "-p", port, "-V", "mqttv5", "-i", "sensor-1/sub", "-u", "sensor-1", "-P", token,
		"-t", "lg/v1/sensor-1/receipts", "-q", "1")
	pub := exec.Command(mosquitto(t, "mosquitto_pub"), "-d", "-h", host, "-p", port, "-V", "mqttv311", "-i", "sensor-1",
		"-u", "sensor-1", "-P", token, "-t", "lg/v1/sensor-1/data/temp", "-q", "1", "-f", filepath.Join(dir, "msg.cose"))
	out, err := pub.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "received PUBACK") {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	// The PUBACK means committed: the record is in the ledger now.
	env, _ := os.ReadFile(filepath.Join(dir, "msg.cose"))
	if code := getJSON(t, g.api, "/api/v1/txs/"+hexID(env), nil); code != http.StatusOK {
		t.Fatalf("record not in the ledger after PUBACK: %d", code)
	}
	os.WriteFile(filepath.Join(dir, "msg.receipt"), receipt(), 0o644)
	if out := mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "msg.receipt"); !strings.HasPrefix(out, "valid:") {
		t.Fatalf("receipt verify: %s", out)
	}

	// The same tools are refused without a valid token.
	bad := exec.Command(mosquitto(t, "mosquitto_pub"), "-h", host, "-p", port, "-V", "mqttv311", "-i", "sensor-1",
		"-u", "sensor-1", "-P", "not-a-token", "-t", "lg/v1/sensor-1/data/temp", "-q", "1", "-m", "x")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("bad token accepted:\n%s", out)
	}

	// `device publish` does all of it through the Go SDK, keeping the
	// device's counter in KEY.seq (seq 1 was used by `device sign` above).
	os.WriteFile(filepath.Join(dir, "sensor.seq"), []byte("1\n"), 0o600)
	out2 := mustCLI(t, dir, "device", "publish", "--key", "sensor", "--id", "sensor-1", "--broker", "tcp://"+g.mqtt,
		"--stream", "temp", "--in", "reading.json", "--genesis", genesis, "--receipt-out", "r2.cbor")
	if !strings.Contains(out2, "committed: seq 2") {
		t.Fatalf("device publish: %s", out2)
	}
	if out := mustCLI(t, dir, "receipt", "verify", "--genesis", genesis, "r2.cbor"); !strings.HasPrefix(out, "valid:") {
		t.Fatalf("receipt verify: %s", out)
	}
}

// selfSigned writes a self-signed certificate for key to path (PEM).
func selfSigned(t *testing.T, key crypto.Signer, cn, path string) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

var mqttsRE = regexp.MustCompile(`msg="mqtt tls listening" mqtts=(\S+)`)

// TestMosquittoTLSClientCert: over TLS, a self-signed client certificate
// whose key is the enrolled device key is enough; another key is refused.
func TestMosquittoTLSClientCert(t *testing.T) {
	dir := t.TempDir()
	serverKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	selfSigned(t, serverKey, "gateway", filepath.Join(dir, "server.pem"))
	der, _ := x509.MarshalPKCS8PrivateKey(serverKey)
	os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg := fmt.Sprintf("[mqtt]\ntls_listen = \"127.0.0.1:0\"\ntls_cert = %q\ntls_key = %q\n",
		filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	os.WriteFile(filepath.Join(dir, "ledgergate.toml"), []byte(cfg), 0o644)

	data := filepath.Join(dir, "data")
	g := startGateway(t, data, "--config", filepath.Join(dir, "ledgergate.toml"))
	m := mqttsRE.FindStringSubmatch(g.log())
	if m == nil {
		t.Fatalf("no TLS listener in the log:\n%s", g.log())
	}
	host, port := hostPort(t, m[1])
	genesis := filepath.Join(data, "genesis.json")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "cam")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "stranger")
	mustCLI(t, dir, "device", "enroll", "--id", "cam-1", "--pubkey", "cam.pub", "--api", g.api, "--data", data)
	for _, k := range []string{"cam", "stranger"} {
		key, err := device.LoadKey(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		selfSigned(t, key, "cam-1", filepath.Join(dir, k+".crt"))
	}
	mustCLI(t, dir, "device", "sign", "--key", "cam", "--id", "cam-1", "--seq", "1", "--stream", "img",
		"--in", "ledgergate.toml", "--genesis", genesis, "--out", "msg.cose")
	publish := func(cert string) ([]byte, error) {
		return exec.Command(mosquitto(t, "mosquitto_pub"), "-d", "-h", host, "-p", port, "-V", "mqttv5",
			"--cafile", filepath.Join(dir, "server.pem"), "--cert", filepath.Join(dir, cert+".crt"), "--key", filepath.Join(dir, cert),
			"-i", "cam-1", "-t", "lg/v1/cam-1/data/img", "-q", "1", "-f", filepath.Join(dir, "msg.cose")).CombinedOutput()
	}
	if out, err := publish("stranger"); err == nil && strings.Contains(string(out), "received PUBACK") {
		t.Fatalf("a certificate with another key was accepted:\n%s", out)
	}
	if out, err := publish("cam"); err != nil || !strings.Contains(string(out), "received PUBACK") {
		t.Fatalf("mosquitto_pub over TLS: %v\n%s", err, out)
	}
	env, _ := os.ReadFile(filepath.Join(dir, "msg.cose"))
	if code := getJSON(t, g.api, "/api/v1/txs/"+hexID(env), nil); code != http.StatusOK {
		t.Fatalf("record not in the ledger after PUBACK: %d", code)
	}
}

// TestMQTTCrashKill9: 50 devices publish QoS 1; the gateway is killed
// with SIGKILL and restarted; every PUBACKed record is in the ledger once.
func TestMQTTCrashKill9(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	const devices, maxPerDevice, killAfter = 50, 1000, 500
	keys := make([]crypto.Signer, devices)
	for i := range keys {
		keys[i] = a.enroll(t, g.api, "dev-"+strconv.Itoa(i), ledger.ES256)
	}
	var acked ackSet
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < devices; i++ {
		cl, err := device.Dial(ctx, "dev-"+strconv.Itoa(i), keys[i], a.chainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= maxPerDevice && ctx.Err() == nil; seq++ {
				env := signAs(t, keys[i], a.chainID, "dev-"+strconv.Itoa(i), seq)
				if err := cl.Publish(ctx, "s", env); err != nil {
					return // the gateway is gone
				}
				acked.add(hexID(env))
			}
		}()
	}
	acked.waitFor(t, killAfter)
	g.kill()
	wg.Wait()
	t.Logf("killed after %d PUBACKs", acked.len())

	g = startGateway(t, data)
	acked.checkExactlyOnce(t, g.api)
}

// TestSim runs the simulator briefly against a real gateway.
func TestSim(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	g := startGateway(t, data)
	out, errs, code := cli(t, dir, "sim", "--devices", "8", "--rate", "80", "--duration", "2s",
		"--broker", "tcp://"+g.mqtt, "--api", g.api, "--data", data)
	if code != 0 {
		t.Fatalf("sim: exit %d\n%s%s", code, out, errs)
	}
	m := regexp.MustCompile(`committed (\d+) msgs`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || !strings.Contains(out, "refused 0, failed 0") || !strings.Contains(errs, "committed (") {
		t.Fatalf("sim output:\n%s\nprogress:\n%s", out, errs)
	}
	var st struct {
		Counts struct {
			Devices uint64 `json:"devices"`
		} `json:"counts"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)
	if st.Counts.Devices != 8 {
		t.Fatalf("%d devices enrolled, want 8", st.Counts.Devices)
	}
}
