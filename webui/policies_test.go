package webui

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// policyHistory is a chain whose policy was set at blocks 5 and 9.
type policyHistory struct{}

var policyChanges = []api.PolicyEntry{
	{Version: 1, Height: 5, Tx: strings.Repeat("ab", 32), Author: "admin", Hash: strings.Repeat("01", 32),
		Rules: []ledger.Rule{{Name: "temp-only", When: "'sensors' in device.groups", Allow: "record.stream == 'temp'"}}},
	{Version: 2, Height: 9, Tx: strings.Repeat("cd", 32), Author: "admin", Hash: strings.Repeat("02", 32),
		Rules: []ledger.Rule{{Name: "rate", Rate: &ledger.Rate{Count: 10, Window: 3_600_000}}}},
}

func (policyHistory) Tip() uint64 { return 12 }
func (policyHistory) PolicyAt(h uint64) (api.PolicyEntry, bool) {
	for i := len(policyChanges) - 1; i >= 0; i-- {
		if policyChanges[i].Height <= h {
			return policyChanges[i], true
		}
	}
	return api.PolicyEntry{}, false
}
func (policyHistory) PolicyHistory() []api.PolicyEntry {
	return append([]api.PolicyEntry(nil), policyChanges...)
}

// TestPoliciesPage: the policy in force now and at a height, a version
// of the history, read only; without a session the page is the login.
func TestPoliciesPage(t *testing.T) {
	u := newTestUI(t, false)
	u.ui.d.Policy = policyHistory{}
	if code, _, h := u.do(u.client(), "GET", "/policies", nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("GET /policies without a session: %d %q", code, h.Get("Location"))
	}
	c := u.client()
	u.login(c, testPassword)
	for _, tt := range []struct {
		path string
		code int
		want []string
	}{
		{"/policies", 200, []string{"In force now (block 12)", "Version 2, from block", `<tr data-rule="rate">`, "10 per 1 h",
			`<tr data-version="2">`, `<tr data-version="1">`}},
		{"/policies?height=7", 200, []string{"In force after block 7", "Version 1, from block", `<tr data-rule="temp-only">`, "record.stream == &#39;temp&#39;"}},
		{"/policies?height=3", 200, []string{"No policy was in force then"}},
		{"/policies?version=1", 200, []string{`data-policy="shown"`, `<h2 id="h-shown">Version 1</h2>`}},
		{"/policies?height=13", 400, nil},
		{"/policies?version=3", 404, nil},
	} {
		code, body, _ := u.do(c, "GET", tt.path, nil)
		if code != tt.code {
			t.Errorf("GET %s: %d, want %d", tt.path, code, tt.code)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", tt.path, w)
			}
		}
		if strings.Count(body, `method="post"`) > 1 { // the logout form is one
			t.Errorf("GET %s has a form that changes something", tt.path)
		}
	}
}
