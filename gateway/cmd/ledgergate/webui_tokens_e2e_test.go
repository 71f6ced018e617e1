package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestDashboardTokens drives the Tokens page in a real browser against a
// gateway whose API asks for tokens: log in, create a token with the form
// (the page shows it once and it works on the API), see it listed, revoke
// it (the API refuses it); the operator's session reads the API's JSON
// without a token; every field has a label and the page fits a phone.
func TestDashboardTokens(t *testing.T) {
	dir := t.TempDir()
	const password = "operator password 3"
	cmd := exec.Command(ledgergateBin, "webui", "hash-password")
	cmd.Stdin = strings.NewReader(password + "\n")
	hash, err := cmd.Output()
	if err != nil {
		t.Fatalf("webui hash-password: %v", err)
	}
	cfg := filepath.Join(dir, "gw.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[api]\nauth = \"tokens\"\n[webui]\npassword_hash = %q\n", strings.TrimSpace(string(hash)))), 0o644)
	g := startGateway(t, filepath.Join(dir, "data"), "--config", cfg)
	ctx := newBrowser(t)
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			var loc, body string
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			chromedp.Run(sctx, chromedp.Location(&loc), chromedp.Text("main", &body, chromedp.ByQuery))
			cancel()
			t.Fatalf("%s: %v\nat %s: %s\n%s", what, err, loc, body, g.log())
		}
	}

	run("login",
		chromedp.Navigate(g.api+"/tokens"),
		chromedp.WaitVisible("#password", chromedp.ByQuery),
		chromedp.SendKeys("#password", password+kb.Enter, chromedp.ByQuery),
		chromedp.WaitVisible("#h-create", chromedp.ByQuery))
	var empty string
	run("empty list", chromedp.Text("tbody", &empty, chromedp.ByQuery))
	if !strings.Contains(empty, "No API token yet.") {
		t.Errorf("a fresh gateway's token list says %q", empty)
	}

	// Create a read:records + read:ledger token that never expires.
	var tok, flash string
	run("create",
		chromedp.SendKeys("#name", "grafana", chromedp.ByQuery),
		chromedp.Click(`input[name=scope][value="read:ledger"]`, chromedp.ByQuery),
		chromedp.SetValue("#expires", "", chromedp.ByQuery),
		chromedp.Click(`form[action="/tokens"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible("#new-token", chromedp.ByQuery),
		chromedp.Value("#new-token", &tok, chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	id, ok := strings.CutPrefix(tok, "lgt_")
	if !ok || len(tok) != 69 {
		t.Fatalf("the page shows the token %q", tok)
	}
	id = id[:12]
	if flash != "Created token "+id+" (grafana)." {
		t.Errorf("after creating, the page says %q", flash)
	}
	var row string
	run("listed", chromedp.Text(`tr[data-token="`+id+`"]`, &row, chromedp.ByQuery))
	for _, want := range []string{"grafana", "read:records, read:ledger", "active", "never"} {
		if !strings.Contains(row, want) {
			t.Errorf("the token's row %q lacks %q", row, want)
		}
	}
	// It works on the API; without it the API refuses.
	if r := callAPI(t, "GET", g.api+"/api/v1/devices", tok, "", nil); r.code != 200 {
		t.Fatalf("the new token on the API: %d %s", r.code, r.body)
	}
	if r := callAPI(t, "GET", g.api+"/api/v1/devices", "", "", nil); r.code != 401 {
		t.Fatalf("the API without a token: %d %s", r.code, r.body)
	}
	// The operator's own session reads the API's JSON (the dashboard
	// links to it) without a token.
	var page string
	run("session reads the API",
		chromedp.Navigate(g.api+"/api/v1/devices"),
		chromedp.Text("body", &page, chromedp.ByQuery))
	if !strings.Contains(page, `"devices"`) {
		t.Errorf("the operator's browser on /api/v1/devices: %q", page)
	}

	// Reloading the page never shows the secret again.
	var html string
	run("reload",
		chromedp.Navigate(g.api+"/tokens"),
		chromedp.WaitVisible(`tr[data-token="`+id+`"]`, chromedp.ByQuery),
		chromedp.OuterHTML("html", &html, chromedp.ByQuery))
	if strings.Contains(html, tok[17:]) {
		t.Error("the tokens page shows a secret again")
	}
	if dir := *screenshotDir; dir != "" {
		var png []byte
		run("screenshot", chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(filepath.Join(dir, "tokens.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var unlabeled []string
	var overflow bool
	run("labels", chromedp.Evaluate(`[...document.querySelectorAll("input:not([type=hidden]):not([hidden]),textarea,select,button")]
		.filter(e => e.tagName !== "BUTTON" ? e.labels.length === 0 && !e.getAttribute("aria-label") : !(e.textContent.trim() || e.getAttribute("aria-label")))
		.map(e => e.name || e.outerHTML)`, &unlabeled))
	if len(unlabeled) > 0 {
		t.Errorf("tokens page: fields without a label: %v", unlabeled)
	}

	// Revoke it from the list.
	run("revoke",
		chromedp.Click(`tr[data-token="`+id+`"] button.danger`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery),
		chromedp.Text(`tr[data-token="`+id+`"] [data-col="state"]`, &row, chromedp.ByQuery))
	if flash != "Revoked token "+id+"." || row != "revoked" {
		t.Errorf("after revoking: flash %q, state %q", flash, row)
	}
	if r := callAPI(t, "GET", g.api+"/api/v1/devices", tok, "", nil); r.code != 401 || r.reason != "unauthorized" {
		t.Fatalf("the revoked token on the API: %d %s", r.code, r.body)
	}
	var wide []string
	run("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(g.api+"/tokens"), chromedp.WaitVisible("main h1", chromedp.ByQuery),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow),
		chromedp.Evaluate(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap"))
			.map(e => e.tagName + "." + e.className + "#" + e.id)`, &wide))
	if overflow {
		t.Errorf("the tokens page is wider than a phone: %v", wide)
	}
}
