package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultsValid(t *testing.T) {
	for _, c := range []Config{Default(), Dev()} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	if Dev().API.Listen != "127.0.0.1:8080" || Dev().DataDir != "./ledgergate-data" ||
		Default().Cluster.Listen != "" || time.Duration(Default().Cluster.ViewChangeTimeout) != time.Second || !Default().Cluster.JoinFromSnapshot {
		t.Fatalf("dev defaults changed: %+v", Dev())
	}
}

func TestLoadGood(t *testing.T) {
	c, err := Load("testdata/full.good.toml", Default())
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/srv/ledgergate" || c.API.Listen != "0.0.0.0:8080" || c.Batch.MaxTxs != 500 ||
		time.Duration(c.Batch.MaxDelay) != 10*time.Millisecond || c.Log.Format != "json" ||
		c.Cluster.Listen != "0.0.0.0:7001" || time.Duration(c.Cluster.ViewChangeTimeout) != 2*time.Second || c.Cluster.JoinFromSnapshot ||
		c.Snapshot != (Snapshot{EveryBlocks: 500, EveryTxs: 0}) ||
		!c.API.TokensRequired() || c.API.DevicePaths != "tokens" || !c.API.MetricsToken ||
		len(c.Egress) != 3 || c.Egress[1].Start != "now" || c.Egress[2].Batch != 50 || c.Egress[0].Protocol != "3.1.1" || c.Egress[0].Window != 200 || time.Duration(c.Egress[2].Timeout) != 5*time.Second {
		t.Fatalf("loaded %+v", c)
	}
	if r := c.Retention; time.Duration(r.Keep) != 720*time.Hour || r.MaxBytes != 2<<30 || time.Duration(r.Interval) != 30*time.Second ||
		!r.Enabled() || r.SegmentBytes() != 64<<20 {
		t.Fatalf("retention %+v", r)
	}
	if Default().Retention.Enabled() {
		t.Fatal("retention on by default")
	}
	// A partial file keeps the defaults for what it does not set.
	c, err = Parse([]byte("[log]\nlevel = \"warn\"\n"), Default())
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "warn" || c.Batch != Default().Batch || c.Cluster != Default().Cluster {
		t.Fatalf("partial: %+v", c)
	}
}

