package seeds

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const testAnchor = "site.test. 3600 IN DS 12345 13 2 " +
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := Config{Zones: []string{"site.test"}, Anchors: testAnchor, Servers: []string{"127.0.0.1:53"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good): %v", err)
	}
	// Forms operators copy from unbound and BIND.
	for _, anchors := range []string{
		"site.test. DS 12345 13 2 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"; comment\nsite.test. IN DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef ; trailing\n",
		"test. 86400 IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=",
		"$ORIGIN test.\nsite 3600 IN DS 12345 8 4 " + strings.Repeat("ab", 48),
	} {
		c := good
		c.Anchors = anchors
		if err := c.Validate(); err != nil {
			t.Errorf("anchors %q: %v", anchors, err)
		}
	}

	cases := []struct {
		name string
		edit func(c *Config)
		want []string // every one of these is in the error
	}{
		{"empty", func(c *Config) { *c = Config{} }, []string{
			"zones: at least one seed zone is required",
			"anchors: no DS or DNSKEY record",
			"servers: at least one DNS server",
		}},
		{"bad names", func(c *Config) { c.Zones = []string{"site.test.", "SITE.test", "bad..name", ""} }, []string{
			`zones: "SITE.test" is listed twice`,
			`zones: "bad..name" is not a domain name`,
			`zones: "" is not a domain name`,
		}},
		{"zone outside the anchors", func(c *Config) { c.Zones = []string{"site.test.", "other.test."} }, []string{
			"zones: other.test. is not at or below any trust anchor",
		}},
		{"bad servers", func(c *Config) { c.Servers = []string{"127.0.0.1", "127.0.0.1:0", ":53", "ns1.test:domain"} }, []string{
			`"127.0.0.1": want host:port`, `"127.0.0.1:0": want host:port`, `":53": want host:port`, `"ns1.test:domain": want host:port`,
		}},
		{"bad numbers", func(c *Config) { c.MinSeeds, c.Timeout = -1, -1 }, []string{"min seeds -1", "timeout -1ns"}},
		{"more seeds than zones", func(c *Config) { c.MinSeeds = 2 }, []string{"min seeds 2: more than the 1 zones"}},
		{"anchor of another type", func(c *Config) { c.Anchors = "site.test. 300 IN A 192.0.2.1" }, []string{"site.test. A: want DS or DNSKEY"}},
		{"anchor algorithm", func(c *Config) {
			c.Anchors = "site.test. DS 1 5 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		}, []string{"algorithm 5 is not supported"}},
		{"anchor digest", func(c *Config) { c.Anchors = "site.test. DS 1 13 1 0123456789abcdef0123456789abcdef01234567" },
			[]string{"digest type 1 is not supported"}},
		{"anchor not a zone key", func(c *Config) {
			c.Anchors = "site.test. DNSKEY 0 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="
		}, []string{"not a zone key"}},
		{"anchor syntax", func(c *Config) { c.Anchors = "site.test. DS twelve 13 2 00" }, []string{"seeds: config: anchors: "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.edit(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "seeds: config: ") {
					t.Errorf("error line %q lacks the prefix", line)
				}
			}
			if _, nerr := New(cfg); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New: %v, want the same error as Validate", nerr)
			}
		})
	}
}

