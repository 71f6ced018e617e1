package seeds_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ledgergate/ledgergate/seeds"
	"github.com/ledgergate/ledgergate/seeds/seedstest"
)

// The end-to-end tests: zones signed by BIND's dnssec-signzone (seedstest),
// served by a real authoritative server on 127.0.0.1, discovered and
// validated through the network.

// pin is the key hash the zones publish for node id.
func pin(id string) [32]byte { return sha256.Sum256([]byte("key of " + id)) }

// siteRecords is a seed zone with two gateways: gw1 with an IPv4 and an IPv6
// address, gw2 with IPv4 only (so its AAAA lookup needs a denial proof).
func siteRecords() []string {
	return []string{
		"_ledgergate._tcp 300 SRV 0 0 7001 gw1",
		"_ledgergate._tcp 300 SRV 10 0 7002 gw2",
		"gw1 300 A 192.0.2.1",
		"gw1 300 AAAA 2001:db8::1",
		fmt.Sprintf(`gw1 300 TXT "lg1 node=node-1 spki-sha256=%x"`, pin("node-1")),
		"gw2 300 A 192.0.2.2",
		`gw2 300 TXT "v=spf1 -all"`,
		fmt.Sprintf(`gw2 300 TXT "lg1 node=node-2 spki-sha256=%X"`, pin("node-2")),
	}
}

var wantPeers = []seeds.Peer{
	{ID: "node-1", Addrs: []string{"192.0.2.1:7001", "[2001:db8::1]:7001"}, KeySHA256: pin("node-1"), Zones: []string{"site.test."}},
	{ID: "node-2", Addrs: []string{"192.0.2.2:7002"}, KeySHA256: pin("node-2"), Zones: []string{"site.test."}},
}

func newDiscoverer(t *testing.T, cfg seeds.Config) *seeds.Discoverer {
	t.Helper()
	if cfg.Zones == nil {
		cfg.Zones = []string{"site.test."}
	}
	d, err := seeds.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func discover(t *testing.T, cfg seeds.Config) (*seeds.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return newDiscoverer(t, cfg).Discover(ctx)
}

func lookup(t *testing.T, cfg seeds.Config, name string, qtype uint16) ([]dns.RR, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return newDiscoverer(t, cfg).Lookup(ctx, name, qtype)
}

func chainText(r *seeds.Result) string {
	var b strings.Builder
	for _, l := range r.Chain {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	for _, alg := range []uint8{dns.RSASHA256, dns.ECDSAP256SHA256, dns.ED25519} {
		for _, nsec3 := range []bool{false, true} {
			t.Run(fmt.Sprintf("alg%d/nsec3=%v", alg, nsec3), func(t *testing.T) {
				t.Parallel()
				z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "site.test.", Algorithm: alg, Records: siteRecords(),
					NSEC3: nsec3, NSEC3Salt: "c0ffee", NSEC3Iterations: 10})
				srv := seedstest.Serve(t, z)
				res, err := discover(t, seeds.Config{Anchors: z.Anchor, Servers: []string{srv.Addr()}})
				if err != nil {
					t.Fatalf("Discover: %v\nchain:\n%s", err, chainText(res))
				}
				if !slices.EqualFunc(res.Peers, wantPeers, peerEqual) {
					t.Errorf("peers = %+v, want %+v", res.Peers, wantPeers)
				}
				if len(res.Errors) != 0 {
					t.Errorf("errors = %v", res.Errors)
				}
				if ttl := res.TTL(); ttl <= 0 || ttl > 300*time.Second {
					t.Errorf("TTL = %s, want (0, 300s]", ttl)
				}
				chain := chainText(res)
				denial := "NSEC of site.test. proves NODATA AAAA gw2.site.test."
				if nsec3 {
					denial = "NSEC3 of site.test. proves NODATA AAAA gw2.site.test."
				}
				for _, want := range []string{
					fmt.Sprintf("anchor DS site.test. tag %d alg %d", z.DS[0].KeyTag, alg),
					fmt.Sprintf("DNSKEY site.test. validated (key tag %d alg %d)", z.DS[0].KeyTag, alg),
					"RRSIG SRV _ledgergate._tcp.site.test. by site.test. tag",
					"RRSIG TXT gw1.site.test. by site.test.",
					denial,
				} {
					if !strings.Contains(chain, want) {
						t.Errorf("chain lacks %q:\n%s", want, chain)
					}
				}
			})
		}
	}
}

