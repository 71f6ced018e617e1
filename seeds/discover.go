package seeds

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Service is the owner prefix of the SRV records that name a zone's gateways.
const Service = "_ledgergate._tcp"

// maxTargets bounds the SRV targets of one zone, each of which costs three
// lookups.
const maxTargets = 64

// Discoverer finds peers in DNSSEC-signed seed zones. It is safe for
// concurrent use: each call keeps its own state.
type Discoverer struct {
	cfg      Config
	anchors  []*anchor
	zones    []dname
	udp, tcp *dns.Client
	log      *slog.Logger
}

// New checks cfg (see Config.Validate) and returns a Discoverer. It does no
// I/O.
func New(cfg Config) (*Discoverer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	anchors, err := parseAnchors(cfg.Anchors)
	if err != nil {
		return nil, err // Validate saw it already
	}
	d := &Discoverer{
		cfg:     cfg,
		anchors: anchors,
		udp:     &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: cfg.Timeout},
		tcp:     &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		log:     cfg.Logger,
	}
	for _, z := range cfg.Zones {
		d.zones = append(d.zones, mustName(z))
	}
	return d, nil
}

// Lookup returns the RRset (name, qtype), validated up to a trust anchor,
// each record's TTL lowered to what the signatures allow. A validated denial
// is an error wrapping ErrNoData or ErrNXDomain; any other error means the
// answer was refused (or none came) and names the reason. CNAMEs are not
// followed. Each call has its own validation budget and fetches the chain of
// trust again.
func (d *Discoverer) Lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	n, ok := parseName(name)
	if !ok {
		return nil, fmt.Errorf("seeds: lookup %q: not a domain name", name)
	}
	switch qtype {
	case dns.TypeNone, dns.TypeANY, dns.TypeOPT, dns.TypeRRSIG, dns.TypeAXFR, dns.TypeIXFR, dns.TypeTSIG:
		return nil, fmt.Errorf("seeds: lookup %s: type %s cannot be validated", n, dns.TypeToString[qtype])
	}
	return d.newSession(ctx).lookup(n, qtype)
}

// Peer is a gateway that enough seed zones agree on.
type Peer struct {
	// ID is the node id of the lg1 TXT pin.
	ID string
	// Addrs are ip:port addresses, from the SRV port and the target's A
	// and AAAA records, that at least MinSeeds zones agree on; IPv4 first,
	// then in address and port order.
	Addrs []string
	// KeySHA256 is the SHA-256 of the node key's DER SubjectPublicKeyInfo.
	KeySHA256 [32]byte
	// Zones are the seed zones that list this node with this key.
	Zones []string
}

// Link is one validated step of the chain of trust, for display (`ledgergate
// seeds check`).
type Link struct {
	// Step is "anchor" (a configured DS or DNSKEY), "DNSKEY" (a zone's key
	// set matched its DS or anchor and is signed by that key), "RRSIG" (an
	// RRset's signature verified), or "NSEC"/"NSEC3" (a denial proven).
	Step string
	// Name and Type are the RRset's owner and type; for a denial, the
	// name and type asked for.
	Name, Type string
	// Zone is the zone whose keys vouch for the step.
	Zone string
	// KeyTag and Algorithm name the key that did.
	KeyTag    uint16
	Algorithm uint8
	// Until is when the signature expires (RRSIG steps).
	Until time.Time
	// Denial is "NXDOMAIN", "NODATA" or "wildcard" (NSEC and NSEC3 steps).
	Denial string
}

// String reads like "RRSIG SRV _ledgergate._tcp.site.test. by site.test.
// tag 12345 alg 13, valid until 2030-01-01T00:00:00Z".
func (l Link) String() string {
	switch l.Step {
	case "anchor":
		return fmt.Sprintf("anchor %s %s tag %d alg %d", l.Type, l.Name, l.KeyTag, l.Algorithm)
	case "DNSKEY":
		return fmt.Sprintf("DNSKEY %s validated (key tag %d alg %d)", l.Name, l.KeyTag, l.Algorithm)
	case "RRSIG":
		return fmt.Sprintf("RRSIG %s %s by %s tag %d alg %d, valid until %s",
			l.Type, l.Name, l.Zone, l.KeyTag, l.Algorithm, l.Until.Format(time.RFC3339))
	case "NSEC", "NSEC3":
		return fmt.Sprintf("%s of %s proves %s %s %s", l.Step, l.Zone, l.Denial, l.Type, l.Name)
	}
	return fmt.Sprintf("%s %s %s", l.Step, l.Type, l.Name)
}

