package seeds

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultTimeout bounds one query to one server when Config.Timeout is zero.
const DefaultTimeout = 3 * time.Second

// Config says where to look for peers and what to trust.
type Config struct {
	// Zones are the seed zones; each publishes _ledgergate._tcp.<zone>
	// SRV records, and each SRV target its A/AAAA records and an lg1 TXT
	// pin. Names are taken as fully qualified.
	Zones []string
	// Anchors are the trust anchors: DS or DNSKEY records in zone-file
	// text, one a line, as unbound and BIND take them (a missing TTL or
	// class is fine; ";" starts a comment). Every zone, and every SRV
	// target, must be at or below the owner of an anchor.
	Anchors string
	// Servers are the DNS servers to ask, as host:port, in order:
	// resolvers or the zones' authoritative servers. Their AD bit is never
	// trusted. A server that fails or does not answer is skipped.
	Servers []string
	// MinSeeds is how many zones must agree on a peer (node id, key and
	// address) for it to be accepted. Zero means 1.
	MinSeeds int
	// Timeout bounds one query to one server. Zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock signatures are checked against. Nil means time.Now.
	Now func() time.Time
	// Logger receives debug records of the queries. Nil means none.
	Logger *slog.Logger
}

// withDefaults returns c with its zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.MinSeeds == 0 {
		c.MinSeeds = 1
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once. Zero values that have a
// default are fine.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("seeds: config: "+format, args...))
	}

	if len(c.Zones) == 0 {
		bad("zones: at least one seed zone is required")
	}
	seen := map[string]bool{}
	var zones []dname
	for _, z := range c.Zones {
		d, ok := parseName(z)
		if !ok || strings.TrimSpace(z) == "" {
			bad("zones: %q is not a domain name", z)
			continue
		}
		if k := string(d.wire()); seen[k] {
			bad("zones: %q is listed twice", z)
		} else {
			seen[k] = true
			zones = append(zones, d)
		}
	}

	anchors, err := parseAnchors(c.Anchors)
	if err != nil {
		errs = append(errs, err)
	} else {
		for _, z := range zones {
			if anchorFor(anchors, z) == nil {
				bad("zones: %s is not at or below any trust anchor", z)
			}
		}
	}

	if len(c.Servers) == 0 {
		bad("servers: at least one DNS server (host:port) is required")
	}
	for _, s := range c.Servers {
		host, port, err := net.SplitHostPort(s)
		if p, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || p == 0 {
			bad("servers: %q: want host:port, e.g. 127.0.0.1:53", s)
		}
	}

	switch {
	case c.MinSeeds < 0:
		bad("min seeds %d: want at least 1 (0 means 1)", c.MinSeeds)
	case c.MinSeeds > len(c.Zones) && len(c.Zones) > 0:
		bad("min seeds %d: more than the %d zones", c.MinSeeds, len(c.Zones))
	}
	if c.Timeout < 0 {
		bad("timeout %s: want a positive duration (0 means %s)", c.Timeout, DefaultTimeout)
	}
	return errors.Join(errs...)
}

// anchor is the trust anchor of one zone: DS records, DNSKEY records or both.
type anchor struct {
	owner dname
	ds    []*dns.DS
	keys  []*dns.DNSKEY
}

// parseAnchors reads DS and DNSKEY records in zone-file text and groups them
// by owner. Each record must be usable: a DS of algorithm 8, 13 or 15 with a
// SHA-256 or SHA-384 digest, a zone key of algorithm 8, 13 or 15.
func parseAnchors(text string) ([]*anchor, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("seeds: config: anchors: "+format, args...))
	}
	var out []*anchor
	add := func(owner dname) *anchor {
		for _, a := range out {
			if a.owner.equal(owner) {
				return a
			}
		}
		a := &anchor{owner: owner}
		out = append(out, a)
		return a
	}
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "anchors")
	zp.SetDefaultTTL(0)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		owner := mustName(rr.Header().Name)
		switch rr := rr.(type) {
		case *dns.DS:
			switch {
			case !supportedAlgorithm(rr.Algorithm):
				bad("DS %s tag %d: algorithm %d is not supported (want 8, 13 or 15)", owner, rr.KeyTag, rr.Algorithm)
			case !supportedDigest(rr.DigestType):
				bad("DS %s tag %d: digest type %d is not supported (want 2, SHA-256, or 4, SHA-384)", owner, rr.KeyTag, rr.DigestType)
			default:
				a := add(owner)
				a.ds = append(a.ds, rr)
			}
		case *dns.DNSKEY:
			_, err := base64.StdEncoding.DecodeString(rr.PublicKey)
			switch {
			case rr.Flags&dns.ZONE == 0 || rr.Protocol != 3:
				bad("DNSKEY %s tag %d: not a zone key (flags %d, protocol %d)", owner, rr.KeyTag(), rr.Flags, rr.Protocol)
			case !supportedAlgorithm(rr.Algorithm):
				bad("DNSKEY %s tag %d: algorithm %d is not supported (want 8, 13 or 15)", owner, rr.KeyTag(), rr.Algorithm)
			case err != nil:
				bad("DNSKEY %s: public key: %v", owner, err)
			default:
				a := add(owner)
				a.keys = append(a.keys, rr)
			}
		default:
			bad("%s %s: want DS or DNSKEY records", owner, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	if err := zp.Err(); err != nil {
		bad("%v", err)
	}
	if len(out) == 0 && len(errs) == 0 {
		bad("no DS or DNSKEY record: a trust anchor is required")
	}
	return out, errors.Join(errs...)
}

// anchorFor is the anchor with the longest owner at or above name, or nil.
func anchorFor(anchors []*anchor, name dname) *anchor {
	var best *anchor
	for _, a := range anchors {
		if name.under(a.owner) && (best == nil || len(a.owner) > len(best.owner)) {
			best = a
		}
	}
	return best
}
