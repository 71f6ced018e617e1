package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
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

// TestCoAPDeviceFlow: a device does over CoAP what it does over MQTT.
// It observes its configuration manifest (go-coap's client) and is
// notified of a new config.set; with libcoap's coap-client-notls in
// 64-byte blocks it downloads and opens its sealed blob, asks for a
// verdict, looks up another device's keys, gets its firmware answer and
// the image; it posts a config.report and a firmware.report and gets
// their receipts. Every answer is checked with the SDK against the
// genesis. Over DTLS its certificate reads its own manifest, and
// /.well-known/core lists every resource.
func TestCoAPDeviceFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newFirmwareLab(t)
	dir, g, gen := l.dir, l.g, l.gen
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "meter-1")
	l.admin("device", "enroll", "--id", "meter-1", "--pubkey", "meter-1.pub", "--enc-pubkey", "meter-1.enc.pub",
		"--model", "th-2", "--group", "fleet")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "meter-2")
	l.admin("device", "enroll", "--id", "meter-2", "--pubkey", "meter-2.pub", "--model", "th-2")
	key, err := device.LoadKey(filepath.Join(dir, "meter-1"))
	if err != nil {
		t.Fatal(err)
	}
	encKey, err := device.LoadEncKey(filepath.Join(dir, "meter-1.enc"))
	if err != nil {
		t.Fatal(err)
	}
	policy := device.ConfigPolicy{Device: "meter-1", Groups: []string{"fleet"}}
	base := "coap://" + g.coap + "/lg/v1/meter-1/"
	// get runs coap-client-notls with 64-byte blocks and returns what it wrote.
	n := 0
	get := func(uri string, extra ...string) []byte {
		t.Helper()
		n++
		out := filepath.Join(dir, fmt.Sprintf("answer-%d", n))
		args := append(append([]string{"-b", "64", "-o", out}, extra...), uri)
		if msg, err := coapClient(t, "coap-client-notls", args...); err != nil {
			t.Fatalf("coap-client-notls %s: %v\n%s", strings.Join(args, " "), err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("coap-client-notls %s wrote nothing: %v", uri, err)
		}
		return b
	}
	publish := func(version int, text []byte) {
		t.Helper()
		p := filepath.Join(dir, fmt.Sprintf("v%d.toml", version))
		if err := os.WriteFile(p, text, 0o644); err != nil {
			t.Fatal(err)
		}
		out := l.admin("config", "publish", "--target", "meter-1", "--file", p)
		if !strings.Contains(out, fmt.Sprintf("config.set meter-1 version %d: committed", version)) {
			t.Fatalf("publish v%d: %s", version, out)
		}
	}
	v1, v2 := []byte("interval = 10\n"), []byte("interval = 20\n"+strings.Repeat("# padding\n", 40))
	publish(1, v1)

	// The manifest, observed: the current one, then the next config.set's.
	cc, err := udp.Dial(g.coap, options.WithBlockwise(true, blockwise.SZX64, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	manifests := make(chan []byte, 8)
	obs, err := cc.Observe(ctx, "/lg/v1/meter-1/config", func(m *pool.Message) {
		if m.Code() == codes.Content {
			b, _ := m.ReadBody()
			manifests <- b
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctx)
	manifest := func() *ledger.ConfigSet {
		t.Helper()
		select {
		case b := <-manifests:
			a, err := ledger.DecodeConfigAnswer(b)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := device.Manifest(gen, a, policy)
			if err != nil {
				t.Fatal(err)
			}
			return cs
		case <-ctx.Done():
			t.Fatal("no manifest notification")
		}
		return nil
	}
	if cs := manifest(); cs.Version != 1 {
		t.Fatalf("registration: version %d, want 1", cs.Version)
	}
	publish(2, v2)
	cs := manifest()
	if cs.Version != 2 {
		t.Fatalf("notification: version %d, want 2", cs.Version)
	}

	// The sealed blob block-wise, current and by address; it opens.
	for _, uri := range []string{base + "config/blob", base + "config/blob/" + hex.EncodeToString(cs.Blob)} {
		got, err := device.OpenConfig(cs, get(uri), encKey)
		if err != nil || !bytes.Equal(got, v2) {
			t.Fatalf("%s: %q, %v", uri, got, err)
		}
	}
	// The verdict about what it holds.
	sum := sha256.Sum256(v2)
	a, err := ledger.DecodeConfigAnswer(get(base + "config/verify?h=" + hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := device.VerifyConfig(gen, a, sum, policy)
	if err != nil || acc.Version != 2 {
		t.Fatalf("verify: %+v, %v", acc, err)
	}
	// Another device's keys.
	ka, err := ledger.DecodeKeysAnswer(get(base + "keys/meter-2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.VerifyKeys(gen, ka, "meter-2", device.Freshness{}); err != nil {
		t.Fatalf("keys of meter-2: %v", err)
	}

	// Firmware: approved for its group, offered, downloaded block-wise.
	l.admin("firmware", "policy", "--group", "fleet", "--require-approval")
	l.publish(2, "720h")
	l.admin("firmware", "approve", "--group", "fleet", "--model", "th-2", "--version", "2")
	fa, err := ledger.DecodeFirmwareAnswer(get(base + "firmware"))
	if err != nil {
		t.Fatal(err)
	}
	fwPolicy := device.FirmwarePolicy{Device: "meter-1", Model: "th-2", Groups: []string{"fleet"}, Installed: 1}
	f, err := device.CheckFirmware(gen, l.vendorKey, fa, fwPolicy)
	if err != nil {
		t.Fatalf("firmware answer: %v", err)
	}
	img := get(base + "firmware/" + hex.EncodeToString(f.SHA256))
	if _, err := device.VerifyFirmware(gen, l.vendorKey, fa, img, fwPolicy); err != nil || !bytes.Equal(img, l.images[2]) {
		t.Fatalf("image: %d bytes, %v", len(img), err)
	}

	// Reports, committed with receipts.
	report := func(path string, env []byte) {
		t.Helper()
		in := filepath.Join(dir, strings.ReplaceAll(path, "/", "-")+".cose")
		if err := os.WriteFile(in, env, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := ledger.DecodeReceipt(get(base+path, "-m", "post", "-t", "18", "-f", in))
		if err != nil {
			t.Fatal(err)
		}
		if ledger.TxID(r.Tx) != ledger.TxID(env) {
			t.Fatalf("%s: receipt of another tx", path)
		}
		if err := ledger.VerifyReceipt(gen, r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	cr, err := device.SignConfigReport(key, gen.ChainID, ledger.ConfigReport{DeviceID: "meter-1", Seq: 1, Version: 2, SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	report("config/report", cr)
	fr, err := device.SignFirmwareReport(key, gen.ChainID, ledger.FirmwareReport{DeviceID: "meter-1", Seq: 2, Model: "th-2", Version: 2, OK: true})
	if err != nil {
		t.Fatal(err)
	}
	report("firmware/report", fr)
	var hist struct{ Installed uint64 }
	getJSON(t, g.api, "/api/v1/devices/meter-1/firmware/history", &hist)
	if hist.Installed != 2 {
		t.Errorf("installed after the firmware report: %d, want 2", hist.Installed)
	}
	if out := mustCLI(t, dir, "config", "drift", "--api", g.api); !strings.Contains(out, "no drift") {
		t.Errorf("drift after the config report:\n%s", out)
	}

	// Over DTLS the device's certificate reads its own manifest, not
	// another device's.
	selfSigned(t, key, "meter-1", filepath.Join(dir, "meter-1.crt"))
	dtls := func(path string) (string, error) {
		return coapClient(t, "coap-client-openssl", "-c", filepath.Join(dir, "meter-1.crt"), "-j", filepath.Join(dir, "meter-1"), "-n",
			"coaps://"+g.dtls+path)
	}
	if out, err := dtls("/lg/v1/meter-1/config"); err != nil || strings.Contains(out, "4.0") {
		t.Errorf("own manifest over DTLS: %v\n%s", err, out)
	}
	if out, _ := dtls("/lg/v1/meter-2/config"); !strings.Contains(out, "4.03") || !strings.Contains(out, "wrong_cert") {
		t.Errorf("another device's manifest over DTLS: %q, want 4.03 wrong_cert", out)
	}

	core := string(get("coap://" + g.coap + "/.well-known/core"))
	for _, link := range []string{"</lg/v1/{device}/config>", "</lg/v1/{device}/config/verify>", "</lg/v1/{device}/config/blob>",
		"</lg/v1/{device}/config/blob/{sha256}>", "</lg/v1/{device}/config/report>", "</lg/v1/{device}/keys/{other}>",
		"</lg/v1/{device}/firmware>", "</lg/v1/{device}/firmware/{sha256}>", "</lg/v1/{device}/firmware/report>"} {
		if !strings.Contains(core, link) {
			t.Errorf("/.well-known/core lacks %s", link)
		}
	}
}
