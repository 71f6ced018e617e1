package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fleetBrowser is a logged-in browser on a gateway, for the fleet pages.
type fleetBrowser struct {
	t   *testing.T
	g   *gateway
	ctx context.Context
}

func (b *fleetBrowser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, actions...); err != nil {
		var loc, body string
		sctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		chromedp.Run(sctx, chromedp.Location(&loc), chromedp.Text("main", &body, chromedp.ByQuery))
		cancel()
		b.t.Fatalf("%s: %v\nat %s: %s\n%s", what, err, loc, body, b.g.log())
	}
}

func (b *fleetBrowser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

// check: every field and button has a label, and the page fits a phone.
func (b *fleetBrowser) check(name string) {
	b.t.Helper()
	var unlabeled, wide []string
	var overflow bool
	b.run("labels of "+name, chromedp.Evaluate(`[...document.querySelectorAll("input:not([type=hidden]):not([hidden]),textarea,select,button")]
		.filter(e => e.tagName !== "BUTTON" ? e.labels.length === 0 && !e.getAttribute("aria-label") : !(e.textContent.trim() || e.getAttribute("aria-label")))
		.map(e => e.name || e.outerHTML)`, &unlabeled))
	if len(unlabeled) > 0 {
		b.t.Errorf("%s: fields without a label: %v", name, unlabeled)
	}
	var loc string
	b.run("location of "+name, chromedp.Location(&loc))
	b.run("phone "+name, chromedp.EmulateViewport(390, 844), chromedp.Navigate(loc), chromedp.WaitVisible("main h1", chromedp.ByQuery),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow),
		chromedp.Evaluate(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap"))
			.map(e => e.tagName + "." + e.className + "#" + e.id)`, &wide),
		chromedp.EmulateViewport(1280, 900), chromedp.Navigate(loc), chromedp.WaitVisible("main h1", chromedp.ByQuery))
	if overflow {
		b.t.Errorf("%s is wider than a phone: %v", name, wide)
	}
}

func (b *fleetBrowser) shot(name string) {
	b.t.Helper()
	dir := *screenshotDir
	if dir == "" {
		return
	}
	var png []byte
	b.run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// TestDashboardFleet drives the fleet pages in a real browser against a
// real gateway: the drift page shows the devices that never reported
// their group's configuration; the rollout page approves a release for
// a group with the form (typed confirmation), shows the first wave's
// reports and the halt its failures cause, and halts the rollout, which
// commits a firmware.revoke for the group: no device is offered the
// release after it. Then the batches and policies pages
// (dashboardBatchesAndPolicies).
func TestDashboardFleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const password = "operator password 4"
	cmd := exec.Command(ledgergateBin, "webui", "hash-password")
	cmd.Stdin = strings.NewReader(password + "\n")
	hash, err := cmd.Output()
	if err != nil {
		t.Fatalf("webui hash-password: %v", err)
	}
	cfg := filepath.Join(dir, "gw.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[webui]\npassword_hash = %q\n", strings.TrimSpace(string(hash)))), 0o644)
	g := startGateway(t, filepath.Join(dir, "data"), "--config", cfg)
	l := firmwareLabOn(t, dir, g)

	var fleet []*fwDevice
	for i := range 4 {
		fleet = append(fleet, l.device(fmt.Sprintf("fleet-%d", i), "th-2", "fleet"))
	}
	// A group configuration; fleet-0 reports applying it, the others never do.
	conf := filepath.Join(dir, "v1.toml")
	os.WriteFile(conf, []byte("interval = 10\n"), 0o644)
	l.admin("config", "publish", "--target", "group:fleet", "--file", conf)
	key, err := device.LoadKey(filepath.Join(dir, "fleet-0"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("interval = 10\n"))
	fleet[0].seq++
	env, err := device.SignConfigReport(key, l.gen.ChainID, ledger.ConfigReport{DeviceID: "fleet-0", Seq: fleet[0].seq, Version: 1, SHA256: sum[:]})
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet[0].cl.Report(ctx, env); err != nil {
		t.Fatalf("fleet-0 reports its configuration: %v", err)
	}
	l.admin("firmware", "policy", "--group", "fleet", "--require-approval", "--waves", "50,100", "--max-failures", "20")
	l.publish(2, "720h")

	b := &fleetBrowser{t: t, g: g, ctx: newBrowser(t)}
	b.run("login",
		chromedp.Navigate(g.api+"/drift"),
		chromedp.WaitVisible("#password", chromedp.ByQuery),
		chromedp.SendKeys("#password", password+kb.Enter, chromedp.ByQuery),
		chromedp.WaitVisible("[data-drift-counts]", chromedp.ByQuery))

	// Drift: one device current, three never reported.
	if all, cur, never := b.text(`[data-count="all"]`), b.text(`[data-count="current"]`), b.text(`[data-count="never"]`); all != "4" || cur != "1" || never != "3" {
		t.Errorf("drift counts: %s devices, %s current, %s never reported; want 4, 1, 3", all, cur, never)
	}
	if row := b.text(`tr[data-target="group:fleet"]`); !strings.Contains(row, "group:fleet") {
		t.Errorf("the targets table: %q", row)
	}
	b.shot("drift")
	b.check("drift")
	b.run("filter never",
		chromedp.SetValue("#state", "never", chromedp.ByQuery),
		chromedp.Click(`form[action="/drift"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitReady(`#state option[value="never"][selected]`, chromedp.ByQuery)) // the new page
	if m := b.text("[data-matches]"); m != "3 devices match." {
		t.Errorf("state never: %q", m)
	}
	for _, d := range fleet[1:] {
		if st := b.text(`tr[data-device="` + d.id + `"] [data-col="state"]`); st != "never reported" {
			t.Errorf("%s: state %q, want never reported", d.id, st)
		}
	}
	var listed int
	b.run("fleet-0 not listed", chromedp.Evaluate(`document.querySelectorAll('tr[data-device="fleet-0"]').length`, &listed))
	if listed != 0 {
		t.Error("fleet-0 reported its configuration but is listed as never reported")
	}

	// Rollouts: waiting for approval; approve from the page.
	const grp = `[data-release="th-2/2"] [data-group="fleet"]`
	b.run("rollouts", chromedp.Navigate(g.api+"/rollouts"), chromedp.WaitVisible(grp, chromedp.ByQuery))
	if st := b.text(grp + ` h3 [data-col="state"]`); st != "waiting" {
		t.Errorf("before approval the rollout is %q", st)
	}
	var flash string
	b.run("approve",
		chromedp.Click(grp+` a[href$="/approve"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm", chromedp.ByQuery),
		chromedp.SendKeys("#confirm", "flee", chromedp.ByQuery), // a typo is refused
		chromedp.Click(`button[type=submit]:not(.link)`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.err", chromedp.ByQuery))
	if e := b.text(".banner.err"); e != "Type the group's name exactly to confirm." {
		t.Errorf("a wrong confirmation says %q", e)
	}
	b.check("approve")
	b.run("approve, confirmed",
		chromedp.SendKeys("#confirm", "fleet", chromedp.ByQuery),
		chromedp.Click(`button[type=submit]:not(.link)`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	if !strings.HasPrefix(flash, "Approved th-2 version 2 for group fleet in block ") {
		t.Fatalf("after approving the page says %q", flash)
	}
	if st := b.text(grp + ` h3 [data-col="state"]`); st != "rolling out" {
		t.Errorf("after approval the rollout is %q", st)
	}

	// Wave 1 (half the group) installs: one ok, one fails; 50% > 20%.
	var wave1 []*fwDevice
	for _, d := range fleet {
		if a := l.offer(d); offered(a) == 2 {
			wave1 = append(wave1, d)
		}
	}
	if len(wave1) != 2 {
		t.Fatalf("after the page's approval %d devices are offered version 2, want 2", len(wave1))
	}
	l.install(ctx, wave1[0], l.offer(wave1[0]), true)
	l.install(ctx, wave1[1], l.offer(wave1[1]), false)
	b.run("halted by failures", chromedp.Navigate(g.api+"/rollouts?model=th-2"), chromedp.WaitVisible(grp, chromedp.ByQuery))
	if st := b.text(grp + ` h3 [data-col="state"]`); st != "halted by failures" {
		t.Errorf("after wave 1 failed 50%% the rollout is %q", st)
	}
	if rep, fail, w2 := b.text(grp+` tr[data-wave="1"] [data-col="reported"]`), b.text(grp+` tr[data-wave="1"] [data-col="failed"]`),
		b.text(grp+` tr[data-wave="2"] [data-col="wave-state"]`); rep != "2" || fail != "1" || w2 != "halted" {
		t.Errorf("wave 1: %s reported, %s failed; wave 2 %q", rep, fail, w2)
	}
	var failures string
	b.run("failures", chromedp.TextContent(grp+" details.failures", &failures, chromedp.ByQuery))
	if !strings.Contains(failures, wave1[1].id+": boot loop") || strings.Contains(failures, wave1[0].id) {
		t.Errorf("the failures list %q: want %s (failed) alone", failures, wave1[1].id)
	}
	b.shot("rollouts")
	b.check("rollouts")

	// Halt from the page: a firmware.revoke for the group.
	b.run("halt",
		chromedp.Click(grp+` a[href$="/halt"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm", chromedp.ByQuery),
		chromedp.SendKeys("#reason", "boot loops on th-2 rev B", chromedp.ByQuery),
		chromedp.SendKeys("#confirm", "fleet", chromedp.ByQuery))
	b.shot("rollout-halt")
	b.run("halt, confirmed",
		chromedp.Click(`button.danger[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	if !strings.HasPrefix(flash, "Halted th-2 version 2 in group fleet: revoked for the group in block ") {
		t.Fatalf("after halting the page says %q", flash)
	}
	if st := b.text(grp + ` h3 [data-col="state"]`); st != "revoked" {
		t.Errorf("after the halt the rollout is %q", st)
	}
	var buttons int
	b.run("no action left", chromedp.Evaluate(`document.querySelectorAll('`+grp+` .actions a').length`, &buttons))
	if buttons != 0 {
		t.Errorf("a revoked rollout still offers %d actions", buttons)
	}
	// On the ledger: the revocation names the operator's reason, and no
	// device of the group is offered the release any more.
	var st struct {
		Releases []struct {
			Events []struct{ Kind, Group, Detail, Author string }
		}
	}
	getJSON(t, g.api, "/api/v1/firmware/th-2", &st)
	revoked := false
	for _, e := range st.Releases[0].Events {
		revoked = revoked || e.Kind == string(ledger.KindFirmwareRevoke) && e.Group == "fleet" && e.Detail == "boot loops on th-2 rev B"
	}
	if !revoked {
		t.Errorf("no firmware.revoke for fleet with the reason: %+v", st.Releases[0].Events)
	}
	for _, d := range fleet {
		if v := offered(l.offer(d)); v != 0 {
			t.Errorf("%s is offered version %d after the halt", d.id, v)
		}
	}

	dashboardBatchesAndPolicies(ctx, t, b, l)
}
