package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
)

// buildLgdev builds the C example device bridge/c/examples/lgdev (and the
// C library under it) with make and returns the binary; with ed25519 the
// build that takes Ed25519 keys too. It skips only when there is no C
// compiler; missing libraries are a failure that `make deps` fixes, as
// for the other real peers of these tests.
func buildLgdev(t *testing.T, ed25519 bool) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not found")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "bridge", "c", "examples", "lgdev"))
	if err != nil {
		t.Fatal(err)
	}
	args, bin := []string{"-C", dir}, filepath.Join(dir, "build", "lgdev")
	if ed25519 {
		args, bin = append(args, "LG_WITH_ED25519=1"), filepath.Join(dir, "build", "ed", "lgdev")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s\n(the libraries: run `make deps`, Debian libmosquitto-dev libcoap3-dev libmbedtls-dev libsodium-dev pkg-config)",
			strings.Join(args, " "), err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// runLgdev runs the C device for at most 3 minutes; it returns stdout,
// stderr and the exit status (3: refused by the gateway or a check, see
// `lgdev --help`). Safe in any goroutine.
func runLgdev(bin string, args ...string) (string, string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), errb.String(), -1, fmt.Errorf("lgdev %s: %w", strings.Join(args, " "), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode(), nil
	}
	return out.String(), errb.String(), 0, err
}

// lgdev is runLgdev for the test's goroutine: it fails the test unless
// lgdev ran to an exit status.
func lgdev(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	out, errs, code, err := runLgdev(bin, args...)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, out, errs)
	}
	return out, errs, code
}

