package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

var screenshotDir = flag.String("screenshots", "", "write the dashboard's screenshots here (make screenshots: docs/screenshots)")

// newBrowser starts Debian's chromium, headless, for one test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (make test installs it: apt-get install chromium)")
	}
	profile, err := os.MkdirTemp("", "ledgergate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(profile),
		// Its own process group, so that every chromium process can be
		// stopped before the profile is removed.
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		}),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	if err := chromedp.Run(ctx); err != nil { // starts the browser
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	pgid := chromedp.FromContext(ctx).Browser.Process().Pid
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
		// The main process is gone; its helpers (which write the cache)
		// may not be yet.
		syscall.Kill(-pgid, syscall.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond) // poll until the group is gone
		}
		if err := os.RemoveAll(profile); err != nil {
			t.Errorf("remove the chromium profile: %v", err)
		}
	})
	return ctx
}

var setupTokenRE = regexp.MustCompile(`token=([a-z2-7]{26})`)

// TestDashboard drives the dashboard in a real browser against a real
// gateway: set the password with the setup token, log in by keyboard,
// enroll a device with the form, watch the height rise while it
// publishes, check a receipt, revoke the device; and a cross-site form
// post is refused. It takes a screenshot of each main page.
func TestDashboard(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	m := setupTokenRE.FindStringSubmatch(g.log())
	if m == nil {
		t.Fatalf("no setup token in the log:\n%s", g.log())
	}
	token := m[1]
	const password = "operator password 1"
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
	text := func(sel string) string {
		t.Helper()
		var s string
		run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
		return s
	}
	shots := map[string][]byte{}
	shot := func(name string) {
		t.Helper()
		var buf []byte
		run("screenshot "+name, chromedp.FullScreenshot(&buf, 100))
		shots[name] = buf
	}
	// Every form field has a label, and the page fits the width.
	checkPage := func(name string) {
		t.Helper()
		var unlabeled []string
		var overflow bool
		run("check "+name,
			chromedp.Evaluate(`[...document.querySelectorAll("input:not([type=hidden]):not([hidden]),textarea,select")]
				.filter(e => e.labels.length === 0 && !e.getAttribute("aria-label")).map(e => e.name)`, &unlabeled),
			chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow))
		if len(unlabeled) > 0 {
			t.Errorf("%s: fields without a label: %v", name, unlabeled)
		}
		if overflow {
			t.Errorf("%s: the page is wider than the window", name)
		}
	}

	// A fresh gateway sends the operator to the setup page.
	run("setup",
		chromedp.Navigate(g.api+"/"),
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", token, chromedp.ByQuery),
		chromedp.SendKeys("#password", password, chromedp.ByQuery),
		chromedp.SendKeys("#confirm", password+kb.Enter, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-field="height"]`, chromedp.ByQuery))

	// Log out; a wrong password is refused; log in with the keyboard only.
	var wrong string
	run("wrong password",
		chromedp.Click("form.logout button", chromedp.ByQuery),
		chromedp.WaitVisible("#password", chromedp.ByQuery),
		chromedp.SendKeys("#password", "not the password"+kb.Enter, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.err", chromedp.ByQuery),
		chromedp.Text(".banner.err", &wrong, chromedp.ByQuery))
	if wrong != "Wrong password." {
		t.Fatalf("after a wrong password the page says %q", wrong)
	}
	var focused string
	run("keyboard login",
		chromedp.KeyEvent(password+kb.Enter), // the password field has the focus
		chromedp.WaitVisible(`[data-field="height"]`, chromedp.ByQuery),
		chromedp.KeyEvent(kb.Tab),
		chromedp.Evaluate(`document.activeElement.textContent`, &focused))
	if focused != "Skip to content" {
		t.Errorf("the first Tab focuses %q, want the skip link", focused)
	}

	// Enroll a device with the form.
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := ledger.MarshalPublicKey(key)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	const id = "sensor-7"
	var flash string
	run("enroll",
		chromedp.Navigate(g.api+"/devices"),
		chromedp.WaitVisible("#id", chromedp.ByQuery),
		chromedp.SendKeys("#id", id, chromedp.ByQuery),
		chromedp.SendKeys("#model", "thermo-2", chromedp.ByQuery),
		chromedp.SendKeys("#groups", "hall-b", chromedp.ByQuery),
		chromedp.SetValue("#pubkey", pubPEM, chromedp.ByQuery),
		chromedp.Click(`form[method=post][action="/devices"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	if !strings.HasPrefix(flash, "Enrolled "+id+" in block ") {
		t.Fatalf("after enrolling the page says %q", flash)
	}
	var st struct {
		ChainID string `json:"chain_id"`
		Height  uint64 `json:"height"`
	}
	getJSON(t, g.api, "/api/v1/status", &st)

	// Watch the height rise on the overview while the device publishes:
	// the page is not reloaded, the live updates move it.
	run("overview", chromedp.Navigate(g.api+"/"), chromedp.WaitVisible(`[data-field="height"]`, chromedp.ByQuery))
	shown, err := strconv.ParseUint(text(`[data-field="height"]`), 10, 64)
	if err != nil || shown != st.Height {
		t.Fatalf("overview shows height %d (%v), the API says %d", shown, err, st.Height)
	}
	pctx, stopPublishing := context.WithTimeout(context.Background(), time.Minute)
	defer stopPublishing()
	cl, err := device.Dial(pctx, id, key, st.ChainID, device.DialOptions{Broker: "tcp://" + g.mqtt})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const records = 12
	published := make(chan error, 1)
	go func() {
		tick := time.NewTicker(400 * time.Millisecond) // a device's pace, so that the blocks come one by one
		defer tick.Stop()
		for seq := uint64(1); seq <= records; seq++ {
			if err := cl.Publish(pctx, "s", signAs(t, key, st.ChainID, id, seq)); err != nil {
				published <- fmt.Errorf("publish %d: %w", seq, err)
				return
			}
			select {
			case <-pctx.Done():
				published <- pctx.Err()
				return
			case <-tick.C:
			}
		}
		published <- nil
	}()
	var seen []uint64
	for h := shown + 1; h <= shown+records; h++ {
		run("height "+strconv.FormatUint(h, 10), chromedp.Poll(fmt.Sprintf(
			`Number(document.querySelector('[data-field="height"]').textContent) >= %d`, h), nil, chromedp.WithPollingTimeout(30*time.Second)))
		n, _ := strconv.ParseUint(text(`[data-field="height"]`), 10, 64)
		if len(seen) == 0 || n != seen[len(seen)-1] {
			seen = append(seen, n)
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	t.Logf("the overview showed heights %v without a reload", seen)
	if len(seen) < 3 {
		t.Errorf("the height moved in %d steps (%v); want it to rise step by step while the device publishes", len(seen), seen)
	}
	run("live blocks", chromedp.Poll(`document.querySelector("#live-blocks").textContent.includes("data.record")`, nil,
		chromedp.WithPollingTimeout(10*time.Second)))
	run("connected", chromedp.Poll(`document.querySelector('[data-field="n_connected"]').textContent === "1"`, nil,
		chromedp.WithPollingTimeout(10*time.Second)))
	// A replay is refused, and the refusal shows by its reason.
	if err := cl.Publish(pctx, "s", signAs(t, key, st.ChainID, id, 1)); err == nil {
		t.Fatal("a replayed record was accepted")
	}
	run("refusal", chromedp.Poll(`document.querySelector("#refusals").textContent.includes("replay")`, nil,
		chromedp.WithPollingTimeout(10*time.Second)))
	checkPage("overview")
	shot("overview")

	run("devices", chromedp.Navigate(g.api+"/devices"), chromedp.WaitVisible("#q", chromedp.ByQuery))
	if got := text(`tr[data-device="` + id + `"] [data-col="connected"]`); got != "yes" {
		t.Errorf("the devices page shows %s connected %q, want yes", id, got)
	}
	checkPage("devices")
	shot("devices")

	// The device page charts the numeric fields of its JSON records, a
	// chart per field and stream, a point per record; a record committed
	// while the page is open appears on it without a reload.
	pubJSON := func(seq uint64) {
		t.Helper()
		env, err := device.SignRecord(key, st.ChainID, ledger.Record{DeviceID: id, Stream: "env", Seq: seq, Time: time.Now().UnixMilli(),
			ContentType: "application/json", Payload: fmt.Appendf(nil, `{"temp":%.1f,"rh":%d,"fw":"1.2"}`, 20+float64(seq%5)/2, 40+seq%7)})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Publish(pctx, "env", env); err != nil {
			t.Fatalf("publish %d: %v", seq, err)
		}
	}
	const jsonRecords = 8
	pace := time.NewTicker(300 * time.Millisecond) // a device's pace: points spread over time
	for seq := uint64(records + 1); seq <= records+jsonRecords; seq++ {
		pubJSON(seq)
		<-pace.C
	}
	pace.Stop()
	var charts []string
	var points int
	run("device charts",
		chromedp.Navigate(g.api+"/devices/"+id),
		chromedp.WaitVisible("svg.rchart", chromedp.ByQuery),
		chromedp.Evaluate(`[...document.querySelectorAll("svg.rchart")].map(s => s.dataset.stream + "/" + s.dataset.field + ": " + s.querySelector("title").textContent)`, &charts),
		chromedp.Evaluate(`document.querySelectorAll("svg.rchart circle.pt").length`, &points),
		chromedp.Evaluate(`window.notReloaded = true`, nil))
	if want := []string{"env/rh: rh (env)", "env/temp: temp (env)"}; fmt.Sprint(charts) != fmt.Sprint(want) {
		t.Errorf("the device page's charts: %q, want %q", charts, want)
	}
	if points != 2*jsonRecords {
		t.Errorf("the charts have %d points, want %d (a point per record and field)", points, 2*jsonRecords)
	}
	var csvLink string
	run("download link", chromedp.AttributeValue(`.downloads a[href*="format=csv"]`, "href", &csvLink, nil, chromedp.ByQuery))
	if resp, err := http.Get(g.api + csvLink); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the CSV link %s: %v %v", csvLink, resp, err)
	} else {
		rows, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || len(rows) != 1+records+jsonRecords {
			t.Errorf("the CSV link %s: %d rows, %v; want a header and %d records", csvLink, len(rows), err, records+jsonRecords)
		}
	}
	pubJSON(records + jsonRecords + 1)
	var notReloaded bool
	run("live chart", chromedp.Poll(fmt.Sprintf(`document.querySelectorAll("svg.rchart circle.pt").length === %d`, 2*(jsonRecords+1)), nil,
		chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Evaluate(`window.notReloaded === true`, &notReloaded))
	if !notReloaded {
		t.Error("the device page was reloaded to show the new record")
	}
	var newest string
	run("live table", chromedp.Text("table.records tbody tr th", &newest, chromedp.ByQuery))
	if newest != strconv.Itoa(records+jsonRecords+1) {
		t.Errorf("the records table's newest seq is %q, want %d", newest, records+jsonRecords+1)
	}
	checkPage("device")
	shot("device-chart")

	// Check a record's receipt, as a device would; then a forged one.
	var result string
	run("receipt",
		chromedp.Navigate(g.api+"/devices/"+id),
		chromedp.WaitVisible(`a[href^="/ledger/receipt?tx="]`, chromedp.ByQuery),
		chromedp.Click(`a[href^="/ledger/receipt?tx="]`, chromedp.ByQuery),
		chromedp.WaitVisible(".result", chromedp.ByQuery),
		chromedp.Text(".result h2", &result, chromedp.ByQuery))
	if !strings.Contains(result, "Valid receipt") {
		t.Fatalf("receipt check says %q", result)
	}
	checkPage("receipt")
	shot("receipt")
	var loc string
	run("receipt url", chromedp.Location(&loc))
	txID := loc[strings.Index(loc, "tx=")+3:]
	var rb struct {
		Receipt string `json:"receipt"`
	}
	getJSON(t, g.api, "/api/v1/txs/"+txID+"/receipt", &rb)
	raw, _ := base64.StdEncoding.DecodeString(rb.Receipt)
	rc, err := ledger.DecodeReceipt(raw)
	if err != nil {
		t.Fatal(err)
	}
	rc.Header.Time++ // the certificate no longer covers the header
	forged, _ := rc.Encode()
	run("forged receipt",
		chromedp.SetValue("#receipt", base64.StdEncoding.EncodeToString(forged), chromedp.ByQuery),
		chromedp.Click(`form[method=post][action="/ledger/receipt"] button[type=submit]`, chromedp.ByQuery),
		chromedp.WaitVisible(".result.bad", chromedp.ByQuery),
		chromedp.Text(".result h2", &result, chromedp.ByQuery))
	if !strings.Contains(result, "does not verify") {
		t.Errorf("a forged receipt: the page says %q", result)
	}

	// A form on another origin (another port of this host: same site,
	// another origin) posts to the dashboard with the operator's cookie:
	// refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/devices/%s/revoke">`+
			`<input name="confirm" value="%s"></form><script>document.forms[0].submit()</script>`, g.api, id, id)
	}))
	defer evil.Close()
	var refused string
	run("cross-site post",
		chromedp.Navigate(evil.URL),
		chromedp.WaitVisible(".banner.err", chromedp.ByQuery),
		chromedp.Text(".banner.err", &refused, chromedp.ByQuery))
	if refused != "Cross-origin request refused." {
		t.Errorf("a cross-site post: the page says %q", refused)
	}

	// Revoke with confirmation: a wrong confirmation is refused.
	run("revoke",
		chromedp.Navigate(g.api+"/devices/"+id),
		chromedp.WaitVisible("a.button.danger", chromedp.ByQuery),
		chromedp.Click("a.button.danger", chromedp.ByQuery),
		chromedp.WaitVisible("#confirm", chromedp.ByQuery),
		chromedp.SendKeys("#reason", "lost in a test", chromedp.ByQuery),
		chromedp.SendKeys("#confirm", "sensor-8"+kb.Enter, chromedp.ByQuery),
		chromedp.WaitVisible(".banner.err", chromedp.ByQuery))
	if got := text(".banner.err"); got != "Type the device id exactly to confirm." {
		t.Errorf("a wrong confirmation: the page says %q", got)
	}
	var dev struct {
		Status string `json:"status"`
	}
	getJSON(t, g.api, "/api/v1/devices/"+id, &dev)
	if dev.Status != "active" {
		t.Fatalf("%s is %s before the revoke was confirmed", id, dev.Status)
	}
	run("revoke confirmed",
		chromedp.SetValue("#confirm", id, chromedp.ByQuery),
		chromedp.Click("button.danger", chromedp.ByQuery),
		chromedp.WaitVisible(".banner.ok", chromedp.ByQuery),
		chromedp.Text(".banner.ok", &flash, chromedp.ByQuery))
	if !strings.HasPrefix(flash, "Revoked "+id+" in block ") {
		t.Errorf("after revoking the page says %q", flash)
	}
	getJSON(t, g.api, "/api/v1/devices/"+id, &dev)
	if dev.Status != "revoked" {
		t.Errorf("%s is %s after the revoke", id, dev.Status)
	}

	for _, p := range []string{"ledger", "seeds", "settings"} {
		run(p, chromedp.Navigate(g.api+"/"+p), chromedp.WaitVisible("main h1", chromedp.ByQuery))
		checkPage(p)
		shot(p)
	}
	// At a phone's width every page still fits.
	run("phone", chromedp.EmulateViewport(390, 844))
	for _, p := range []string{"", "devices", "devices/" + id, "ledger", "ledger/receipt", "seeds", "settings"} {
		run("phone "+p, chromedp.Navigate(g.api+"/"+p), chromedp.WaitVisible("main h1", chromedp.ByQuery))
		checkPage("phone /" + p)
	}
	run("phone overview", chromedp.Navigate(g.api+"/"), chromedp.WaitVisible(`[data-field="height"]`, chromedp.ByQuery))
	shot("overview-phone")

	// A live page is open: the gateway still stops cleanly on SIGTERM.
	g.stop()

	dir := *screenshotDir
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range shots {
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil || cfg.Width < 300 {
			t.Errorf("screenshot %s: %dx%d, %v", name, cfg.Width, cfg.Height, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDashboardTLS serves the API and the dashboard over TLS: the session
// cookie is a Secure __Host- cookie and plain HTTP gets no answer.
func TestDashboardTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	selfSigned(t, key, "gateway", certFile)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg := filepath.Join(dir, "gw.toml")
	if _, err := exec.Command(ledgergateBin, "webui", "hash-password").Output(); err == nil {
		t.Fatal("hash-password with nothing on stdin succeeded")
	}
	cmd := exec.Command(ledgergateBin, "webui", "hash-password")
	cmd.Stdin = strings.NewReader("operator password 2\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("webui hash-password: %v", err)
	}
	os.WriteFile(cfg, []byte(fmt.Sprintf("[api]\ntls_cert = %q\ntls_key = %q\n[webui]\npassword_hash = %q\n",
		certFile, keyFile, strings.TrimSpace(string(out)))), 0o644)
	g := startGateway(t, filepath.Join(dir, "data"), "--config", cfg)
	if !strings.HasPrefix(g.api, "https://") {
		t.Fatalf("api %s: want https://", g.api)
	}
	if strings.Contains(g.log(), "setup page") {
		t.Error("a gateway with webui.password_hash logs a setup token")
	}
	pool := x509.NewCertPool()
	certPEM, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.PostForm(g.api+"/login", map[string][]string{"password": {"operator password 2"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sc := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(sc, "__Host-ledgergate=") || !strings.Contains(sc, "Secure") {
		t.Fatalf("login over TLS: %d, Set-Cookie %q", resp.StatusCode, sc)
	}
	plain := strings.Replace(g.api, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS listener: %d", resp.StatusCode)
		}
	}
	var st map[string]any
	resp, err = c.Get(g.api + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st["chain_id"] == nil {
		t.Errorf("status over TLS: %v %v", st, err)
	}
}
