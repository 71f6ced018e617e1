package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Egress is one connector that delivers committed records onward
// (docs/egress.md): an [[egress]] table. Paths are relative to DataDir.
type Egress struct {
	Name string `toml:"name"` // unique, [a-z0-9-]; names the cursor file
	Kind string `toml:"kind"` // "mqtt", "nats" or "webhook"
	// Filters; empty passes every record.
	Devices []string `toml:"devices"`
	Groups  []string `toml:"groups"`
	Streams []string `toml:"streams"`
	// Nodes are the node ids that export; empty: every node (the
	// consumer de-duplicates by tx id).
	Nodes []string `toml:"nodes"`
	// Start is where a connector without a cursor begins: "beginning"
	// (default) or "now".
	Start string `toml:"start"`
	URL   string `toml:"url"`
	// Batch bounds the records delivered before the cursor is saved, and
	// for a webhook the records of one POST; 0: 100.
	Batch int `toml:"batch"`
	// Timeout bounds one delivery attempt; 0: 10s.
	Timeout Duration `toml:"timeout"`
	// Window bounds the mqtt and nats messages sent and not yet
	// acknowledged; 0: 64.
	Window int `toml:"window"`

	// TLS to the sink (mqtt, nats, webhook): CA bundle, client certificate.
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`

	// mqtt (QoS 1).
	Protocol     string `toml:"protocol"`  // "5" (default) or "3.1.1"
	Topic        string `toml:"topic"`     // template: {chain}, {device}, {stream}
	ClientID     string `toml:"client_id"` // default ledgergate-NODE-NAME: unique per exporting gateway
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`

	// nats (JetStream).
	Stream    string `toml:"stream"`  // created if missing; default LEDGERGATE
	Subject   string `toml:"subject"` // template
	CredsFile string `toml:"creds_file"`
	TokenFile string `toml:"token_file"`

	// webhook.
	SecretFile string `toml:"secret_file"` // HMAC-SHA256 key of X-Ledgergate-Signature
}