func peerEqual(a, b seeds.Peer) bool {
	return a.ID == b.ID && a.KeySHA256 == b.KeySHA256 && slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Zones, b.Zones)
}

// TestDiscoverChain anchors at the parent, test., which delegates to
// site.test. with a DS record; the chain goes through both zones.
func TestDiscoverChain(t *testing.T) {
	t.Parallel()
	for _, nsec3 := range []bool{false, true} {
		t.Run(fmt.Sprintf("nsec3=%v", nsec3), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			child := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "site.test.", Algorithm: dns.ED25519, Records: siteRecords(), NSEC3: nsec3})
			parent := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "test.", Algorithm: dns.ECDSAP256SHA256,
				Records: []string{"other A 192.0.2.99"}, Children: []*seedstest.Signed{child}, NSEC3: nsec3})
			srv := seedstest.Serve(t, parent, child)
			cfg := seeds.Config{Anchors: parent.Anchor, Servers: []string{srv.Addr()}}
			res, err := discover(t, cfg)
			if err != nil {
				t.Fatalf("Discover: %v\nchain:\n%s", err, chainText(res))
			}
			if !slices.EqualFunc(res.Peers, wantPeers, peerEqual) {
				t.Errorf("peers = %+v, want %+v", res.Peers, wantPeers)
			}
			chain := chainText(res)
			for _, want := range []string{
				"anchor DS test. tag",
				"DNSKEY test. validated",
				"RRSIG DS site.test. by test.",
				"DNSKEY site.test. validated",
				"RRSIG SRV _ledgergate._tcp.site.test. by site.test.",
			} {
				if !strings.Contains(chain, want) {
					t.Errorf("chain lacks %q:\n%s", want, chain)
				}
			}

			// Names of the parent validate too, and denials in both zones.
			if rrs, err := lookup(t, cfg, "other.test.", dns.TypeA); err != nil || len(rrs) != 1 {
				t.Errorf("Lookup other.test. A = %v, %v", rrs, err)
			}
			if _, err := lookup(t, cfg, "nosuch.test.", dns.TypeA); !errors.Is(err, seeds.ErrNXDomain) {
				t.Errorf("Lookup nosuch.test. A: %v, want ErrNXDomain", err)
			}
			if _, err := lookup(t, cfg, "no.such.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrNXDomain) {
				t.Errorf("Lookup no.such.site.test. A: %v, want ErrNXDomain", err)
			}
			if _, err := lookup(t, cfg, "gw2.site.test.", dns.TypeMX); !errors.Is(err, seeds.ErrNoData) {
				t.Errorf("Lookup gw2.site.test. MX: %v, want ErrNoData", err)
			}
		})
	}
}

// TestDiscoverMinSeeds: two zones; node-1 is in both, node-2 only in one,
// and node-3's address differs between them.
func TestDiscoverMinSeeds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	zone := func(origin string, records ...string) *seedstest.Signed {
		return seedstest.SignZone(t, dir, seedstest.Zone{Origin: origin, Records: records})
	}
	txt := func(owner, id string) string {
		return fmt.Sprintf(`%s TXT "lg1 node=%s spki-sha256=%x"`, owner, id, pin(id))
	}
	a := zone("a.test.", "_ledgergate._tcp SRV 0 0 7001 gw1", "_ledgergate._tcp SRV 0 0 7001 gw2", "_ledgergate._tcp SRV 0 0 7001 gw3",
		"gw1 A 192.0.2.1", txt("gw1", "node-1"), "gw2 A 192.0.2.2", txt("gw2", "node-2"), "gw3 A 192.0.2.3", txt("gw3", "node-3"))
	b := zone("b.test.", "_ledgergate._tcp SRV 0 0 7001 gw1.a.test.", "_ledgergate._tcp SRV 0 0 7001 gw3",
		"gw3 A 192.0.2.33", txt("gw3", "node-3"))
	srv := seedstest.Serve(t, a, b)
	cfg := seeds.Config{Zones: []string{"a.test.", "b.test."}, Anchors: a.Anchor + b.Anchor, Servers: []string{srv.Addr()}}

	cfg.MinSeeds = 2
	res, err := discover(t, cfg)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	want := []seeds.Peer{{ID: "node-1", Addrs: []string{"192.0.2.1:7001"}, KeySHA256: pin("node-1"), Zones: []string{"a.test.", "b.test."}}}
	if !slices.EqualFunc(res.Peers, want, peerEqual) {
		t.Errorf("MinSeeds 2: peers = %+v, want %+v", res.Peers, want)
	}

	cfg.MinSeeds = 1
	res, err = discover(t, cfg)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	var ids []string
	for _, p := range res.Peers {
		ids = append(ids, p.ID+" "+strings.Join(p.Addrs, ","))
	}
	if w := []string{"node-1 192.0.2.1:7001", "node-2 192.0.2.2:7001", "node-3 192.0.2.3:7001,192.0.2.33:7001"}; !slices.Equal(ids, w) {
		t.Errorf("MinSeeds 1: peers = %q, want %q", ids, w)
	}
}

