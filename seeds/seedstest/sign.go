package seedstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// defaultTTL is the $TTL of generated zone files. The negative-caching TTL
// (SOA minimum, which BIND also uses for NSEC and NSEC3) is 300.
const defaultTTL = 3600

// Zone describes a zone for SignZone.
type Zone struct {
	// Origin is the zone's apex, e.g. "test." (a missing final dot is added).
	Origin string

	// Records are zone-file lines in RFC 1035 text, read with $ORIGIN set to
	// Origin and $TTL 3600, e.g. `www A 192.0.2.1` or
	// `_seed._tcp SRV 10 5 8883 gw1`. An SOA and an apex NS (ns1.<origin>, with
	// address 127.0.0.1) are added unless the records have their own.
	Records []string

	// Algorithm is the DNSSEC algorithm of both keys: dns.RSASHA256 (8),
	// dns.ECDSAP256SHA256 (13) or dns.ED25519 (15). Zero means 13.
	Algorithm uint8

	// NSEC3 signs with NSEC3 (RFC 5155, hash SHA-1, no opt-out) instead of NSEC.
	// NSEC3Salt is hex ("" means no salt). dnssec-signzone refuses more than
	// 150 iterations.
	NSEC3           bool
	NSEC3Salt       string
	NSEC3Iterations uint16

	// Inception and Expiration bound the RRSIG validity. Zero values mean one
	// hour ago and 30 days from now. A window that does not contain the present
	// (to test expired or future signatures) is allowed.
	Inception, Expiration time.Time

	// Children are signed zones below Origin. Their apex NS records,
	// the glue for those NS names and their DS records are added before signing.
	Children []*Signed
}

// Signed is a zone signed by SignZone or built by KeyTrapZone.
type Signed struct {
	// Origin is the lower-case, fully qualified apex.
	Origin string
	// RRs holds every record of the signed zone, RRSIGs and NSEC(3) included.
	RRs []dns.RR
	// DS holds the SHA-256 DS records of the KSK.
	DS []*dns.DS
	// DNSKEY holds the apex DNSKEY RRset.
	DNSKEY []*dns.DNSKEY
	// Anchor is DS in zone-file text, one record a line: a trust anchor.
	Anchor string
	// File is the path of the signed zone file.
	File string
}

// SignZone writes z as a zone file in dir, generates its keys and signs it with
// BIND's dnssec-keygen and dnssec-signzone, and reads the result back.
func SignZone(tb testing.TB, dir string, z Zone) *Signed {
	tb.Helper()
	dir, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatalf("seedstest: %v", err)
	}
	origin := strings.ToLower(dns.Fqdn(z.Origin))
	if _, ok := dns.IsDomainName(origin); !ok {
		tb.Fatalf("seedstest: bad origin %q", z.Origin)
	}
	alg := z.Algorithm
	switch alg {
	case 0:
		alg = dns.ECDSAP256SHA256
	case dns.RSASHA256, dns.ECDSAP256SHA256, dns.ED25519:
	default:
		tb.Fatalf("seedstest: algorithm %d not supported (use 8, 13 or 15)", alg)
	}

	ksk := keygen(tb, dir, origin, alg, true)
	zsk := keygen(tb, dir, origin, alg, false)

	unsigned := filepath.Join(dir, "db."+origin)
	signed := unsigned + "signed"
	text := zoneText(tb, origin, z) + fmt.Sprintf("$INCLUDE %s.key\n$INCLUDE %s.key\n", ksk, zsk)
	if err := os.WriteFile(unsigned, []byte(text), 0o644); err != nil {
		tb.Fatalf("seedstest: write zone: %v", err)
	}

	now := time.Now()
	inception, expiration := z.Inception, z.Expiration
	if inception.IsZero() {
		inception = now.Add(-time.Hour)
	}
	if expiration.IsZero() {
		expiration = now.Add(30 * 24 * time.Hour)
	}
	args := []string{"-q", "-K", dir, "-o", origin, "-N", "keep", "-O", "full", "-f", signed,
		"-s", inception.UTC().Format("20060102150405"),
		"-e", expiration.UTC().Format("20060102150405")}
	if now.Before(inception) || now.After(expiration) {
		// dnssec-signzone verifies the zone it wrote, at the current time, and
		// fails on signatures that are not valid now. -P skips that check.
		args = append(args, "-P")
	}
	if z.NSEC3 {
		salt := z.NSEC3Salt
		if salt == "" {
			salt = "-"
		}
		args = append(args, "-3", salt, "-H", strconv.Itoa(int(z.NSEC3Iterations)))
	}
	args = append(args, unsigned, ksk, zsk)
	run(tb, dir, "dnssec-signzone", args...)

	s := &Signed{Origin: origin, File: signed, RRs: parseZone(tb, signed, origin)}
	for _, rr := range s.RRs {
		if k, ok := rr.(*dns.DNSKEY); ok {
			s.DNSKEY = append(s.DNSKEY, k)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(run(tb, dir, "dnssec-dsfromkey", "-2", ksk+".key")), "\n") {
		rr, err := dns.NewRR(line)
		ds, ok := rr.(*dns.DS)
		if err != nil || !ok {
			tb.Fatalf("seedstest: dnssec-dsfromkey printed %q: %v", line, err)
		}
		s.DS = append(s.DS, ds)
	}
	s.Anchor = anchorText(s.DS)
	return s
}

