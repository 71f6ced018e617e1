package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fwDevice is a device in the firmware tests, enrolled with the CLI.
type fwDevice struct {
	cl        *device.Client
	id, model string
	groups    []string
	installed uint64
	seq       uint64
}

// firmwareLab is a dev gateway with a vendor, reviewers and devices.
type firmwareLab struct {
	t         *testing.T
	g         *gateway
	dir       string
	gen       *ledger.Genesis
	vendorKey *ledger.PublicKey
	images    map[uint64][]byte
}

func newFirmwareLab(t *testing.T) *firmwareLab {
	dir := t.TempDir()
	return firmwareLabOn(t, dir, startGateway(t, filepath.Join(dir, "data")))
}

// firmwareLabOn is newFirmwareLab on a gateway started already, whose
// CLI files go to dir.
func firmwareLabOn(t *testing.T, dir string, g *gateway) *firmwareLab {
	l := &firmwareLab{t: t, g: g, dir: dir, gen: loadGenesis(t, g), images: map[uint64][]byte{}}
	mustCLI(t, dir, "vendor", "keygen", "--out", "acme")
	l.admin("vendor", "enroll", "--id", "acme", "--pubkey", "acme.pub", "--models", "th-2,x-9")
	der, err := device.LoadPublicKey(filepath.Join(dir, "acme.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if l.vendorKey, err = ledger.ParsePublicKey(der); err != nil {
		t.Fatal(err)
	}
	return l
}

// admin runs a CLI command signed with the dev admin key.
func (l *firmwareLab) admin(args ...string) string {
	l.t.Helper()
	return mustCLI(l.t, l.dir, append(args, "--api", l.g.api, "--data", l.g.data)...)
}

func (l *firmwareLab) device(id, model, groups string) *fwDevice {
	l.t.Helper()
	mustCLI(l.t, l.dir, "device", "keygen", "--alg", "es256", "--out", id)
	l.admin("device", "enroll", "--id", id, "--pubkey", id+".pub", "--model", model, "--group", groups)
	key, err := device.LoadKey(filepath.Join(l.dir, id))
	if err != nil {
		l.t.Fatal(err)
	}
	cl, err := device.Dial(context.Background(), id, key, l.gen.ChainID, device.DialOptions{Broker: "tcp://" + l.g.mqtt})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cl.Close() })
	return &fwDevice{cl: cl, id: id, model: model, groups: strings.Split(groups, ","), installed: 1}
}

func (l *firmwareLab) publish(version uint64, expires string, extra ...string) {
	l.t.Helper()
	img := bytes.Repeat([]byte(fmt.Sprintf("th-2 firmware %d\n", version)), 1000)
	l.images[version] = img
	p := filepath.Join(l.dir, fmt.Sprintf("fw-%d.bin", version))
	if err := os.WriteFile(p, img, 0o644); err != nil {
		l.t.Fatal(err)
	}
	mustCLI(l.t, l.dir, append([]string{"firmware", "publish", "--vendor-key", "acme", "--vendor", "acme", "--model", "th-2",
		"--version", fmt.Sprint(version), "--image", p, "--expires", expires, "--api", l.g.api}, extra...)...)
}

// offer asks the gateway what d may install: nil if nothing.
func (l *firmwareLab) offer(d *fwDevice) *ledger.FirmwareAnswer {
	l.t.Helper()
	return l.answer("/api/v1/devices/" + d.id + "/firmware")
}

func (l *firmwareLab) answer(path string) *ledger.FirmwareAnswer {
	l.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, l.g.api+path, nil)
	req.Header.Set("Accept", "application/cbor")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		l.t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	a, err := ledger.DecodeFirmwareAnswer(b)
	if err != nil {
		l.t.Fatal(err)
	}
	return a
}

func (l *firmwareLab) policy(d *fwDevice) device.FirmwarePolicy {
	return device.FirmwarePolicy{Device: d.id, Model: d.model, Groups: d.groups, Installed: d.installed}
}

// install downloads, checks, "installs" and reports what a offers.
func (l *firmwareLab) install(ctx context.Context, d *fwDevice, a *ledger.FirmwareAnswer, ok bool) {
	l.t.Helper()
	f, err := device.CheckFirmware(l.gen, l.vendorKey, a, l.policy(d))
	if err != nil {
		l.t.Fatalf("%s: check offer: %v", d.id, err)
	}
	img, err := device.DownloadImage(ctx, http.DefaultClient, l.g.api+"/api/v1/firmware/images/"+hex.EncodeToString(f.SHA256), f)
	if err != nil {
		l.t.Fatalf("%s: download: %v", d.id, err)
	}
	if _, err := device.VerifyFirmware(l.gen, l.vendorKey, a, img, l.policy(d)); err != nil {
		l.t.Fatalf("%s: verify: %v", d.id, err)
	}
	if ok {
		d.installed = f.Version
	}
	key, err := device.LoadKey(filepath.Join(l.dir, d.id))
	if err != nil {
		l.t.Fatal(err)
	}
	d.seq++
	env, err := device.SignFirmwareReport(key, l.gen.ChainID, ledger.FirmwareReport{DeviceID: d.id, Seq: d.seq,
		Model: f.Model, Version: f.Version, OK: ok, Detail: map[bool]string{true: "", false: "boot loop"}[ok]})
	if err != nil {
		l.t.Fatal(err)
	}
	if err := d.cl.ReportFirmware(ctx, env); err != nil {
		l.t.Fatalf("%s: report: %v", d.id, err)
	}
}