// TestDiscoverConflict: two zones pin node-1 to different keys; it is
// refused, the other peers stay.
func TestDiscoverConflict(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "a.test.", Records: []string{
		"_ledgergate._tcp SRV 0 0 7001 gw1", "gw1 A 192.0.2.1", fmt.Sprintf(`gw1 TXT "lg1 node=node-1 spki-sha256=%x"`, pin("node-1")),
		"_ledgergate._tcp SRV 0 0 7001 gw2", "gw2 A 192.0.2.2", fmt.Sprintf(`gw2 TXT "lg1 node=node-2 spki-sha256=%x"`, pin("node-2"))}})
	b := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "b.test.", Records: []string{
		"_ledgergate._tcp SRV 0 0 7001 gw1", "gw1 A 192.0.2.1", fmt.Sprintf(`gw1 TXT "lg1 node=node-1 spki-sha256=%x"`, pin("evil"))}})
	srv := seedstest.Serve(t, a, b)
	res, err := discover(t, seeds.Config{Zones: []string{"a.test.", "b.test."}, Anchors: a.Anchor + b.Anchor, Servers: []string{srv.Addr()}})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if len(res.Peers) != 1 || res.Peers[0].ID != "node-2" {
		t.Errorf("peers = %+v, want node-2 alone", res.Peers)
	}
	if len(res.Errors) != 1 || !errors.Is(res.Errors[0], seeds.ErrConflict) || !strings.Contains(res.Errors[0].Error(), "node-1") {
		t.Errorf("errors = %v, want one conflict on node-1", res.Errors)
	}
}

// refusal is a case of TestRefused: a zone (or a tampered answer, a wrong
// anchor, a clock) that must make discovery fail with the error want.
type refusal struct {
	name   string
	zone   seedstest.Zone
	anchor func(t *testing.T, z *seedstest.Signed) string
	tamper func(m *dns.Msg)
	now    func() time.Time
	want   []error
	text   string // the error says this, too
}