func TestLoadBad(t *testing.T) {
	want := map[string][]string{
		"unknown_key.bad.toml": {"unknown setting", "listen"},
		"many.bad.toml":        {"api.listen", "api.max_uploads 0", "batch.max_txs", "batch.max_delay", "log.level"},
		"duration.bad.toml":    {"soon"},
		"signer.bad.toml":      {"signer.kind \"hsm\""},
		"syntax.bad.toml":      {"line 1"},
		"mqtt.bad.toml": {"mqtt.tls_listen needs mqtt.tls_cert", "mqtt.receive_maximum",
			"mqtt.max_device_sessions 0", "mqtt.max_subscriptions 1"},
		"auth.bad.toml":     {`api.auth "password"`, `api.device_paths "closed"`},
		"coap.bad.toml":     {"coap.max_sessions_per_device 0", "coap.udp_block_timeout 100ms"},
		"cluster.bad.toml":  {"cluster.listen \"gw1.example:7001\"", "cluster.view_change_timeout 10ms"},
		"snapshot.bad.toml": {"snapshot.every_blocks 2000000000000", "snapshot.every_txs 1: want 0 (never) or 2"},
		"tpm.bad.toml":      {"set tpm_device", "signer.tpm_handle \"0x80000001\""},
		"egress.bad.toml": {`egress[0] (Up stream).name "Up stream"`, `egress[0] (Up stream).url "http://broker.example": want tcp://`,
			`egress[0] (Up stream).topic "a/+/{device}": no wildcards`, `egress[0] (Up stream).subject: only for kind nats`,
			`egress[1] (js).subject "lg.x{device}.{streams}": unknown placeholder {streams}`, `egress[1] (js).subject "lg.x{device}.{streams}": want tokens`,
			`egress[1] (js).stream "a.b"`, `egress[1] (js).start "later"`, `egress[1] (js).timeout 1ms`,
			`egress[2] (js).name "js": used by another`, `egress[2] (js).url "": must be set`, `egress[2] (js).batch -1`,
			`egress[2] (js).cert_file and egress[2] (js).key_file go together`, `egress[2] (js).devices: "a/b"`,
			`egress[3] (x).kind "kafka"`, `egress[0] (Up stream).protocol "3": want "5" or "3.1.1"`,
			`egress[0] (Up stream).window 2000: want 1 to 1000`, `egress[1] (js).protocol: only for kind mqtt`,
			`egress[2] (js).window: only for kind mqtt or nats`},
		"retention.bad.toml": {"retention.keep 10m0s", "retention.max_bytes 1000000", "retention.interval 0s"},
		"size.bad.toml":      {`size "20 parsecs"`},
		"webui.bad.toml": {"api.tls_cert and api.tls_key", "webui.password_hash: not a bcrypt hash",
			"webui.session_idle 10s", "webui.session_max 1000h"},
	}
	files, _ := filepath.Glob("testdata/*.bad.toml")
	if len(files) != len(want) {
		t.Fatalf("%d bad files, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		_, err := Load(f, Default())
		if err == nil {
			t.Errorf("%s: accepted", f)
			continue
		}
		for _, w := range want[filepath.Base(f)] {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", f, err, w)
			}
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"0", 0, true}, {"1000", 1000, true}, {"20MB", 20_000_000, true}, {"512KiB", 512 << 10, true},
		{"2GiB", 2 << 30, true}, {"1GB", 1_000_000_000, true}, {"4 MiB", 4 << 20, true}, {"7B", 7, true},
		{"", 0, false}, {"-1MB", 0, false}, {"1.5GB", 0, false}, {"MB", 0, false}, {"10TB", 0, false},
		{"9999999999GiB", 0, false},
	} {
		got, err := ParseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	r := Retention{MaxBytes: 20_000_000}
	if got := r.SegmentBytes(); got != 1_250_000 {
		t.Errorf("SegmentBytes for 20MB = %d", got)
	}
	if got := (Retention{}).SegmentBytes(); got != 0 {
		t.Errorf("SegmentBytes without a budget = %d", got)
	}
	if got := (Retention{MaxBytes: 1 << 40}).SegmentBytes(); got != 64<<20 {
		t.Errorf("SegmentBytes for 1TiB = %d", got)
	}
}

func TestValidateCluster(t *testing.T) {
	for _, c := range []struct {
		listen  string
		timeout time.Duration
		ok      bool
	}{
		{"", time.Second, true},
		{"0.0.0.0:7001", 100 * time.Millisecond, true},
		{"[::]:7001", time.Minute, true},
		{"", 99 * time.Millisecond, false},
		{"", time.Minute + 1, false},
		{":7001", time.Second, false},
		{"127.0.0.1", time.Second, false},
	} {
		cfg := Default()
		cfg.Cluster = Cluster{Listen: c.listen, ViewChangeTimeout: Duration(c.timeout)}
		if err := cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("listen %q timeout %s: got %v, want ok=%v", c.listen, c.timeout, err, c.ok)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), Default())
	if !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("got %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return
		}
		c, err := Parse(data, Default())
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted an invalid config: %v", err)
			}
		}
	})
}

// TestDocumentedDefaults keeps docs/configuration.md (which is also the
// packaged conffile) equal to the defaults.
func TestDocumentedDefaults(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```toml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("docs/configuration.md has no ```toml block")
	}
	got, err := Parse([]byte(block), Config{})
	if err != nil {
		t.Fatalf("the documented configuration: %v", err)
	}
	if len(got.Seeds.Zones)+len(got.Seeds.Servers) == 0 { // [] in the docs, nil by default
		got.Seeds.Zones, got.Seeds.Servers = nil, nil
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("the documented configuration is not the default:\n got %+v\nwant %+v", got, want)
	}
}

// TestTokensRequired: "auto" asks for API tokens exactly when the API
// listens beyond loopback; "tokens" and "off" say so whatever the address.
func TestTokensRequired(t *testing.T) {
	for _, c := range []struct {
		auth, listen string
		want         bool
	}{
		{"auto", "127.0.0.1:8080", false},
		{"auto", "127.8.9.10:8080", false},
		{"auto", "[::1]:8080", false},
		{"auto", "[::ffff:127.0.0.1]:8080", false},
		{"auto", "0.0.0.0:8080", true},
		{"auto", "[::]:8080", true},
		{"auto", "192.168.1.20:8080", true},
		{"auto", "[fe80::1]:8080", true},
		{"auto", "10.0.0.1:80", true},
		{"tokens", "127.0.0.1:8080", true},
		{"off", "0.0.0.0:8080", false},
	} {
		if got := (API{Auth: c.auth, Listen: c.listen}).TokensRequired(); got != c.want {
			t.Errorf("auth %q listen %s: tokens required %v, want %v", c.auth, c.listen, got, c.want)
		}
	}
	if Default().API.TokensRequired() || Default().API.Auth != "auto" || Default().API.DevicePaths != "open" {
		t.Errorf("default api: %+v", Default().API)
	}
}
