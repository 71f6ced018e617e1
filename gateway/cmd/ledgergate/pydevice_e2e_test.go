package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pyModules are the Debian packages the Python device needs besides the
// standard library (`make deps` installs them with the other TEST_DEBS).
const pyModules = "cbor2, paho.mqtt, cryptography"

// findPython returns a python3 that imports pyModules. It skips the test
// only when there is no python3 at all; a python3 without the modules is a
// failure. Debian's packages land in /usr/bin/python3's path, which a
// python3 earlier on PATH (pyenv, a venv) does not see, so that one is
// tried too.
func findPython(t *testing.T) string {
	t.Helper()
	var cands []string
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		cands = append(cands, "/usr/bin/python3")
	}
	if len(cands) == 0 {
		t.Skip("python3 not found")
	}
	var errs []string
	for _, p := range cands {
		out, err := exec.Command(p, "-c", "import "+pyModules).CombinedOutput()
		if err == nil {
			return p
		}
		errs = append(errs, p+": "+strings.TrimSpace(string(out)))
	}
	t.Fatalf("no python3 imports %s: run `make deps` (Debian python3-cbor2 python3-paho-mqtt python3-cryptography)\n%s",
		pyModules, strings.Join(errs, "\n"))
	return ""
}

// pyDevice runs the independent Python device of testdata/pydevice, which
// is written from docs/protocol.md alone and shares no code with the
// gateway.
type pyDevice struct {
	python  string
	script  string
	dir     string // the device's keys and state
	common  []string
	timeout time.Duration
}

// run runs `device.py cmd args...`; it returns the output and fails the
// test unless the command exits 0.
func (p *pyDevice) run(t *testing.T, cmd string, args ...string) string {
	t.Helper()
	out, err := p.try(cmd, args...)
	if err != nil {
		t.Fatalf("device.py %s: %v\n%s", cmd, err, out)
	}
	t.Logf("device.py %s:\n%s", cmd, out)
	return out
}

func (p *pyDevice) try(cmd string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	full := append(append([]string{p.script, cmd}, args...), p.common...)
	c := exec.CommandContext(ctx, p.python, full...)
	c.Dir = filepath.Dir(p.script)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), err
}

// wantLines fails unless out has each of the given `ok ...` line prefixes.
func wantLines(t *testing.T, out string, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if !strings.Contains(out, "\n"+p) && !strings.HasPrefix(out, p) {
			t.Errorf("no %q line in\n%s", p, out)
		}
	}
}