// mustLgdev runs lgdev and fails the test unless it exits 0.
func mustLgdev(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, errs, code := lgdev(t, bin, args...)
	if code != 0 {
		t.Fatalf("lgdev %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// refusedLgdev runs lgdev and fails the test unless it exits 3 (refused)
// with each of want in its stderr; it returns stdout and stderr.
func refusedLgdev(t *testing.T, bin string, want []string, args ...string) (string, string) {
	t.Helper()
	out, errs, code := lgdev(t, bin, args...)
	if code != 3 {
		t.Fatalf("lgdev %s: exit %d, want 3 (refused)\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("lgdev %s: no %q in\n%s", args[0], w, errs)
		}
	}
	return out, errs
}

var okRecordRE = regexp.MustCompile(`(?m)^ok seq=(\d+) height=(\d+) index=(\d+) tx=([0-9a-f]{64})$`)

// lgRecord is one `ok` line of lgdev publish or coap: a record whose
// receipt lgdev verified in C against the genesis.
type lgRecord struct {
	seq, height, index uint64
	tx                 string
}

func okRecords(t *testing.T, out string) []lgRecord {
	t.Helper()
	var recs []lgRecord
	for _, m := range okRecordRE.FindAllStringSubmatch(out, -1) {
		r := lgRecord{tx: m[4]}
		r.seq, _ = strconv.ParseUint(m[1], 10, 64)
		r.height, _ = strconv.ParseUint(m[2], 10, 64)
		r.index, _ = strconv.ParseUint(m[3], 10, 64)
		recs = append(recs, r)
	}
	return recs
}

// checkOnLedger fails unless each record's tx is committed on the gateway
// at the height lgdev read from its receipt, seqs strictly increasing.
func checkOnLedger(t *testing.T, api string, recs []lgRecord) {
	t.Helper()
	var last uint64
	for _, r := range recs {
		var got struct {
			TxID   string `json:"tx_id"`
			Height uint64 `json:"height"`
		}
		if code := getJSON(t, api, "/api/v1/txs/"+r.tx+"/receipt", &got); code != http.StatusOK {
			t.Fatalf("tx %s (seq %d) that lgdev printed is not on the gateway: %d", r.tx, r.seq, code)
		}
		if got.TxID != r.tx || got.Height != r.height {
			t.Errorf("tx %s: the gateway has it at height %d, lgdev's receipt said %d", r.tx, got.Height, r.height)
		}
		if r.seq <= last {
			t.Errorf("seq %d after %d", r.seq, last)
		}
		last = r.seq
	}
}

// TestLgdev drives the example C device (bridge/c/examples/lgdev, on the
// C library bridge/c) against a real gateway: 100 records over MQTT 5 and
// 100 over CoAP with DTLS, every receipt verified in C against the
// genesis; a forged and a replayed record refused with their reasons, and
// a resync; a sealed configuration fetched, checked and opened in C, and
// a rolled-back one refused; a firmware offer checked with the vendor key
// and its image checked in 4 KB chunks, and a wrong image refused.
func TestLgdev(t *testing.T) {
	bin := buildLgdev(t, false)
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	genesis := filepath.Join(g.data, "genesis.json")
	pin := filepath.Join(g.data, "coap-dtls.crt") // the gateway's self-signed DTLS certificate
	admin := func(args ...string) string {
		t.Helper()
		return mustCLI(t, dir, append(args, "--api", g.api, "--data", g.data)...)
	}
	const id, model, group = "c-1", "th-2", "fleet"
	keyPath, certPath := filepath.Join(dir, id), filepath.Join(dir, id+".crt")
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", id)
	admin("device", "enroll", "--id", id, "--pubkey", id+".pub", "--enc-pubkey", id+".enc.pub", "--model", model,
		"--group", group)
	key, err := device.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned(t, key, id, certPath) // protocol.md 13.3: any certificate of the enrolled key
	// A key nobody enrolled, with a certificate naming the device.
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "stranger")
	stranger, err := device.LoadKey(filepath.Join(dir, "stranger"))
	if err != nil {
		t.Fatal(err)
	}
	selfSigned(t, stranger, id, filepath.Join(dir, "stranger.crt"))
	reading := filepath.Join(dir, "reading.json")
	if err := os.WriteFile(reading, []byte(`{"temp": 21.5}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := []string{"--key", keyPath, "--id", id, "--genesis", genesis}
	mqttArgs := func(extra ...string) []string {
		return append(append([]string{"publish"}, dev...), append([]string{"--broker", g.mqtt, "--stream", "temp", "--in", reading}, extra...)...)
	}
	dtls := []string{"--server", g.dtls, "--cert", certPath, "--pin", pin}
	coapArgs := func(extra ...string) []string {
		return append(append(append([]string{"coap"}, dev...), dtls...), append([]string{"--stream", "temp", "--in", reading}, extra...)...)
	}

	t.Run("help", func(t *testing.T) {
		for _, cmd := range []string{"publish", "coap", "config", "firmware"} {
			out := mustLgdev(t, bin, cmd, "--help")
			if !strings.Contains(out, "Usage: lgdev "+cmd) || !strings.Contains(out, "--genesis") {
				t.Errorf("lgdev %s --help:\n%s", cmd, out)
			}
		}
	})

	// 100 records over MQTT 5 with 10 in flight, so that blocks hold
	// several txs and the receipts carry inclusion proofs.
	t.Run("mqtt", func(t *testing.T) {
		start := time.Now()
		out := mustLgdev(t, bin, mqttArgs("--count", "100", "--window", "10")...)
		recs := okRecords(t, out)
		if len(recs) != 100 {
			t.Fatalf("%d verified receipts, want 100\n%s", len(recs), out)
		}
		checkOnLedger(t, g.api, recs)
		t.Logf("100 records over MQTT in %v", time.Since(start).Round(time.Millisecond))
	})

	// One device's records commit one per block (its queue is taken in
	// rounds); several devices at once share blocks, so their receipts
	// carry inclusion proofs, which lgdev verifies in C.
	t.Run("merkle", func(t *testing.T) {
		const n, each = 4, 25
		outs := make(chan string, n)
		for i := range n {
			mid := fmt.Sprintf("m-%d", i)
			mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", mid)
			admin("device", "enroll", "--id", mid, "--pubkey", mid+".pub")
		}
		start := time.Now()
		for i := range n {
			mid := fmt.Sprintf("m-%d", i)
			go func() {
				out, errs, code, err := runLgdev(bin, "publish", "--key", filepath.Join(dir, mid), "--id", mid, "--genesis", genesis,
					"--broker", g.mqtt, "--count", strconv.Itoa(each), "--window", strconv.Itoa(each))
				if code != 0 || err != nil {
					out += fmt.Sprintf("lgdev publish as %s: exit %d, %v\n%s", mid, code, err, errs)
				}
				outs <- out
			}()
		}
		var recs []lgRecord
		for range n {
			out := <-outs
			got := okRecords(t, out)
			if len(got) != each {
				t.Errorf("%d verified receipts, want %d\n%s", len(got), each, out)
			}
			recs = append(recs, got...)
		}
		proofs := 0
		for _, r := range recs {
			if r.index > 0 {
				proofs++
			}
		}
		t.Logf("%d records of %d devices at once in %v; %d not first in their block", len(recs), n,
			time.Since(start).Round(time.Millisecond), proofs)
		if proofs == 0 {
			t.Errorf("every one of %d records of %d devices at once was alone in its block: no inclusion proof was verified", len(recs), n)
		}
	})

	t.Run("coap", func(t *testing.T) {
		start := time.Now()
		out := mustLgdev(t, bin, coapArgs("--count", "100")...)
		recs := okRecords(t, out)
		if len(recs) != 100 {
			t.Fatalf("%d verified receipts, want 100\n%s", len(recs), out)
		}
		checkOnLedger(t, g.api, recs)
		t.Logf("100 records over CoAP/DTLS in %v", time.Since(start).Round(time.Millisecond))

		// A record larger than a block goes in Block1; its receipt is
		// larger than a block, so the 2.04 names it by tx id and lgdev
		// GETs it block-wise (protocol.md 13.2).
		big := filepath.Join(dir, "big.bin")
		if err := os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 200), 0o644); err != nil {
			t.Fatal(err)
		}
		args := coapArgs()
		args[len(args)-1] = big // --in
		recs = okRecords(t, mustLgdev(t, bin, args...))
		if len(recs) != 1 {
			t.Fatalf("large record: %+v", recs)
		}
		checkOnLedger(t, g.api, recs)
	})

	// The DTLS profile (protocol.md 13.3) from the device's side: it
	// talks only to the pinned gateway certificate, and the gateway only
	// to a certificate of an enrolled key.
	t.Run("dtls", func(t *testing.T) {
		args := coapArgs()
		for i, a := range args {
			if a == pin {
				args[i] = certPath // a certificate, but not the gateway's
			}
		}
		out, errs, code := lgdev(t, bin, args...)
		if code != 1 || !strings.Contains(errs, "not the pinned one") || strings.Contains(out, "ok ") {
			t.Errorf("another pinned certificate: exit %d\n%s%s", code, out, errs)
		}
		out, errs, code = lgdev(t, bin, "coap", "--key", filepath.Join(dir, "stranger"), "--id", id, "--genesis", genesis,
			"--server", g.dtls, "--cert", filepath.Join(dir, "stranger.crt"), "--pin", pin)
		if code != 1 || !strings.Contains(errs, "DTLS handshake failed") || strings.Contains(out, "ok ") {
			t.Errorf("a certificate of a key nobody enrolled: exit %d\n%s%s", code, out, errs)
		}
	})

	// An Ed25519 device (the library's Ed25519 build, on libsodium):
	// EdDSA token, records over MQTT and over DTLS with an Ed25519
	// certificate.
	t.Run("ed25519", func(t *testing.T) {
		edBin := buildLgdev(t, true)
		mustCLI(t, dir, "device", "keygen", "--alg", "ed25519", "--out", "ed-1")
		admin("device", "enroll", "--id", "ed-1", "--pubkey", "ed-1.pub")
		edKey, err := device.LoadKey(filepath.Join(dir, "ed-1"))
		if err != nil {
			t.Fatal(err)
		}
		edCert := filepath.Join(dir, "ed-1.crt")
		selfSigned(t, edKey, "ed-1", edCert)
		ed := []string{"--key", filepath.Join(dir, "ed-1"), "--id", "ed-1", "--genesis", genesis, "--count", "3"}
		recs := okRecords(t, mustLgdev(t, edBin, append([]string{"publish", "--broker", g.mqtt}, ed...)...))
		recs = append(recs, okRecords(t, mustLgdev(t, edBin, append([]string{"coap", "--server", g.dtls, "--cert", edCert, "--pin", pin}, ed...)...))...)
		if len(recs) != 6 {
			t.Fatalf("%d verified receipts, want 6", len(recs))
		}
		checkOnLedger(t, g.api, recs)
		// The plain build says what it lacks.
		_, errs, code := lgdev(t, bin, append([]string{"publish", "--broker", g.mqtt}, ed...)...)
		if code != 1 || !strings.Contains(errs, "LG_WITH_ED25519") {
			t.Errorf("an Ed25519 key with the plain build: exit %d\n%s", code, errs)
		}
	})

	// A record whose signature was altered after signing: bad_signature
	// (protocol.md 14.1: MQTT 5 PUBACK 0x87, CoAP 4.01).
	t.Run("forged", func(t *testing.T) {
		refusedLgdev(t, bin, []string{"refused: bad_signature (PUBACK 0x87)", "what to do: rekey"}, mqttArgs("--tamper")...)
		refusedLgdev(t, bin, []string{"refused: bad_signature (CoAP 4.01)", "what to do: rekey"}, coapArgs("--tamper")...)
		// A token signed by another key does not even connect (13.1).
		args := mqttArgs()
		args[2] = filepath.Join(dir, "stranger") // --key
		refusedLgdev(t, bin, []string{"CONNECT refused with 0x86"}, args...)
	})

	// The receipts are checked in C: against a genesis whose node key is
	// another (same chain id, so the gateway takes the record), the
	// commit certificate of the receipt does not verify.
	t.Run("foreign-genesis", func(t *testing.T) {
		var gen map[string]any
		b, err := os.ReadFile(genesis)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &gen); err != nil {
			t.Fatal(err)
		}
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		spki, err := x509.MarshalPKIXPublicKey(other.Public())
		if err != nil {
			t.Fatal(err)
		}
		gen["nodes"].([]any)[0].(map[string]any)["public_key"] = base64.StdEncoding.EncodeToString(spki)
		foreign := filepath.Join(dir, "foreign-genesis.json")
		if b, err = json.Marshal(gen); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(foreign, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args := mqttArgs()
		for i, a := range args {
			if a == genesis {
				args[i] = foreign
			}
		}
		out, _ := refusedLgdev(t, bin, []string{"a receipt does not verify against the genesis"}, args...)
		if strings.Contains(out, "ok ") {
			t.Errorf("a receipt was accepted against another genesis:\n%s", out)
		}
	})

	// A device that lost its counter signs seq 1 again: replay with
	// last_seq (MQTT 5 PUBACK 0x83 and its User Property, CoAP 4.03 and its
	// diagnostic); with --resync it continues above last_seq.
	t.Run("replay", func(t *testing.T) {
		var st struct {
			LastSeq uint64 `json:"last_seq"`
		}
		getJSON(t, g.api, "/api/v1/devices/"+id, &st)
		if st.LastSeq < 200 {
			t.Fatalf("the gateway's last seq of %s is %d after 200 records", id, st.LastSeq)
		}
		seqFile := keyPath + ".seq" // the device's counter (lgdev's default), lost: back to 0
		lastSeq := fmt.Sprintf("last_seq=%d", st.LastSeq)
		for _, args := range [][]string{mqttArgs(), coapArgs()} {
			if err := os.WriteFile(seqFile, []byte("0\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			code := "(PUBACK 0x83)"
			if args[0] == "coap" {
				code = "(CoAP 4.03)"
			}
			refusedLgdev(t, bin, []string{"refused: replay " + code + " " + lastSeq, "what to do: resync"}, args...)
		}
		if err := os.WriteFile(seqFile, []byte("0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out := mustLgdev(t, bin, mqttArgs("--resync")...)
		recs := okRecords(t, out)
		if len(recs) != 1 || recs[0].seq != st.LastSeq+1 {
			t.Fatalf("after resync: %+v, want one record with seq %d\n%s", recs, st.LastSeq+1, out)
		}
		checkOnLedger(t, g.api, recs)
		if b, err := os.ReadFile(seqFile); err != nil || strings.TrimSpace(string(b)) != strconv.FormatUint(st.LastSeq+1, 10) {
			t.Errorf("the counter file after resync: %q, %v; want %d", b, err, st.LastSeq+1)
		}
	})

	// A sealed configuration: published with the CLI, fetched over
	// CoAP/DTLS, checked and opened in C; then a state that claims a newer
	// version than the answer: the answer is a rollback and is refused.
	t.Run("config", func(t *testing.T) {
		conf := []byte("interval = 10\nserver = c.example\n")
		p := filepath.Join(dir, "c-1.toml")
		if err := os.WriteFile(p, conf, 0o644); err != nil {
			t.Fatal(err)
		}
		admin("config", "publish", "--target", id, "--file", p)
		state, plain := filepath.Join(dir, "c-1.config"), filepath.Join(dir, "applied.toml")
		cfgArgs := append(append([]string{"config", "--id", id, "--genesis", genesis, "--key", keyPath}, dtls...),
			"--state", state, "--out", plain)
		// --report: a config.report signed in C, committed with its receipt.
		out := mustLgdev(t, bin, append(cfgArgs, "--report")...)
		wantLines(t, out, "ok config target=c-1 version=1 ", "ok config-report version=1 ")
		got, err := os.ReadFile(plain)
		if err != nil || !bytes.Equal(got, conf) {
			t.Fatalf("the opened configuration: %q, %v; want %q", got, err, conf)
		}
		if drift := mustCLI(t, dir, "config", "drift", "--api", g.api); !strings.Contains(drift, "no drift") {
			t.Errorf("drift after lgdev's config.report:\n%s", drift)
		}
		st, err := os.ReadFile(state)
		if err != nil || !strings.HasPrefix(string(st), "c-1 1 ") {
			t.Fatalf("state after accepting: %q, %v", st, err)
		}
		// Again: nothing new, the held configuration is current.
		if out := mustLgdev(t, bin, cfgArgs...); !strings.Contains(out, "current") {
			t.Errorf("second run:\n%s", out)
		}

		// The device accepted version 99 before (its state says so): the
		// gateway's version 1 is a rollback.
		newer := "c-1 99 " + strings.Fields(string(st))[2] + " " + strings.Repeat("ab", 32) + "\n"
		if err := os.WriteFile(state, []byte(newer), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(plain); err != nil {
			t.Fatal(err)
		}
		refusedLgdev(t, bin, []string{"refused: rollback", "version 99"}, cfgArgs...)
		if _, err := os.Stat(plain); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused configuration was written: %v", err)
		}
		if b, _ := os.ReadFile(state); string(b) != newer {
			t.Errorf("a refused answer changed the state: %q", b)
		}
	})

	// Firmware: the vendor publishes, the owner approves for the group;
	// lgdev checks the offer with the vendor key and the image in 4 KB
	// chunks; an image with one byte changed is refused.
	t.Run("firmware", func(t *testing.T) {
		mustCLI(t, dir, "vendor", "keygen", "--out", "acme")
		admin("vendor", "enroll", "--id", "acme", "--pubkey", "acme.pub", "--models", model)
		img := bytes.Repeat([]byte("c firmware 2\n"), 3000) // 39000 bytes: 10 chunks
		good := filepath.Join(dir, "fw-2.bin")
		if err := os.WriteFile(good, img, 0o644); err != nil {
			t.Fatal(err)
		}
		mustCLI(t, dir, "firmware", "publish", "--vendor-key", "acme", "--vendor", "acme", "--model", model,
			"--version", "2", "--image", good, "--expires", "2h", "--api", g.api)
		admin("firmware", "approve", "--group", group, "--model", model, "--version", "2")
		fwArgs := func(image, installed string) []string {
			return append([]string{"firmware", "--id", id, "--genesis", genesis, "--key", keyPath,
				"--vendor-pub", filepath.Join(dir, "acme.pub"), "--installed", installed, "--image", image}, dtls...)
		}
		out := mustLgdev(t, bin, append(fwArgs(good, "1"), "--report")...)
		wantLines(t, out, "ok firmware model=th-2 version=2 size=39000 ", "ok image "+good+" size=39000 chunks=10 ",
			"ok firmware-report version=2 ")
		// The same answer read from a file (as a device that got it some
		// other way): fetched raw from the HTTP API.
		req, err := http.NewRequest(http.MethodGet, g.api+"/api/v1/devices/"+id+"/firmware", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/cbor")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("firmware answer over HTTP: %d %v", resp.StatusCode, err)
		}
		answer := filepath.Join(dir, "fw.answer")
		if err := os.WriteFile(answer, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		wantLines(t, mustLgdev(t, bin, "firmware", "--id", id, "--genesis", genesis, "--vendor-pub", filepath.Join(dir, "acme.pub"),
			"--installed", "1", "--image", good, "--answer", answer), "ok firmware model=th-2 version=2 ", "ok image ")
		// A device that keeps its own model and groups: another group than
		// the approval's is refused (11.5 step 11).
		refusedLgdev(t, bin, []string{"refused: the firmware answer does not allow an installation"}, "firmware", "--id", id,
			"--genesis", genesis, "--vendor-pub", filepath.Join(dir, "acme.pub"), "--installed", "1", "--image", good,
			"--answer", answer, "--model", model, "--groups", "other")
		wantLines(t, mustLgdev(t, bin, "firmware", "--id", id, "--genesis", genesis, "--vendor-pub", filepath.Join(dir, "acme.pub"),
			"--installed", "1", "--image", good, "--answer", answer, "--model", model, "--groups", group), "ok image ")

		bad := append([]byte(nil), img...)
		bad[20000] ^= 0x01
		wrong := filepath.Join(dir, "fw-2-wrong.bin")
		if err := os.WriteFile(wrong, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		refusedLgdev(t, bin, []string{"refused: " + wrong + " is not the image of th-2 version 2"}, fwArgs(wrong, "1")...)
		// A device that runs version 2 already refuses the offer (11.5 step
		// 7: not above the installed version).
		refusedLgdev(t, bin, []string{"refused: the firmware answer does not allow an installation"}, fwArgs(good, "2")...)
	})
}