func offered(a *ledger.FirmwareAnswer) uint64 {
	if a == nil {
		return 0
	}
	tx, err := ledger.DecodeTx(a.Release.Tx, 0)
	if err != nil || tx.Body.FirmwarePublish == nil {
		return 0
	}
	return tx.Body.FirmwarePublish.Version
}

// TestFirmwareApprovalAndWaves: under "approval required", nothing is
// offered before the owner approves; then the first wave upgrades and
// reports, and its failures over the bound stop the second wave.
func TestFirmwareApprovalAndWaves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newFirmwareLab(t)
	var fleet []*fwDevice
	for i := range 4 {
		fleet = append(fleet, l.device(fmt.Sprintf("fleet-%d", i), "th-2", "fleet"))
	}
	l.admin("firmware", "policy", "--group", "fleet", "--require-approval", "--waves", "50,100", "--max-failures", "20")
	l.publish(2, "720h")
	for _, d := range fleet {
		if a := l.offer(d); a != nil {
			t.Fatalf("%s is offered version %d before the owner approved", d.id, offered(a))
		}
	}
	host, port := hostPort(t, l.g.mqtt)
	l.admin("firmware", "approve", "--group", "fleet", "--model", "th-2", "--version", "2")

	var wave1, wave2 []*fwDevice
	for _, d := range fleet {
		switch v := offered(l.offer(d)); v {
		case 2:
			wave1 = append(wave1, d)
		case 0:
			wave2 = append(wave2, d)
		default:
			t.Fatalf("%s offered version %d", d.id, v)
		}
	}
	if len(wave1) != 2 || len(wave2) != 2 {
		t.Fatalf("after approval, %d devices are offered version 2, want 2 of 4 (wave 1 is 50%%)", len(wave1))
	}
	// A device in wave 1 gets its manifest retained over MQTT too.
	sub := subscribeOne(t, "-h", host, "-p", port, "-V", "5", "-i", wave1[0].id+"/fw", "-u", wave1[0].id, "-P", strings.TrimSpace(tokenFor(t, l, wave1[0])),
		"-t", "lg/v1/"+wave1[0].id+"/firmware", "-q", "1")
	if a, err := ledger.DecodeFirmwareAnswer(sub()); err != nil || offered(a) != 2 {
		t.Fatalf("retained firmware manifest: %v, version %d", err, offered(a))
	}

	l.install(ctx, wave1[0], l.offer(wave1[0]), true)
	l.install(ctx, wave1[1], l.offer(wave1[1]), false)
	for _, d := range wave2 {
		if a := l.offer(d); a != nil {
			t.Errorf("%s is offered version %d though wave 1 failed 50%% (bound 20%%)", d.id, offered(a))
		}
	}
	st := mustCLI(t, l.dir, "firmware", "status", "--api", l.g.api)
	if !strings.Contains(st, "HALTED") || !strings.Contains(st, "2 reported, 1 failed") {
		t.Errorf("firmware status:\n%s", st)
	}
	var hist struct {
		Installed uint64
		Reports   []struct {
			Version uint64
			OK      bool
		}
	}
	getJSON(t, l.g.api, "/api/v1/devices/"+wave1[0].id+"/firmware/history", &hist)
	if hist.Installed != 2 || len(hist.Reports) != 1 || !hist.Reports[0].OK {
		t.Errorf("history of %s: %+v", wave1[0].id, hist)
	}
	var model struct {
		Releases []struct {
			Version uint64
			Groups  []struct {
				Group  string
				Halted bool
			}
		}
	}
	getJSON(t, l.g.api, "/api/v1/firmware/th-2", &model)
	if len(model.Releases) != 1 || model.Releases[0].Version != 2 || len(model.Releases[0].Groups) != 1 || !model.Releases[0].Groups[0].Halted {
		t.Errorf("firmware of th-2: %+v", model)
	}

	// Version 3 rolls out without failures: when its first wave has
	// reported, the second opens and a device of it, subscribed all along,
	// gets the new manifest at once.
	l.publish(3, "720h")
	l.admin("firmware", "approve", "--group", "fleet", "--model", "th-2", "--version", "3")
	var first, second []*fwDevice
	for _, d := range fleet {
		if offered(l.offer(d)) == 3 {
			first = append(first, d)
		} else {
			second = append(second, d)
		}
	}
	if len(first) != 2 || len(second) != 2 {
		t.Fatalf("version 3: %d devices in wave 1, want 2", len(first))
	}
	// -R: not the retained manifest of the subscription, the next live one.
	live := subscribeOne(t, "-h", host, "-p", port, "-V", "5", "-R", "-i", second[0].id+"/fw", "-u", second[0].id, "-P", strings.TrimSpace(tokenFor(t, l, second[0])),
		"-t", "lg/v1/"+second[0].id+"/firmware", "-q", "1")
	for _, d := range first {
		l.install(ctx, d, l.offer(d), true)
	}
	if a, err := ledger.DecodeFirmwareAnswer(live()); err != nil || offered(a) != 3 {
		t.Fatalf("wave 2 manifest pushed when wave 1 completed: %v, version %d", err, offered(a))
	}
}