// Result is what one Discover call found.
type Result struct {
	// Peers are the accepted peers, sorted by ID.
	Peers []Peer
	// Chain lists every validated step, in the order validated.
	Chain []Link
	// Errors holds, for each zone that contributed no peers, a *ZoneError
	// with the reason, and an error wrapping ErrConflict for each node the
	// zones disagree on.
	Errors []error
	// Verifications is the number of signature verifications attempted.
	Verifications int

	ttl uint32
}

// TTL is the smallest validated TTL of every RRset used (the chain of trust
// included), each capped by its signature's remaining lifetime: when to run
// Discover again. Zero when nothing was validated.
func (r *Result) TTL() time.Duration { return time.Duration(r.ttl) * time.Second }

// Discover looks up every seed zone and returns the peers that at least
// MinSeeds zones agree on. A zone counts only if every answer it needs (SRV,
// then A, AAAA and TXT of each target) validates: one refused answer and the
// zone contributes nothing, its reason in Result.Errors.
//
// When no peer is accepted the error wraps ErrNoPeers and the reason of each
// zone (check them with errors.Is); the Result is still returned, for its
// Chain. A caller keeps its last good Result on error and calls Discover
// again after Result.TTL.
func (d *Discoverer) Discover(ctx context.Context) (*Result, error) {
	s := d.newSession(ctx)
	res := &Result{}
	t := newTally()
	for _, z := range d.zones {
		peers, err := s.zonePeers(z)
		if err != nil {
			res.Errors = append(res.Errors, &ZoneError{Zone: z.String(), Err: err})
			continue
		}
		t.add(z.String(), peers)
	}
	var conflicts []error
	res.Peers, conflicts = t.accept(d.cfg.MinSeeds)
	res.Errors = append(res.Errors, conflicts...)
	res.Chain = s.v.chain
	res.Verifications = s.v.tried
	res.ttl = s.v.ttl
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("seeds: discover: %w", err)
	}
	if len(res.Peers) == 0 {
		return res, errors.Join(append([]error{fmt.Errorf("%w: none of %d zones gave an accepted peer", ErrNoPeers, len(d.zones))}, res.Errors...)...)
	}
	return res, nil
}

// zonePeer is what one zone says of one node.
type zonePeer struct {
	id    string
	key   [32]byte
	addrs []string
}

// zonePeers looks up the SRV RRset of zone and, for each target, its
// addresses and key pin. Any refused answer fails the whole zone.
func (s *session) zonePeers(zone dname) ([]zonePeer, error) {
	srvs, err := s.lookup(zone.child("_tcp").child("_ledgergate"), dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var targets []dname
	ports := map[string][]uint16{}
	for _, rr := range srvs {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		t := mustName(srv.Target)
		if len(t) == 0 {
			continue // "." : no service here (RFC 2782)
		}
		k := string(t.wire())
		if _, ok := ports[k]; !ok {
			targets = append(targets, t)
		}
		if !slices.Contains(ports[k], srv.Port) {
			ports[k] = append(ports[k], srv.Port)
		}
	}
	switch {
	case len(targets) == 0:
		return nil, fmt.Errorf("%w: SRV %s.%s names no target", ErrBadRecord, Service, zone)
	case len(targets) > maxTargets:
		return nil, fmt.Errorf("%w: SRV %s.%s names %d targets, at most %d accepted", ErrBadRecord, Service, zone, len(targets), maxTargets)
	}

	var out []zonePeer
	for _, t := range targets {
		var ips []string
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			rrs, err := s.lookup(t, qt)
			if errors.Is(err, ErrNoData) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, rr := range rrs {
				switch a := rr.(type) {
				case *dns.A:
					ips = append(ips, a.A.String())
				case *dns.AAAA:
					ips = append(ips, a.AAAA.String())
				}
			}
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("%w: SRV target %s has no A or AAAA record", ErrBadRecord, t)
		}
		txts, err := s.lookup(t, dns.TypeTXT)
		if errors.Is(err, ErrNoData) {
			return nil, fmt.Errorf("%w: TXT %s: no lg1 key pin (%w)", ErrBadRecord, t, err)
		}
		if err != nil {
			return nil, err
		}
		id, key, err := parsePin(t, txts)
		if err != nil {
			return nil, err
		}
		p := zonePeer{id: id, key: key}
		for _, port := range ports[string(t.wire())] {
			for _, ip := range ips {
				p.addrs = append(p.addrs, net.JoinHostPort(ip, strconv.Itoa(int(port))))
			}
		}
		i := slices.IndexFunc(out, func(o zonePeer) bool { return o.id == id })
		switch {
		case i < 0:
			out = append(out, p)
		case out[i].key != key:
			return nil, fmt.Errorf("%w: node %s has two keys in zone %s", ErrConflict, id, zone)
		default:
			out[i].addrs = append(out[i].addrs, p.addrs...)
		}
	}
	return out, nil
}

