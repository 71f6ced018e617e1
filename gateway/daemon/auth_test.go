package daemon

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/config"
)

// TestAuthPolicy: the policy follows api.auth and the listen address,
// and the log says so: loudly when the API is open beyond loopback, with
// a warning when tokens would travel in clear text.
func TestAuthPolicy(t *testing.T) {
	tokens, err := api.OpenTokens(filepath.Join(t.TempDir(), api.TokensFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		api      config.API
		required bool
		log      []string
		quiet    []string
	}{
		{config.API{Listen: "127.0.0.1:8080", Auth: "auto", DevicePaths: "open"}, false, nil, []string{"level=WARN"}},
		{config.API{Listen: "0.0.0.0:8080", Auth: "auto", DevicePaths: "open"}, true,
			[]string{"api tokens required", "travel in clear text"}, []string{"ARE OFF"}},
		{config.API{Listen: "0.0.0.0:8080", Auth: "auto", DevicePaths: "open", TLSCert: "c", TLSKey: "k"}, true,
			[]string{"api tokens required"}, []string{"level=WARN"}},
		{config.API{Listen: "0.0.0.0:8080", Auth: "off", DevicePaths: "open"}, false,
			[]string{"level=WARN", "API TOKENS ARE OFF while the API listens beyond loopback"}, nil},
		{config.API{Listen: "127.0.0.1:8080", Auth: "tokens", DevicePaths: "tokens", MetricsToken: true}, true,
			[]string{"api tokens required"}, []string{"level=WARN"}},
	} {
		var buf bytes.Buffer
		p := authPolicy(c.api, tokens, nil, slog.New(slog.NewTextHandler(&buf, nil)))
		if p.Required != c.required || p.DevicePaths != (c.api.DevicePaths == "tokens") || p.Metrics != c.api.MetricsToken || p.Tokens != tokens {
			t.Errorf("%+v: policy %+v", c.api, p)
		}
		for _, w := range c.log {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("%+v: the log lacks %q:\n%s", c.api, w, buf.String())
			}
		}
		for _, w := range c.quiet {
			if strings.Contains(buf.String(), w) {
				t.Errorf("%+v: the log has %q:\n%s", c.api, w, buf.String())
			}
		}
	}
}
