package webui

import (
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/api"
)

var newTokenRE = regexp.MustCompile(`id="new-token" class="secret" readonly value="(lgt_[0-9a-f]{12}_[a-z2-7]{52})"`)

// TestTokensPage: an operator creates a token with the form (the secret
// is on the answer to the POST only, and it checks), sees it listed,
// revokes it (it no longer checks); a form without the CSRF token
// changes nothing; without a session the page is the login's; the
// Operator hook knows a live session's cookie.
func TestTokensPage(t *testing.T) {
	u := newTestUI(t, false)
	store, err := api.OpenTokens(filepath.Join(u.dir, api.TokensFile), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	u.ui.d.Tokens = store
	c := u.client()
	if code, _, h := u.do(c, "GET", "/tokens", nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Fatalf("GET /tokens without a session: %d %s", code, h.Get("Location"))
	}
	u.login(c, testPassword)
	csrf := u.csrf(c)
	form := url.Values{"name": {"grafana"}, "scope": {"read:records", "read:ledger"}, "expires": {"720h"}}
	if code, _, _ := u.do(c, "POST", "/tokens", form); code != http.StatusForbidden {
		t.Errorf("create without the CSRF token: %d", code)
	}
	if ts, _ := store.List(); len(ts) != 0 {
		t.Fatalf("a form without the CSRF token made %d tokens", len(ts))
	}
	form.Set("csrf", csrf)
	code, body, h := u.do(c, "POST", "/tokens", form)
	m := newTokenRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil || !strings.Contains(h.Get("Cache-Control"), "no-store") {
		t.Fatalf("create: %d, Cache-Control %q, token shown: %v\n%s", code, h.Get("Cache-Control"), m != nil, body)
	}
	tok, err := store.Check(m[1])
	if err != nil || tok.Name != "grafana" || !tok.Has(api.ScopeReadLedger) || tok.Has(api.ScopeSubmit) || tok.Expires.IsZero() {
		t.Fatalf("the token shown: %+v, %v", tok, err)
	}
	_, list, _ := u.do(c, "GET", "/tokens", nil)
	if !strings.Contains(list, `data-token="`+tok.ID+`"`) || strings.Contains(list, m[1]) {
		t.Fatalf("the list lacks the token, or shows its secret again")
	}
	for _, bad := range []url.Values{
		{"csrf": {csrf}, "name": {"x"}, "scope": {"root"}},
		{"csrf": {csrf}, "name": {"x"}},
		{"csrf": {csrf}, "name": {""}, "scope": {"admin"}},
		{"csrf": {csrf}, "name": {"x"}, "scope": {"admin"}, "expires": {"1ns"}},
	} {
		if code, _, _ := u.do(c, "POST", "/tokens", bad); code != http.StatusBadRequest {
			t.Errorf("create %v: %d, want 400", bad, code)
		}
	}
	if code, _, _ := u.do(c, "POST", "/tokens/"+tok.ID+"/revoke", url.Values{}); code != http.StatusForbidden {
		t.Errorf("revoke without the CSRF token: %d", code)
	}
	if code, _, h := u.do(c, "POST", "/tokens/"+tok.ID+"/revoke", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther ||
		h.Get("Location") != "/tokens?revoked="+tok.ID {
		t.Fatalf("revoke: %d %s", code, h.Get("Location"))
	}
	if _, err := store.Check(m[1]); err == nil {
		t.Fatal("a revoked token still checks")
	}
	if _, body, _ := u.do(c, "GET", "/tokens?revoked=Your+gateway+is+hacked", nil); strings.Contains(body, "hacked") {
		t.Error("the page echoes words from its link")
	}
	if code, _, _ := u.do(c, "POST", "/tokens/0123456789ab/revoke", url.Values{"csrf": {csrf}}); code != http.StatusNotFound {
		t.Errorf("revoke an unknown token: %d", code)
	}
	req, _ := http.NewRequest("GET", u.srv.URL+"/api/v1/devices", nil)
	for _, ck := range c.Jar.Cookies(req.URL) {
		req.AddCookie(ck)
	}
	if !u.ui.Operator(req) {
		t.Error("Operator: a live session's request is not an operator's")
	}
	if u.ui.Operator(requestWithoutCookie(u.srv.URL)) {
		t.Error("Operator: a request without a cookie is an operator's")
	}
}

func requestWithoutCookie(base string) *http.Request {
	r, _ := http.NewRequest("GET", base+"/api/v1/devices", nil)
	return r
}