// parsePin finds the one lg1 TXT record at target, `lg1 node=<id>
// spki-sha256=<64 hex>`, and returns its node id and key hash. The strings
// of a TXT record are joined; other TXT records are ignored, as are unknown
// fields of an lg1 record.
func parsePin(target dname, txts []dns.RR) (string, [32]byte, error) {
	var key [32]byte
	bad := func(format string, args ...any) (string, [32]byte, error) {
		return "", key, fmt.Errorf("%w: TXT %s: %s", ErrBadRecord, target, fmt.Sprintf(format, args...))
	}
	var pins []string
	for _, rr := range txts {
		if t, ok := rr.(*dns.TXT); ok {
			s := strings.Join(t.Txt, "")
			if f := strings.Fields(s); len(f) > 0 && f[0] == "lg1" {
				pins = append(pins, s)
			}
		}
	}
	switch len(pins) {
	case 0:
		return bad("no lg1 record")
	case 1:
	default:
		return bad("%d lg1 records, want one", len(pins))
	}
	var id, sum string
	for _, f := range strings.Fields(pins[0])[1:] {
		k, v, _ := strings.Cut(f, "=")
		var dst *string
		switch k {
		case "node":
			dst = &id
		case "spki-sha256":
			dst = &sum
		default:
			continue
		}
		if *dst != "" {
			return bad("%s given twice", k)
		}
		*dst = v
	}
	if !validID(id) {
		return bad("node %q: want 1 to 64 of A-Z a-z 0-9 . _ -", id)
	}
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != len(key) {
		return bad("spki-sha256 %q: want 64 hex digits", sum)
	}
	copy(key[:], b)
	return id, key, nil
}

// validID is the rule of node ids in the ledger: 1 to 64 of A-Z a-z 0-9 . _
// -, not "." or "..".
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// tally counts, for each node and key, the zones that list each address.
type tally struct {
	nodes map[nodeKey]*nodeVotes
	order []nodeKey
}

type nodeKey struct {
	id  string
	key [32]byte
}

type nodeVotes struct {
	zones []string
	addrs map[string][]string // address → zones
}

func newTally() *tally { return &tally{nodes: map[nodeKey]*nodeVotes{}} }

func (t *tally) add(zone string, peers []zonePeer) {
	for _, p := range peers {
		k := nodeKey{p.id, p.key}
		n := t.nodes[k]
		if n == nil {
			n = &nodeVotes{addrs: map[string][]string{}}
			t.nodes[k] = n
			t.order = append(t.order, k)
		}
		if !slices.Contains(n.zones, zone) {
			n.zones = append(n.zones, zone)
		}
		for _, a := range p.addrs {
			if !slices.Contains(n.addrs[a], zone) {
				n.addrs[a] = append(n.addrs[a], zone)
			}
		}
	}
}

// accept returns the nodes with at least one address that minSeeds zones agree
// on. A node id with two accepted keys, or a key under two accepted ids, is
// refused with an error wrapping ErrConflict.
func (t *tally) accept(minSeeds int) ([]Peer, []error) {
	var cands []Peer
	for _, k := range t.order {
		n := t.nodes[k]
		p := Peer{ID: k.id, KeySHA256: k.key, Zones: slices.Sorted(slices.Values(n.zones))}
		for a, zones := range n.addrs {
			if len(zones) >= minSeeds {
				p.Addrs = append(p.Addrs, a)
			}
		}
		if len(p.Addrs) > 0 {
			slices.SortFunc(p.Addrs, func(a, b string) int {
				x, errx := netip.ParseAddrPort(a)
				y, erry := netip.ParseAddrPort(b)
				if errx != nil || erry != nil {
					return strings.Compare(a, b)
				}
				return x.Compare(y)
			})
			cands = append(cands, p)
		}
	}
	var peers []Peer
	var errs []error
	reported := map[string]bool{}
	for _, p := range cands {
		var why string
		switch {
		case slices.ContainsFunc(cands, func(o Peer) bool { return o.ID == p.ID && o.KeySHA256 != p.KeySHA256 }):
			why = "has different keys in different zones"
		case slices.ContainsFunc(cands, func(o Peer) bool { return o.ID != p.ID && o.KeySHA256 == p.KeySHA256 }):
			why = "shares its key with another node id"
		default:
			peers = append(peers, p)
			continue
		}
		if !reported[p.ID] {
			reported[p.ID] = true
			errs = append(errs, fmt.Errorf("%w: node %s %s; refused", ErrConflict, p.ID, why))
		}
	}
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.ID, b.ID) })
	return peers, errs
}
