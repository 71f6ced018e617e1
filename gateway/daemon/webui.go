package daemon

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/webui"
)

// OperatorPasswordFile keeps the dashboard password set with the setup
// token, under the data directory.
const OperatorPasswordFile = "operator.hash"

// webuiDeps is what the dashboard is built from.
type webuiDeps struct {
	cfg    config.Config
	g      *ledger.Genesis
	api    *api.Server
	chain  *chain.Chain
	index  *index.Index
	dir    *directory.Directory
	fleet  api.Fleet        // nil: no batches page
	policy api.PolicySource // nil: no policies page
	reg    prometheus.Gatherer
	mqtt   *mqtt.Server // nil: MQTT is off
	seeds  *seedState   // nil: seed discovery is off
	tokens *api.Tokens
	logger *slog.Logger
}

// newWebUI builds the dashboard; nil if it is off.
func newWebUI(d webuiDeps) (*webui.Server, error) {
	c := d.cfg.WebUI
	if !c.Enabled {
		return nil, nil
	}
	settings, err := settingsText(d.cfg)
	if err != nil {
		return nil, err
	}
	deps := webui.Deps{
		Status: d.api.Status, Index: d.index, Ledger: d.chain, Genesis: d.g, Gatherer: d.reg,
		Settings: settings, Logger: d.logger, Tokens: d.tokens,
	}
	deps.Records = d.api.Records // the device page's charts
	deps.Fleet = d.index
	deps.Batches, deps.Policy = d.fleet, d.policy
	if d.dir != nil {
		deps.Rollouts = func(model string, now time.Time) ([]webui.Release, error) { return rollouts(d.dir, model, now) }
	}
	if d.mqtt != nil {
		deps.Connected = func() []webui.Connection {
			cs := d.mqtt.Connected()
			out := make([]webui.Connection, len(cs))
			for i, c := range cs {
				out[i] = webui.Connection{Device: c.Device, Listener: "MQTT " + c.Listener, Remote: c.Remote, Since: c.Since}
			}
			return out
		}
	}
	if d.seeds != nil {
		deps.Seeds = d.seeds.get
	}
	deps.Admin = loadDashboardAdmin(d.cfg, d.g, d.logger)
	return webui.New(webui.Options{
		PasswordHash: c.PasswordHash, PasswordFile: filepath.Join(d.cfg.DataDir, OperatorPasswordFile),
		SessionIdle: time.Duration(c.SessionIdle), SessionMax: time.Duration(c.SessionMax),
	}, deps)
}

// authPolicy is the API's access policy from the configuration; it logs
// what the policy is, loudly when the API is open beyond loopback.
func authPolicy(c config.API, tokens *api.Tokens, ui *webui.Server, logger *slog.Logger) api.AuthPolicy {
	p := api.AuthPolicy{Required: c.TokensRequired(), DevicePaths: c.DevicePaths == "tokens", Metrics: c.MetricsToken, Tokens: tokens}
	if ui != nil {
		p.Operator = ui.Operator
	}
	loopback := config.LoopbackAddr(c.Listen)
	switch {
	case !p.Required && !loopback:
		logger.Warn("API TOKENS ARE OFF while the API listens beyond loopback: anyone who reaches it reads every record and device; set api.auth = \"auto\" or \"tokens\"",
			"listen", c.Listen, "auth", c.Auth)
	case p.Required:
		logger.Info("api tokens required", "auth", c.Auth, "device_paths", c.DevicePaths, "metrics_token", c.MetricsToken, "tokens", tokens.Path())
		if c.TLSCert == "" && !loopback {
			logger.Warn("api tokens travel in clear text: set api.tls_cert and api.tls_key", "listen", c.Listen)
		}
	}
	return p
}

// loadDashboardAdmin loads the admin key the dashboard signs with. A key
// that is missing or not the genesis admin's leaves the dashboard read
// only, with the reason in the log: the gateway still runs.
func loadDashboardAdmin(cfg config.Config, g *ledger.Genesis, logger *slog.Logger) *webui.Admin {
	c := cfg.WebUI
	if c.AdminKey == "" {
		return nil
	}
	path := c.AdminKey
	if !filepath.IsAbs(path) {
		path = filepath.Join(cfg.DataDir, path)
	}
	key, err := device.LoadKey(path)
	if errors.Is(err, os.ErrNotExist) {
		logger.Info("dashboard is read only: no admin key", "admin_key", path)
		return nil
	} else if err != nil {
		logger.Warn("dashboard is read only: admin key unusable", "admin_key", path, "err", err)
		return nil
	}
	for _, a := range g.Admins {
		if a.ID != c.AdminID {
			continue
		}
		pk, err := ledger.ParsePublicKey(a.PublicKey)
		if k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); err == nil && ok && k.Equal(pk.Key) {
			logger.Info("dashboard signs enroll and revoke with an admin key", "admin", a.ID, "admin_key", path)
			return &webui.Admin{ID: a.ID, Key: key}
		}
		logger.Warn("dashboard is read only: webui.admin_key is not the genesis key of webui.admin_id", "admin", a.ID, "admin_key", path)
		return nil
	}
	logger.Warn("dashboard is read only: webui.admin_id is no admin of the genesis", "admin", c.AdminID)
	return nil
}

// settingsText is the effective configuration as TOML, without secrets.
func settingsText(cfg config.Config) (string, error) {
	if cfg.WebUI.PasswordHash != "" {
		cfg.WebUI.PasswordHash = "(set)"
	}
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.SetIndentTables(true)
	if err := enc.Encode(cfg); err != nil {
		return "", fmt.Errorf("daemon: settings: %w", err)
	}
	return b.String(), nil
}

// apiListener wraps ln in TLS when the API has a certificate.
func apiListener(c config.API, ln net.Listener) (net.Listener, string, error) {
	if c.TLSCert == "" {
		return ln, "http://" + ln.Addr().String(), nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return nil, "", fmt.Errorf("daemon: api tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return tls.NewListener(ln, tc), "https://" + ln.Addr().String(), nil
}

// rollouts is the directory's FirmwareStatus as the dashboard reads it.
func rollouts(dir *directory.Directory, model string, now time.Time) ([]webui.Release, error) {
	st, err := dir.FirmwareStatus(model, now)
	if err != nil {
		return nil, err
	}
	out := make([]webui.Release, len(st))
	for i, r := range st {
		out[i] = webui.Release{ReleaseInfo: r.ReleaseInfo, Expired: r.Expired, Good: r.Good, Bad: r.Bad}
		for _, g := range r.Groups {
			ro := webui.Rollout{Group: g.Group, Policy: g.Policy, Allowed: g.Allowed, Why: g.Why, Approved: g.Approved,
				Revoked: g.Revoked, Halted: g.Halted}
			for _, w := range g.Waves {
				ro.Waves = append(ro.Waves, webui.Wave{Percent: w.Percent, Devices: w.Devices, Reported: w.Reported, Failed: w.Failed, Open: w.Open})
			}
			out[i].Groups = append(out[i].Groups, ro)
		}
	}
	return out, nil
}