func TestRefused(t *testing.T) {
	t.Parallel()
	now := time.Now()
	isA := func(m *dns.Msg, name string) bool {
		return len(m.Question) == 1 && m.Question[0].Qtype == dns.TypeA && strings.EqualFold(m.Question[0].Name, name)
	}
	cases := []refusal{
		{name: "changed A record", tamper: func(m *dns.Msg) {
			for _, rr := range m.Answer {
				if a, ok := rr.(*dns.A); ok {
					a.A = net.IPv4(203, 0, 113, 66)
				}
			}
		}, want: []error{seeds.ErrBogusSignature}, text: "A gw1.site.test."},
		{name: "changed SRV port", tamper: func(m *dns.Msg) {
			for _, rr := range m.Answer {
				if s, ok := rr.(*dns.SRV); ok {
					s.Port = 6666
				}
			}
		}, want: []error{seeds.ErrBogusSignature}, text: "SRV _ledgergate._tcp.site.test."},
		{name: "changed key pin", tamper: func(m *dns.Msg) {
			for _, rr := range m.Answer {
				if txt, ok := rr.(*dns.TXT); ok {
					txt.Txt = []string{fmt.Sprintf("lg1 node=node-1 spki-sha256=%x", pin("evil"))}
				}
			}
		}, want: []error{seeds.ErrBogusSignature}},
		{name: "expired signatures", zone: seedstest.Zone{Inception: now.Add(-60 * 24 * time.Hour), Expiration: now.Add(-30 * 24 * time.Hour)},
			want: []error{seeds.ErrSignatureExpired}},
		{name: "clock after expiration", now: func() time.Time { return now.Add(60 * 24 * time.Hour) },
			want: []error{seeds.ErrSignatureExpired}},
		{name: "inception in the future", zone: seedstest.Zone{Inception: now.Add(24 * time.Hour), Expiration: now.Add(30 * 24 * time.Hour)},
			want: []error{seeds.ErrSignatureNotYetValid}},
		{name: "wrong anchor", anchor: func(t *testing.T, _ *seedstest.Signed) string {
			other := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "site.test.", Records: []string{"x A 192.0.2.9"}})
			return other.Anchor
		}, want: []error{seeds.ErrDSMismatch}},
		{name: "anchor digest changed", anchor: func(t *testing.T, z *seedstest.Signed) string {
			ds := dns.Copy(z.DS[0]).(*dns.DS)
			ds.Digest = strings.Repeat("0", len(ds.Digest))
			return ds.String()
		}, want: []error{seeds.ErrDSMismatch}},
		{name: "stripped RRSIGs", tamper: func(m *dns.Msg) {
			m.Answer = slices.DeleteFunc(m.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeRRSIG })
		}, want: []error{seeds.ErrMissingSignature}},
		{name: "unsigned answer in a signed zone", tamper: func(m *dns.Msg) {
			if isA(m, "gw1.site.test.") {
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "gw1.site.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
					A: net.IPv4(203, 0, 113, 66)}}
			}
		}, want: []error{seeds.ErrMissingSignature}, text: "A gw1.site.test."},
		{name: "AD bit from a non-validating resolver", tamper: func(m *dns.Msg) {
			m.AuthenticatedData = true
			if isA(m, "gw1.site.test.") {
				m.Answer = slices.DeleteFunc(m.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeRRSIG })
			}
		}, want: []error{seeds.ErrMissingSignature}, text: "AD"},
		{name: "NODATA without proof", tamper: func(m *dns.Msg) {
			m.Ns = slices.DeleteFunc(m.Ns, func(rr dns.RR) bool {
				t := rr.Header().Rrtype
				return t == dns.TypeNSEC || t == dns.TypeNSEC3 || t == dns.TypeRRSIG
			})
		}, want: []error{seeds.ErrNoDenialProof}, text: "AAAA gw2.site.test."},
		{name: "forged NXDOMAIN", tamper: func(m *dns.Msg) {
			if isA(m, "gw1.site.test.") {
				m.Rcode = dns.RcodeNameError
				m.Answer = nil
			}
		}, want: []error{seeds.ErrNoDenialProof}, text: "NXDOMAIN gw1.site.test."},
		{name: "NSEC3 with 150 iterations", zone: seedstest.Zone{NSEC3: true, NSEC3Iterations: 150},
			want: []error{seeds.ErrInsecureNSEC3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			zc := c.zone
			zc.Origin, zc.Records = "site.test.", siteRecords()
			z := seedstest.SignZone(t, t.TempDir(), zc)
			srv := seedstest.Serve(t, z)
			srv.Tamper(c.tamper)
			anchor := z.Anchor
			if c.anchor != nil {
				anchor = c.anchor(t, z)
			}
			res, err := discover(t, seeds.Config{Anchors: anchor, Servers: []string{srv.Addr()}, Now: c.now})
			if err == nil {
				t.Fatalf("Discover accepted %+v", res.Peers)
			}
			t.Logf("refused: %v", err)
			if res == nil || len(res.Peers) != 0 {
				t.Errorf("Result = %+v, want no peers", res)
			}
			for _, want := range append(c.want, seeds.ErrNoPeers) {
				if !errors.Is(err, want) {
					t.Errorf("error %q\nis not %q", err, want)
				}
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q does not say %q", err, c.text)
			}
			if !strings.HasPrefix(err.Error(), "seeds: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestLookupDenials: NXDOMAIN and NODATA validate with NSEC and NSEC3, and
// are refused when the proof is dropped, altered, or replayed for a name it
// does not cover.
func TestLookupDenials(t *testing.T) {
	t.Parallel()
	for _, nsec3 := range []bool{false, true} {
		t.Run(fmt.Sprintf("nsec3=%v", nsec3), func(t *testing.T) {
			t.Parallel()
			z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "site.test.", Records: append(siteRecords(), "a.b.deep A 192.0.2.7"),
				NSEC3: nsec3, NSEC3Salt: "ab", NSEC3Iterations: 3})
			srv := seedstest.Serve(t, z)
			cfg := seeds.Config{Anchors: z.Anchor, Servers: []string{srv.Addr()}}

			for _, q := range []struct {
				name  string
				qtype uint16
				want  error
			}{
				{"nosuch.site.test.", dns.TypeA, seeds.ErrNXDomain},
				{"a.nosuch.site.test.", dns.TypeTXT, seeds.ErrNXDomain},
				{"gw2.site.test.", dns.TypeAAAA, seeds.ErrNoData},
				{"deep.site.test.", dns.TypeA, seeds.ErrNoData}, // an empty non-terminal
				{"b.deep.site.test.", dns.TypeA, seeds.ErrNoData},
				{"site.test.", dns.TypeSRV, seeds.ErrNoData},
			} {
				if _, err := lookup(t, cfg, q.name, q.qtype); !errors.Is(err, q.want) {
					t.Errorf("%s %s: %v, want %v", q.name, dns.TypeToString[q.qtype], err, q.want)
				}
			}

			// A genuine proof for nosuch, replayed as the answer for gw1.
			var mu sync.Mutex
			var replay []dns.RR
			srv.Tamper(func(m *dns.Msg) {
				mu.Lock()
				defer mu.Unlock()
				if m.Question[0].Name == "nosuch.site.test." {
					replay = m.Ns
				}
			})
			if _, err := lookup(t, cfg, "nosuch.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrNXDomain) {
				t.Fatalf("nosuch: %v", err)
			}
			srv.Tamper(func(m *dns.Msg) {
				mu.Lock()
				defer mu.Unlock()
				if m.Question[0].Name == "gw1.site.test." {
					m.Rcode, m.Answer, m.Ns = dns.RcodeNameError, nil, replay
				}
			})
			if _, err := lookup(t, cfg, "gw1.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrNoDenialProof) {
				t.Errorf("replayed NXDOMAIN proof: %v, want ErrNoDenialProof", err)
			}

			// The proof's records altered: their signatures fail.
			srv.Tamper(func(m *dns.Msg) {
				for _, rr := range m.Ns {
					switch rr := rr.(type) {
					case *dns.NSEC:
						rr.NextDomain = "zzz.site.test."
					case *dns.NSEC3:
						rr.NextDomain = strings.Repeat("V", 32)
					}
				}
			})
			_, err := lookup(t, cfg, "nosuch.site.test.", dns.TypeA)
			if !errors.Is(err, seeds.ErrNoDenialProof) || !errors.Is(err, seeds.ErrBogusSignature) {
				t.Errorf("altered proof: %v, want ErrNoDenialProof and ErrBogusSignature", err)
			}

			// The proof dropped.
			srv.Tamper(func(m *dns.Msg) {
				m.Ns = slices.DeleteFunc(m.Ns, func(rr dns.RR) bool { return rr.Header().Rrtype != dns.TypeSOA })
			})
			if _, err := lookup(t, cfg, "nosuch.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrNoDenialProof) {
				t.Errorf("dropped proof: %v, want ErrNoDenialProof", err)
			}
		})
	}
}

// TestKeyTrap: a zone of 50 RSA keys sharing one key tag and 50 bogus
// signatures per RRset is refused after a bounded number of verifications,
// not 50×50.
func TestKeyTrap(t *testing.T) {
	t.Parallel()
	z := seedstest.KeyTrapZone(t, t.TempDir(), "site.test.", 50)
	srv := seedstest.Serve(t, z)
	cfg := seeds.Config{Anchors: z.Anchor, Servers: []string{srv.Addr()}}
	res, err := discover(t, cfg)
	if !errors.Is(err, seeds.ErrKeyTrap) {
		t.Fatalf("Discover: %v, want ErrKeyTrap", err)
	}
	if res.Verifications == 0 || res.Verifications > seeds.MaxVerificationsPerRRset {
		t.Errorf("Discover did %d signature verifications, want 1 to %d", res.Verifications, seeds.MaxVerificationsPerRRset)
	}
	if _, err := lookup(t, cfg, "www.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrKeyTrap) {
		t.Errorf("Lookup: %v, want ErrKeyTrap", err)
	}
}

// TestInsecureDelegation: the parent delegates to site.test. without a DS
// (an unsigned delegation, proven by the parent's NSEC); site.test. is
// signed with keys of its own, which nothing vouches for.
func TestInsecureDelegation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	child := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "site.test.", Records: siteRecords()})
	parent := seedstest.SignZone(t, dir, seedstest.Zone{Origin: "test.", Records: []string{"site NS ns1.site", "ns1.site A 127.0.0.1"}})
	srv := seedstest.Serve(t, parent, child)
	_, err := discover(t, seeds.Config{Anchors: parent.Anchor, Servers: []string{srv.Addr()}})
	if !errors.Is(err, seeds.ErrInsecureDelegation) {
		t.Errorf("Discover: %v, want ErrInsecureDelegation", err)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	big := siteRecords()
	for i := range 20 {
		big = append(big, fmt.Sprintf(`big TXT "%02d %s"`, i, strings.Repeat("x", 100)))
	}
	z := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "site.test.", Records: append(big, "alias CNAME gw1")})
	other := seedstest.SignZone(t, t.TempDir(), seedstest.Zone{Origin: "other.test.", Records: []string{"www A 192.0.2.5"}})
	srv := seedstest.Serve(t, z, other)
	cfg := seeds.Config{Anchors: z.Anchor, Servers: []string{srv.Addr()}}

	t.Run("truncated answer retried over TCP", func(t *testing.T) {
		rrs, err := lookup(t, cfg, "big.site.test.", dns.TypeTXT)
		if err != nil || len(rrs) != 20 {
			t.Fatalf("Lookup big TXT: %d records, %v", len(rrs), err)
		}
	})
	t.Run("TTL is capped by the signature", func(t *testing.T) {
		// The clock says the signatures expire in 100 s; the records' TTL is 300.
		exp := time.Now().Add(30 * 24 * time.Hour)
		c := cfg
		c.Now = func() time.Time { return exp.Add(-100 * time.Second) }
		rrs, err := lookup(t, c, "gw1.site.test.", dns.TypeA)
		if err != nil || len(rrs) != 1 {
			t.Fatalf("Lookup: %v, %v", rrs, err)
		}
		if ttl := rrs[0].Header().Ttl; ttl > 100 || ttl < 90 {
			t.Errorf("TTL = %d, want about 100", ttl)
		}
	})
	t.Run("alias not followed", func(t *testing.T) {
		if _, err := lookup(t, cfg, "alias.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrBadAnswer) {
			t.Errorf("Lookup alias: %v, want ErrBadAnswer", err)
		}
	})
	t.Run("zone outside the anchors", func(t *testing.T) {
		if _, err := lookup(t, cfg, "www.other.test.", dns.TypeA); !errors.Is(err, seeds.ErrNoTrustAnchor) {
			t.Errorf("Lookup www.other.test.: %v, want ErrNoTrustAnchor", err)
		}
	})
	t.Run("first server down", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := pc.LocalAddr().String() // bound but never answers
		defer pc.Close()
		c := cfg
		c.Servers = []string{dead, srv.Addr()}
		c.Timeout = 200 * time.Millisecond
		if rrs, err := lookup(t, c, "gw1.site.test.", dns.TypeA); err != nil || len(rrs) != 1 {
			t.Errorf("Lookup past a dead server: %v, %v", rrs, err)
		}
		c.Servers = []string{dead}
		if _, err := lookup(t, c, "gw1.site.test.", dns.TypeA); !errors.Is(err, seeds.ErrNoAnswer) {
			t.Errorf("Lookup with no server: %v, want ErrNoAnswer", err)
		}
	})
	t.Run("anchor as DNSKEY", func(t *testing.T) {
		var ksk *dns.DNSKEY
		for _, k := range z.DNSKEY {
			if k.Flags&dns.SEP != 0 {
				ksk = k
			}
		}
		c := cfg
		c.Anchors = "; the KSK\n" + ksk.String() + "\n"
		if rrs, err := lookup(t, c, "gw1.site.test.", dns.TypeA); err != nil || len(rrs) != 1 {
			t.Errorf("Lookup: %v, %v", rrs, err)
		}
	})
}
