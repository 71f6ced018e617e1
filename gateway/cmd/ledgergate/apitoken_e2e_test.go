package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// tokenReply is an API answer to a request with a token.
type tokenReply struct {
	code   int
	reason string
	msg    string
	auth   string // WWW-Authenticate
	body   []byte
}

// callAPI sends a request with token (none if "") and returns the answer.
func callAPI(t *testing.T, method, url, token, ctype string, body []byte) tokenReply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb struct{ Error, Reason string }
	json.Unmarshal(b, &eb)
	return tokenReply{resp.StatusCode, eb.Reason, eb.Error, resp.Header.Get("WWW-Authenticate"), b}
}

// createToken makes a token with the CLI on the gateway's data directory.
func createToken(t *testing.T, data string, scopes ...string) (tok, id string) {
	t.Helper()
	args := []string{"token", "create", "--data", data, "--name", "e2e " + strings.Join(scopes, " ")}
	for _, s := range scopes {
		args = append(args, "--scope", s)
	}
	tok = strings.TrimSpace(mustCLI(t, t.TempDir(), args...))
	if !strings.HasPrefix(tok, "lgt_") || len(tok) != 69 {
		t.Fatalf("token create printed %q", tok)
	}
	return tok, tok[4:16]
}

// TestAPITokens runs a gateway whose API asks for tokens (api.auth =
// "tokens", as "auto" does off loopback, and device_paths = "tokens") and
// manages its tokens with the CLI while it runs: a read of records
// without a token is 401, with a read:records token 200, with the token
// revoked 401; a submit token submits a device's record but not an admin
// tx (403 forbidden, naming the admin scope), which an admin token does;
// health stays open; the CLI's API client sends LEDGERGATE_TOKEN. A
// corrupt token store keeps the gateway from starting.
func TestAPITokens(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "gw.toml")
	if err := os.WriteFile(cfg, []byte("[api]\nauth = \"tokens\"\ndevice_paths = \"tokens\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, data, "--config", cfg)
	if !strings.Contains(g.log(), `msg="api tokens required" auth=tokens device_paths=tokens`) {
		t.Errorf("the log does not say tokens are required:\n%s", g.log())
	}

	adminTok, _ := createToken(t, data, "admin")
	readTok, readID := createToken(t, data, "read:records")
	submitTok, _ := createToken(t, data, "submit")

	// Health stays open; the status needs read:ledger, which admin has.
	if r := callAPI(t, "GET", g.api+"/readyz", "", "", nil); r.code != 200 {
		t.Fatalf("readyz without a token: %d %s", r.code, r.body)
	}
	var st struct {
		ChainID string `json:"chain_id"`
	}
	r := callAPI(t, "GET", g.api+"/api/v1/status", adminTok, "", nil)
	if r.code != 200 || json.Unmarshal(r.body, &st) != nil || st.ChainID == "" {
		t.Fatalf("status with the admin token: %d %s", r.code, r.body)
	}

	// Enroll a device with the admin token; a submit token may not.
	adminKey, err := device.LoadKey(filepath.Join(data, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ledger.MarshalPublicKey(key)
	enroll, err := ledger.SignTx(adminKey, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: st.ChainID,
		Enroll: &ledger.Enroll{DeviceID: "d1", PublicKey: pub}})
	if err != nil {
		t.Fatal(err)
	}
	const cose = "application/cose"
	if r := callAPI(t, "POST", g.api+"/api/v1/txs", submitTok, cose, enroll); r.code != 403 || r.reason != "forbidden" ||
		!strings.Contains(r.msg, "needs scope admin") || !strings.Contains(r.auth, `error="insufficient_scope"`) {
		t.Fatalf("an admin tx with a submit token: %d %s (WWW-Authenticate %q)", r.code, r.body, r.auth)
	}
	if r := callAPI(t, "POST", g.api+"/api/v1/txs", "", cose, enroll); r.code != 401 || r.reason != "unauthorized" {
		t.Fatalf("an admin tx without a token: %d %s", r.code, r.body)
	}
	if r := callAPI(t, "POST", g.api+"/api/v1/txs", adminTok, cose, enroll); r.code != 200 {
		t.Fatalf("an admin tx with the admin token: %d %s", r.code, r.body)
	}

	// The device's record: refused without a token (device_paths =
	// "tokens"), committed with the submit token.
	rec := signAs(t, key, st.ChainID, "d1", 1)
	if r := callAPI(t, "POST", g.api+"/api/v1/txs", "", cose, rec); r.code != 401 {
		t.Fatalf("a record without a token: %d %s", r.code, r.body)
	}
	if r := callAPI(t, "POST", g.api+"/api/v1/txs", submitTok, cose, rec); r.code != 200 {
		t.Fatalf("a record with the submit token: %d %s", r.code, r.body)
	}

	// Reads of records: 401 without a token, 200 with read:records, 403
	// with submit only.
	records := g.api + "/api/v1/devices/d1/records"
	if r := callAPI(t, "GET", records, "", "", nil); r.code != 401 || r.reason != "unauthorized" ||
		!strings.HasPrefix(r.auth, "Bearer ") || !strings.Contains(r.msg, "read:records") {
		t.Fatalf("records without a token: %d %s (WWW-Authenticate %q)", r.code, r.body, r.auth)
	}
	r = callAPI(t, "GET", records, readTok, "", nil)
	var recs struct {
		Records []struct {
			Seq uint64 `json:"seq"`
		} `json:"records"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &recs) != nil || len(recs.Records) != 1 || recs.Records[0].Seq != 1 {
		t.Fatalf("records with read:records: %d %s", r.code, r.body)
	}
	if r := callAPI(t, "GET", records, submitTok, "", nil); r.code != 403 || r.reason != "forbidden" {
		t.Fatalf("records with a submit token: %d %s", r.code, r.body)
	}

	// The CLI's API client sends the token of LEDGERGATE_TOKEN.
	list := func(tok string) (string, error) {
		cmd := exec.Command(ledgergateBin, "device", "list", "--api", g.api)
		cmd.Env = append(os.Environ(), tokenEnv+"="+tok)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String() + errb.String(), err
	}
	if out, err := list(""); err == nil || !strings.Contains(out, tokenEnv) {
		t.Errorf("device list without a token: %v\n%s", err, out)
	}
	if out, err := list(readTok); err != nil || !strings.Contains(out, "d1") {
		t.Errorf("device list with read:records: %v\n%s", err, out)
	}

	// Revoke the read token with the CLI while the gateway runs: refused
	// from the next request on.
	out := mustCLI(t, dir, "token", "revoke", "--data", data, readID)
	if !strings.Contains(out, "revoked token "+readID) {
		t.Errorf("token revoke printed %q", out)
	}
	if r := callAPI(t, "GET", records, readTok, "", nil); r.code != 401 || r.reason != "unauthorized" ||
		!strings.Contains(r.auth, `error="invalid_token"`) || !strings.Contains(r.msg, "revoked") {
		t.Fatalf("records with the revoked token: %d %s (WWW-Authenticate %q)", r.code, r.body, r.auth)
	}
	out = mustCLI(t, dir, "token", "list", "--data", data)
	for _, want := range []string{readID + "  e2e read:records", "revoked", "admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("token list lacks %q:\n%s", want, out)
		}
	}
	// No secret is in the log or the store.
	store, _ := os.ReadFile(filepath.Join(data, "api-tokens.json"))
	for _, tok := range []string{adminTok, readTok, submitTok} {
		secret := tok[17:]
		if strings.Contains(g.log(), secret) || bytes.Contains(store, []byte(secret)) {
			t.Errorf("a token's secret is in the log or the store")
		}
	}

	// A corrupt store: the gateway does not start on it.
	g.stop()
	if err := os.WriteFile(filepath.Join(data, "api-tokens.json"), store[:len(store)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ledgergateBin, "run", "--dev", "--data", data, "--config", cfg, "--listen", "127.0.0.1:0",
		"--mqtt", "off", "--coap", "off", "--coap-dtls", "off")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err == nil || ctx.Err() != nil || !strings.Contains(errb.String(), "api-tokens.json") ||
		!strings.Contains(errb.String(), "token store unreadable") {
		t.Fatalf("a gateway on a corrupt token store: %v (timeout: %v)\n%s", err, ctx.Err(), errb.String())
	}
}