// TestPythonDevice proves that the protocol documents suffice to build a
// device: a Python device written from docs/protocol.md and the guides
// alone (testdata/pydevice) makes its keys, is enrolled with the CLI,
// publishes over MQTT 5, MQTT 3.1.1, CoAP and HTTP and verifies every
// receipt offline against genesis.json, provokes refusals, resyncs its
// counter, follows a sealed configuration (HPKE in Python), checks a
// firmware offer and its image, re-keys, and does configuration and
// firmware again over CoAP. The Go side only plays the operator. It also
// checks the protocol's test vectors with the Python code.
func TestPythonDevice(t *testing.T) {
	python := findPython(t)
	if _, err := exec.LookPath("coap-client-notls"); err != nil {
		t.Fatal("coap-client-notls not found: run `make deps` (Debian package libcoap3-bin)")
	}
	script, err := filepath.Abs(filepath.Join("testdata", "pydevice", "device.py"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	genesis := filepath.Join(g.data, "genesis.json")
	const id, groups, model = "py-1", "fleet,meters", "th-2"
	devDir := filepath.Join(dir, id)
	dev := &pyDevice{python: python, script: script, dir: devDir, timeout: 30 * time.Second,
		common: []string{"--dir", devDir, "--id", id, "--genesis", genesis, "--groups", groups}}
	admin := func(t *testing.T, args ...string) string {
		t.Helper()
		return mustCLI(t, dir, append(args, "--api", g.api, "--data", g.data)...)
	}

	// 1. The device makes its keys; the operator enrolls its public keys.
	out, err := exec.Command(python, script, "keygen", "--dir", devDir, "--alg", "es256").CombinedOutput()
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	admin(t, "device", "enroll", "--id", id, "--pubkey", filepath.Join(devDir, "key.pub"),
		"--enc-pubkey", filepath.Join(devDir, "key.enc.pub"), "--model", model, "--group", groups)

	// 2. MQTT: token auth, PUBACK after commit (the receipt exists over HTTP
	// the moment the PUBACK arrives), receipts verified offline.
	t.Run("mqtt5", func(t *testing.T) {
		out := dev.run(t, "mqtt", "--broker", g.mqtt, "--stream", "temp", "--count", "3", "--api", g.api)
		if n := strings.Count(out, "ok mqtt5 "); n != 3 {
			t.Errorf("%d verified receipts, want 3\n%s", n, out)
		}
	})
	t.Run("mqtt311", func(t *testing.T) {
		out := dev.run(t, "mqtt", "--broker", g.mqtt, "--stream", "temp", "--count", "1", "--v311")
		wantLines(t, out, "ok mqtt311 ")
	})

	// Many records in flight: blocks of several txs, so the receipts carry
	// real inclusion proofs.
	t.Run("mqtt5-burst", func(t *testing.T) {
		out := dev.run(t, "burst", "--broker", g.mqtt, "--stream", "temp", "--count", "20")
		wantLines(t, out, "ok burst records=20")
		if strings.Contains(out, "max_num_txs=1 ") {
			t.Logf("every block held one tx: no inclusion proof was exercised\n%s", out)
		}
	})

	// The key directory: its own keys, model and groups as the ledger holds
	// them, and block 1's prev is the genesis hash the device computes.
	t.Run("keys", func(t *testing.T) {
		out := dev.run(t, "keys", "--broker", g.mqtt, "--model", model)
		wantLines(t, out, "ok genesis-hash ", "ok keys device=py-1 height=1 model=th-2 groups=fleet,meters")
	})

	// An Ed25519 device: EdDSA envelopes and tokens.
	t.Run("ed25519", func(t *testing.T) {
		edDir := filepath.Join(dir, "py-ed")
		if out, err := exec.Command(python, script, "keygen", "--dir", edDir, "--alg", "ed25519").CombinedOutput(); err != nil {
			t.Fatalf("keygen: %v\n%s", err, out)
		}
		admin(t, "device", "enroll", "--id", "py-ed", "--pubkey", filepath.Join(edDir, "key.pub"))
		ed := &pyDevice{python: python, script: script, dir: edDir, timeout: 30 * time.Second,
			common: []string{"--dir", edDir, "--id", "py-ed", "--genesis", genesis}}
		wantLines(t, ed.run(t, "mqtt", "--broker", g.mqtt, "--count", "1"), "ok mqtt5 ")
	})

	// Refusals a device can provoke (protocol.md 7, 13.1, 14): CONNECT
	// codes, PUBACK reason strings and codes, reject messages.
	t.Run("refusals", func(t *testing.T) {
		out := dev.run(t, "conformance", "--broker", g.mqtt, "--other-dir", filepath.Join(dir, "py-ed"), "--other-id", "py-ed")
		wantLines(t, out, "ok connect-expired", "ok record-stream-not-topic", "ok resend-committed", "ok keys-of-unknown-device")
	})

	// A device that lost its counter: refused replay, resyncs, commits.
	t.Run("resync", func(t *testing.T) {
		out := dev.run(t, "resync", "--broker", g.mqtt, "--require-last-seq")
		wantLines(t, out, "ok replay-refused", "ok resync ")
	})

	// 3. CoAP: POST answered 2.04 with the receipt, and GET by tx id; a
	// large record in Block1 answered with its tx id, its receipt in Block2;
	// a replay's diagnostic payload; Observe on a receipt before the commit.
	t.Run("coap", func(t *testing.T) {
		out := dev.run(t, "coap", "--coap", g.coap, "--stream", "temp")
		wantLines(t, out, "ok coap ", "ok coap-block1-block2 ", "ok coap-replay code=4.03 last_seq=yes", "ok coap-observe ",
			"ok coap-get-receipt")
	})

	// 4. A sealed configuration: manifest, blob, HPKE, verify, report.
	t.Run("config", func(t *testing.T) {
		conf := "interval = 10\nserver = py.example\n"
		p := filepath.Join(dir, "py.toml")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		admin(t, "config", "publish", "--target", id, "--file", p)
		out := dev.run(t, "config", "--broker", g.mqtt, "--expect", conf)
		wantLines(t, out, "ok manifest target=py-1 version=1", "ok opened size=34", "ok verified version=1",
			"ok wrong-hash-not-current", "ok config-report version=1")
		if drift := mustCLI(t, dir, "config", "drift", "--api", g.api); !strings.Contains(drift, "no drift") {
			t.Errorf("drift after the Python device's report:\n%s", drift)
		}
	})

	// The HTTP API as a device or its proxy uses it (protocol.md 13.4).
	t.Run("http", func(t *testing.T) {
		out := dev.run(t, "http", "--api", g.api, "--config-version", "1")
		wantLines(t, out, "ok http-post ", "ok http-receipt", "ok http-resubmit", "ok http-replay status=409",
			"ok http-config version=1")
		if strings.Contains(out, "last_seq=absent") {
			t.Errorf("the HTTP replay refusal has no last_seq (protocol.md 14.2):\n%s", out)
		}
	})

	// 5. Firmware: the vendor publishes, the owner approves for the group;
	// the device checks the offer with the vendor key and the image.
	t.Run("firmware", func(t *testing.T) {
		mustCLI(t, dir, "vendor", "keygen", "--out", "acme")
		admin(t, "vendor", "enroll", "--id", "acme", "--pubkey", "acme.pub", "--models", model)
		img := bytes.Repeat([]byte("py firmware 2\n"), 3000)
		p := filepath.Join(dir, "fw-2.bin")
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		mustCLI(t, dir, "firmware", "publish", "--vendor-key", "acme", "--vendor", "acme", "--model", model,
			"--version", "2", "--image", p, "--expires", "2h", "--api", g.api)
		admin(t, "firmware", "approve", "--group", "fleet", "--model", model, "--version", "2")
		out := dev.run(t, "firmware", "--broker", g.mqtt, "--api", g.api, "--vendor-pub", filepath.Join(dir, "acme.pub"),
			"--model", model, "--installed", "1")
		wantLines(t, out, "ok firmware-answer model=th-2 version=2 group=fleet", "ok firmware-refusals",
			"ok firmware-from-enrollment", "ok image size=42000", "ok firmware-report version=2")
	})

	// 6. Re-key over MQTT: the device signs a device.rekey with its current
	// key on lg/v1/<id>/rekey; then new-key records commit on the same
	// connection, old-key records are bad_signature, an old-key token no
	// longer connects, and the key directory has the new keys.
	t.Run("rekey", func(t *testing.T) {
		out := dev.run(t, "rekey", "--broker", g.mqtt)
		wantLines(t, out, "ok rekey ", "ok new-key-record", "ok old-key-refused code=0x87", "ok new-key-connect",
			"ok old-key-connect-refused")
		out = dev.run(t, "keys", "--broker", g.mqtt, "--model", model)
		wantLines(t, out, "ok keys device=py-1 ")
		if strings.Contains(out, "height=1 ") {
			t.Errorf("the key directory still has the enrollment's keys:\n%s", out)
		}
	})

	// Re-key over CoAP, for the Ed25519 device (to ES256 this time): POST
	// /lg/v1/{device}/rekey; then new-key records commit, old-key ones are
	// 4.01 bad_signature.
	t.Run("coap-rekey", func(t *testing.T) {
		edDir := filepath.Join(dir, "py-ed")
		ed := &pyDevice{python: python, script: script, dir: edDir, timeout: 30 * time.Second,
			common: []string{"--dir", edDir, "--id", "py-ed", "--genesis", genesis}}
		out := ed.run(t, "coap-rekey", "--coap", g.coap, "--alg", "es256")
		wantLines(t, out, "ok coap-rekey ", "ok coap-new-key-record", "ok coap-old-key-refused code=4.01")
	})

	// 6. Configuration and firmware over CoAP, after the re-key: a new
	// configuration sealed to the new encryption key and a new release;
	// answers, blob and image in Block2, reports POSTed.
	t.Run("coap-answers", func(t *testing.T) {
		conf := "interval = 30\nserver = coap.example\n"
		p := filepath.Join(dir, "py-2.toml")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		admin(t, "config", "publish", "--target", id, "--file", p)
		img := bytes.Repeat([]byte("py firmware 3\n"), 2000)
		fw := filepath.Join(dir, "fw-3.bin")
		if err := os.WriteFile(fw, img, 0o644); err != nil {
			t.Fatal(err)
		}
		mustCLI(t, dir, "firmware", "publish", "--vendor-key", "acme", "--vendor", "acme", "--model", model,
			"--version", "3", "--image", fw, "--expires", "2h", "--api", g.api)
		admin(t, "firmware", "approve", "--group", "fleet", "--model", model, "--version", "3")
		out := dev.run(t, "coap-answers", "--coap", g.coap, "--vendor-pub", filepath.Join(dir, "acme.pub"),
			"--model", model, "--installed", "2", "--expect", conf)
		wantLines(t, out, "ok coap-manifest version=2", "ok coap-blob ", "ok coap-verified version=2",
			"ok coap-config-report version=2", "ok coap-keys ", "ok coap-firmware-answer version=3",
			"ok coap-image size=28000", "ok coap-firmware-report version=3")
		if drift := mustCLI(t, dir, "config", "drift", "--api", g.api); !strings.Contains(drift, "no drift") {
			t.Errorf("drift after the CoAP report:\n%s", drift)
		}
	})

	// 7. The protocol's test vectors, checked by the Python code.
	t.Run("vectors", func(t *testing.T) {
		vecs, err := filepath.Abs(filepath.Join("..", "..", "..", "docs", "vectors"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(vecs); err != nil {
			t.Skipf("no docs/vectors in this tree: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, python, filepath.Join(filepath.Dir(script), "vectors.py"), vecs)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("vectors.py: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
}