func TestLookupArguments(t *testing.T) {
	t.Parallel()
	d, err := New(Config{Zones: []string{"site.test."}, Anchors: testAnchor, Servers: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup(t.Context(), "bad..name", dns.TypeA); err == nil || !strings.HasPrefix(err.Error(), "seeds: ") {
		t.Errorf("bad name: %v", err)
	}
	if _, err := d.Lookup(t.Context(), "site.test.", dns.TypeANY); err == nil {
		t.Error("ANY accepted")
	}
}

func TestParsePin(t *testing.T) {
	t.Parallel()
	hexKey := strings.Repeat("ab", 32)
	var key [32]byte
	for i := range key {
		key[i] = 0xab
	}
	txt := func(s ...string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: "gw1.site.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: s}
	}
	cases := []struct {
		name string
		txts []dns.RR
		id   string
		bad  string
	}{
		{"plain", []dns.RR{txt("lg1 node=node-1 spki-sha256=" + hexKey)}, "node-1", ""},
		{"upper-case hex, fields reordered", []dns.RR{txt("lg1 spki-sha256=" + strings.ToUpper(hexKey) + " node=node-1")}, "node-1", ""},
		{"split strings, other TXT", []dns.RR{txt("v=spf1 -all"), txt("lg1 node=node-1 ", "spki-sha256="+hexKey)}, "node-1", ""},
		{"unknown field", []dns.RR{txt("lg1 node=n.1_x spki-sha256=" + hexKey + " future=yes")}, "n.1_x", ""},
		{"none", []dns.RR{txt("v=spf1 -all")}, "", "no lg1 record"},
		{"lg2 is not lg1", []dns.RR{txt("lg2 node=node-1 spki-sha256=" + hexKey)}, "", "no lg1 record"},
		{"two", []dns.RR{txt("lg1 node=a spki-sha256=" + hexKey), txt("lg1 node=b spki-sha256=" + hexKey)}, "", "2 lg1 records"},
		{"no node", []dns.RR{txt("lg1 spki-sha256=" + hexKey)}, "", `node ""`},
		{"bad node", []dns.RR{txt("lg1 node=a/b spki-sha256=" + hexKey)}, "", `node "a/b"`},
		{"long node", []dns.RR{txt("lg1 node=" + strings.Repeat("n", 65) + " spki-sha256=" + hexKey)}, "", "want 1 to 64"},
		{"node twice", []dns.RR{txt("lg1 node=a node=b spki-sha256=" + hexKey)}, "", "node given twice"},
		{"short key", []dns.RR{txt("lg1 node=a spki-sha256=abcd")}, "", "want 64 hex digits"},
		{"no key", []dns.RR{txt("lg1 node=a")}, "", "want 64 hex digits"},
		{"not hex", []dns.RR{txt("lg1 node=a spki-sha256=" + strings.Repeat("zz", 32))}, "", "want 64 hex digits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, k, err := parsePin(mustName("gw1.site.test."), c.txts)
			if c.bad != "" {
				if !errors.Is(err, ErrBadRecord) || !strings.Contains(err.Error(), c.bad) {
					t.Errorf("parsePin: %v, want ErrBadRecord saying %q", err, c.bad)
				}
				return
			}
			if err != nil || id != c.id || k != key {
				t.Errorf("parsePin = %q, %x, %v; want %q, %x", id, k, err, c.id, key)
			}
		})
	}
}

func TestTally(t *testing.T) {
	t.Parallel()
	k := func(b byte) [32]byte { return [32]byte{b} }
	p := func(id string, key byte, addrs ...string) zonePeer {
		return zonePeer{id: id, key: k(key), addrs: addrs}
	}
	zones := map[string][]zonePeer{
		"a.": {p("n1", 1, "192.0.2.1:1", "[2001:db8::1]:1"), p("n2", 2, "192.0.2.2:1"), p("n3", 3, "192.0.2.3:1"), p("n5", 5, "192.0.2.5:1")},
		"b.": {p("n1", 1, "192.0.2.1:1"), p("n2", 2, "192.0.2.20:1"), p("n4", 3, "192.0.2.4:1"), p("n5", 6, "192.0.2.5:1")},
		"c.": {p("n1", 1, "[2001:db8::1]:1", "192.0.2.1:1")},
	}
	for _, c := range []struct {
		min       int
		peers     []string
		conflicts int
	}{
		// n3 and n4 share a key, n5 has two keys: all refused at 1.
		{1, []string{"n1 [192.0.2.1:1 [2001:db8::1]:1] [a. b. c.]", "n2 [192.0.2.2:1 192.0.2.20:1] [a. b.]"}, 3},
		{2, []string{"n1 [192.0.2.1:1 [2001:db8::1]:1] [a. b. c.]"}, 0},
		{3, []string{"n1 [192.0.2.1:1] [a. b. c.]"}, 0},
	} {
		tl := newTally()
		for _, z := range []string{"a.", "b.", "c."} {
			tl.add(z, zones[z])
		}
		peers, errs := tl.accept(c.min)
		var got []string
		for _, p := range peers {
			got = append(got, fmt.Sprintf("%s %v %v", p.ID, p.Addrs, p.Zones))
		}
		if !slices.Equal(got, c.peers) {
			t.Errorf("min %d: peers\n%q\nwant\n%q", c.min, got, c.peers)
		}
		if len(errs) != c.conflicts {
			t.Errorf("min %d: conflicts %v, want %d", c.min, errs, c.conflicts)
		}
		for _, err := range errs {
			if !errors.Is(err, ErrConflict) {
				t.Errorf("conflict error %v is not ErrConflict", err)
			}
		}
	}
}