// tokenFor makes an MQTT password for d.
func tokenFor(t *testing.T, l *firmwareLab, d *fwDevice) string {
	return mustCLI(t, l.dir, "device", "token", "--key", d.id, "--id", d.id, "--genesis", filepath.Join(l.g.data, "genesis.json"))
}

// TestFirmwareVotesAndRefusals: under "3 good votes", a release is offered
// after the third good vote and held by one bad vote; and the device
// refuses what TUF says it must.
func TestFirmwareVotesAndRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newFirmwareLab(t)
	lab := l.device("lab-1", "th-2", "lab")
	other := l.device("x9-1", "x-9", "lab")
	l.admin("firmware", "policy", "--group", "lab", "--votes", "3")
	for i := range 4 {
		id := fmt.Sprintf("rev-%d", i)
		mustCLI(t, l.dir, "vendor", "keygen", "--out", id)
		l.admin("reviewer", "enroll", "--id", id, "--pubkey", id+".pub")
	}
	vote := func(i int, good bool, v uint64) {
		verdict := "--good"
		if !good {
			verdict = "--bad"
		}
		mustCLI(t, l.dir, "firmware", "vote", "--reviewer-key", fmt.Sprintf("rev-%d", i), "--reviewer", fmt.Sprintf("rev-%d", i),
			"--model", "th-2", "--version", fmt.Sprint(v), verdict, "--reason", "tested", "--api", l.g.api)
	}
	l.publish(3, "720h")
	for i := range 3 {
		if a := l.offer(lab); a != nil {
			t.Fatalf("offered version %d after %d good votes", offered(a), i)
		}
		vote(i, true, 3)
	}
	a3 := l.offer(lab)
	if offered(a3) != 3 || len(a3.Votes) != 3 {
		t.Fatalf("after the third good vote: version %d with %d vote receipts", offered(a3), len(a3.Votes))
	}
	img := l.images[3]
	if _, err := device.VerifyFirmware(l.gen, l.vendorKey, a3, img, l.policy(lab)); err != nil {
		t.Fatalf("the real thing: %v", err)
	}

	// What the device refuses.
	mustCLI(t, l.dir, "vendor", "keygen", "--out", "evil")
	evilDER, _ := device.LoadPublicKey(filepath.Join(l.dir, "evil.pub"))
	evilKey, _ := ledger.ParsePublicKey(evilDER)
	stale := l.policy(lab)
	stale.Freshness = device.Freshness{MaxAge: 10 * time.Minute, Now: func() time.Time { return time.Now().Add(time.Hour) }}
	late := l.policy(lab)
	late.Freshness = device.Freshness{MaxAge: 2000 * time.Hour, Now: func() time.Time { return time.Now().Add(1000 * time.Hour) }}
	newer := l.policy(lab)
	newer.Installed = 5
	otherModel := l.policy(other)
	otherModel.Device = lab.id // x-9's policy on lab-1's answer: the manifest is not for x-9
	tampered := bytes.Clone(img)
	tampered[0] ^= 1
	refusals := []struct {
		name  string
		key   *ledger.PublicKey
		image []byte
		p     device.FirmwarePolicy
		want  error
	}{
		{"image whose hash differs", l.vendorKey, tampered, l.policy(lab), device.ErrImage},
		{"manifest signed by another key", evilKey, img, l.policy(lab), device.ErrVendorSignature},
		{"lower version than installed", l.vendorKey, img, newer, device.ErrFirmwareRollback},
		{"expired manifest", l.vendorKey, img, late, device.ErrExpired},
		{"stale certified header", l.vendorKey, img, stale, device.ErrStaleHead},
		{"manifest for another model", l.vendorKey, img, otherModel, device.ErrWrongModel},
	}
	for _, r := range refusals {
		if _, err := device.VerifyFirmware(l.gen, r.key, a3, r.image, r.p); !errors.Is(err, r.want) {
			t.Errorf("%s: err = %v, want %v", r.name, err, r.want)
		}
	}
	// An image larger than its manifest: the download stops at the bound.
	f, _ := device.CheckFirmware(l.gen, l.vendorKey, a3, l.policy(lab))
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(img)
		w.Write(bytes.Repeat([]byte{0}, 1<<20))
	}))
	defer big.Close()
	if _, err := device.DownloadImage(ctx, http.DefaultClient, big.URL, f); !errors.Is(err, device.ErrImage) {
		t.Errorf("oversized image: err = %v, want ErrImage", err)
	}
	// The CLI checks as the device does.
	p3 := filepath.Join(l.dir, "fw-3.bin")
	if out := mustCLI(t, l.dir, "firmware", "verify", "--device", "lab-1", "--image", p3, "--vendor-pubkey", "acme.pub", "--api", l.g.api, "--data", l.g.data); !strings.Contains(out, "installable") {
		t.Errorf("firmware verify: %s", out)
	}

	// One bad vote holds the release.
	vote(3, false, 3)
	if a := l.offer(lab); a != nil {
		t.Errorf("offered version %d despite a bad vote", offered(a))
	}
	// A revoked release is refused by the device, with proof.
	l.admin("firmware", "revoke", "--model", "th-2", "--version", "3", "--reason", "bricks units")
	ra := l.answer("/api/v1/devices/lab-1/firmware/th-2/3")
	if _, err := device.VerifyFirmware(l.gen, l.vendorKey, ra, img, l.policy(lab)); !errors.Is(err, device.ErrReleaseRevoked) {
		t.Errorf("revoked release: err = %v, want ErrReleaseRevoked", err)
	}
	if _, errs, code := cli(t, l.dir, "firmware", "verify", "--device", "lab-1", "--image", p3, "--vendor-pubkey", "acme.pub", "--version", "3", "--api", l.g.api, "--data", l.g.data); code != 1 || !strings.Contains(errs, "revoked") {
		t.Errorf("firmware verify of a revoked release: exit %d %s", code, errs)
	}
	// An expiring release: offered while valid (the policy's votes and all).
	l.publish(4, "1h")
	for i := range 3 {
		vote(i, true, 4)
	}
	if v := offered(l.offer(lab)); v != 4 {
		t.Errorf("release 4: offered %d", v)
	}
}

