package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
)

// coapClient runs one of libcoap's clients (Debian libcoap3-bin, which
// `make test` installs) and returns its output.
func coapClient(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (Debian package libcoap3-bin)", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, append([]string{"-B", "8"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestCoAPClients: libcoap's coap-client POSTs records made by `ledgergate
// device sign` over UDP and over DTLS (a self-signed certificate of the
// enrolled key); both are committed. It also reads /.well-known/core.
func TestCoAPClients(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	genesis := filepath.Join(g.data, "genesis.json")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "sensor")
	mustCLI(t, dir, "device", "enroll", "--id", "sensor-1", "--pubkey", "sensor.pub", "--api", g.api, "--data", g.data)
	reading := filepath.Join(dir, "reading.json")
	if err := os.WriteFile(reading, []byte(`{"temp": 21.5}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sign := func(seq, out string) {
		mustCLI(t, dir, "device", "sign", "--key", "sensor", "--id", "sensor-1", "--seq", seq, "--stream", "temp",
			"--in", reading, "--out", out, "--genesis", genesis)
	}
	sign("1", filepath.Join(dir, "r1.cose"))
	sign("2", filepath.Join(dir, "r2.cose"))

	// UDP. -t 18: application/cose; cose-type="cose-sign1".
	if out, err := coapClient(t, "coap-client-notls", "-m", "post", "-t", "18", "-f", filepath.Join(dir, "r1.cose"),
		"coap://"+g.coap+"/lg/v1/data/temp"); err != nil {
		t.Fatalf("coap-client over UDP: %v\n%s", err, out)
	}
	// DTLS with the device's key in a self-signed certificate; -n: do not
	// check the gateway's self-signed certificate.
	key, err := device.LoadKey(filepath.Join(dir, "sensor"))
	if err != nil {
		t.Fatal(err)
	}
	selfSigned(t, key, "sensor-1", filepath.Join(dir, "sensor.crt"))
	if out, err := coapClient(t, "coap-client-openssl", "-m", "post", "-t", "18", "-f", filepath.Join(dir, "r2.cose"),
		"-c", filepath.Join(dir, "sensor.crt"), "-j", filepath.Join(dir, "sensor"), "-n",
		"coaps://"+g.dtls+"/lg/v1/data/temp"); err != nil {
		t.Fatalf("coap-client over DTLS: %v\n%s", err, out)
	}
	var recs struct {
		Records []struct{ Seq uint64 }
	}
	getJSON(t, g.api, "/api/v1/devices/sensor-1/records", &recs)
	if len(recs.Records) != 2 || recs.Records[0].Seq != 2 || recs.Records[1].Seq != 1 {
		t.Fatalf("records after the two POSTs: %+v", recs.Records)
	}
	out, err := coapClient(t, "coap-client-notls", "-m", "get", "coap://"+g.coap+"/.well-known/core")
	if err != nil || !strings.Contains(out, "</lg/v1/data>") || !strings.Contains(out, "</lg/v1/receipts>") {
		t.Errorf("/.well-known/core: %v\n%q", err, out)
	}
}
