package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ledgergate/ledgergate/bridge/device"
)

// dashboardBatchesAndPolicies is the part of TestDashboardFleet on the
// batches and policies pages: a vendor's batch is pending; the operator
// approves it from the page (typed confirmation); a device of the batch
// connects and the batch page shows it claimed; the operator revokes the
// batch from the page and the next device is refused. Then two policies
// set with the CLI: the page shows the one in force, the history, and
// the one in force at an earlier height.
func dashboardBatchesAndPolicies(ctx context.Context, t *testing.T, b *fleetBrowser, l *firmwareLab) {
	g, dir := l.g, l.dir
	ids, keys := fleetKeys(t, dir, "lot", 3)
	mustCLI(t, dir, "fleet", "batch", "create", "--vendor-key", "acme", "--vendor", "acme", "--batch", "lot-7", "--model", "th-2",
		"--group", "hall-b", "--keys", filepath.Join(dir, "keys-lot"), "--api", g.api)
	const row = `tr[data-batch="lot-7"]`
	b.run("batches", chromedp.Navigate(g.api+"/batches"), chromedp.WaitVisible(row, chromedp.ByQuery))
	if st, cl := b.text(row+` [data-col="status"]`), b.text(row+` [data-col="claimed"]`); st != "pending" || cl != "0 of 3" {
		t.Errorf("a new batch: %q, %q claimed", st, cl)
	}
	if _, err := device.Dial(ctx, ids[0], keys[ids[0]], l.gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err == nil {
		t.Fatal("a device of a pending batch connected")
	}
	var flash string
	b.run("approve batch",
		chromedp.Click(row+` a[href$="/approve"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm", chromedp.ByQuery))
	b.check("batch approve")
	b.run("approve batch, confirmed",
		chromedp.SendKeys("#confirm", "lot-7", chromedp.ByQuery),
		chromedp.Click(`button[type=submit]:not(.link)`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	if !strings.HasPrefix(flash, "Approved batch lot-7 in block ") {
		t.Fatalf("after approving the batch the page says %q", flash)
	}
	if st := b.text(row + ` [data-col="status"]`); st != "approved" {
		t.Errorf("after approval the batch is %q", st)
	}

	// A device of the batch connects with its token alone: its claim
	// enrolls it, and the batch page shows it.
	cl, err := dialRetry(ctx, g, l.gen.ChainID, ids[0], keys[ids[0]])
	if err != nil {
		t.Fatalf("%s of the approved batch: %v", ids[0], err)
	}
	cl.Close()
	claimed := `tr[data-device="` + ids[0] + `"] [data-col="claimed"]`
	for deadline := time.Now().Add(20 * time.Second); ; {
		b.run("batch page", chromedp.Navigate(g.api+"/batches/lot-7"), chromedp.WaitVisible(claimed, chromedp.ByQuery))
		if b.text(claimed) == "claimed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s connected but the batch page shows it %q", ids[0], b.text(claimed))
		}
	}
	if c := b.text(`[data-col="claimed"]`); c != "1 of 3" {
		t.Errorf("the batch page: %q claimed", c)
	}
	if st := b.text(`tr[data-device="` + ids[1] + `"] [data-col="claimed"]`); st != "not yet" {
		t.Errorf("%s, which never connected: %q", ids[1], st)
	}
	b.shot("batch")
	b.check("batch")

	// Revoke from the page: no further claims.
	b.run("revoke batch",
		chromedp.Navigate(g.api+"/batches"),
		chromedp.WaitVisible(row, chromedp.ByQuery))
	b.shot("batches")
	b.check("batches")
	b.run("revoke batch, confirm",
		chromedp.Click(row+` a[href$="/revoke"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#confirm", chromedp.ByQuery),
		chromedp.SendKeys("#reason", "lot recalled", chromedp.ByQuery),
		chromedp.SendKeys("#confirm", "lot-7", chromedp.ByQuery),
		chromedp.Click(`button.danger[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	if !strings.HasPrefix(flash, "Revoked batch lot-7 in block ") {
		t.Fatalf("after revoking the batch the page says %q", flash)
	}
	if st := b.text(row + ` [data-col="status"]`); st != "revoked" {
		t.Errorf("after the revocation the batch is %q", st)
	}
	if _, err := device.Dial(ctx, ids[1], keys[ids[1]], l.gen.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt}); err == nil {
		t.Error("a device of a revoked batch connected")
	}

	// Policies: none; then version 1; then version 2.
	b.run("no policy", chromedp.Navigate(g.api+"/policies"), chromedp.WaitVisible(`[data-policy="in-force"]`, chromedp.ByQuery))
	if p := b.text(`[data-policy="in-force"] [data-col="version"]`); !strings.HasPrefix(p, "No policy is set") {
		t.Errorf("before any policy.set the page says %q", p)
	}
	setPolicy := func(v, rules string) {
		t.Helper()
		p := filepath.Join(dir, "policy-"+v+".json")
		os.WriteFile(p, []byte(`{"version": `+v+`, "rules": [`+rules+`]}`), 0o644)
		l.admin("policy", "set", "--policy", p)
	}
	setPolicy("1", `{"name": "hall-b-temp-only", "when": "'hall-b' in device.groups", "allow": "record.stream == 'temp'"}`)
	var h1 struct{ Height uint64 }
	getJSON(t, g.api, "/api/v1/status", &h1)
	setPolicy("2", `{"name": "hall-b-temp-only", "when": "'hall-b' in device.groups", "allow": "record.stream == 'temp'"},
		{"name": "max-size", "allow": "record.size <= 4096"}, {"name": "per-device-rate", "rate": {"count": 600, "window": 60000}}`)
	b.run("policies", chromedp.Navigate(g.api+"/policies"), chromedp.WaitVisible(`[data-policy="in-force"] tr[data-rule="per-device-rate"]`, chromedp.ByQuery))
	if p := b.text(`[data-policy="in-force"] [data-col="version"]`); !strings.HasPrefix(p, "Version 2, from block ") {
		t.Errorf("in force: %q", p)
	}
	if r := b.text(`[data-policy="in-force"] tr[data-rule="per-device-rate"]`); !strings.Contains(r, "600 per 1 min") {
		t.Errorf("the rate rule reads %q", r)
	}
	var versions int
	b.run("history", chromedp.Evaluate(`document.querySelectorAll("tr[data-version]").length`, &versions))
	if versions != 2 || !strings.Contains(b.text(`tr[data-version="2"]`), "in force") {
		t.Errorf("history: %d versions; version 2 %q", versions, b.text(`tr[data-version="2"]`))
	}
	b.shot("policies")
	b.check("policies")
	b.run("at an earlier height",
		chromedp.SendKeys("#height", strconv.FormatUint(h1.Height, 10), chromedp.ByQuery),
		chromedp.Click(`form[action="/policies"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#h-inforce a`, chromedp.ByQuery)) // "now": the page of an earlier height
	if p := b.text(`[data-policy="in-force"] [data-col="version"]`); !strings.HasPrefix(p, "Version 1, from block ") {
		t.Errorf("in force after block %d: %q", h1.Height, p)
	}
}