// TestFirmwareMinVersionStep: a device below a release's minimum version
// is offered the release it may install first; once it runs that, the
// newer one. With no such step the answer says the device is blocked.
// The device takes its model and groups from the answer's enrollment.
func TestFirmwareMinVersionStep(t *testing.T) {
	l := newFirmwareLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := l.device("th-1", "th-2", "fleet")
	l.admin("firmware", "policy", "--group", "fleet", "--votes", "0")
	l.publish(3, "720h", "--min-version", "2")
	// It runs version 1 and says so: version 3 needs 2 first, and there is no 2.
	key, err := device.LoadKey(filepath.Join(l.dir, d.id))
	if err != nil {
		t.Fatal(err)
	}
	d.seq++
	env, err := device.SignFirmwareReport(key, l.gen.ChainID, ledger.FirmwareReport{DeviceID: d.id, Seq: d.seq, Model: "th-2", Version: 1, OK: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cl.ReportFirmware(ctx, env); err != nil {
		t.Fatal(err)
	}
	a := l.offer(d)
	if offered(a) != 3 || a.Blocked != ledger.FirmwareBelowMinVersion {
		t.Fatalf("offered %d, blocked %q; want 3, %q", offered(a), a.Blocked, ledger.FirmwareBelowMinVersion)
	}
	p := l.policy(d)
	p.Model, p.Groups = "", nil // from the answer's enrollment
	if _, err := device.CheckFirmware(l.gen, l.vendorKey, a, p); !errors.Is(err, device.ErrFirmwareRollback) {
		t.Fatalf("a blocked release checks as %v, want ErrFirmwareRollback", err)
	}
	l.publish(2, "720h")
	if a = l.offer(d); offered(a) != 2 || a.Blocked != "" {
		t.Fatalf("offered %d, blocked %q; want the step, 2", offered(a), a.Blocked)
	}
	if _, err := device.CheckFirmware(l.gen, l.vendorKey, a, p); err != nil {
		t.Fatalf("the step with model and groups from the enrollment: %v", err)
	}
	l.install(ctx, d, a, true)
	if a = l.offer(d); offered(a) != 3 || a.Blocked != "" {
		t.Fatalf("after the step: offered %d, blocked %q; want 3", offered(a), a.Blocked)
	}
	l.install(ctx, d, a, true)
}
