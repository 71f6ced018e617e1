package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// configDevice is a device in the configuration tests: its keys, its MQTT
// session and its persisted state, all through the SDK.
type configDevice struct {
	id     string
	dir    string
	groups []string
	cl     *device.Client
	state  *device.ConfigState
	seq    *device.SeqFile
}

// newConfigDevice makes keys with the CLI, enrolls the device with them
// and connects it over MQTT.
func newConfigDevice(t testing.TB, ctx context.Context, g *gateway, dir, id, groups string) *configDevice {
	t.Helper()
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", id)
	args := []string{"device", "enroll", "--id", id, "--pubkey", id + ".pub", "--enc-pubkey", id + ".enc.pub", "--model", "th-2", "--api", g.api, "--data", g.data}
	if groups != "" {
		args = append(args, "--group", groups)
	}
	mustCLI(t, dir, args...)
	key, err := device.LoadKey(filepath.Join(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	gen := loadGenesis(t, g)
	cl, err := device.Dial(ctx, id, key, gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	d := &configDevice{id: id, dir: dir, cl: cl, state: device.OpenConfigState(filepath.Join(dir, id+".config")), seq: device.OpenSeq(filepath.Join(dir, id+".seq"))}
	if groups != "" {
		d.groups = strings.Split(groups, ",")
	}
	return d
}

func loadGenesis(t testing.TB, g *gateway) *ledger.Genesis {
	t.Helper()
	gen, err := daemon.LoadGenesis(g.data)
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

func (d *configDevice) policy() device.ConfigPolicy {
	return device.ConfigPolicy{Device: d.id, Groups: d.groups}
}

// download fetches the blob cs names over MQTT and opens it.
func (d *configDevice) download(t testing.TB, ctx context.Context, cs *ledger.ConfigSet) ([]byte, error) {
	t.Helper()
	blob, err := d.cl.Request(ctx, "config/blob/get", cs.Blob)
	if err != nil {
		return nil, err
	}
	key, err := device.LoadEncKey(filepath.Join(d.dir, d.id+".enc"))
	if err != nil {
		t.Fatal(err)
	}
	return device.OpenConfig(cs, blob, key)
}

// verify asks the gateway whether config is current and checks the answer.
func (d *configDevice) verify(t testing.TB, ctx context.Context, gen *ledger.Genesis, config []byte) (*device.Accepted, *ledger.ConfigAnswer, error) {
	t.Helper()
	sum := sha256.Sum256(config)
	raw, err := d.cl.Request(ctx, "config/verify", sum[:])
	if err != nil {
		t.Fatalf("%s: verify request: %v", d.id, err)
	}
	a, err := ledger.DecodeConfigAnswer(raw)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := d.state.Verify(gen, a, sum, d.policy())
	return acc, a, err
}

// report tells the ledger what the device applied and waits for the commit.
func (d *configDevice) report(t testing.TB, ctx context.Context, gen *ledger.Genesis, acc *device.Accepted) {
	t.Helper()
	key, err := device.LoadKey(filepath.Join(d.dir, d.id))
	if err != nil {
		t.Fatal(err)
	}
	seq, err := d.seq.Next()
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := hex.DecodeString(acc.SHA256)
	env, err := device.SignConfigReport(key, gen.ChainID, ledger.ConfigReport{DeviceID: d.id, Seq: seq, Version: acc.Version, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cl.Report(ctx, env); err != nil {
		t.Fatalf("%s: report: %v", d.id, err)
	}
}

// TestConfigFlow is the configuration control flow end to end: the
// operator publishes with the CLI, a device follows over MQTT with the
// SDK, and the operator watches drift, history and diffs.
func TestConfigFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	gen := loadGenesis(t, g)
	dev := newConfigDevice(t, ctx, g, dir, "meter-1", "")
	v1, v2 := []byte("interval = 10\nserver = a.example\n"), []byte("interval = 20\nserver = a.example\n")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	drift := func() string { return mustCLI(t, dir, "config", "drift", "--api", g.api) }

	// v1: published, fetched from the retained manifest, verified, applied, reported.
	out := mustCLI(t, dir, "config", "publish", "--target", "meter-1", "--file", write("v1.toml", v1), "--api", g.api, "--data", g.data)
	if !strings.Contains(out, "config.set meter-1 version 1: committed") {
		t.Fatalf("publish v1: %s", out)
	}
	if out := drift(); !strings.Contains(out, "meter-1") || !strings.Contains(out, "never") {
		t.Errorf("drift before any report:\n%s", out)
	}
	raw, err := dev.cl.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := ledger.DecodeConfigAnswer(raw)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := device.Manifest(gen, manifest, dev.policy())
	if err != nil || cs.Version != 1 {
		t.Fatalf("retained manifest: %+v, %v", cs, err)
	}
	got, err := dev.download(t, ctx, cs)
	if err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("download v1: %q, %v", got, err)
	}
	acc, _, err := dev.verify(t, ctx, gen, got)
	if err != nil || acc.Version != 1 {
		t.Fatalf("verify v1: %+v, %v", acc, err)
	}
	dev.report(t, ctx, gen, acc)
	if out := drift(); !strings.Contains(out, "no drift") {
		t.Errorf("drift after reporting v1:\n%s", out)
	}

	// The sealed blob on the gateway's disk is not the plaintext, and
	// another device's key does not open it.
	blobPath := filepath.Join(g.data, daemon.BlobsDir, hex.EncodeToString(cs.Blob)[:2], hex.EncodeToString(cs.Blob))
	onDisk, err := os.ReadFile(blobPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(onDisk, []byte("interval")) || bytes.Contains(onDisk, []byte("a.example")) {
		t.Error("the blob on disk contains the plaintext")
	}
	other, err := device.GenerateEncKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.Open(other, onDisk); !errors.Is(err, device.ErrNotRecipient) {
		t.Errorf("another key opens the blob: err = %v", err)
	}

	// v2: the device holding v1 is told it is stale, downloads v2 and
	// verifies it; a tampered v2 is refused.
	mustCLI(t, dir, "config", "publish", "--target", "meter-1", "--file", write("v2.toml", v2), "--api", g.api, "--data", g.data)
	if out := drift(); !strings.Contains(out, "meter-1") || !strings.Contains(out, "version 1 (block") {
		t.Errorf("drift after publishing v2:\n%s", out)
	}
	_, answer, err := dev.verify(t, ctx, gen, v1)
	if !errors.Is(err, device.ErrNotCurrent) {
		t.Fatalf("verify v1 after v2: err = %v, want ErrNotCurrent", err)
	}
	cs, err = device.Manifest(gen, answer, dev.policy())
	if err != nil || cs.Version != 2 {
		t.Fatalf("manifest after v2: %+v, %v", cs, err)
	}
	got, err = dev.download(t, ctx, cs)
	if err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("download v2: %q, %v", got, err)
	}
	tampered := bytes.Replace(got, []byte("a.example"), []byte("evil.test"), 1)
	if _, _, err := dev.verify(t, ctx, gen, tampered); !errors.Is(err, device.ErrNotCurrent) {
		t.Errorf("tampered config: err = %v, want ErrNotCurrent", err)
	}
	acc, _, err = dev.verify(t, ctx, gen, got)
	if err != nil || acc.Version != 2 {
		t.Fatalf("verify v2: %+v, %v", acc, err)
	}
	// Once v2 is accepted, a gateway offering v1 is rolling back.
	if _, err := dev.state.Verify(gen, manifest, sha256.Sum256(v1), dev.policy()); !errors.Is(err, device.ErrRollback) {
		t.Errorf("the v1 answer after accepting v2: err = %v, want ErrRollback", err)
	}
	if out := drift(); !strings.Contains(out, "meter-1") {
		t.Errorf("drift before the v2 report:\n%s", out)
	}
	dev.report(t, ctx, gen, acc)
	if out := drift(); !strings.Contains(out, "no drift") {
		t.Errorf("drift after reporting v2:\n%s", out)
	}

	// The operator's checks, history and diff.
	if out := mustCLI(t, dir, "config", "verify", "--device", "meter-1", "--file", filepath.Join(dir, "v2.toml"), "--api", g.api, "--data", g.data); !strings.Contains(out, "accepted") {
		t.Errorf("config verify v2: %s", out)
	}
	if out, errs, code := cli(t, dir, "config", "verify", "--device", "meter-1", "--file", filepath.Join(dir, "v1.toml"), "--api", g.api, "--data", g.data); code != 1 || !strings.Contains(errs, "not accepted") {
		t.Errorf("config verify v1: exit %d\n%s%s", code, out, errs)
	}
	mustCLI(t, dir, "config", "publish", "--target", "meter-1", "--file", write("v3.toml", []byte("interval = 30\n")), "--api", g.api, "--data", g.data)
	var h struct {
		Configs []struct{ Version uint64 }
		Reports []struct{ Version uint64 }
	}
	getJSON(t, g.api, "/api/v1/devices/meter-1/config/history", &h)
	if len(h.Configs) != 3 || h.Configs[0].Version != 1 || h.Configs[1].Version != 2 || h.Configs[2].Version != 3 ||
		len(h.Reports) != 2 || h.Reports[0].Version != 1 || h.Reports[1].Version != 2 {
		t.Errorf("history: %+v", h)
	}
	hist := mustCLI(t, dir, "config", "history", "--device", "meter-1", "--api", g.api)
	if i1, i2, i3 := strings.Index(hist, "meter-1  1 "), strings.Index(hist, "meter-1  2 "), strings.Index(hist, "meter-1  3 "); i1 < 0 || i2 < i1 || i3 < i2 {
		t.Errorf("config history is not every version in order:\n%s", hist)
	}
	diff := mustCLI(t, dir, "config", "diff", "--device", "meter-1", "--from", "1", "--to", "2", "--api", g.api, "--data", g.data)
	if !strings.Contains(diff, "- interval = 10\n+ interval = 20\n  server = a.example\n") {
		t.Errorf("config diff 1 2:\n%s", diff)
	}
	if _, errs, code := cli(t, dir, "config", "publish", "--target", "meter-1", "--version", "2", "--file", filepath.Join(dir, "v1.toml"), "--api", g.api, "--data", g.data); code == 0 || !strings.Contains(errs, "stale_version") {
		t.Errorf("publishing an old version: exit %d: %s", code, errs)
	}
}

// TestConfigGroupAndKeyDirectory: a group's configuration is readable by
// each member and no one else; devices look up each other's keys with
// proof and seal to each other, through re-key and revocation.
func TestConfigGroupAndKeyDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	g := startGateway(t, filepath.Join(dir, "data"))
	gen := loadGenesis(t, g)
	a := newConfigDevice(t, ctx, g, dir, "dev-a", "meters")
	b := newConfigDevice(t, ctx, g, dir, "dev-b", "meters,pumps")
	c := newConfigDevice(t, ctx, g, dir, "dev-c", "pumps")
	// Enrolling an id twice is refused (and answered: the replica agrees
	// with the primary's refusal instead of waiting for ever).
	if _, errs, code := cli(t, dir, "device", "enroll", "--id", "dev-a", "--pubkey", "dev-b.pub", "--api", g.api, "--data", g.data); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("enrolling dev-a twice: exit %d: %s", code, errs)
	}

	conf := []byte("group = meters\n")
	p := filepath.Join(dir, "meters.toml")
	if err := os.WriteFile(p, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "config", "publish", "--target", "group:meters", "--file", p, "--api", g.api, "--data", g.data)
	var cs *ledger.ConfigSet
	for _, d := range []*configDevice{a, b} {
		raw, err := d.cl.Request(ctx, "config/verify", make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		ans, err := ledger.DecodeConfigAnswer(raw)
		if err != nil {
			t.Fatal(err)
		}
		if cs, err = device.Manifest(gen, ans, d.policy()); err != nil || cs.Target != "group:meters" {
			t.Fatalf("%s: manifest %+v, %v", d.id, cs, err)
		}
		if got, err := d.download(t, ctx, cs); err != nil || !bytes.Equal(got, conf) {
			t.Errorf("%s opens the group config: %q, %v", d.id, got, err)
		}
	}
	// dev-c, not a member, may not download it, and could not open it.
	if _, err := c.cl.Request(ctx, "config/blob/get", cs.Blob); !errors.Is(err, device.ErrRefused) {
		t.Errorf("dev-c downloads the meters blob: err = %v, want a refusal", err)
	}
	var blob []byte
	resp, err := http.Get(g.api + "/api/v1/blobs/" + hex.EncodeToString(cs.Blob))
	if err != nil {
		t.Fatal(err)
	}
	blob = readAll(t, resp)
	ck, err := device.LoadEncKey(filepath.Join(dir, "dev-c.enc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.OpenConfig(cs, blob, ck); !errors.Is(err, device.ErrNotRecipient) {
		t.Errorf("dev-c opens the meters config: err = %v, want ErrNotRecipient", err)
	}

	// Key directory: a looks up b, seals to it, b opens.
	lookup := func() (*device.DeviceKeys, error) {
		raw, err := a.cl.Request(ctx, "keys/get", []byte("dev-b"))
		if err != nil {
			return nil, err
		}
		ans, err := ledger.DecodeKeysAnswer(raw)
		if err != nil {
			return nil, err
		}
		return device.VerifyKeys(gen, ans, "dev-b", device.Freshness{})
	}
	kb, err := lookup()
	if err != nil || kb.Revoked || kb.Model != "th-2" || strings.Join(kb.Groups, ",") != "meters,pumps" {
		t.Fatalf("lookup dev-b: %+v, %v", kb, err)
	}
	msg, err := device.SealTo(kb, []byte("hello from a"))
	if err != nil {
		t.Fatal(err)
	}
	bk, err := device.LoadEncKey(filepath.Join(dir, "dev-b.enc"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := device.Open(bk, msg); err != nil || string(got) != "hello from a" {
		t.Fatalf("b opens a's message: %q, %v", got, err)
	}

	// b re-keys (signed with its current key, over the API): the lookup
	// returns the new keys, not the old.
	oldKey, err := device.LoadKey(filepath.Join(dir, "dev-b"))
	if err != nil {
		t.Fatal(err)
	}
	newSign, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		t.Fatal(err)
	}
	newEnc, err := device.GenerateEncKey()
	if err != nil {
		t.Fatal(err)
	}
	signDER, _ := ledger.MarshalPublicKey(newSign)
	encDER, _ := device.EncPublicKey(newEnc)
	rk, err := ledger.SignTx(oldKey, "dev-b", &ledger.Body{Kind: ledger.KindRekey, ChainID: gen.ChainID,
		Rekey: &ledger.Rekey{DeviceID: "dev-b", Seq: 1, PublicKey: signDER, EncKey: encDER}})
	if err != nil {
		t.Fatal(err)
	}
	if code, reason, _, err := post(ctx, g.api, rk); err != nil || code != http.StatusOK {
		t.Fatalf("re-key dev-b: %d %s %v", code, reason, err)
	}
	kb2, err := lookup()
	if err != nil || bytes.Equal(kb2.EncKey, kb.EncKey) || !bytes.Equal(kb2.EncKey, encDER) || !bytes.Equal(kb2.SigningKey.DER, signDER) {
		t.Fatalf("lookup after re-key: %+v, %v", kb2, err)
	}
	msg, err = device.SealTo(kb2, []byte("to the new key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.Open(bk, msg); !errors.Is(err, device.ErrNotRecipient) {
		t.Errorf("the old key opens a message sealed after the re-key: %v", err)
	}
	if got, err := device.Open(newEnc, msg); err != nil || string(got) != "to the new key" {
		t.Errorf("the new key: %q, %v", got, err)
	}

	// b is revoked: the lookup says so, with proof.
	mustCLI(t, dir, "device", "revoke", "--id", "dev-b", "--reason", "stolen", "--api", g.api, "--data", g.data)
	kb3, err := lookup()
	if err != nil || !kb3.Revoked || kb3.Reason != "stolen" {
		t.Fatalf("lookup after revocation: %+v, %v", kb3, err)
	}
	if _, err := device.SealTo(kb3, []byte("x")); !errors.Is(err, device.ErrRevoked) {
		t.Errorf("SealTo a revoked device: %v", err)
	}
	if out := mustCLI(t, dir, "device", "keys", "--id", "dev-b", "--api", g.api, "--data", g.data); !strings.Contains(out, "REVOKED (stolen)") {
		t.Errorf("device keys after revocation: %s", out)
	}
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, buf.String())
	}
	return buf.Bytes()
}

// TestHeartbeatKeepsAnswersFresh: an idle chain still commits blocks (a
// node.heartbeat by the primary), so the newest block in an answer is
// never older than the heartbeat.
func TestHeartbeatKeepsAnswersFresh(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ledgergate.toml")
	if err := os.WriteFile(conf, []byte("[batch]\nheartbeat = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, filepath.Join(dir, "data"), "--config", conf)
	deadline := time.Now().Add(30 * time.Second)
	var st struct{ Height uint64 }
	for getJSON(t, g.api, "/api/v1/status", &st); st.Height < 2; getJSON(t, g.api, "/api/v1/status", &st) {
		if time.Now().After(deadline) {
			t.Fatalf("an idle gateway with heartbeat 1s is at height %d after 30s", st.Height)
		}
		time.Sleep(100 * time.Millisecond) // polling another process's API
	}
	var b struct {
		Header struct{ Time int64 }
		Txs    []struct{ Kind, Author string }
	}
	getJSON(t, g.api, "/api/v1/blocks/2", &b)
	if len(b.Txs) != 1 || b.Txs[0].Kind != string(ledger.KindHeartbeat) || b.Txs[0].Author != "node-1" {
		t.Errorf("block 2 of an idle chain: %+v", b.Txs)
	}
	if out := mustCLI(t, dir, "ledger", "verify", "--data", g.data); !strings.Contains(out, "ok:") {
		t.Errorf("ledger verify: %s", out)
	}
}

// TestHeartbeatAfterClockStep: a gateway whose wall clock was an hour
// ahead (a Raspberry Pi without a real-time clock boots with a wrong one)
// committed blocks stamped an hour ahead; when its clock steps back, the
// idle chain must go on committing heartbeats. It used to wait for its
// clock to pass the newest block's time: an hour without a block, and
// every device answer stale.
func TestHeartbeatAfterClockStep(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ledgergate.toml")
	if err := os.WriteFile(conf, []byte("[batch]\nheartbeat = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	offset := filepath.Join(dir, "clock-offset")
	if err := os.WriteFile(offset, []byte("1h"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGatewayEnv(t, []string{clock.TestOffsetEnv + "=" + offset}, filepath.Join(dir, "data"), "--config", conf)
	waitHeight := func(h uint64) uint64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var st struct{ Height uint64 }
		for getJSON(t, g.api, "/api/v1/status", &st); st.Height < h; getJSON(t, g.api, "/api/v1/status", &st) {
			if time.Now().After(deadline) {
				t.Fatalf("an idle gateway with heartbeat 1s is at height %d after 30s, want %d\n%s", st.Height, h, g.log())
			}
			time.Sleep(100 * time.Millisecond) // polling another process's API
		}
		return st.Height
	}
	h := waitHeight(2)
	var b struct{ Header struct{ Time int64 } }
	getJSON(t, g.api, fmt.Sprintf("/api/v1/blocks/%d", h), &b)
	if ahead := time.Until(time.UnixMilli(b.Header.Time)); ahead < 50*time.Minute {
		t.Fatalf("block %d is stamped %s ahead, want about 1h: the clock hook did not reach the block time", h, ahead)
	}
	if err := os.WriteFile(offset, []byte("0s"), 0o644); err != nil {
		t.Fatal(err)
	}
	// After the step back: heartbeats go on, now stamped with the right time.
	h = waitHeight(h + 3)
	getJSON(t, g.api, fmt.Sprintf("/api/v1/blocks/%d", h), &b)
	if off := time.Since(time.UnixMilli(b.Header.Time)).Abs(); off > 10*time.Minute {
		t.Errorf("block %d is stamped %s off the clock after the step back", h, off)
	}
}