var (
	egressNameRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	placeholder  = regexp.MustCompile(`\{[^}]*\}`)
	// natsStreamRE: JetStream stream names may not hold spaces, '.', '*',
	// '>', path separators or control characters.
	natsStreamRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// validateEgress reports the problems of the [[egress]] tables, each
// named by its position and name and the key.
func validateEgress(es []Egress, bad func(string, ...any)) {
	names := map[string]bool{}
	for i, e := range es {
		k := fmt.Sprintf("egress[%d]", i)
		if e.Name != "" {
			k = fmt.Sprintf("egress[%d] (%s)", i, e.Name)
		}
		if !egressNameRE.MatchString(e.Name) {
			bad("%s.name %q: want 1 to 64 of a-z 0-9 -", k, e.Name)
		} else if names[e.Name] {
			bad("%s.name %q: used by another [[egress]]", k, e.Name)
		}
		names[e.Name] = true
		switch e.Start {
		case "", "beginning", "now":
		default:
			bad("%s.start %q: want \"beginning\" or \"now\"", k, e.Start)
		}
		if e.Batch < 0 || e.Batch > 10_000 {
			bad("%s.batch %d: want 1 to 10000, or 0 for 100", k, e.Batch)
		}
		if e.Window < 0 || e.Window > 1000 {
			bad("%s.window %d: want 1 to 1000, or 0 for 64", k, e.Window)
		}
		if e.Window != 0 && e.Kind == "webhook" {
			bad("%s.window: only for kind mqtt or nats (a webhook sends batch records per POST)", k)
		}
		if d := time.Duration(e.Timeout); d != 0 && (d < 100*time.Millisecond || d > 10*time.Minute) {
			bad("%s.timeout %s: want 100ms to 10m, or 0s for 10s", k, d)
		}
		if (e.CertFile == "") != (e.KeyFile == "") {
			bad("%s.cert_file and %s.key_file go together", k, k)
		}
		for _, f := range []struct {
			key string
			ids []string
		}{{"devices", e.Devices}, {"groups", e.Groups}, {"streams", e.Streams}, {"nodes", e.Nodes}} {
			for _, id := range f.ids {
				if !validID(id) {
					bad("%s.%s: %q: want 1 to 64 of A-Z a-z 0-9 . _ -", k, f.key, id)
				}
			}
		}
		u, err := url.Parse(e.URL)
		if e.URL == "" || err != nil || u.Host == "" {
			bad("%s.url %q: must be set, e.g. %s", k, e.URL, exampleURL(e.Kind))
			u = &url.URL{}
		}
		// Settings of one kind set on another are mistakes, not no-ops.
		notFor := func(key, v string, kinds ...string) {
			if v != "" && !slices.Contains(kinds, e.Kind) {
				bad("%s.%s: only for kind %s", k, key, strings.Join(kinds, " or "))
			}
		}
		notFor("protocol", e.Protocol, "mqtt")
		notFor("topic", e.Topic, "mqtt")
		notFor("client_id", e.ClientID, "mqtt")
		notFor("username", e.Username, "mqtt")
		notFor("password_file", e.PasswordFile, "mqtt")
		notFor("stream", e.Stream, "nats")
		notFor("subject", e.Subject, "nats")
		notFor("creds_file", e.CredsFile, "nats")
		notFor("token_file", e.TokenFile, "nats")
		notFor("secret_file", e.SecretFile, "webhook")
		switch e.Kind {
		case "mqtt":
			if u.Host != "" && !slices.Contains([]string{"tcp", "mqtt", "ssl", "mqtts", "tls"}, u.Scheme) {
				bad("%s.url %q: want tcp://, ssl:// or mqtts://", k, e.URL)
			}
			switch e.Protocol {
			case "", "5", "3.1.1":
			default:
				bad("%s.protocol %q: want \"5\" or \"3.1.1\" (a string)", k, e.Protocol)
			}
			if e.Topic != "" {
				validTemplate(k+".topic", e.Topic, bad)
				if strings.ContainsAny(e.Topic, "+#") || strings.HasPrefix(e.Topic, "$") {
					bad("%s.topic %q: no wildcards (+ #) and no leading $", k, e.Topic)
				}
			}
		case "nats":
			if u.Host != "" && !slices.Contains([]string{"nats", "tls"}, u.Scheme) {
				bad("%s.url %q: want nats:// or tls://", k, e.URL)
			}
			if e.Stream != "" && !natsStreamRE.MatchString(e.Stream) {
				bad("%s.stream %q: want 1 to 64 of A-Z a-z 0-9 _ -", k, e.Stream)
			}
			if e.Subject != "" {
				validTemplate(k+".subject", e.Subject, bad)
				for _, tok := range strings.Split(e.Subject, ".") {
					if tok == "" || strings.ContainsAny(tok, "*> \t") || strings.Contains(tok, "{") && !placeholder.MatchString(tok) ||
						placeholder.MatchString(tok) && placeholder.FindString(tok) != tok {
						bad("%s.subject %q: want tokens separated by '.', no wildcards, each placeholder a whole token", k, e.Subject)
						break
					}
				}
			}
			if e.CredsFile != "" && e.TokenFile != "" {
				bad("%s: creds_file and token_file: set one", k)
			}
		case "webhook":
			if u.Host != "" && u.Scheme != "http" && u.Scheme != "https" {
				bad("%s.url %q: want http:// or https://", k, e.URL)
			}
		default:
			bad("%s.kind %q: want \"mqtt\", \"nats\" or \"webhook\"", k, e.Kind)
		}
	}
}

func exampleURL(kind string) string {
	switch kind {
	case "mqtt":
		return "mqtts://broker.example:8883"
	case "nats":
		return "nats://127.0.0.1:4222"
	default:
		return "https://example.com/hook"
	}
}

// validTemplate checks a topic or subject template's placeholders.
func validTemplate(key, t string, bad func(string, ...any)) {
	for _, p := range placeholder.FindAllString(t, -1) {
		if p != "{chain}" && p != "{device}" && p != "{stream}" {
			bad("%s %q: unknown placeholder %s (want {chain}, {device}, {stream})", key, t, p)
		}
	}
	if strings.Count(t, "{") != strings.Count(t, "}") || strings.Count(t, "{") != len(placeholder.FindAllString(t, -1)) {
		bad("%s %q: unbalanced braces", key, t)
	}
}

// validID is ledger.ValidID (config imports nothing of ours).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