// zoneText is the zone file of z without its keys.
func zoneText(tb testing.TB, origin string, z Zone) string {
	tb.Helper()
	body := strings.Join(z.Records, "\n") + "\n"
	var hasSOA, hasNS, hasNS1 bool
	ns1 := "ns1." + origin
	for _, rr := range parseText(tb, body, origin) {
		name := strings.ToLower(rr.Header().Name)
		switch t := rr.Header().Rrtype; {
		case t == dns.TypeSOA:
			hasSOA = true
		case t == dns.TypeNS && name == origin:
			hasNS = true
		case name == ns1:
			hasNS1 = true
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL %d\n", origin, defaultTTL)
	if !hasSOA {
		fmt.Fprintf(&b, "@ SOA %s hostmaster.%s 1 7200 3600 1209600 300\n", ns1, origin)
	}
	if !hasNS {
		fmt.Fprintf(&b, "@ NS %s\n", ns1)
		if !hasNS1 {
			fmt.Fprintf(&b, "%s A 127.0.0.1\n", ns1)
		}
	}
	b.WriteString(body)
	for _, c := range z.Children {
		if !dns.IsSubDomain(origin, c.Origin) || c.Origin == origin {
			tb.Fatalf("seedstest: child %s is not below %s", c.Origin, origin)
		}
		fmt.Fprintf(&b, "; delegation to %s\n", c.Origin)
		for _, rr := range delegation(c) {
			fmt.Fprintln(&b, rr.String())
		}
	}
	return b.String()
}

// delegation is what a parent holds for child c: its apex NS RRset, glue for
// the NS names inside c, and its DS RRset.
func delegation(c *Signed) []dns.RR {
	var out []dns.RR
	inside := map[string]bool{}
	for _, rr := range c.RRs {
		if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, c.Origin) {
			out = append(out, ns)
			if dns.IsSubDomain(c.Origin, ns.Ns) {
				inside[strings.ToLower(ns.Ns)] = true
			}
		}
	}
	for _, rr := range c.RRs {
		t := rr.Header().Rrtype
		if (t == dns.TypeA || t == dns.TypeAAAA) && inside[strings.ToLower(rr.Header().Name)] {
			out = append(out, rr)
		}
	}
	for _, ds := range c.DS {
		out = append(out, ds)
	}
	return out
}

// keygen makes a key for origin with dnssec-keygen in dir and returns its
// path without the .key/.private suffix.
func keygen(tb testing.TB, dir, origin string, alg uint8, ksk bool) string {
	tb.Helper()
	args := []string{"-q", "-K", dir, "-a", strconv.Itoa(int(alg)), "-n", "ZONE"}
	if ksk {
		args = append(args, "-f", "KSK")
	}
	name := strings.TrimSpace(run(tb, dir, "dnssec-keygen", append(args, origin)...))
	return filepath.Join(dir, name)
}

// run runs one of BIND's tools in dir and returns its standard output.
func run(tb testing.TB, dir, tool string, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		tb.Fatalf("seedstest: %s not found: install bind9-utils (make deps)", tool)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(tb.Context(), path, args...)
	cmd.Dir = dir // dnssec-signzone writes dsset- files to its working directory
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("seedstest: %s %s: %v\n%s", tool, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

func parseZone(tb testing.TB, path, origin string) []dns.RR {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("seedstest: read signed zone: %v", err)
	}
	return parseText(tb, string(b), origin)
}

func parseText(tb testing.TB, text, origin string) []dns.RR {
	tb.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(defaultTTL)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		tb.Fatalf("seedstest: parse zone %s: %v", origin, err)
	}
	return rrs
}

func anchorText(ds []*dns.DS) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}
